"""scripts.benchmark_models' commands on tiny models (no timings asserted)."""

import csv

import jax
import pytest
from flax import nnx

from lambda_networks import models
from lambda_networks.benchmarks import memory as analytic_memory
from scripts import benchmark_models

# One conv block of 4 channels: compiles in seconds.
TINY = ["--override", "stage_depths=(1,)", "--override", "stage_widths=(4,)",
        "--override", "stem_width=4", "--override", "stage_mixers=C"]


def read(path):
  with open(path, newline="") as handle:
    reader = csv.DictReader(handle)
    return reader.fieldnames, list(reader)


def test_benchmark_csv_is_well_formed(tmp_path):
  out = tmp_path / "models.csv"
  benchmark_models.main(
      ["throughput", "--models", "resnet26", "--image-sizes", "16",
       "--batch-sizes", "2", "--warmup", "1", "--repeats", "2",
       "--num-classes", "10", "--out", str(out), *TINY])
  fields, rows = read(out)
  assert fields == list(benchmark_models.THROUGHPUT_FIELDS)
  assert [(r["mode"], r["status"]) for r in rows] == [("train", "ok"),
                                                      ("inference", "ok")]
  for row in rows:
    assert row["model"] == "resnet26"
    assert row["overrides"] == ("stage_depths=(1,) stage_widths=(4,) stem_width=4 "
                                "stage_mixers=C")
    assert (row["image_size"], row["batch_size"]) == ("16", "2")
    assert row["timed_steps"] == "2"
    step_ms, rate = float(row["step_time_ms"]), float(row["examples_per_s"])
    assert step_ms > 0
    assert rate == pytest.approx(2 / (step_ms / 1000), rel=1e-3)
    assert float(row["step_time_min_ms"]) <= step_ms <= float(row["step_time_max_ms"])
    assert float(row["peak_memory_mib"]) > 0
    assert int(row["params"]) > 0
    assert row["backend"] == jax.default_backend()
    assert row["jax"] == jax.__version__ and row["flax"] and row["date"]
    # FLOPs from XLA's cost analysis; achieved FLOP/s = FLOPs × examples/s.
    gflops = float(row["gflops_per_example"])
    assert float(row["achieved_tflops"]) == pytest.approx(
        gflops * rate / 1000, rel=1e-3)
    assert row["mfu"] == "" and row["peak_tflops"] == ""  # No CPU peak.
  train, inference = rows
  # Training keeps gradients and optimizer state: it needs more memory.
  assert float(train["peak_memory_mib"]) > float(inference["peak_memory_mib"])
  # Backward costs about twice the forward pass.
  assert 2 < (float(train["gflops_per_example"])
              / float(inference["gflops_per_example"])) < 4.5


def test_step_that_does_not_fit_is_reported_not_raised(tmp_path):
  out = tmp_path / "models.csv"
  rows = benchmark_models.main(
      ["throughput", "--models", "resnet26", "--image-sizes", "16",
       "--batch-sizes", "2", "--modes", "inference", "--memory-limit-gib", "1e-6", "--out", str(out),
       *TINY])
  assert rows[0]["status"].startswith("oom: XLA needs")
  _, written = read(out)
  assert written[0]["status"].startswith("oom") and written[0]["step_time_ms"] == ""


def test_unknown_model_names_the_close_ones():
  with pytest.raises(ValueError, match="Did you mean.*lambda_resnet50"):
    benchmark_models.parse_args(["throughput", "--models", "lambda_resnet_50"])


def test_bad_overrides_fail_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="one .* per stage"):
    benchmark_models.main(["throughput", "--models", "resnet26", "--override",
                           "stage_depths=(1,)", "--out", str(tmp_path / "x.csv")])
  with pytest.raises(ValueError, match="unknown override.*query_dept"):
    benchmark_models.main(["throughput", "--models", "resnet26", "--override",
                           "query_dept=8", "--out", str(tmp_path / "x.csv")])
  assert not (tmp_path / "x.csv").exists()


def test_paper_image_sizes_expand():
  assert benchmark_models.image_sizes_for("lambda_resnet152", ["paper", "128"]) == [
      192, 224, 256, 128]


def test_table4_analytic_memory_reproduces_the_paper(tmp_path):
  rows = benchmark_models.main(["table4", "--analytic-only", "--out",
                               str(tmp_path / "t4")])
  memory = {r["layer"]: r["analytic_paper_convention_gib"] for r in rows}
  # docs/paper.md#table-4 (GB): the paper's space complexities, batch 128, float32.
  for layer, paper in (("global self-attention", 120), ("axial self-attention", 4.8),
                       ("lambda layer", 1.9), ("lambda layer, k = 8", 0.95),
                       ("lambda layer, shared embeddings", 0.63)):
    assert memory[layer] == pytest.approx(paper, rel=0.03), layer
  assert memory["conv (baseline)"] == 0
  # Lambda memory does not grow with the batch; attention maps do.
  config = models.get_config("resnet50_lambda")
  assert (analytic_memory.analytic_floats(config, 1, convention="paper")
          == analytic_memory.analytic_floats(config, 512, convention="paper"))
  config = models.get_config("resnet50_attention")
  assert (analytic_memory.analytic_floats(config, 2, convention="as_run")
          == 2 * analytic_memory.analytic_floats(config, 1, convention="as_run"))
  text = (tmp_path / "t4.md").read_text()
  assert "| global self-attention | 120 |" in text
  fields, written = read(tmp_path / "t4.csv")
  assert fields == list(benchmark_models.TABLE4_FIELDS)
  assert len(written) == len(rows)


def test_mixer_sites_follow_the_resnet_layout():
  sites = analytic_memory.mixer_sites(models.get_config("resnet50_lambda"))
  assert len(sites) == 16
  first_c3 = sites[3]
  # Strided blocks run the mixer at full resolution, then pool.
  assert first_c3.input_hw == (56, 56) and first_c3.output_hw == (28, 28)
  assert sites[-1].input_hw == sites[-1].output_hw == (7, 7)


def test_table4_out_of_memory_is_a_status(tmp_path):
  rows = benchmark_models.main(
      ["table4", "--rows", "global self-attention", "--image-size", "32",
       "--batch", "1", "--memory-limit-gib", "1e-6", "--out", str(tmp_path / "t4")])
  assert rows[0]["status"].startswith("oom: XLA needs")
  assert rows[0]["examples_per_s"] is None and rows[0]["peak_memory_mib"] > 0
  assert "oom: XLA needs" in (tmp_path / "t4.md").read_text()


def test_model_table_counts_parameters_and_flops(tmp_path):
  rows = benchmark_models.main(["model-table", "--models", "resnet26", "--out",
                                str(tmp_path / "model_table")])
  assert [(r["model"], r["overrides"], r["image_size"]) for r in rows] == [
      ("resnet26", "", 224)]
  params = models.count_parameters(nnx.eval_shape(lambda: models.get_model(
      "resnet26", num_classes=1000, rngs=nnx.Rngs(0))))
  assert rows[0]["params_m"] == f"{params / 1e6:.2f}"
  assert float(rows[0]["gflops_xla"]) > 1
  fields, written = read(tmp_path / "model_table.csv")
  assert fields == list(benchmark_models.MODEL_TABLE_FIELDS)
  assert written[0]["params_m"] == rows[0]["params_m"]
  text = (tmp_path / "model_table.md").read_text()
  assert f"| resnet26 | — | 224 | {rows[0]['params_m']}M |" in text


@pytest.mark.parametrize("command, flags", [
    ("throughput", ("--models", "--image-sizes", "--override",
                    "--memory-limit-gib", "--compile-only")),
    ("table4", ("--rows", "--analytic-only", "--analytic-batch",
                "--memory-limit-gib", "--compile-only")),
    ("model-table", ("--models", "--out"))])
def test_help_names_the_flags_and_the_module_command(command, flags, capsys):
  with pytest.raises(SystemExit) as exit_info:
    benchmark_models.parse_args([command, "--help"])
  out = capsys.readouterr().out
  assert exit_info.value.code == 0 and "usage:" in out
  assert all(flag in out for flag in flags), out
  assert f"python -m scripts.benchmark_models {command}" in out
