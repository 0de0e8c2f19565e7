"""Trains a model: `python train.py --config=configs/<file>.py --workdir=DIR`.

Override any config field with `--config.<field>=<value>`, and any field of
the model's config with `--config.model_overrides.<field>=<value>`. The
config is checked and resolved once (`resolved_config.prepare`: "auto"
values from the data, epoch intervals to steps) and saved as
<workdir>/config.json (what `eval.py --workdir=DIR` uses). Rerunning with the
same --workdir resumes from its newest checkpoint. Several hosts: on TPU pods
and SLURM jobs jax.distributed starts by itself; elsewhere pass
--coordinator_address, --num_processes and --process_id to every process.
Exit status: 0 done (or stopped by SIGTERM or a preemption notice after
saving), 2 a user error (one line on stderr; --verbosity=1 adds the
traceback), 130 stopped by Ctrl-C.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lambda_networks import native_logs

native_logs.quiet()  # Before JAX and TensorFlow load.

from lambda_networks.train import cli  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
cli.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


@cli.report_user_errors
def main(argv):
  cli.start(argv)
  # Imported after jax.distributed so nothing touches the devices before it;
  # the config is checked (the first thing `prepare` does) before any data
  # is opened and before the trainer is imported.
  # pylint: disable=g-import-not-at-top
  from lambda_networks.train import resolved_config
  from lambda_networks.train import workdir as workdir_lib
  workdir = workdir_lib.resolve(FLAGS.workdir)
  prepared = resolved_config.prepare(
      FLAGS.config, given=cli.config_overrides(), workdir=workdir)
  from lambda_networks.train import trainer
  # pylint: enable=g-import-not-at-top
  logging.info("Config:\n%s", prepared.config)
  result = trainer.train(prepared, workdir)
  if result.get("stopped_by") == "SIGINT":
    sys.exit(cli.INTERRUPTED_STATUS)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
