"""Our models against timm's: train-step and inference speed and peak memory.

For each model pair and mode, our registry model (JAX,
`benchmarks/compiled_steps.py`'s compiled step) and timm's (eager PyTorch)
run the same step on the same random batch and image size, in float32, each
in its own fresh process pinned to the same `--threads` cores. Timing
alternates between them: `--rounds` rounds of `--steps` timed steps per side
(ours, timm, ours, timm, ...), after `--warmup` untimed steps each, so a
change in the machine's load hits both sides alike; the rows hold the
medians. Writes OUT.csv (a row at a time) and OUT.md (rewritten after each
row): an interrupted run keeps its rows.

  python -m scripts.compare_timm --timm-python ~/timm-env/bin/python
  python -m scripts.compare_timm --models lambda_resnet26t resnet26=resnet26 \\
      --modes train --batch-size 8 --image-size 256 --threads 2

torch and timm are not in requirements.txt (the project does not need them),
and torch and TensorFlow crash when imported into one process; so timm's
side runs under another interpreter, `--timm-python` (or $TIMM_PYTHON;
default: this one), in a venv of its own:

  python3 -m venv ~/timm-env && ~/timm-env/bin/pip install torch timm

Train step: forward, softmax cross-entropy, backward, SGD (momentum 0.9,
weight decay 1e-4 on every parameter); inference: the eval-mode forward
pass. A pair is `NAME` (the same name in both: timm's lambda_resnet26t,
lambda_resnet50ts, lambda_resnet26rpt_256, resnet26, resnet50 are the same
architectures as ours; the params columns show it) or `OURS=TIMM`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import statistics
import sys
from typing import Any, Sequence

from lambda_networks import models
from lambda_networks.benchmarks import environment
from lambda_networks.benchmarks import reporting
from lambda_networks.benchmarks import step_worker
from lambda_networks.errors import UserError

MODES = ("train", "inference")
DEFAULT_MODELS = ("lambda_resnet26t", "lambda_resnet50ts", "resnet26",
                  "resnet50")
SIDES = ("ours", "timm")
FIELDS = (
    "model", "timm_model", "mode", "image_size", "batch_size", "threads",
    "status", "params", "timm_params", "examples_per_s", "timm_examples_per_s",
    "ratio", "step_time_ms", "timm_step_time_ms", "round_examples_per_s",
    "timm_round_examples_per_s", "timed_steps", "timm_timed_steps",
    "xla_plan_mib", "peak_rss_mib", "timm_peak_rss_mib", "device_peak_mib",
    "timm_device_peak_mib", "compile_s", "timm_build_s", "load_before",
    "load_after", "omp_wait_policy", "backend", "device_kind", "host_cpu",
    "host_cpus", "jax", "torch", "timm", "git_commit", "date")
INSTALL = ("python3 -m venv ~/timm-env && ~/timm-env/bin/pip install torch "
           "timm, then pass --timm-python ~/timm-env/bin/python (or set "
           "TIMM_PYTHON)")
NOTES = """\
- **ex/s**: examples per second, the batch over the median step time of \
all timed steps of the side (rounds × steps); **rounds**: each round's \
median, in the order they ran (ours and timm's alternating), to show drift.
- **ours / timm**: our ex/s over timm's; above 1, ours is faster.
- **XLA plan**: XLA's buffer assignment for our compiled step (arguments + \
outputs + temporaries − donated buffers): parameters, batch-norm \
statistics, optimiser state, gradients and activations. What the step needs, \
independent of allocators; timm has no counterpart.
- **peak RSS +**: both sides alike: the worker process's peak resident \
memory while its steps ran, minus its resident memory before the model was \
built (after importing the framework). It counts parameters, optimiser \
state, the batch, activations and what each allocator keeps; ours also \
keeps the compiled program and some of the compiler's heap (the peak is \
reset after compiling, not the baseline).
- **device peak** (accelerators only): `jax.Device.memory_stats()` \
`peak_bytes_in_use` against `torch.cuda.max_memory_allocated()`, each in a \
fresh process: both allocators' peaks since the process started.
- **OMP_WAIT_POLICY** of timm's side: passive by default. On a shared \
machine, OpenMP threads that spin wait for descheduled peers: here, at load \
9 on 2 cores, timm's resnet26 train step (64 px, batch 2, 2 threads) took \
4.2–7.9 s with libgomp's default policy and 0.21–0.25 s with PASSIVE (one \
thread: 0.25–0.27 s). At batch 8 and 256 px (train step, load 5–6), \
`--omp-wait-policy default` gave timm 1.01 ex/s for lambda_resnet26t and \
1.20 for resnet26, ours / timm 1.62 and 1.25, where PASSIVE gave 2.64 and \
2.77 ex/s, ours / timm 1.04 and 0.60 (load 2–4). On an idle machine the \
default (spinning) policy may be faster: try both. XLA's thread pool \
(Eigen) spins only briefly.
- Both sides: float32; timm eager PyTorch, NCHW, as `timm.create_model` \
gives it; one fresh process per side per row, pinned to the same cores \
(XLA's CPU thread pool and torch's threads follow the affinity).
"""


def parse_pair(text: str) -> tuple[str, str]:
  """'NAME' -> (NAME, NAME); 'OURS=TIMM' -> (OURS, TIMM)."""
  ours, _, timm = text.partition("=")
  if not ours or (_ and not timm):
    raise argparse.ArgumentTypeError(
        f"{text!r} must be NAME or OURS=TIMM, e.g. lambda_resnet26t")
  return ours, timm or ours


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--models", nargs="+", type=parse_pair, metavar="NAME|OURS=TIMM",
      default=[parse_pair(name) for name in DEFAULT_MODELS],
      help=f"model pairs (default: {' '.join(DEFAULT_MODELS)})")
  add("--modes", nargs="+", choices=MODES, default=list(MODES))
  add("--image-size", type=int, default=256)
  add("--batch-size", type=int, default=8)
  add("--num-classes", type=int, default=1000)
  add("--rounds", type=int, default=3, help="interleaved rounds per side")
  add("--steps", type=int, default=2, help="timed steps per round")
  add("--warmup", type=int, default=1, help="untimed steps per side first")
  add("--threads", type=int, default=len(os.sched_getaffinity(0)),
      help="cores each side is pinned to (default: all this process may use)")
  add("--timm-python", "--timm_python", default=os.environ.get(
      "TIMM_PYTHON", sys.executable), help="interpreter with torch and timm "
      "(default: $TIMM_PYTHON, else this one)")
  add("--jax-python", "--jax_python", default=sys.executable,
      help="interpreter with this project's requirements (default: this one)")
  add("--omp-wait-policy", choices=("passive", "active", "default"),
      default="passive", help="OMP_WAIT_POLICY of timm's side (default "
      "passive: on a shared machine, spinning OpenMP threads wait for "
      "descheduled peers; 'default' leaves it unset)")
  add("--out", type=pathlib.Path, default=pathlib.Path("results/compare_timm"),
      help="writes OUT.csv and OUT.md")
  args = reporting.parse(parser, argv)
  available = sorted(os.sched_getaffinity(0))
  if not 1 <= args.threads <= len(available):
    raise UserError(f"--threads must be between 1 and {len(available)} (the "
                    f"cores this process may use), got {args.threads}.")
  if min(args.rounds, args.steps, args.batch_size, args.image_size) < 1:
    raise UserError("--rounds, --steps, --batch-size and --image-size must be "
                    "positive.")
  for ours, _ in args.models:
    try:
      models.get_config(ours, image_size=args.image_size)
    except ValueError as error:  # Unknown names: before any process starts.
      raise UserError(str(error)) from error
  args.cores = available[:args.threads]
  args.command_line = reporting.command_line("compare_timm", args.argv)
  return args


def worker_environment(threads: int, omp_wait_policy: str = "default"
                       ) -> dict[str, str]:
  """The workers' environment: the repository importable, threads set, and
  (accelerators) no preallocation by JAX, leaving room for torch."""
  env = dict(os.environ)
  if omp_wait_policy != "default":
    env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
  env["PYTHONPATH"] = os.pathsep.join(
      [str(reporting.REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get(
          "PYTHONPATH") else []))
  env["OMP_NUM_THREADS"] = str(threads)
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return env


def start_timm(args: argparse.Namespace) -> step_worker.Worker:
  """timm's worker, or a UserError saying how to install torch and timm."""
  try:
    return step_worker.Worker(
        [args.timm_python, "-m", "lambda_networks.benchmarks.timm_worker"],
        env=worker_environment(args.threads, args.omp_wait_policy),
        cores=args.cores, name="timm")
  except (OSError, step_worker.WorkerError) as error:
    raise UserError(
        f"--timm-python {args.timm_python} cannot run timm's side ({error}). "
        f"torch and timm are not in requirements.txt; install them in a "
        f"separate venv: {INSTALL}.") from error


def start_ours(args: argparse.Namespace) -> step_worker.Worker:
  return step_worker.Worker(
      [args.jax_python, "-m", "lambda_networks.benchmarks.jax_worker"],
      env=worker_environment(args.threads), cores=args.cores, name="JAX")


def examples_per_s(batch_size: int, times: Sequence[float]) -> float | None:
  return batch_size / statistics.median(times) if times else None


def compare(args: argparse.Namespace, ours_name: str, timm_name: str,
            mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """One row: both sides built in fresh workers, timed in alternation.

  Returns the row and the workers' ready messages (versions, device).
  """
  point = dict(mode=mode, batch_size=args.batch_size,
               image_size=args.image_size, num_classes=args.num_classes)
  row: dict[str, Any] = dict(model=ours_name, timm_model=timm_name, mode=mode,
                             image_size=args.image_size,
                             batch_size=args.batch_size, threads=args.threads,
                             omp_wait_policy=args.omp_wait_policy,
                             load_before=round(os.getloadavg()[0], 2))
  timm = start_timm(args)  # First: a missing torch fails before any compile.
  with timm, start_ours(args) as ours:
    workers, errors, built = dict(ours=ours, timm=timm), [], {}
    device = "cuda" if ours.ready.get("backend") == "gpu" else "cpu"
    extra = dict(ours={}, timm=dict(device=device))
    for side, name in (("ours", ours_name), ("timm", timm_name)):
      try:
        built[side] = workers[side].request("build", model=name, **point,
                                            **extra[side])
      except step_worker.WorkerError as error:
        errors.append(f"{side}: {error}")
    times: dict[str, list[float]] = {side: [] for side in built}
    rounds: dict[str, list[float]] = {side: [] for side in built}
    for round_index in range(args.rounds):
      for side in built:  # Alternating: ours, timm, ours, timm, ...
        if round_index == 0 and args.warmup:
          workers[side].request("run", steps=args.warmup)
        round_times = workers[side].request("run", steps=args.steps)["times"]
        times[side] += round_times
        rounds[side].append(examples_per_s(args.batch_size, round_times))
    memory = {side: workers[side].request("memory") for side in built}
    ready = dict(ours=ours.ready, timm=timm.ready)
  row["load_after"] = round(os.getloadavg()[0], 2)
  for side in SIDES:
    prefix = "" if side == "ours" else "timm_"
    if side not in built:
      continue
    median = statistics.median(times[side])
    row.update({
        f"{prefix}params": built[side].get("params"),
        f"{prefix}examples_per_s": _significant(examples_per_s(
            args.batch_size, times[side])),
        f"{prefix}step_time_ms": _significant(1000 * median),
        f"{prefix}round_examples_per_s": " ".join(
            f"{rate:.3g}" for rate in rounds[side]),
        f"{prefix}timed_steps": len(times[side]),
        f"{prefix}peak_rss_mib": _significant(
            memory[side].get("peak_rss_mib"), 4),
        f"{prefix}device_peak_mib": _significant(
            memory[side].get("device_peak_mib"), 4)})
  if "ours" in built:
    row.update(xla_plan_mib=_significant(built["ours"].get("xla_plan_mib"), 4),
               compile_s=_significant(built["ours"].get("build_s"), 3))
  if "timm" in built:
    row["timm_build_s"] = _significant(built["timm"].get("build_s"), 3)
  if len(built) == 2:
    row["ratio"] = _significant(row["examples_per_s"]
                                / row["timm_examples_per_s"], 3)
  row["status"] = "; ".join(errors) or "ok"
  return row, ready


def environment_fields(ready: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """The device and versions, from the workers (no backend starts here)."""
  ours, timm = ready["ours"], ready["timm"]
  return dict(backend=ours.get("backend"), device_kind=ours.get("device"),
              host_cpu=reporting.cpu_name(), host_cpus=os.cpu_count(),
              jax=ours.get("version"), torch=timm.get("torch"),
              timm=timm.get("version"), git_commit=reporting.git_commit(),
              date=datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%dT%H:%MZ"))


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
  first = rows[0] if rows else {}
  loads = [row[key] for row in rows for key in ("load_before", "load_after")
           if row.get(key) is not None]
  load = (f"1-minute load average {min(loads)}–{max(loads)} on "
          f"{first.get('host_cpus')} CPUs while measuring" if loads else "")
  accelerator = first.get("backend") not in (None, "cpu")
  columns = {
      "model": "ours", "timm_model": "timm", "mode": "mode",
      "params": "params (ours)", "timm_params": "params (timm)",
      "examples_per_s": "ours ex/s", "timm_examples_per_s": "timm ex/s",
      "ratio": "ours / timm", "round_examples_per_s": "ours rounds",
      "timm_round_examples_per_s": "timm rounds",
      "xla_plan_mib": "XLA plan (MiB)", "peak_rss_mib": "ours peak RSS + (MiB)",
      "timm_peak_rss_mib": "timm peak RSS + (MiB)"}
  if accelerator:
    columns |= {"device_peak_mib": "ours device peak (MiB)",
                "timm_device_peak_mib": "timm device peak (MiB)"}
  columns["status"] = "status"
  return "\n".join([
      f"# Our models against timm's: {environment.device_label(first)}",
      "",
      f"Batch {args.batch_size}, {args.image_size} px, float32, "
      f"{args.threads} thread(s) per side (timm's OMP_WAIT_POLICY: "
      f"{args.omp_wait_policy}); {args.rounds} interleaved rounds "
      f"of {args.steps} timed steps per side after {args.warmup} warm-up "
      f"step(s). jax {first.get('jax')}, torch {first.get('torch')}, timm "
      f"{first.get('timm')}, commit {first.get('git_commit')}, "
      f"{first.get('date')}; {load}. Generated by `{args.command_line}`.",
      "",
      reporting.markdown_table(list(columns.values()),
                               [[_cell(row, key) for key in columns]
                                for row in rows]),
      "",
      NOTES])


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  writer = reporting.CsvWriter(args.out.with_suffix(".csv"), FIELDS)
  rows = []
  for ours_name, timm_name in args.models:
    for mode in args.modes:
      row, ready = compare(args, ours_name, timm_name, mode)
      rows.append(dict.fromkeys(FIELDS) | row | environment_fields(ready))
      writer.write(rows[-1])
      args.out.with_suffix(".md").write_text(markdown(rows, args))  # So far.
      print("  ".join(f"{key} {rows[-1][key]}" for key in (
          "model", "mode", "examples_per_s", "timm_examples_per_s", "ratio",
          "peak_rss_mib", "timm_peak_rss_mib", "load_after", "status")),
            flush=True)
  print(markdown(rows, args))
  print(f"wrote {args.out.with_suffix('.csv')} and .md")
  return rows


def _cell(row: dict[str, Any], key: str) -> Any:
  value = row.get(key)
  return f"{value:,}" if key.endswith("params") and value else value


def _significant(value: float | None, digits: int = 4) -> float | None:
  return None if value is None else float(f"{value:.{digits}g}")


def run(argv: Sequence[str] | None = None) -> None:
  """main() with a user's mistake as one line and exit status 2."""
  try:
    main(argv)
  except UserError as error:
    print(f"Error: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  run()
