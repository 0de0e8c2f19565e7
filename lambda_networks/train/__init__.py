"""Training and evaluation: sharded jitted steps, Orbax checkpoints, clu logs.

`trainer.train_and_evaluate(config, workdir)` is the whole training run;
`experiment.build(config)` gives what both training and evaluation need.
The trainer knows models only through `lambda_networks.models.get_model`.
"""
