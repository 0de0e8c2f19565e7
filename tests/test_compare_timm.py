"""scripts.compare_timm's bookkeeping with faked workers; its workers for real.

The fake worker (`FAKE_WORKER`, written to an executable file) speaks the
protocol of `benchmarks/step_worker.py` with canned answers and logs each
request, so the rows, medians, ratio and the alternation are checked without
torch or a compile. No timing asserts: the real workers are only checked to
build, run and count parameters.
"""

import csv
import importlib.util
import json
import os
import sys

import pytest
from flax import nnx

from lambda_networks import models
from lambda_networks.benchmarks import step_worker
from lambda_networks.errors import UserError
from scripts import compare_timm

# Step times: call k (counting from 1) of a side takes BASE[side] * k seconds
# per step; a request of WARMUP steps takes 100 s (excluded from the medians).
FAKE_WORKER = f"""#!{sys.executable}
import json, os, sys
side = "ours" if sys.argv[-1].endswith("jax_worker") else "timm"
base = {{"ours": 0.1, "timm": 0.05}}[side]
print(json.dumps({{"ready": dict(framework=side, version="v-" + side,
    torch="t-fake", backend="cpu", device="cpu")}}), flush=True)
calls = 0
for line in sys.stdin:
  request = json.loads(line)
  with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([side, request["command"], request.get("steps"),
                          request.get("model")]) + "\\n")
  if request["command"] == "build":
    if request["model"] == "no_such_model":
      answer = dict(error="RuntimeError: Unknown model (no_such_model)")
    else:
      answer = dict(params=1000000 if side == "ours" else 1000001, build_s=1.5,
                    xla_plan_mib=12.5)
  elif request["command"] == "run":
    calls += 1
    step = 100.0 if request["steps"] == 3 else base * calls
    answer = dict(times=[step] * request["steps"])
  else:
    answer = dict(peak_rss_mib=30.0 if side == "ours" else 20.0,
                  device_peak_mib=None)
  print(json.dumps(answer), flush=True)
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
  path = tmp_path / "fake_python"
  path.write_text(FAKE_WORKER)
  path.chmod(0o755)
  log = tmp_path / "requests.jsonl"
  monkeypatch.setenv("FAKE_LOG", str(log))
  return path, log


def test_rows_medians_ratio_and_alternation(fake, tmp_path):
  path, log = fake
  out = tmp_path / "compare"
  rows = compare_timm.main([
      "--models", "resnet26", "lambda_resnet26t=no_such_model",
      "--modes", "train", "--batch-size", "4", "--rounds", "3", "--steps", "2",
      "--warmup", "3", "--threads", "1", "--jax-python", str(path),
      "--timm-python", str(path), "--out", str(out)])
  requests = [json.loads(line) for line in log.read_text().splitlines()]
  # First row: both built, warm-up steps first, then alternating rounds.
  assert requests[:11] == [
      ["ours", "build", None, "resnet26"], ["timm", "build", None, "resnet26"],
      ["ours", "run", 3, None], ["ours", "run", 2, None],
      ["timm", "run", 3, None], ["timm", "run", 2, None],
      ["ours", "run", 2, None], ["timm", "run", 2, None],
      ["ours", "run", 2, None], ["timm", "run", 2, None],
      ["ours", "memory", None, None]]
  good, failed = rows
  # Timed calls 2, 3, 4 (call 1 is the warm-up): median step 3 × base.
  assert good["examples_per_s"] == pytest.approx(4 / 0.3, rel=1e-3)
  assert good["timm_examples_per_s"] == pytest.approx(4 / 0.15, rel=1e-3)
  assert good["ratio"] == pytest.approx(0.5)
  assert good["step_time_ms"] == pytest.approx(300)
  assert good["round_examples_per_s"] == "20 13.3 10"
  assert good["timm_round_examples_per_s"] == "40 26.7 20"
  assert (good["timed_steps"], good["timm_timed_steps"]) == (6, 6)
  assert (good["params"], good["timm_params"]) == (1000000, 1000001)
  assert (good["xla_plan_mib"], good["peak_rss_mib"],
          good["timm_peak_rss_mib"]) == (12.5, 30.0, 20.0)
  assert (good["status"], good["jax"], good["timm"]) == (
      "ok", "v-ours", "v-timm")
  assert good["omp_wait_policy"] == "passive" and good["threads"] == 1
  # A side that fails to build is a status; the other side is still timed.
  assert failed["status"] == "timm: RuntimeError: Unknown model (no_such_model)"
  assert failed["ratio"] is None and failed["timm_examples_per_s"] is None
  assert failed["examples_per_s"] == pytest.approx(4 / 0.3, rel=1e-3)
  assert not any(r[0] == "timm" and r[1] == "run" for r in requests[11:])
  with open(out.with_suffix(".csv"), newline="") as handle:
    reader = csv.DictReader(handle)
    written = list(reader)
  assert reader.fieldnames == list(compare_timm.FIELDS)
  assert [r["ratio"] for r in written] == ["0.5", ""]
  text = out.with_suffix(".md").read_text()
  assert ("| resnet26 | resnet26 | train | 1,000,000 | 1,000,001 | 13.33 | "
          "26.67 | 0.5 | 20 13.3 10 | 40 26.7 20 | 12.5 | 30.0 | 20.0 | "
          "ok |") in text
  assert "timm: RuntimeError: Unknown model" in text


@pytest.mark.parametrize("interpreter", ["this", "missing"])
def test_missing_torch_is_one_line_error(interpreter, tmp_path, capsys):
  if interpreter == "this" and importlib.util.find_spec("timm"):
    pytest.skip("timm is importable here")
  python = sys.executable if interpreter == "this" else str(tmp_path / "none")
  with pytest.raises(SystemExit) as exit_info:
    compare_timm.run(["--timm-python", python, "--models", "resnet26",
                      "--out", str(tmp_path / "compare")])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and error.startswith("Error: --timm-python")
  assert "pip install torch timm" in error
  if interpreter == "this":
    assert "ModuleNotFoundError: No module named" in error


@pytest.mark.parametrize("argv, match", [
    (["--models", "lambda_resnet_26t"], "Did you mean"),
    (["--threads", "0"], "--threads must be between 1"),
    (["--models", "resnet26="], "OURS=TIMM")])
def test_bad_arguments_fail_before_any_process(argv, match, capsys):
  try:
    compare_timm.parse_args(argv)
  except UserError as error:
    assert match in str(error)
  except SystemExit:  # argparse's own error, for a malformed pair.
    assert match in capsys.readouterr().err
  else:
    pytest.fail("no error")


# One conv block of 4 channels: compiles in seconds.
TINY = dict(stage_depths=[1], stage_widths=[4], stem_width=4, stage_mixers="C")


@pytest.mark.slow
def test_jax_worker_builds_runs_and_measures():
  env = compare_timm.worker_environment(threads=1)
  with step_worker.Worker(
      [sys.executable, "-m", "lambda_networks.benchmarks.jax_worker"],
      env=env, cores=sorted(os.sched_getaffinity(0))[:1]) as worker:
    assert worker.ready["backend"] == "cpu"
    built = worker.request("build", model="resnet26", mode="train",
                           batch_size=2, image_size=16, num_classes=10,
                           overrides=TINY)
    times = worker.request("run", steps=2)["times"]
    memory = worker.request("memory")
    with pytest.raises(step_worker.WorkerError,
                       match="unknown model .resnet_26"):
      worker.request("build", model="resnet_26", mode="train", batch_size=2,
                     image_size=16)
  tiny = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
  assert built["params"] == models.count_parameters(nnx.eval_shape(
      lambda: models.get_model("resnet26", num_classes=10, rngs=nnx.Rngs(0),
                               **tiny)))
  assert built["xla_plan_mib"] > 0 and built["build_s"] > 0
  assert len(times) == 2 and min(times) > 0
  assert memory["peak_rss_mib"] > 0 and memory["device_peak_mib"] is None


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TIMM_PYTHON"),
                    reason="TIMM_PYTHON: an interpreter with torch + timm")
def test_timm_worker_builds_our_architecture():
  env = compare_timm.worker_environment(threads=1)
  with step_worker.Worker(
      [os.environ["TIMM_PYTHON"], "-m",
       "lambda_networks.benchmarks.timm_worker"],
      env=env, cores=sorted(os.sched_getaffinity(0))[:1]) as worker:
    assert worker.ready["threads"] == 1
    built = worker.request("build", model="resnet26", mode="train",
                           batch_size=2, image_size=32)
    times = worker.request("run", steps=1)["times"]
    assert worker.request("memory")["peak_rss_mib"] > 0
  assert len(times) == 1 and times[0] > 0
  assert built["params"] == models.count_parameters(nnx.eval_shape(
      lambda: models.get_model("resnet26", num_classes=1000, rngs=nnx.Rngs(0))))
