"""Dry runs of the pod, SLURM and ImageNet scripts print the commands they would run."""

import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
TRAIN_ARGS = ["--config=configs/lambda_resnet.py:152,256",
              "--workdir=gs://bucket/runs/l152", "--config.seed=3"]


def run(script, *args, check=True):
  result = subprocess.run(["bash", str(SCRIPTS / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
  if check:
    assert result.returncode == 0, result.stderr
  return result


def commands(stdout):
  """The '+ cmd args' lines, parsed back into argument lists."""
  return [shlex.split(line[2:]) for line in stdout.splitlines()
          if line.startswith("+ ")]


def test_tpu_pod_dry_run_prints_every_step():
  result = run("launch_tpu_pod.sh", "--dry-run", "--tpu", "pod", "--zone",
               "europe-west4-a", "--accelerator", "v3-32", "--create", "--setup",
               "--", *TRAIN_ARGS)
  create, tar, scp, unpack, setup, train = commands(result.stdout)
  assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pod",
                    "--zone=europe-west4-a", "--accelerator-type=v3-32",
                    "--version=tpu-ubuntu2204-base"]
  assert tar[:2] == ["tar", "-czf"] and "--exclude=.venv" in tar
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in scp and "--worker=all" in unpack
  assert "pip install --quiet -r requirements.txt" in setup[-1]
  assert "jax[tpu]" in setup[-1]
  assert train[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
  assert "--worker=all" in train
  remote = train[-1].removeprefix("--command=")
  remote_command = shlex.split(remote.split("&&")[-1])
  assert remote_command == ["python", "train.py", "--distributed=on", *TRAIN_ARGS]


def test_tpu_pod_refuses_a_local_workdir_and_missing_names():
  result = run("launch_tpu_pod.sh", "--dry-run", "--tpu", "pod", "--zone", "z",
               "--", "--config=configs/quickstart.py", "--workdir=/tmp/x",
               check=False)
  assert result.returncode == 2 and "gs://BUCKET/DIR" in result.stderr
  result = run("launch_tpu_pod.sh", "--dry-run", "--zone", "z", "--", *TRAIN_ARGS,
               check=False)
  assert result.returncode == 2 and "--tpu NAME is required" in result.stderr
  result = run("launch_tpu_pod.sh", "--dry-run", "--tpu", "p", "--zone", "z",
               "--workdir=gs://b/x", check=False)
  assert result.returncode == 2 and "after --" in result.stderr


def test_tpu_pod_detached_eval_keeps_the_users_distributed_flag():
  result = run("launch_tpu_pod.sh", "--dry-run", "--tpu", "pod", "--zone", "z",
               "--no-copy", "--detach", "--entry", "eval.py", "--", *TRAIN_ARGS,
               "--distributed=off")
  (ssh,) = commands(result.stdout)
  remote = ssh[-1]
  assert "nohup python eval.py" in remote and "> ~/eval.log 2>&1 &" in remote
  assert "--distributed=on" not in remote


def test_slurm_dry_run_prints_the_batch_script():
  result = run("launch_slurm.sh", "--dry-run", "--nodes", "4", "--gpus-per-node",
               "8", "--partition", "gpu", "--job-name", "l50", "--sbatch-arg",
               "--exclusive", "--", "--config=configs/resnet50_90ep.py:resnet50_lambda",
               "--workdir=/shared/runs/l50")
  lines = result.stdout.splitlines()
  for expected in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8",
                   "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu",
                   "#SBATCH --job-name=l50", "#SBATCH --exclusive",
                   "#SBATCH --signal=TERM@300", "#SBATCH --requeue",
                   "#SBATCH --open-mode=append",
                   "#SBATCH --output=/shared/runs/l50/slurm/%x-%j.out"):
    assert expected in lines
  (srun,) = [shlex.split(l) for l in lines if l.startswith("srun ")]
  assert srun[srun.index("python"):] == [
      "python", "train.py", "--distributed=auto",
      "--config=configs/resnet50_90ep.py:resnet50_lambda",
      "--workdir=/shared/runs/l50"]
  assert commands(result.stdout) == [["sbatch", "/shared/runs/l50/slurm/l50.sbatch"]]
  assert not pathlib.Path("/shared/runs/l50").exists()


def test_slurm_checks_its_arguments():
  result = run("launch_slurm.sh", "--dry-run", "--nodes", "two", "--",
               *TRAIN_ARGS, check=False)
  assert result.returncode == 2 and "--nodes must be a positive integer" in result.stderr
  result = run("launch_slurm.sh", "--dry-run", "--", "--config=c.py", check=False)
  assert result.returncode == 2 and "--workdir" in result.stderr
  result = run("launch_slurm.sh", "--dry-run", "--nodes", check=False)
  assert result.returncode == 2 and "--nodes needs a value" in result.stderr
  result = run("launch_slurm.sh", "--dry-run", "--nodes=2", "--", *TRAIN_ARGS)
  assert "#SBATCH --nodes=2" in result.stdout.splitlines()


def test_prepare_imagenet_dry_run(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
    (manual / name).write_bytes(b"")
  result = run("prepare_imagenet.sh", "--dry-run", "--manual-dir", str(manual),
               "--data-dir", str(tmp_path / "tfds"), "--copy-to", "gs://bucket/tfds/")
  assert result.stderr == ""
  mkdir, build, copy = commands(result.stdout)
  assert mkdir == ["mkdir", "-p", str(tmp_path / "tfds")]
  assert build[:2] == ["python", "-c"]
  assert "tfds.builder('imagenet2012', data_dir=sys.argv[1])" in build[2]
  assert build[3:] == [str(tmp_path / "tfds"), str(manual)]
  assert copy == ["gcloud", "storage", "cp", "--recursive",
                  str(tmp_path / "tfds" / "imagenet2012"), "gs://bucket/tfds/"]
  assert not (tmp_path / "tfds").exists()


def test_prepare_imagenet_names_the_missing_archives(tmp_path):
  result = run("prepare_imagenet.sh", "--manual-dir", str(tmp_path), check=False)
  assert result.returncode == 2
  assert "ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar" in result.stderr
  assert "image-net.org" in result.stderr


@pytest.mark.parametrize("script", ["launch_tpu_pod.sh", "launch_slurm.sh",
                                    "prepare_imagenet.sh"])
def test_shell_help(script):
  result = run(script, "--help")
  assert "--dry-run" in result.stdout and "set -euo" not in result.stdout


@pytest.mark.parametrize("module, flags", [
    ("sweep", ("--file", "--set", "--launcher", "--dry-run")),
    ("speed_accuracy", ("--benchmarks", "--metrics", "--out"))])
def test_python_scripts_run_as_modules(module, flags):
  """`python -m scripts.NAME --help` works (no JAX import: fast)."""
  result = subprocess.run([sys.executable, "-m", f"scripts.{module}", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
  assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
  assert all(flag in result.stdout for flag in flags), result.stdout
  assert f"python -m scripts.{module}" in result.stdout  # The docstring's examples.
