"""Argument and input checks of the layers, each naming the argument at fault.

Each raises a ValueError (a TypeError for a value of the wrong type) whose
message says what is wrong and what would be right.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp


def positive(**sizes) -> None:
  """Each size must be an int ≥ 1 (None, an unset default, passes)."""
  for name, value in sizes.items():
    if value is None:
      continue
    try:
      value = operator.index(value)
    except TypeError:
      raise TypeError(f"{name} must be an int, got {value!r}.") from None
    if value < 1:
      raise ValueError(f"{name} must be at least 1, got {value}.")


def divisible(heads: int, **features) -> None:
  """Each feature count must split evenly across the heads."""
  for name, value in features.items():
    if value % heads:
      raise ValueError(
          f"{name} ({value}) must be divisible by heads ({heads}): the depth "
          f"per head is {name} / heads.")


def odd(name: str, value, alternatives: str = "") -> None:
  """value must be an odd int ≥ 1, so a window of that width is centred.

  A value of another type (the string "23", a float) is a TypeError that
  says so, rather than being called "not odd".
  """
  try:
    number = None if isinstance(value, bool) else operator.index(value)
  except TypeError:
    number = None
  if number is None:
    kind = ("the string" if isinstance(value, str)
            else f"a {type(value).__name__}")
    hint = (f"; pass {value.strip()} without quotes"
            if isinstance(value, str) and value.strip().isdigit() else "")
    raise TypeError(f"{name} must be an int{alternatives}, got {kind} "
                    f"{value!r}{hint}.")
  if number < 1 or number % 2 == 0:
    raise ValueError(
        f"{name} must be odd and positive so it is centred on the query"
        f"{alternatives}, got {value!r}"
        + (f"; use {number - 1} or {number + 1}." if number > 1 and number % 2 == 0
           else "."))


def one_of(name: str, value, choices: tuple) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def layout(spatial_dims: int, causal: bool) -> None:
  one_of("spatial_dims", spatial_dims, (1, 2))
  if causal and spatial_dims != 1:
    raise ValueError("causal=True needs spatial_dims=1 (sequences [B, N, C]).")


def spatial_sizes(input_size, spatial_dims: int, who: str) -> tuple[int, ...]:
  """Normalises input_size to one positive int per spatial axis."""
  if input_size is None:
    raise ValueError(
        f"{who} needs input_size (the largest spatial size the layer sees) to "
        "size its relative position tables of 2·size − 1 offsets per axis."
    )
  sizes = ((input_size,) * spatial_dims if isinstance(input_size, int)
           else tuple(input_size))
  if len(sizes) != spatial_dims or min(sizes) < 1:
    raise ValueError(
        f"input_size must be a positive int or {spatial_dims} positive ints, "
        f"got {input_size!r}."
    )
  return sizes


def array_input(inputs, layout: str, name: str = "inputs") -> None:
  """Refuses what is not an array (a Python list, a tuple) with the layout it needs.

  Converting silently would hide a list of images of different sizes, or a
  batch built on the host by mistake; `jnp.asarray` is one call away.
  """
  if not (hasattr(inputs, "ndim") and hasattr(inputs, "shape")
          and hasattr(inputs, "dtype")):
    raise TypeError(
        f"{name} must be an array of shape {layout}, got a "
        f"{type(inputs).__name__}; convert it first, e.g. "
        f"{name}=jnp.asarray({name}, jnp.float32).")


def prepare_input(inputs: jax.Array, in_features: int, spatial_dims: int,
                  dtype, max_size: tuple[int, ...] | None = None,
                  who: str = "") -> tuple[jax.Array, tuple[int, ...]]:
  """Checks [B, *S, C] floats with S ≤ max_size; returns them cast, and their shape."""
  array_input(inputs, "[B, N, C]" if spatial_dims == 1 else "[B, H, W, C]")
  if not jnp.issubdtype(jnp.asarray(inputs).dtype, jnp.floating):
    raise TypeError(
        f"inputs must be floating point, got {jnp.asarray(inputs).dtype}; cast "
        "them (e.g. images.astype(jnp.float32)) first.")
  if inputs.ndim != spatial_dims + 2:
    layout = "[B, N, C]" if spatial_dims == 1 else "[B, H, W, C]"
    raise ValueError(
        f"inputs must have rank {spatial_dims + 2} {layout} for spatial_dims="
        f"{spatial_dims}, got shape {inputs.shape}."
    )
  if inputs.shape[-1] != in_features:
    raise ValueError(
        f"inputs have {inputs.shape[-1]} channels, the layer expects "
        f"in_features={in_features}."
    )
  if 0 in inputs.shape:
    raise ValueError(
        f"inputs have an empty axis, shape {inputs.shape}; the batch and every "
        "spatial axis need at least one element.")
  spatial = inputs.shape[1:-1]
  if max_size is not None and any(s > m for s, m in zip(spatial, max_size)):
    raise ValueError(
        f"input spatial shape {tuple(spatial)} exceeds input_size {max_size} "
        f"of this {who} layer; build it with a larger input_size."
    )
  return (inputs if dtype is None else inputs.astype(dtype)), inputs.shape
