"""The paper's numbers: one data file, `docs/paper_reference.csv`, and its reader.

Every number the paper reports (and the reference points it quotes) lives in
that file only; scripts and the model registry read it through this module.
Columns: table, row, model, overrides, image_size, params_m, top1,
train/inference examples per second, memory_gb, value, hardware,
batch_size, confidence (firm or likely, as docs/paper.md#how-sure-each-fact-is
defines them), origin ('paper': the paper's own run; 'quoted': a number the
paper quotes from another paper's model and training setup), source (the
section of docs/paper.md the row comes from) and note.
"""

from __future__ import annotations

import csv
import functools
import pathlib

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "paper_reference.csv"
# Short names of the tables, for tables that cite a row.
TABLE_NAMES = {
    "table3": "Table 3",
    "table4": "Table 4",
    "hybrids": "hybrids",
    "speed_accuracy": "speed–accuracy",
    "efficientnet": "EfficientNet paper",
    "headline": "headline",
    "claim": "claim",
}


@functools.lru_cache(maxsize=None)
def _read(path: str) -> tuple[dict[str, str], ...]:
  file = pathlib.Path(path)
  if not file.exists():
    raise FileNotFoundError(
        f"the paper's numbers are in {file}, which is missing; it ships with "
        "the repository (docs/paper_reference.csv).")
  with file.open(newline="") as f:
    return tuple(csv.DictReader(f))


def rows(path: str | pathlib.Path = REFERENCE) -> list[dict[str, str]]:
  """Every row of the reference file, as dicts of strings (copies)."""
  return [dict(row) for row in _read(str(path))]


def image_sizes(model: str, path: str | pathlib.Path = REFERENCE
                ) -> tuple[int, ...]:
  """Image sizes the paper reports `model` at (no overrides), ascending."""
  return tuple(sorted({int(r["image_size"]) for r in _read(str(path))
                       if r["model"] == model and not r["overrides"]
                       and r["image_size"]}))


def model_numbers(path: str | pathlib.Path = REFERENCE
                  ) -> dict[tuple[str, str, int], dict[str, str]]:
  """(model, overrides, image size) -> the paper's params, top-1 and sources.

  Rows of several tables for one model are merged: the first parameter count
  and top-1 found ('≈' where the file's note calls them approximate), and
  every table named in `source` ('quoted' marks numbers the paper quotes
  from other papers' setups).
  """
  merged: dict[tuple[str, str, int], dict[str, str]] = {}
  for r in _read(str(path)):
    if not r["model"] or not r["image_size"]:
      continue
    key = (r["model"], r["overrides"], int(r["image_size"]))
    entry = merged.setdefault(key, dict(params="", top1="", source=""))
    about = "≈" if "approximate" in r["note"] else ""
    if r["params_m"] and not entry["params"]:
      entry["params"] = f"{about}{r['params_m']}M"
    if r["top1"] and not entry["top1"]:
      entry["top1"] = about + r["top1"]
    name = TABLE_NAMES.get(r["table"], r["table"])
    if r.get("origin") == "quoted":
      name += " (quoted)"
    if name not in entry["source"].split("; "):
      entry["source"] = "; ".join(filter(None, [entry["source"], name]))
  return merged
