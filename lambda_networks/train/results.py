"""A run's result files: how eval.py names them, and which is the newest.

Standard library only, so that scripts reading results (speed_accuracy)
need neither JAX nor TensorFlow.
"""

from __future__ import annotations

import pathlib
import re

FINAL_METRICS_FILE = "final_metrics.json"  # The trainer's, at the last step.


def metrics_file_name(split: str, step: int) -> str:
  """eval.py's result file for a split at a step: eval_<split>_step<N>.json."""
  return f"eval_{re.sub(r'[^A-Za-z0-9_.-]+', '_', split)}_step{step}.json"


def newest_metrics_file(workdir: str | pathlib.Path) -> pathlib.Path | None:
  """The eval_<split>_step<N>.json with the largest N (validation first), else
  the run's final_metrics.json, else None."""
  workdir = pathlib.Path(workdir)
  found = [(int(m[2]), m[1] == "validation", path)
           for path in workdir.glob("eval_*_step*.json")
           if (m := re.fullmatch(r"eval_(.+)_step(\d+)\.json", path.name))]
  final = workdir / FINAL_METRICS_FILE
  return max(found)[2] if found else (final if final.exists() else None)
