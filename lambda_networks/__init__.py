"""LambdaNetworks in JAX/Flax: lambda layers, LambdaResNets, training.

Importing the package loads nothing else (JAX included), so an entry point
can set up the environment first (`native_logs.quiet()`).
"""

__all__ = ["lambda_interactions"]


def __getattr__(name: str):
  if name == "lambda_interactions":
    from lambda_networks.ops import lambda_interactions  # pylint: disable=g-import-not-at-top
    return lambda_interactions
  raise AttributeError(f"module 'lambda_networks' has no attribute {name!r}")
