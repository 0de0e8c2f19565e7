"""CSV and markdown helpers shared by the scripts (no JAX, so they load fast)."""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Any, Iterable, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


class CsvWriter:
  """Writes rows as they come (a crash keeps what was measured)."""

  def __init__(self, path: pathlib.Path, fields: Sequence[str]):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.fields = list(fields)
    with open(self.path, "w", newline="") as handle:
      csv.DictWriter(handle, fieldnames=self.fields).writeheader()

  def write(self, row: dict[str, Any]) -> None:
    with open(self.path, "a", newline="") as handle:
      csv.DictWriter(handle, fieldnames=self.fields,
                     extrasaction="ignore").writerow(row)


def read_csv(paths: Iterable[str | os.PathLike]) -> list[dict[str, str]]:
  rows = []
  for path in paths:
    with open(path, newline="") as handle:
      rows.extend(csv.DictReader(handle))
  return rows


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  def cell(value):
    if value is None or value == "":
      return "—"
    return str(value).replace("|", "\\|")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)
