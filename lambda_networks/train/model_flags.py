"""`--config.model_overrides.<field>=<value>` for every field of the model's config.

ml_collections can only override fields a config file lists, and it keeps the
type of the listed value (a file listing receptive_field=23 cannot take
"global"). So these flags are taken out of argv before absl parses it and
applied afterwards, typed by the model's own config class
(`ResNetConfig` / `EfficientNetConfig`), whatever the config file lists:

    --config.model_overrides.width_multiplier=0.25
    --config.model_overrides.receptive_field=7 | global | none
    --config.model_overrides.stage_depths=(1,1,1,1)

`none` sets the field to None (e.g. content-only lambdas); in a config file a
None value means "keep the model's default" and the string "none" sets None.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

import ml_collections

from lambda_networks import models

PREFIX = "--config.model_overrides."
# How an explicit None travels in a config (None itself means "model default").
NONE = "none"


class ModelFlagError(ValueError):
  """A model override that names no field or has a value of the wrong type."""


def extract(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Splits argv into (the rest, [(field, text)] of the model overrides)."""
  rest, pairs = [], []
  args = iter(argv)
  for arg in args:
    if arg.startswith(PREFIX):
      name, equals, text = arg[len(PREFIX):].partition("=")
      if not equals:
        text = next(args, "")  # "--flag value" form.
      pairs.append((name, text))
    else:
      rest.append(arg)
  return rest, pairs


def apply(config: ml_collections.ConfigDict,
          pairs: list[tuple[str, str]]) -> None:
  """Sets config.model_overrides from `pairs`, typed by config.model's fields.

  Raises:
    ModelFlagError: naming the field and the valid fields or expected type.
  """
  if not pairs:
    return
  model_config = models.get_spec(config.model).config  # Raises for bad names.
  fields = {field.name: field for field in dataclasses.fields(model_config)}
  overrides = dict(config.model_overrides.to_dict())
  for name, text in pairs:
    if name not in fields:
      raise ModelFlagError(
          f"--config.model_overrides.{name}: {config.model!r} "
          f"({type(model_config).__name__}) has no field {name!r}. Valid "
          f"fields: {', '.join(fields)}.")
    overrides[name] = parse_value(name, text, str(fields[name].type))
  given = {k: (None if v == NONE else v) for k, v in overrides.items()
           if v is not None}
  try:
    models.get_config(config.model, **given)  # The model's own checks.
  except (ValueError, TypeError) as error:
    raise ModelFlagError(f"--config.model_overrides: {error}") from None
  with config.unlocked():
    config.model_overrides = ml_collections.ConfigDict(overrides)


def parse_value(name: str, text: str, annotation: str) -> Any:
  """Parses `text` as the type `annotation` names (e.g. 'int | str | None')."""
  kinds = _split_union(annotation)
  if text.strip().lower() in ("none", "null"):
    if "None" in kinds or "Any" in kinds:
      return NONE
    raise ModelFlagError(f"--config.model_overrides.{name} cannot be None "
                         f"(type {annotation}).")
  value = _literal(text)
  for kind in kinds:
    converted = _convert(value, text, kind)
    if converted is not _NO:
      return converted
  raise ModelFlagError(
      f"--config.model_overrides.{name}={text!r} is not a {annotation}.")


_NO = object()


def _literal(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    return text.strip()


def _convert(value: Any, text: str, kind: str) -> Any:
  """`value` as `kind`, or _NO when it is not one."""
  if kind in ("Any", "jnp.dtype"):
    return value if not isinstance(value, (list, tuple)) else tuple(value)
  if kind == "bool":
    return value if isinstance(value, bool) else _NO
  if kind == "int":
    return value if isinstance(value, int) and not isinstance(value, bool) else _NO
  if kind == "float":
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    return _NO
  if kind == "str":
    if isinstance(value, (list, tuple)):
      return _NO
    return value if isinstance(value, str) else text.strip()
  if kind.startswith("tuple[") and isinstance(value, (list, tuple)):
    inner = _split_union(kind[len("tuple["):-1].split(",")[0])
    items = []
    for item in value:
      for item_kind in inner:
        converted = (None if item is None and item_kind == "None"
                     else _convert(item, str(item), item_kind))
        if converted is not _NO and (converted is not None or item is None):
          items.append(converted)
          break
      else:
        return _NO
    return tuple(items)
  return _NO


def _split_union(annotation: str) -> list[str]:
  """'tuple[int | None, ...] | None' -> ['tuple[int | None, ...]', 'None']."""
  parts, depth, current = [], 0, ""
  for char in annotation:
    depth += char == "["
    depth -= char == "]"
    if char == "|" and depth == 0:
      parts.append(current.strip())
      current = ""
    else:
      current += char
  parts.append(current.strip())
  return parts
