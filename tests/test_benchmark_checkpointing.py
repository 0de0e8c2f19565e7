"""scripts.benchmark_checkpointing's bookkeeping (no model run, no timings asserted)."""

import pandas as pd

from scripts import benchmark_checkpointing


def test_steps_are_classed_by_their_distance_to_the_save():
  kinds = [benchmark_checkpointing.kind_of(step, 4) for step in range(3, 10)]
  assert kinds == ["plain", "save", "after save 1", "after save 2", "plain",
                   "save", "after save 1"]


def test_summary_adds_what_the_save_and_the_steps_after_it_cost():
  """Plain steps take 1 s; the save step 4 s, the two after it 2 s and 1.5 s:
  a save adds (4 + 2 + 1.5) - 3 = 4.5 s. Rows of other labels stay apart."""
  step_s = {"plain": 1.0, "save": 4.0, "after save 1": 2.0, "after save 2": 1.5}
  rows = []
  for label, scale in (("before", 1.0), ("after", 0.5)):
    for step in range(11, 27):
      kind = benchmark_checkpointing.kind_of(step, 8)
      rows.append(dict(
          label=label, model="resnet50", params=25.6e6, state_mb=300,
          step=step, kind=kind, git_commit="abc",
          step_s=step_s[kind] * (scale if kind != "plain" else 1.0),
          save_call_s=3.0 * scale if kind == "save" else 0.0,
          backend="cpu", host_cpu="Some CPU", host_cpus=2))
  lines = benchmark_checkpointing.summary_table(pd.DataFrame(rows)).splitlines()
  assert len(lines) == 4
  assert lines[2] == ("| before | resnet50 (25.6M, 300 MB) | CPU Some CPU (2 cores) "
                      "| abc | 1000 | 4000 | 3000 | 2000, 1500 | 4500 |")
  assert lines[3].startswith("| after |") and lines[3].endswith(
      "| 1000 | 2000 | 1500 | 1000, 750 | 750 |")
