"""Continues a prompt with a trained byte-level language model.

  python -m scripts.generate --workdir=/tmp/lm --prompt "The " --max_bytes 200
  python -m scripts.generate --workdir=/tmp/lm --prompt "x" --temperature 0  # greedy

The model is rebuilt from the run's config.json and its newest checkpoint
(the EMA weights when the run kept some and config.eval_use_ema, as eval.py
does). Lambda models decode recurrently from a fixed-size state per layer
(`models/lm_decoding.py`): with a local receptive field memory does not grow
with the text, and generation may run past the training sequence_length;
with a "global" table, and for the attention baseline (a key/value cache),
prompt + max_bytes must fit in sequence_length. Prompt and continuation go
to stdout (or `--output FILE`) as bytes, invalid UTF-8 included.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
from flax import nnx

from configs import default
from lambda_networks import sampling
from lambda_networks.data import DatasetInfo
from lambda_networks.errors import UserError
from lambda_networks.models import lm
from lambda_networks.models import lm_decoding
from lambda_networks.train import checkpointing
from lambda_networks.train import run_config
from lambda_networks.train import state as state_lib


def load_model(workdir: str, step: int | None = None,
               weights: str = "auto") -> lm.LanguageModel:
  """The trained model of `workdir` (weights: auto, raw or ema)."""
  config = run_config.load(workdir, defaults=default.get_config())
  if config is None:
    raise UserError(f"{workdir} holds no config.json; pass the --workdir of a "
                    "train.py run.")
  if config.get("task") != "language_model":
    raise UserError(f"{workdir} trained {config.model!r}, not a language model.")
  try:
    arrays = checkpointing.load_arrays(workdir, step)
  except FileNotFoundError as error:
    raise UserError(str(error)) from None
  use_ema = arrays.get("ema_params") and (
      weights == "ema" or (weights == "auto" and config.eval_use_ema))
  if weights == "ema" and not arrays.get("ema_params"):
    raise UserError("--weights=ema but this run kept no EMA; use --weights=raw.")
  info = DatasetInfo(name=config.dataset, num_classes=lm.VOCAB_SIZE,
                     image_shape=(config.sequence_length, 1, 1),
                     num_train_examples=0, num_eval_examples=0)
  model = state_lib.build_model(config, info, config.seed)
  saved = arrays["ema_params"] if use_ema else arrays["params"]
  state = nnx.state(model, nnx.Param)
  template = nnx.to_pure_dict(state)
  flat, treedef = jax.tree_util.tree_flatten_with_path(template)
  values = [_saved_leaf(saved, path, leaf.shape) for path, leaf in flat]
  nnx.replace_by_pure_dict(state, jax.tree.unflatten(treedef, values))
  nnx.update(model, state)
  return model


def _saved_leaf(saved: dict, path: tuple, shape: tuple) -> np.ndarray:
  """The checkpoint's array at a model path (Orbax keeps keys as strings)."""
  name = "/".join(str(getattr(key, "key", key)) for key in path)
  value = saved
  for key in path:
    value = value.get(str(getattr(key, "key", key))) if isinstance(value, dict) else None
  if value is None or tuple(value.shape) != tuple(shape):
    raise UserError(f"the checkpoint has no parameter {name} of shape {shape}: "
                    "it was saved by another model.")
  return value


def generate(model: lm.LanguageModel, prompt: bytes, max_bytes: int, *,
             temperature: float, top_k: int | None, seed: int) -> bytes:
  """`max_bytes` bytes continuing `prompt`."""
  if not prompt:
    raise UserError("--prompt must hold at least one byte.")
  decoder = lm_decoding.Decoder(model)
  limit = decoder.max_length
  if limit is not None and len(prompt) + max_bytes > limit:
    raise UserError(
        f"prompt ({len(prompt)} bytes) + --max_bytes={max_bytes} exceed this "
        f"model's context of {limit} bytes (its state or key/value cache holds "
        "that many); shorten them, or use a lambda model with a local "
        "receptive_field, whose state does not grow.")
  tokens = np.frombuffer(prompt, np.uint8).astype(np.int32)[None]
  out = sampling.sample(decoder.step, decoder.init(1), tokens, max_bytes,
                        key=jax.random.key(seed), temperature=temperature,
                        top_k=top_k, run=decoder.run)
  return bytes(out[0].astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--prompt", required=True,
                      help="text to continue (encoded as UTF-8)")
  parser.add_argument("--max_bytes", type=int, default=256)
  parser.add_argument("--temperature", type=float, default=1.0,
                      help="0 takes the most likely byte")
  parser.add_argument("--top_k", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step (default: the newest)")
  parser.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto")
  parser.add_argument("--output", default=None,
                      help="write prompt + continuation to this file, not stdout")
  args = parser.parse_args(argv)
  try:
    if args.max_bytes < 0:
      raise UserError(f"--max_bytes must be ≥ 0, got {args.max_bytes}.")
    sampling.check_options(args.temperature, args.top_k)
    model = load_model(args.workdir, args.step, args.weights)
    text = generate(model, args.prompt.encode("utf-8"), args.max_bytes,
                    temperature=args.temperature, top_k=args.top_k,
                    seed=args.seed)
  except (UserError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  if args.output:
    with open(args.output, "wb") as file:
      file.write(args.prompt.encode("utf-8") + text)
  else:
    sys.stdout.buffer.write(args.prompt.encode("utf-8") + text + b"\n")
    sys.stdout.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main())
