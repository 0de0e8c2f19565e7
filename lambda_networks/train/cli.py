"""Command-line parsing shared by train.py and eval.py."""

from __future__ import annotations

import sys

from absl import flags

from lambda_networks.train import model_flags


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; an unknown --config.<field> gets a clear message, not a traceback.

  --config.model_overrides.<field> flags are applied after the config file is
  read, typed by the model's config class (see `model_flags`).
  """
  argv, model_overrides = model_flags.extract(argv)
  # ml_collections reads its overrides from sys.argv too.
  sys.argv[:] = model_flags.extract(sys.argv)[0]
  try:
    remaining = flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    field = str(error).strip("\"'")
    print(f"FATAL: unknown config field {field!r} (overrides given: "
          f"{', '.join(overrides)}). Every field is listed, with its meaning, "
          "in configs/default.py; model options go under "
          "--config.model_overrides.<field>.",
          file=sys.stderr)
    sys.exit(2)
  try:
    model_flags.apply(flags.FLAGS.config, model_overrides)
  except ValueError as error:
    print(f"FATAL: {error}", file=sys.stderr)
    sys.exit(2)
  return remaining


def parse_eval_flags(argv: list[str]) -> list[str]:
  """Like `parse_flags`; without --config, the config is DIR/config.json.

  `--workdir=DIR` alone then evaluates with the config the run saved, and
  `--config.<field>=...` overrides it as it would a config file.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from lambda_networks.train import run_config  # pylint: disable=g-import-not-at-top
  if any(arg == "--config" or arg.startswith("--config=") for arg in argv[1:]):
    config_flags.DEFINE_config_file("config", None, "The run's config file.",
                                    lock_config=True)
    return parse_flags(argv)
  workdir = _flag_value(argv, "workdir")
  saved = run_config.load(workdir) if workdir else None
  if saved is None:
    print(f"FATAL: {workdir or '--workdir'} holds no {run_config.CONFIG_FILE} "
          "(runs save it when training starts); pass the run's config with "
          "--config=<file> and the same --config.<field> overrides.",
          file=sys.stderr)
    sys.exit(2)
  config_flags.DEFINE_config_dict("config", saved, "The run's saved config.",
                                  lock_config=True)
  return parse_flags(argv)


def _flag_value(argv: list[str], name: str) -> str | None:
  for index, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and index + 1 < len(argv):
      return argv[index + 1]
  return None


def define_distributed_flags() -> None:
  """Flags that start jax.distributed, shared by train.py and eval.py."""
  flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                    "Start jax.distributed: auto-detect, always, or never.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Number of processes.")
  flags.DEFINE_integer("process_id", None, "Index of this process.")


def start_distributed() -> None:
  """Starts jax.distributed as the flags of `define_distributed_flags` say."""
  from lambda_networks.train import distributed  # pylint: disable=g-import-not-at-top
  fl = flags.FLAGS
  distributed.initialize(fl.distributed, fl.coordinator_address,
                         fl.num_processes, fl.process_id)
