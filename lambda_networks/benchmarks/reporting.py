"""What every benchmark script shares: its parser, values, CSV and markdown (no JAX)."""

from __future__ import annotations

import argparse
import ast
import csv
import os
import pathlib
import platform
import re
import subprocess
import sys
from typing import Any, Callable, Iterable, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def parser(doc: str, make: Callable[..., argparse.ArgumentParser] = (
    argparse.ArgumentParser), **kwargs: Any) -> argparse.ArgumentParser:
  """A parser (or `make`'s, e.g. a subcommand's) whose help is `doc`."""
  description, _, epilog = doc.partition("\n\n")  # First paragraph on top.
  return make(description=description, epilog=epilog, **kwargs,
              formatter_class=argparse.RawDescriptionHelpFormatter)


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None) -> argparse.Namespace:
  """Parses `argv` (default: the command line), kept as `args.argv`."""
  args = parser.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def command_line(script: str, argv: Sequence[str]) -> str:
  """How a script was run, for the tables it writes."""
  return " ".join(["python -m", f"scripts.{script}", *argv])


def field_value(text: str) -> tuple[str, str]:
  """'FIELD=VALUE' -> (FIELD, VALUE), an argparse `type`; a clear error else."""
  field, separator, value = (part.strip() for part in text.partition("="))
  if not separator or not field:
    raise argparse.ArgumentTypeError(
        f"{text!r} must look like FIELD=VALUE, e.g. stage_depths=(1,1,1,1)")
  return field, value


def parse_value(text: str) -> Any:
  """'8' -> 8, '0.5' -> 0.5, '(1,1)' -> (1, 1), 'True' -> True, else the text."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  return tuple(value) if isinstance(value, list) else value


def format_value(value: Any) -> str:
  """The inverse of `parse_value`, as config_flags reads it: (1, 1) -> '(1,1)'."""
  if isinstance(value, (list, tuple)):
    return f"({','.join(map(format_value, value))}{',' * (len(value) == 1)})"
  return str(value)


def git_commit(short: bool = True) -> str:
  """HEAD's commit ('+dirty' when tracked files changed), or 'unknown'."""
  try:
    commit, dirty = (subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        check=True, timeout=10).stdout.strip() for args in (
            ["rev-parse", *(["--short"] if short else []), "HEAD"],
            ["status", "--porcelain", "--untracked-files=no"]))
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return commit + ("+dirty" if dirty else "")


def cpu_name() -> str:
  """The host processor's model name."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    info = ""
  names = re.findall(r"^model name\s*:\s*(.*)$", info, flags=re.MULTILINE)
  return names[0].strip() if names else platform.processor() or platform.machine()


class CsvWriter:
  """Writes rows as they come (a crash keeps what was measured)."""

  def __init__(self, path: str | os.PathLike, fields: Sequence[str]):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.fields = list(fields)
    with open(self.path, "w", newline="") as handle:
      csv.DictWriter(handle, fieldnames=self.fields).writeheader()

  def write(self, row: dict[str, Any]) -> None:
    with open(self.path, "a", newline="") as handle:
      csv.DictWriter(handle, fieldnames=self.fields,
                     extrasaction="ignore").writerow(row)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   empty: str = "—") -> str:
  def cell(value):
    if value is None or value == "":
      return empty
    return str(value).replace("|", "\\|")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)
