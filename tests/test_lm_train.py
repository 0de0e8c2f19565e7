"""End-to-end language-model runs: train.py, a kill and resume, eval.py, generation.

The runs (conftest.early_run) train a shrunken lambda LM on the repository's
own docs (real text, read through config.text_files) for a few steps on one
process of 2 devices: uninterrupted, and killed and resumed; eval.py and
scripts.generate then read the uninterrupted run's workdir (early runs too,
so they overlap the in-process tests). (Each host's
share of a text batch is checked in-process, tests/test_text_source.py; the
2-process trainer itself in tests/test_train.py.)
"""

import json

import pytest

from conftest import SYNTHETIC_STEPS, assert_same_state, early_run, run
from scripts import generate

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


@pytest.mark.slow
def test_lm_trains_and_resumes_exactly_after_a_kill(lm_runs):
  whole, output, killed, code, resumed_output = lm_runs
  assert f"step {SYNTHETIC_STEPS}/{SYNTHETIC_STEPS}" in output
  assert "bits/byte" in output
  assert code != 0
  assert "Resumed from step" in resumed_output, resumed_output[-3000:]
  assert_same_state(whole, killed)


@early_run
def lm_scored(tmp_path_factory, lm_runs):
  """eval.py on the uninterrupted run's workdir, then scripts.generate: 12
  greedy bytes to a file (the test refuses a prompt longer than the context
  in-process, through the same `generate.main`)."""
  whole = lm_runs[0]
  _, output = run(["eval.py", f"--workdir={whole}"], devices=2)
  sample = tmp_path_factory.mktemp("lm_sample") / "sample.bin"
  run(["-m", "scripts.generate", f"--workdir={whole}", "--prompt", "The lambda",
       "--max_bytes", "12", "--temperature", "0", f"--output={sample}"], devices=1)
  return output, sample.read_bytes()


@pytest.mark.slow
def test_lm_eval_and_generation_from_the_workdir(lm_runs, lm_scored, capsys):
  whole = lm_runs[0]
  output, generated = lm_scored
  code = generate.main([f"--workdir={whole}", "--prompt", "x", "--max_bytes",
                        "40"])
  text = capsys.readouterr().err
  metrics = json.loads((whole / "final_metrics.json").read_text())
  scored = json.loads(output[output.index("{"):output.rindex("}") + 1])
  for key in ("loss", "bits_per_byte", "accuracy"):
    assert scored[key] == pytest.approx(metrics[key], rel=1e-5), key
  assert scored["bits_per_byte"] == pytest.approx(scored["loss"] / 0.6931471805599453)
  assert generated.startswith(b"The lambda") and len(generated) == 22
  assert code == 2 and "context of 32 bytes" in text
