"""Decoding a `LanguageModel` one byte at a time, from a per-layer state.

`Decoder(model)` gives `init(batch)` → state, `step(state, tokens [B])` →
(logits [B, vocabulary], state) and `run` (`step` over [B, T]), all jitted;
`sampling.sample` drives them.
Position n's logits equal those of the parallel forward pass at n.

- Lambda models keep, per layer, `recurrent_ops.LambdaState`: the running
  key-softmax normaliser and content lambda, and the last r//2 + 1 values
  for a local position table. With a local receptive field the state does not
  grow: memory per step is constant and decoding may run past the model's
  `sequence_length`. A "global" table needs every earlier value (the window
  is the whole context, so decoding stops at `sequence_length`).
- Attention models keep a key/value cache of `sequence_length` positions per
  layer (2·width numbers per position), the usual growing cache.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import recurrent_ops
from lambda_networks.models import common, lm

State = dict[str, Any]


class Decoder:
  """Jitted `init` and `step` of one model (its parameters are captured)."""

  def __init__(self, model: lm.LanguageModel):
    self.config = model.config
    graphdef, params = nnx.split(model)
    self._graphdef = graphdef
    self._params = params
    self.init: Callable[[int], State] = jax.jit(
        lambda batch: init_state(nnx.merge(graphdef, params), batch),
        static_argnums=0)
    self._step = jax.jit(
        lambda params, state, tokens: step(nnx.merge(graphdef, params), state,
                                           tokens))
    self._run = jax.jit(
        lambda params, state, tokens: run(nnx.merge(graphdef, params), state,
                                          tokens))

  @property
  def max_length(self) -> int | None:
    """Longest sequence the state can hold; None: unbounded (local lambda)."""
    return max_length(self.config)

  def step(self, state: State, tokens: jax.Array) -> tuple[jax.Array, State]:
    return self._step(self._params, state, tokens)

  def run(self, state: State, tokens: jax.Array) -> tuple[jax.Array, State]:
    """`step` over tokens [B, T] (a prompt) in one call."""
    return self._run(self._params, state, tokens)


def max_length(config: lm.LanguageModelConfig) -> int | None:
  """None when the state is constant-size (a local or no lambda table)."""
  if config.mixer == "lambda" and config.receptive_field != "global":
    return None
  return config.sequence_length


def state_size(state: State) -> int:
  """Numbers held in a decoding state (its memory, in elements)."""
  return sum(leaf.size for leaf in jax.tree.leaves(state))


def init_state(model: lm.LanguageModel, batch: int) -> State:
  """The state before the first byte."""
  config = model.config
  blocks = []
  for block in model.blocks:
    if config.mixer == "lambda":
      layer = block.mixer
      table = layer.embeddings
      blocks.append(recurrent_ops.init_lambda_state(
          batch, layer.query_depth, layer.value_depth, layer.intra_depth,
          recurrent_ops.position_window(None if table is None else table.shape[0])))
    else:
      shape = (batch, config.sequence_length, config.heads,
               config.width // config.heads)
      dtype = common.as_dtype(config.dtype) or jnp.float32
      blocks.append({"keys": jnp.zeros(shape, dtype),
                     "values": jnp.zeros(shape, dtype)})
  return {"position": jnp.zeros((), jnp.int32), "blocks": blocks}


def step(model: lm.LanguageModel, state: State, tokens: jax.Array
         ) -> tuple[jax.Array, State]:
  """Logits [B, vocabulary] for `tokens` [B] at the state's position."""
  position = state["position"]
  x = model.embedding(tokens)  # [B, width]
  new_blocks = []
  for block, block_state in zip(model.blocks, state["blocks"]):
    mixer_input = block.mixer_norm(x)
    if model.config.mixer == "lambda":
      out, block_state = _lambda_step(block.mixer, block_state, mixer_input)
    else:
      out, block_state = _attention_step(block.mixer, block_state, mixer_input,
                                         position)
    new_blocks.append(block_state)
    x = block.mlp(x + block.output_proj(out))
  return model.head(x), {"position": position + 1, "blocks": new_blocks}


def _lambda_step(layer, state: recurrent_ops.LambdaState, inputs: jax.Array):
  """One position through a causal `layers.LambdaLayer` (layer norms)."""
  batch = inputs.shape[0]
  if layer.dtype is not None:
    inputs = inputs.astype(layer.dtype)
  queries = layer.query_norm(layer.query_proj(inputs))
  values = layer.value_norm(layer.value_proj(inputs))
  keys = layer.key_proj(inputs)
  table = None if layer.embeddings is None else layer.embeddings[...]
  out, state = recurrent_ops.lambda_step(
      state, queries.reshape(batch, layer.heads, layer.query_depth),
      keys.reshape(batch, layer.query_depth, layer.intra_depth),
      values.reshape(batch, layer.value_depth, layer.intra_depth),
      None if table is None else table.astype(queries.dtype))
  if layer.position_bias is not None:
    raise NotImplementedError("position_bias is not used by the LMs.")
  return out.reshape(batch, layer.out_features), state


def _attention_step(layer: lm.CausalSelfAttention, cache: dict, inputs: jax.Array,
                    position: jax.Array):
  """One position of causal self-attention against the key/value cache."""
  queries, keys, values = layer.projections(inputs[:, None], position[None])
  cache = {
      "keys": jax.lax.dynamic_update_slice_in_dim(
          cache["keys"], keys.astype(cache["keys"].dtype), position, axis=1),
      "values": jax.lax.dynamic_update_slice_in_dim(
          cache["values"], values.astype(cache["values"].dtype), position, axis=1),
  }
  lengths = jnp.full((inputs.shape[0],), position + 1, jnp.int32)
  out = jax.nn.dot_product_attention(queries, cache["keys"], cache["values"],
                                     key_value_seq_lengths=lengths)
  return out.reshape(inputs.shape[0], -1), cache


def run(model: lm.LanguageModel, state: State, tokens: jax.Array
        ) -> tuple[jax.Array, State]:
  """`step` over tokens [B, T] in one `lax.scan`: logits [B, T, vocab], state.

  Feeds a prompt (or checks decoding against the parallel pass) without a
  Python loop per byte.
  """
  graphdef, params = nnx.split(model)

  def body(carry, column):
    logits, carry = step(nnx.merge(graphdef, params), carry, column)
    return carry, logits

  state, logits = jax.lax.scan(body, state, jnp.swapaxes(tokens, 0, 1))
  return jnp.swapaxes(logits, 0, 1), state
