"""scripts.sweep: expansion, workdirs, commands, manifest, validation, local runs."""

import json

import pytest

from lambda_networks.benchmarks import reporting
from scripts import sweep

CONFIG = "configs/resnet50_90ep.py:resnet50_lambda"


def sweep_file(directory, **spec):
  """Writes a sweep file into `directory` and returns its --file flag."""
  path = directory / f"{spec.get('name', 'sweep')}.json"
  path.write_text(json.dumps(spec))
  return f"--file={path}"


def test_grid_expands_to_runs_with_own_workdirs(tmp_path, capsys):
  manifest = sweep.main([
      sweep_file(tmp_path, name="grid", config=CONFIG, root=str(tmp_path),
                 grid={"model_overrides.intra_depth": [1, 4],
                       "image_size": [160, 224]}),
      "--set", "num_train_steps=100", "--print"])
  runs = manifest["runs"]
  assert [(r["overrides"]["model_overrides.intra_depth"], r["overrides"]["image_size"])
          for r in runs] == [(1, 160), (1, 224), (4, 160), (4, 224)]
  assert len({r["workdir"] for r in runs}) == 4
  assert runs[2]["workdir"] == f"{tmp_path}/grid/002_intra_depth-4_image_size-160"
  assert runs[2]["model"] == "resnet50_lambda" and runs[2]["image_size"] == 160
  assert runs[2]["command_lines"] == [
      f"python train.py --config={CONFIG} --workdir={runs[2]['workdir']} "
      "--config.num_train_steps=100 --config.model_overrides.intra_depth=4 "
      "--config.image_size=160"]
  printed = capsys.readouterr().out.splitlines()
  assert printed == [r["command_lines"][0] for r in runs]
  written = json.loads((tmp_path / "grid" / "manifest.json").read_text())
  assert [r["command_lines"] for r in written["runs"]] == [
      r["command_lines"] for r in runs]
  assert written["git_commit"] and written["spec"]["grid"]["image_size"] == [160, 224]
  assert written["spec"]["set"] == {"num_train_steps": "100"}


def test_values_are_formatted_as_config_flags_reads_them(tmp_path):
  runs = sweep.main([sweep_file(
      tmp_path, config=CONFIG, root=str(tmp_path),
      grid={"mesh_shape": [[2, 4], [8]], "seed": [0]}), "--dry-run"])["runs"]
  assert [r["name"] for r in runs] == ["000_mesh_shape-2-4_seed-0",
                                       "001_mesh_shape-8-_seed-0"]
  assert [r["commands"][0][-2] for r in runs] == [
      "--config.mesh_shape=(2,4)", "--config.mesh_shape=(8,)"]


def test_model_fields_are_typed_by_the_model_as_train_py_types_them(tmp_path):
  """Fields the config file does not list, values of another type than it lists."""
  runs = sweep.main([sweep_file(
      tmp_path, config=CONFIG, set={"model_overrides.width_multiplier": 0.25,
                                    "model_overrides.receptive_field": "global"}),
      "--dry-run"])["runs"]
  assert runs[0]["command_lines"][0].endswith(
      "--config.model_overrides.width_multiplier=0.25 "
      "--config.model_overrides.receptive_field=global")


def test_dry_run_writes_nothing(tmp_path, capsys):
  sweep.main([sweep_file(tmp_path, name="dry", config=CONFIG, root=str(tmp_path),
                         grid={"image_size": [128, 160]}), "--dry-run", "--with-eval"])
  out = capsys.readouterr().out
  assert "dry run: 2 runs" in out
  assert out.count("python train.py") == 2 and out.count("python eval.py") == 2
  assert not (tmp_path / "dry").exists()


def test_file_runs_times_grid_with_names_and_configs(tmp_path):
  spec = {
      "name": "table3", "root": str(tmp_path), "set": {"global_batch_size": 1024},
      "runs": [{"config": "configs/resnet50_90ep.py:resnet50"},
               {"config": CONFIG, "name": "lambda_u4_r7",
                "model_overrides.intra_depth": 4,
                "model_overrides.receptive_field": 7}],
      "grid": {"seed": [0, 1]}}
  with pytest.raises(SystemExit, match="both named 'lambda_u4_r7'"):
    sweep.main([sweep_file(tmp_path, **spec), "--dry-run"])  # Named run × 2 seeds.
  spec["grid"] = {}
  runs = sweep.main([sweep_file(tmp_path, **spec), "--dry-run"])["runs"]
  assert [r["name"] for r in runs] == ["000_resnet50_90ep-resnet50", "lambda_u4_r7"]
  assert [r["model"] for r in runs] == ["resnet50", "resnet50_lambda"]
  assert runs[1]["command_lines"][0].endswith(
      "--config.global_batch_size=1024 --config.model_overrides.intra_depth=4 "
      "--config.model_overrides.receptive_field=7")


def test_unknown_fields_and_bad_values_fail_before_running(tmp_path, capsys):
  with pytest.raises(SystemExit) as typo:
    sweep.main([sweep_file(tmp_path, config=CONFIG,
                           grid={"model_overrides.query_dept": [8, 16]}),
                "--dry-run"])
  message = str(typo.value)
  assert "model_overrides.query_dept: 'resnet50_lambda' (ResNetConfig) has no " \
      "field 'query_dept'" in message
  assert all(field in message for field in ("intra_depth", "query_depth",
                                            "receptive_field"))
  with pytest.raises(SystemExit, match='Key "seeds" does not exist.* Did you '
                     'mean "seed"'):
    sweep.main([sweep_file(tmp_path, config=CONFIG, grid={"seeds": [1]}),
                "--dry-run"])
  with pytest.raises(SystemExit, match="receptive_field must be an int, 'global' "
                     "or None, got the string 'big'"):
    sweep.main([sweep_file(tmp_path, config=CONFIG), "--set",
                "model_overrides.receptive_field=big", "--dry-run"])
  with pytest.raises(SystemExit, match="Could not override field 'seed'"):
    sweep.main([sweep_file(tmp_path, config=CONFIG), "--set", "seed=x", "--dry-run"])
  with pytest.raises(SystemExit, match="no config"):
    sweep.main([sweep_file(tmp_path, grid={"seed": [1, 2]}), "--dry-run"])
  with pytest.raises(SystemExit, match="nope.py.* does not load: FileNotFoundError"):
    sweep.main([sweep_file(tmp_path, config="configs/nope.py"), "--dry-run"])
  with pytest.raises(SystemExit, match="unknown key.*'grids'"):
    sweep.main([sweep_file(tmp_path, config=CONFIG, grids={"seed": [1]}), "--dry-run"])
  with pytest.raises(SystemExit, match=r"\['seed'\] need a non-empty list"):
    sweep.main([sweep_file(tmp_path, config=CONFIG, grid={"seed": "1,2"}), "--dry-run"])
  with pytest.raises(SystemExit):
    sweep.main([sweep_file(tmp_path, config=CONFIG), "--set", "seed", "--dry-run"])
  assert "must look like FIELD=VALUE" in capsys.readouterr().err
  (tmp_path / "broken.json").write_text("{")
  with pytest.raises(SystemExit, match="cannot read .*broken.json"):
    sweep.main([f"--file={tmp_path / 'broken.json'}", "--dry-run"])


def test_launchers_wrap_the_same_train_arguments(tmp_path):
  file_flag = sweep_file(tmp_path, name="s", config=CONFIG, root="gs://bucket/runs",
                         grid={"seed": [0, 1]})
  runs = sweep.main([file_flag, "--launcher=slurm",
                     "--launcher-args=--nodes 4 --gpus-per-node 8",
                     f"--manifest={tmp_path / 'm.json'}", "--print"])["runs"]
  assert runs[0]["commands"][0] == [
      "scripts/launch_slurm.sh", "--job-name", "s-000_seed-0", "--nodes", "4",
      "--gpus-per-node", "8", "--entry", "train.py", "--", f"--config={CONFIG}",
      "--workdir=gs://bucket/runs/s/000_seed-0", "--config.seed=0"]
  runs = sweep.main([file_flag, "--launcher=tpu",
                     "--launcher-args=--tpu pod --zone europe-west4-a",
                     "--with-eval", "--dry-run"])["runs"]
  assert [c[:6] for c in runs[1]["commands"]] == [
      ["scripts/launch_tpu_pod.sh", "--tpu", "pod", "--zone", "europe-west4-a",
       "--entry"]] * 2
  assert [c[6] for c in runs[1]["commands"]] == ["train.py", "eval.py"]


def test_local_runs_go_one_after_another_and_skip_finished(tmp_path, capsys):
  root = tmp_path / "runs"
  (root / "local" / "001_seed-1").mkdir(parents=True)
  (root / "local" / "001_seed-1" / "final_metrics.json").write_text("{}")
  # `echo` stands in for the interpreter: each "run" prints its arguments.
  manifest = sweep.main([sweep_file(tmp_path, config=CONFIG, grid={"seed": [0, 1, 2]}),
                         f"--root={root}", "--name=local", "--python=echo"])
  out = capsys.readouterr().out
  assert [r["status"] for r in manifest["runs"]] == ["done", "finished before", "done"]
  assert "001_seed-1: finished before, skipped" in out
  written = json.loads((root / "local" / "manifest.json").read_text())
  assert [r["status"] for r in written["runs"]] == ["done", "finished before", "done"]


def test_a_failed_run_stops_the_sweep(tmp_path):
  with pytest.raises(SystemExit, match="1 run"):
    sweep.main([sweep_file(tmp_path, name="fail", config=CONFIG, root=str(tmp_path),
                           grid={"seed": [0, 1]}), "--python=false"])
  written = json.loads((tmp_path / "fail" / "manifest.json").read_text())
  assert [r["status"] for r in written["runs"]] == ["failed (exit 1)", "pending"]


@pytest.mark.parametrize("name, runs", [("table3", 9), ("lambda_resnet_family", 11)])
def test_committed_sweep_files_expand(name, runs, capsys):
  path = reporting.REPO_ROOT / "docs" / "sweeps" / f"{name}.json"
  manifest = sweep.main([f"--file={path}", "--dry-run"])
  assert len(manifest["runs"]) == runs
  assert all(r["model"] and r["image_size"] for r in manifest["runs"])
  assert capsys.readouterr().out.count("python train.py") == runs
