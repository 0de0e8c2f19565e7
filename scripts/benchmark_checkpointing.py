"""Step times around a checkpoint save: how long does saving stall training?

Builds a registry model the way train.py does (`resolved_config.prepare`,
`experiment.build`: default
ResNet-50, 25.6M parameters, with momentum and a weight EMA, about 300 MB of
state) on the quickstart's in-process data with a tiny batch, trains it, and
saves every --save-every steps through `checkpointing.save` (Orbax,
asynchronous), as the trainer does. Each step is timed from its dispatch
until its metrics are on the host, the save call included. Appends a row per
step to --csv, labelled --label (e.g. 'before'/'after' a change, run from two
checkouts), and rewrites the markdown beside it (same name, .md): per label,
the median step far from any save, the step that saves, the two after it
(the background hashing and writing run then), and the time a save adds.
The first --warmup steps (compilation, the first save) are not recorded.

  python -m scripts.benchmark_checkpointing --label after  # ~3 min on 2 cores
  python -m scripts.benchmark_checkpointing --model resnet26 --saves 3
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import tempfile
import time
from typing import Any, Sequence

import jax
import pandas as pd

from configs import quickstart
from lambda_networks import models
from lambda_networks.benchmarks import environment
from lambda_networks.benchmarks import reporting
from lambda_networks.train import checkpointing
from lambda_networks.train import distributed
from lambda_networks.train import experiment as experiment_lib
from lambda_networks.train import resolved_config

FIELDS = ("label", "model", "params", "state_mb", "image_size", "batch_size",
          "step", "kind", "step_s", "save_call_s", "backend", "device_kind",
          "device_count", "host_cpu", "host_cpus", "jax", "git_commit", "date")
KINDS = ("plain", "save", "after save 1", "after save 2")


def build_parser() -> argparse.ArgumentParser:
  parser = reporting.parser(__doc__)
  parser.add_argument("--label", required=True,
                      help="names this run's rows, e.g. before or after")
  parser.add_argument("--model", default="resnet50", help="registry model name")
  parser.add_argument("--image-size", type=int, default=32)
  parser.add_argument("--batch-size", type=int, default=2)
  parser.add_argument("--ema-decay", type=float, default=0.9999,
                      help="0 saves no EMA copy of the weights")
  parser.add_argument("--save-every", type=int, default=8)
  parser.add_argument("--saves", type=int, default=5, help="timed saves")
  parser.add_argument("--warmup", type=int, default=10,
                      help="untimed first steps (compilation, first save)")
  parser.add_argument("--csv", type=pathlib.Path,
                      default=reporting.REPO_ROOT / "docs" / "checkpointing_cpu.csv",
                      help="appended to; its .md is rewritten from all its rows")
  return parser


def make_config(args: argparse.Namespace):
  config = quickstart.get_config()  # In-process data: nothing to download.
  config.model = args.model
  config.model_overrides = {}
  config.image_size = args.image_size
  config.global_batch_size = args.batch_size
  config.ema_decay = args.ema_decay
  config.warmup_epochs = 0.0
  config.num_train_steps = args.warmup + args.saves * args.save_every + 2
  config.checkpoint_every_steps = args.save_every
  config.keep_checkpoints = 2
  config.async_checkpointing = True
  return config


def kind_of(step: int, save_every: int) -> str:
  """Which of KINDS a step (1-based, as saved) is."""
  since = step % save_every
  return {0: "save", 1: "after save 1", 2: "after save 2"}.get(since, "plain")


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
  """Trains and saves; one row per timed step."""
  exp = experiment_lib.build(resolved_config.prepare(make_config(args)))
  env = environment.describe()
  state = exp.state
  sizes = [leaf.nbytes for leaf in jax.tree.leaves(state.to_dict())]
  batches = exp.source.train_batches(0, 1)
  batch = distributed.global_batch(next(batches), exp.mesh)  # Reused each step.
  common = dict(label=args.label, model=args.model,
                params=models.count_parameters(state.params),
                state_mb=round(sum(sizes) / 2**20), image_size=args.image_size,
                batch_size=args.batch_size, **env)
  rows = []
  with tempfile.TemporaryDirectory() as workdir:
    manager = checkpointing.create_manager(workdir, exp.config)
    for step in range(1, exp.total_steps + 1):
      start = time.perf_counter()
      state, metrics = exp.train_step(state, batch)
      jax.device_get(metrics)  # The trainer reads them before it saves.
      saved_at = time.perf_counter()
      checkpointing.save(manager, state, exp.record)
      end = time.perf_counter()
      if step > args.warmup:
        rows.append(dict(common, step=step, kind=kind_of(step, args.save_every),
                         step_s=end - start, save_call_s=end - saved_at))
        print(f"step {step:3d} {rows[-1]['kind']:>12}: "
              f"{rows[-1]['step_s'] * 1000:7.0f} ms (save call "
              f"{rows[-1]['save_call_s'] * 1000:.0f} ms)", flush=True)
    manager.wait_until_finished()
    manager.close()
  return rows


def summary_table(frame: pd.DataFrame) -> str:
  """Per label and model: median ms of each kind of step, and what a save adds."""
  header = ["label", "model (parameters, state)", "device", "commit",
            "plain step ms", "save step ms", "save call ms",
            "after save ms (1st, 2nd)", "a save adds ms"]
  rows = []
  for (label, model), group in frame.groupby(["label", "model"], sort=False):
    median = {kind: 1000 * group.loc[group.kind == kind, "step_s"].median()
              for kind in KINDS}
    call = 1000 * group.loc[group.kind == "save", "save_call_s"].median()
    added = sum(median[kind] for kind in KINDS[1:]) - 3 * median["plain"]
    first = group.iloc[0]
    rows.append([
        label, f"{model} ({first.params / 1e6:.1f}M, {first.state_mb} MB)",
        environment.device_label(first.to_dict()), first.git_commit,
        f"{median['plain']:.0f}", f"{median['save']:.0f}", f"{call:.0f}",
        f"{median['after save 1']:.0f}, {median['after save 2']:.0f}",
        f"{added:.0f}"])
  return reporting.markdown_table(header, rows)


def write_markdown(csv_path: pathlib.Path, argv: Sequence[str]) -> pathlib.Path:
  frame = pd.read_csv(csv_path)
  path = csv_path.with_suffix(".md")
  path.write_text(
      "# Step times around a checkpoint save\n\n"
      f"`{reporting.command_line('benchmark_checkpointing', argv)}` (each "
      "label run from its own checkout). Medians over the timed steps; a "
      "step is timed from its dispatch until its metrics are on the host, "
      "the save call included. **a save adds**: the save step and the two "
      "after it, less three plain steps.\n\n"
      + summary_table(frame) + "\n")
  return path


def append_rows(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
  """Adds rows to the CSV (a header first if it is new): runs accumulate."""
  new = not path.exists()
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
    if new:
      writer.writeheader()
    writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
  args = reporting.parse(build_parser(), argv)
  append_rows(args.csv, measure(args))
  print(write_markdown(args.csv, args.argv).read_text())


if __name__ == "__main__":
  main()
