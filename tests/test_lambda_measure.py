"""lambda_method per stage, and "measure": timed at start-up, recorded, reused."""

import itertools
import json

import pytest

from configs import default
from lambda_networks import models
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks
from lambda_networks.train import lambda_measure
from lambda_networks.train import model_flags
from lambda_networks.train import run_config
from conftest import (CONFIG, abstract_model, early_run, run,
                      run_two_processes, train_command)
import tiny_config

# tests/tiny_config.py's model with two blocks in c3: at 32 px its first
# (strided) lambda layer runs at 8×8, the second at 4×4.
TINY = dict(stage_depths=(1, 2), stage_widths=(8, 16), stem_width=8,
            stage_mixers="LL", receptive_field="global", query_depth=4, heads=2,
            image_size=32)
# Milliseconds per (method, map side, channels): c2's one layer is fastest
# with the einsum; of c3's two, the 8×8 one with conv and the 4×4 one with
# the einsum, but conv is the faster over the stage (5 ms against 6).
FAKE_MS = {("einsum", 8, 8): 1.0, ("conv", 8, 8): 2.0, ("row_conv", 8, 8): 3.0,
           ("einsum", 8, 16): 5.0, ("conv", 8, 16): 1.0, ("row_conv", 8, 16): 3.0,
           ("einsum", 4, 16): 1.0, ("conv", 4, 16): 4.0, ("row_conv", 4, 16): 2.5}


def fake_timer(calls=None):
  def timer(spec, shape):
    if calls is not None:
      calls.append((spec.lambda_method, shape))
    return FAKE_MS[spec.lambda_method, shape.size[0], shape.features] / 1e3
  return timer


def test_measure_picks_the_fastest_method_per_stage_by_its_summed_time():
  calls, lines = [], []
  config = models.get_config("resnet26", **TINY, lambda_method="measure")
  methods = lambda_measure.choose_methods(config, 4, timer=fake_timer(calls),
                                          report=lines.append)
  assert methods == ("einsum", "conv")
  assert len(calls) == len(set(calls)) == 9  # 3 shapes × 3 methods, once each.
  assert {shape.batch for _, shape in calls} == {4}
  assert lines[1] == ("lambda_method=measure: c3 (1× 4×8×8×16, 1× 4×4×4×16; "
                      "forward + backward): einsum 6.00 ms, conv 5.00 ms, "
                      "row_conv 5.50 ms -> conv")


def test_stages_without_a_position_term_are_not_timed():
  config = models.get_config("resnet26", **{**TINY, "stage_mixers": "CL",
                                            "receptive_field": None})
  lines = []
  methods = lambda_measure.choose_methods(
      config, 2, timer=lambda *_: pytest.fail("timed"), report=lines.append)
  assert methods == ("auto", "auto") and "content lambdas only" in lines[0]


def test_a_direct_timing_avoids_a_method_made_slow():
  """The real timer on a tiny layer, with one method slowed by a second."""
  config = models.get_config("resnet26", **{**TINY, "stage_depths": (1, 1),
                                            "stage_mixers": "CL"})
  shape = lambda_measure.stage_shapes(config, 2)[1]
  spec = config.mixer_spec(1)
  # The injected clock ticks 0.25 s per reading: each call takes 0.25 s.
  clock = itertools.count(0.0, 0.25).__next__
  assert lambda_measure.time_layer(spec, next(iter(shape)), repeats=2,
                                   clock=clock) == 0.25

  def slow_einsum(spec, shape):
    seconds = lambda_measure.time_layer(spec, shape, repeats=1)
    assert 0 < seconds < 1
    return seconds + (1.0 if spec.lambda_method == "einsum" else 0.0)

  methods = lambda_measure.choose_methods(config, 2, timer=slow_einsum,
                                          report=lambda _: None)
  assert methods[0] == "auto" and methods[1] in ("conv", "row_conv")


def test_a_method_per_stage_builds_those_layers():
  tuple_form = abstract_model("resnet26", **TINY,
                              lambda_method=("einsum", "row_conv"))
  assert [block.mixer.method for stage in tuple_form.stages
          for block in stage] == ["einsum", "row_conv", "row_conv"]
  config = models.get_config("resnet26", **TINY, lambda_method="einsum, row_conv")
  assert config.lambda_method == ("einsum", "row_conv")
  assert models.count_parameters(tuple_form) == models.count_parameters(
      abstract_model("resnet26", **TINY))
  with pytest.raises(ValueError, match="resolved by train.py"):
    abstract_model("resnet26", **TINY, lambda_method="measure")


@pytest.mark.parametrize("value,message", [
    ("fastest", "unknown method 'fastest'"),
    (("einsum",), r"one method per stage \(2 stages\), got 1"),
    (("measure", "conv"), "unknown method 'measure'"),
    ("einsum,conv,conv", r"one method per stage \(2 stages\), got 3"),
])
def test_bad_lambda_methods_are_refused(value, message):
  with pytest.raises(ValueError, match=message):
    models.get_config("resnet26", **TINY, lambda_method=value)


def test_measure_without_lambda_layers_is_refused_up_front():
  config = default.get_config()
  config.model = "resnet26"
  config.model_overrides = dict(stage_mixers="CCCC", lambda_method="measure")
  with pytest.raises(UserError, match="no block of this model has one"):
    config_checks.check_model_overrides(config)


def test_the_command_line_takes_a_method_per_stage():
  config = tiny_config.get_config()
  model_flags.apply(config, [("lambda_method", "einsum,conv")])
  assert models.get_config(
      "resnet26", **config.model_overrides).lambda_method == ("einsum", "conv")


def test_a_resumed_run_reuses_the_recorded_methods(tmp_path):
  workdir, lines = str(tmp_path), []

  def measured_config(timer):
    config = tiny_config.get_config()
    config.model_overrides.lambda_method = "measure"
    lambda_measure.resolve(config, workdir, timer=timer, report=lines.append)
    return config

  config = measured_config(fake_timer())
  assert config.model_overrides.lambda_method == ("einsum", "conv")
  run_config.record(config, workdir, 0)
  resumed = measured_config(lambda *_: pytest.fail("measured again"))
  assert resumed.model_overrides.lambda_method == ("einsum", "conv")
  assert lines[-1].startswith("lambda_method=measure: reusing ('einsum', "
                              "'conv') recorded in")
  assert not run_config.differences(config, resumed)


MEASURE_FLAGS = ["--config.model_overrides.lambda_method=measure",
                 "--config.checkpoint_every_steps=2", "--config.eval_every_steps=0"]


@early_run
def measured_two_process_run(tmp_path_factory):
  """train.py with lambda_method=measure as 2 processes (2 steps):
  (workdir, the two processes' outputs)."""
  workdir = tmp_path_factory.mktemp("measured") / "run"
  codes, outputs = run_two_processes(
      workdir, flags=[*MEASURE_FLAGS, "--config.num_train_steps=2"])
  assert codes == [0, 0], outputs
  return workdir, outputs


@pytest.fixture(scope="module")
def measured_runs(measured_two_process_run):
  """The 2-process run, the same command resumed to step 3 (train.py's
  steps in this process, one device: conftest.train_command), then
  eval.py --workdir: (workdir, the two processes' outputs, [the later runs'
  outputs])."""
  workdir, first = measured_two_process_run
  code, resumed = train_command([CONFIG, f"--workdir={workdir}", *MEASURE_FLAGS,
                                 "--config.num_train_steps=3"])
  assert code == 0, resumed[-3000:]
  later = [resumed, run(["eval.py", f"--workdir={workdir}"], devices=2)[1]]
  return workdir, first, later


@pytest.mark.slow
def test_measured_methods_are_recorded_and_reused(measured_runs):
  """Process 0 measures and tells process 1; the resumed run and eval.py
  read the record."""
  workdir, (chief, other), (resumed, evaluated) = measured_runs
  recorded = json.loads((workdir / "config.json").read_text())
  methods = tuple(recorded["model_overrides"]["lambda_method"])
  assert len(methods) == 2 and set(methods) <= set(lambda_measure.CANDIDATES)
  for stage, method in zip(("c2", "c3"), methods):
    # 16 examples over 2 processes of 4 devices: 2 per device.
    assert f"lambda_method=measure: {stage} (1× 2×8×8×" in chief
  assert f"-> {methods[0]}" in chief and f"-> {methods[1]}" in chief
  assert "lambda_method=measure" not in other
  assert "lambda_method=measure: c" not in resumed
  assert f"lambda_method=measure: reusing {methods} recorded in" in resumed
  assert not [line for line in resumed.splitlines()  # Recorded as it was.
              if "WARNING" in line and "lambda_method" in line]
  assert "lambda_method=measure" not in evaluated
  result = json.loads((workdir / "eval_test_step3.json").read_text())
  assert tuple(result["model_overrides"]["lambda_method"]) == methods
