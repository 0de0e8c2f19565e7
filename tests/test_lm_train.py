"""End-to-end language-model runs: train.py, a kill and resume, eval.py, generation.

The runs (conftest.early_run) train a shrunken lambda LM on the repository's
own docs (real text, read through config.text_files) for a few steps: on one
process of 2 devices, killed and resumed, and as 2 localhost processes of 1
device each (jax.distributed), whose hosts each read their half of a batch.
"""

import json
import socket
import subprocess
import time

import pytest

from conftest import SYNTHETIC_STEPS, assert_same_state, early_run, run

LM_ARGS = [
    "--config=configs/lambda_lm.py:text_files", "--config.text_files=docs/*.md",
    "--config.text_eval_fraction=0.01", "--config.sequence_length=32",
    "--config.global_batch_size=8", f"--config.num_train_steps={SYNTHETIC_STEPS}",
    "--config.checkpoint_every_steps=3", "--config.eval_every_steps=0",
    "--config.log_every_steps=4", "--config.warmup_epochs=0",
    "--config.model_overrides.width=32", "--config.model_overrides.query_depth=8",
    "--config.model_overrides.intra_depth=2",
]


@early_run
def lm_runs(tmp_path_factory):
  """An uninterrupted run, and one SIGKILLed after its step-6 save and resumed."""
  root = tmp_path_factory.mktemp("lm")
  whole, killed = root / "whole", root / "killed"
  _, output = run(["train.py", *LM_ARGS, f"--workdir={whole}"], devices=2)
  code, _ = run(["tests/kill_after_save.py", "6", "train.py", *LM_ARGS,
                 f"--workdir={killed}"], devices=2, expect_ok=False)
  _, resumed_output = run(["train.py", *LM_ARGS, f"--workdir={killed}"], devices=2)
  return whole, output, killed, code, resumed_output


@early_run
def lm_two_process_run(tmp_path_factory):
  """The same run as 2 processes of 1 device each (jax.distributed)."""
  workdir = tmp_path_factory.mktemp("lm_two") / "run"
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    address = f"localhost:{sock.getsockname()[1]}"
  processes = [
      run(["train.py", *LM_ARGS, f"--workdir={workdir}",
           f"--coordinator_address={address}", "--num_processes=2",
           f"--process_id={index}"], devices=1, wait=False)
      for index in range(2)]
  deadline = time.monotonic() + 420
  try:
    outputs = [p.communicate(timeout=max(1, deadline - time.monotonic()))[0]
               for p in processes]
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
    outputs = [p.communicate()[0] for p in processes]
  return workdir, [p.returncode for p in processes], outputs


@pytest.mark.slow
def test_lm_two_processes_match_one_process(lm_runs, lm_two_process_run):
  workdir, codes, outputs = lm_two_process_run
  for code, output in zip(codes, outputs):
    assert code == 0, output[-6000:]
  assert "2 devices in 2 process(es)" in outputs[0]
  assert_same_state(lm_runs[0], workdir, rtol=2e-5, atol=2e-6)


@pytest.mark.slow
def test_lm_trains_and_resumes_exactly_after_a_kill(lm_runs):
  whole, output, killed, code, resumed_output = lm_runs
  assert f"step {SYNTHETIC_STEPS}/{SYNTHETIC_STEPS}" in output
  assert "bits/byte" in output
  assert code != 0
  assert "Resumed from step" in resumed_output, resumed_output[-3000:]
  assert_same_state(whole, killed)


@pytest.mark.slow
def test_lm_eval_and_generation_from_the_workdir(lm_runs):
  whole = lm_runs[0]
  _, output = run(["eval.py", f"--workdir={whole}"], devices=2)
  metrics = json.loads((whole / "final_metrics.json").read_text())
  scored = json.loads(output[output.index("{"):output.rindex("}") + 1])
  for key in ("loss", "bits_per_byte", "accuracy"):
    assert scored[key] == pytest.approx(metrics[key], rel=1e-5), key
  assert scored["bits_per_byte"] == pytest.approx(scored["loss"] / 0.6931471805599453)
  sample = whole.parent / "sample.bin"
  run(["-m", "scripts.generate", f"--workdir={whole}", "--prompt", "The lambda",
       "--max_bytes", "12", "--temperature", "0", f"--output={sample}"], devices=1)
  generated = sample.read_bytes()
  assert generated.startswith(b"The lambda") and len(generated) == 22
  code, text = run(["-m", "scripts.generate", f"--workdir={whole}", "--prompt",
                    "x", "--max_bytes", "40"], devices=1, expect_ok=False)
  assert code == 2 and "context of 32 bytes" in text
