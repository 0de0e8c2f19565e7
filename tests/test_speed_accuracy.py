"""scripts.speed_accuracy on fixture CSV/JSON: table, PNG, speed-up at equal accuracy."""

import csv
import json
import math

import pytest

from scripts import speed_accuracy

FIELDS = ("model", "overrides", "image_size", "batch_size", "mode", "dtype",
          "status", "step_time_ms", "examples_per_s", "backend", "device_kind")
# (model, image size, train examples/s at batch 4): step times 0.1 … 1.6 s.
TRAIN = (("lambda_resnet50", 128, 40.0), ("lambda_resnet50", 160, 20.0),
         ("efficientnet_b0", 224, 10.0), ("efficientnet_b1", 240, 5.0),
         ("efficientnet_b2", 260, 2.5))


def write_fixture_csv(path):
  with open(path, "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=FIELDS)
    writer.writeheader()
    for model, size, rate in TRAIN:
      common = dict(model=model, overrides="", image_size=size, batch_size=4,
                    dtype="float32", status="ok", backend="cpu", device_kind="cpu")
      writer.writerow(dict(common, mode="train", step_time_ms=4000 / rate,
                           examples_per_s=rate))
      writer.writerow(dict(common, mode="inference", step_time_ms=1000 / rate,
                           examples_per_s=4 * rate))
    # Ignored: out of memory, an overridden model, a model outside the plot.
    writer.writerow(dict(model="efficientnet_b3", overrides="", image_size=300,
                         batch_size=4, mode="train", status="oom", step_time_ms="",
                         examples_per_s=""))
    writer.writerow(dict(model="lambda_resnet50", overrides="width_multiplier=0.5",
                         image_size=128, batch_size=4, mode="train", status="ok",
                         step_time_ms=1, examples_per_s=4000))
    writer.writerow(dict(model="resnet50", overrides="", image_size=224,
                         batch_size=4, mode="train", status="ok", step_time_ms=1,
                         examples_per_s=4000))


@pytest.fixture
def inputs(tmp_path):
  write_fixture_csv(tmp_path / "bench.csv")
  workdir = tmp_path / "run_l50_160"
  workdir.mkdir()
  # What eval.py writes; an older step is ignored.
  (workdir / "eval_validation_step100.json").write_text(json.dumps(
      dict(top1=0.781, top5=0.94, loss=1.0, examples=50000, step=100,
           weights="ema", split="validation", model="lambda_resnet50",
           image_size=160)))
  (workdir / "eval_validation_step50.json").write_text(json.dumps(
      dict(top1=0.5, model="lambda_resnet50", image_size=160, step=50)))
  return tmp_path, workdir


def test_table_png_and_speedup(inputs):
  tmp_path, workdir = inputs
  out = tmp_path / "out" / "sa"
  result = speed_accuracy.main([
      "--benchmarks", str(tmp_path / "bench.csv"),
      "--metrics", str(workdir), "--out", str(out)])
  assert result["batch"] == 4
  png = out.with_suffix(".png").read_bytes()
  assert png.startswith(b"\x89PNG") and len(png) > 10_000
  points = {(p.model, p.image_size): p for p in result["points"].itertuples()}
  assert set(points) == {(m, s) for m, s, _ in TRAIN}
  measured = points[("lambda_resnet50", 160)]
  assert measured.top1 == pytest.approx(78.1) and measured.top1_source == "measured"
  assert points[("lambda_resnet50", 128)].top1_source == "paper-reported"
  assert points[("lambda_resnet50", 128)].top1 == 77.4
  # L50@128 (77.4, paper) sits between B0 (77.1, 0.4 s) and B1 (79.1, 0.8 s):
  # log-linear interpolation gives 0.4·2^0.15 s against its 0.1 s.
  ratios = dict(zip(result["ratios"]["image_size"], result["ratios"]["ratio"]))
  assert ratios[128] == pytest.approx(0.4 * 2 ** 0.15 / 0.1)
  assert ratios[160] == pytest.approx(0.4 * math.sqrt(2) / 0.2)  # 78.1, measured.
  assert result["speedup"] == pytest.approx((ratios[160], ratios[128]))

  text = out.with_suffix(".md").read_text()
  assert "| lambda_resnet50 | 160 | 78.1 | measured | 200.0 |" in text
  assert "| lambda_resnet50 | 128 | 77.4 | paper-reported | 100.0 |" in text
  assert "3.2–4.4× faster" in text  # The paper's claim, from the data file.
  assert f"Speed-up measured here: {ratios[160]:.2f}–{ratios[128]:.2f}×" in text
  with open(out.with_suffix(".csv"), newline="") as handle:
    rows = list(csv.DictReader(handle))
  assert len(rows) == 5 and rows[0]["top1_source"] in ("measured", "paper-reported")


def test_workdirs_give_their_newest_eval_json(inputs):
  tmp_path, workdir = inputs
  (tmp_path / "not_run_yet").mkdir()  # A sweep run without eval JSON: skipped.
  metrics = speed_accuracy.load_metrics([workdir, tmp_path / "not_run_yet"])
  assert metrics == {("lambda_resnet50", 160): pytest.approx(78.1)}


@pytest.mark.parametrize("fields, message", [
    (dict(top1=0.78, model="lambda_resnet50"),
     "does not say which model and image size.* python eval.py --workdir="),
    (dict(top1=0.78, image_size=160), "python eval.py --workdir="),
    (dict(top1="n/a", model="lambda_resnet50", image_size=160),
     "no numeric 'top1'")])
def test_metrics_without_model_size_or_top1_is_a_clear_error(tmp_path, fields,
                                                             message):
  (tmp_path / "eval_validation_step1.json").write_text(json.dumps(fields))
  with pytest.raises(ValueError, match=message):
    speed_accuracy.load_metrics([tmp_path])


def test_no_bracketing_efficientnets_says_so(tmp_path):
  write_fixture_csv(tmp_path / "bench.csv")
  rows = list(csv.DictReader(open(tmp_path / "bench.csv", newline="")))
  with open(tmp_path / "some.csv", "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(r for r in rows if r["model"] in ("lambda_resnet50",
                                                        "efficientnet_b2"))
  result = speed_accuracy.main(["--benchmarks", str(tmp_path / "some.csv"),
                                "--out", str(tmp_path / "sa")])
  assert result["speedup"] is None
  assert "not computable" in (tmp_path / "sa.md").read_text()
  assert (tmp_path / "sa.png").exists()
