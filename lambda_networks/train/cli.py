"""Command-line parsing shared by train.py and eval.py."""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; an unknown --config.<field> gets a clear message, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    field = str(error).strip("\"'")
    print(f"FATAL: unknown config field {field!r} (overrides given: "
          f"{', '.join(overrides)}). Every field is listed, with its meaning, "
          "in configs/default.py; model options go under "
          "--config.model_overrides.<field> when the config file names them.",
          file=sys.stderr)
    sys.exit(2)


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
