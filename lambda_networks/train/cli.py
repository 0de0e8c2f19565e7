"""Command-line parsing and error reporting shared by train.py and eval.py.

A user's mistake (a bad flag, config value, path or dataset) ends the program
with one line on stderr, `Error: <what, why, how to fix>`, and exit status 2;
`--verbosity=1` adds the traceback. Other exceptions are bugs and keep their
tracebacks.
"""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Any, Callable

from absl import flags
from absl import logging

from lambda_networks.errors import UserError
from lambda_networks.train import model_flags

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report Ctrl-C.


def fail(message: str, status: int = USER_ERROR_STATUS) -> None:
  """Prints `message` as one line on stderr and exits with `status`."""
  print(f"Error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(status)


def _unknown_field_message(error: BaseException, argv: list[str]) -> str:
  """ml_collections raises AttributeError(KeyError("'field'\nDid you mean...?"))."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  field, _, suggestion = text.partition("\n")
  field = field.strip("\"' ")
  overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
  suggestion = f" {suggestion.strip()}" if suggestion.strip() else ""
  return (f"unknown config field {field!r} (overrides given: "
          f"{', '.join(overrides)}).{suggestion} Every field is listed, with "
          "its meaning, in configs/default.py; model options go under "
          "--config.model_overrides.<field> (any field of the model's config).")


def parse_flags(argv: list[str],
                flag_values: flags.FlagValues | None = None) -> list[str]:
  """Parses flags; bad ones and an unloadable config get one line, not a traceback."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  # --config.model_overrides.<field> flags are applied after the config file
  # is read, typed by the model's config class (see `model_flags`).
  argv, model_overrides = model_flags.extract(argv)
  sys.argv[:] = model_flags.extract(sys.argv)[0]  # ml_collections reads it too.
  try:
    remaining = flag_values(argv)
  except (AttributeError, KeyError) as error:
    fail(_unknown_field_message(error, argv))
  except flags.Error as error:
    fail(f"{error}. Pass --helpshort to see the flags.")
  if "config" in flag_values and flag_values["config"].value is not None:
    try:  # A config file that failed to load raises on first use.
      flag_values["config"].value.get("model")  # pytype: disable=attribute-error
    except OSError as error:
      fail(f"--config: {error}")
    try:
      model_flags.apply(flag_values["config"].value, model_overrides)
    except ValueError as error:
      fail(str(error))
  elif model_overrides:
    fail("--config.model_overrides.<field> needs a config (--config=<file>).")
  return remaining


def config_overrides(argv: list[str] | None = None) -> list[str]:
  """Names of the config fields given on the command line (`--config.<name>=`)."""
  argv = sys.argv if argv is None else argv
  names = []
  for arg in argv[1:]:
    if arg.startswith("--config."):
      names.append(arg[len("--config."):].split("=")[0])
  return names


def _show_traceback() -> bool:
  """--verbosity=1 (or more) asks for tracebacks of user errors too."""
  return "verbosity" in flags.FLAGS and (flags.FLAGS["verbosity"].value or 0) >= 1


def report_user_errors(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
  """Wraps an absl main: UserError -> one line and exit 2; Ctrl-C -> one line."""

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> Any:
    try:
      return main(argv)
    except UserError as error:
      if _show_traceback():
        traceback.print_exc()
      fail(str(error))
    except KeyboardInterrupt:
      if _show_traceback():
        traceback.print_exc()
      fail("Interrupted (Ctrl-C); nothing was saved by the interruption. Rerun "
           "the same command to start again (training resumes from its newest "
           "checkpoint).", INTERRUPTED_STATUS)

  return wrapped


def parse_eval_flags(argv: list[str], defaults: Any = None) -> list[str]:
  """Like `parse_flags`; without --config, the config is DIR/config.json.

  `--workdir=DIR` alone then evaluates with the config the run saved, and
  `--config.<field>=...` overrides it as it would a config file. `defaults`
  (a ConfigDict) fills fields that an older run's file lacks.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from lambda_networks.train import run_config  # pylint: disable=g-import-not-at-top
  if any(arg == "--config" or arg.startswith("--config=") for arg in argv[1:]):
    config_flags.DEFINE_config_file("config", None, "The run's config file.",
                                    lock_config=True)
    return parse_flags(argv)
  workdir = _flag_value(argv, "workdir")
  try:
    saved = run_config.load(workdir, defaults) if workdir else None
  except UserError as error:
    fail(str(error))
  if saved is None:
    fail(f"{workdir or '--workdir'} holds no {run_config.CONFIG_FILE} (runs "
         "save it when training starts); pass the run's config with "
         "--config=<file> and the same --config.<field> overrides.")
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
  fl_values = (fl.distributed, fl.coordinator_address, fl.num_processes,
               fl.process_id)
  try:
    distributed.initialize(*fl_values)
  except ValueError as error:
    raise UserError(str(error)) from error


def start(argv: list[str]) -> None:
  """What train.py and eval.py do first: refuse stray arguments, quieten
  absl's log (progress goes to stdout) unless --verbosity is given, and start
  jax.distributed."""
  if len(argv) > 1:
    raise UserError(f"Unexpected arguments {argv[1:]}; flags take the form "
                    "--name=value (see --helpshort).")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  start_distributed()
