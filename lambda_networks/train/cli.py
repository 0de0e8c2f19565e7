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
