"""Scores a checkpoint: `python eval.py --workdir=DIR [--step=N] [--split=...]`.

Uses the config the run saved in DIR/config.json (so the same model,
overrides and preprocessing); `--config.<field>=...` still overrides it, and
`--config=<file>` uses a config file instead (with a warning for each field
that differs from the saved run). Restores the newest checkpoint (or
--step), evaluates every example of the split exactly once, prints the
result and writes eval_<split>_step<N>.json into the workdir: top-1, top-5,
loss, examples counted, step, which weights (EMA or raw), and the model,
overrides, dataset, split and image size that made them. Without --step, a
damaged newest checkpoint is reported and the previous one scored. A user
error (bad flag, path, step, a config.json that is not valid JSON) is one
line on stderr and exit status 2, as in train.py.
"""

import functools
import json
import sys

from absl import app
from absl import flags

from configs import default
from lambda_networks import native_logs

native_logs.quiet()  # Before JAX and TensorFlow load.

from lambda_networks.train import cli  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's directory (holds checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step; default: the newest.")
flags.DEFINE_string("split", None, "Split to score; default: config.eval_split.")
flags.DEFINE_enum("weights", "auto", ["auto", "ema", "raw"],
                  "auto: EMA weights (with the EMA of the batch-norm "
                  "statistics) when the run kept them and "
                  "config.eval_use_ema, else the raw weights and statistics.")
cli.define_distributed_flags()
flags.mark_flags_as_required(["workdir"])


@cli.report_user_errors
def main(argv):
  cli.start(argv)
  # pylint: disable=g-import-not-at-top
  import jax
  from etils import epath
  from lambda_networks.train import checkpointing
  from lambda_networks.train import evaluation
  from lambda_networks.train import experiment as experiment_lib
  from lambda_networks.train import resolved_config
  from lambda_networks.train import results
  from lambda_networks.train import workdir as workdir_lib
  from lambda_networks.train import run_config
  # pylint: enable=g-import-not-at-top

  config = FLAGS.config
  if FLAGS.split:
    with config.unlocked():
      config.eval_split = FLAGS.split
  workdir = workdir_lib.resolve(FLAGS.workdir)
  if not (epath.Path(workdir) / "checkpoints").is_dir():
    raise cli.UserError(f"{workdir} holds no checkpoints/ directory; pass the "
                        "--workdir of a training run.")
  prepared = resolved_config.prepare(config, workdir=workdir)
  config = prepared.config
  saved = run_config.load(workdir)
  if saved is not None and jax.process_index() == 0:
    for change in run_config.differences(saved, config,
                                         run_config.BOOKKEEPING_FIELDS | {"eval_split"}):
      print(f"WARNING: evaluating with a config that differs from the run's "
            f"{run_config.CONFIG_FILE}: {change}")
  exp = experiment_lib.build(prepared)
  manager = checkpointing.create_manager(workdir, config, read_only=True)
  if FLAGS.step is None:
    state = checkpointing.restore_newest(
        manager, exp.state, exp.record, set_aside=False,
        report=lambda line: print(line, file=sys.stderr, flush=True))
  else:
    state = checkpointing.restore_step(manager, exp.state, exp.record, FLAGS.step)
  step = int(jax.device_get(state.step))
  if FLAGS.weights == "ema" and not state.ema_params:
    raise cli.UserError("--weights=ema but this run kept no EMA "
                        "(config.ema_decay was 0); use --weights=raw.")
  use_ema = (config.eval_use_ema if FLAGS.weights == "auto"
             else FLAGS.weights == "ema")
  params, batch_stats, weights = evaluation.eval_weights(state, use_ema)
  result = evaluation.evaluate(exp.eval_step, params, batch_stats,
                               exp.source, exp.mesh, exp.task)
  result.update(run_config.describe(config), step=step, weights=weights)
  text = json.dumps(result, indent=2)
  manager.close()
  if jax.process_index() == 0:
    print(text, flush=True)  # Before writing: a failed write loses nothing.
    path = epath.Path(workdir) / results.metrics_file_name(
        config.eval_split, step)
    try:
      path.write_text(text + "\n")
    except OSError as error:
      raise cli.UserError(f"Could not write {path} ({error.strerror or error}); "
                          "the result above is complete.") from error
    print(f"Wrote {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=functools.partial(cli.parse_eval_flags,
                                               defaults=default.get_config()))
