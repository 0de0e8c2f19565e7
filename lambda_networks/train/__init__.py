"""Training and evaluation: sharded jitted steps, Orbax checkpoints, metric logs.

`trainer.train_and_evaluate(config, workdir)` is the whole training run;
`resolved_config.prepare(config)` is the one path from the user's config to
the frozen one a run reads, and `experiment.build(prepared)` gives what both
training and evaluation need.
The trainer knows models only through `lambda_networks.models.get_model`.
"""
