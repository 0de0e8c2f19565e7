"""Autoregressive sampling from any step function (temperature, top-k).

The sampler knows nothing of models: it takes `step(state, tokens [B]) ->
(logits [B, V], state)` and a starting state, so a recurrent lambda state, an
attention key/value cache or a fake model in a test all plug in. Each byte
costs one step; nothing recomputes the context.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]


def check_options(temperature: float, top_k: int | None) -> None:
  """One-line errors for sampling options a user mistyped."""
  if not temperature >= 0:
    raise ValueError(f"temperature must be ≥ 0 (0: greedy), got {temperature}.")
  if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                            or top_k < 1):
    raise ValueError(f"top_k must be a positive int or None, got {top_k!r}.")


@jax.jit
def _greedy(logits: jax.Array) -> jax.Array:
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@jax.jit
def _draw(logits: jax.Array, key: jax.Array, temperature: jax.Array,
          kth_largest: jax.Array) -> jax.Array:
  """Draws from softmax(logits / T) restricted to logits ≥ the kth largest."""
  logits = logits.astype(jnp.float32)
  logits = jnp.where(logits >= kth_largest[:, None], logits, -jnp.inf)
  return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


def choose(logits: jax.Array, key: jax.Array, temperature: float,
           top_k: int | None) -> jax.Array:
  """The next tokens [B] from logits [B, V]."""
  if temperature == 0:
    return _greedy(logits)
  k = logits.shape[-1] if top_k is None else min(top_k, logits.shape[-1])
  kth_largest = jax.lax.top_k(logits, k)[0][:, -1]
  return _draw(logits, key, jnp.float32(temperature), kth_largest)


def sample(step: StepFn, state: Any, prompt: np.ndarray, num_new: int, *,
           key: jax.Array, temperature: float = 1.0, top_k: int | None = None,
           run: Callable[[Any, jax.Array], tuple[jax.Array, Any]] | None = None
           ) -> np.ndarray:
  """Continues `prompt` [B, P] (P ≥ 1) by `num_new` tokens; returns [B, num_new].

  Args:
    step: one position: (state, tokens [B]) -> (logits [B, V], state).
    state: the state before the prompt's first token.
    prompt: int tokens [B, P].
    num_new: tokens to generate.
    key: PRNG key; the same key gives the same continuation.
    temperature: divides the logits; 0 takes the most likely token.
    top_k: draw only among the k most likely tokens (None: all).
    run: optional (state, tokens [B, P]) -> (logits [B, P, V], state) that
      feeds the prompt in one call; `step` per token otherwise.
  """
  check_options(temperature, top_k)
  prompt = jnp.asarray(prompt, jnp.int32)
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError(f"prompt must be tokens [B, P] with P ≥ 1, got {prompt.shape}.")
  if run is not None:
    logits, state = run(state, prompt)
    logits = logits[:, -1]
  else:
    for column in range(prompt.shape[1]):
      logits, state = step(state, prompt[:, column])
  generated = []
  for index in range(num_new):
    tokens = choose(logits, jax.random.fold_in(key, index), temperature, top_k)
    generated.append(tokens)
    if index + 1 < num_new:
      logits, state = step(state, tokens)
  if not generated:
    return np.zeros((prompt.shape[0], 0), np.int32)
  return np.asarray(jnp.stack(generated, axis=1))
