"""LambdaNetworks in JAX/Flax: lambda layers, LambdaResNets, training."""

from lambda_networks.ops import lambda_interactions

__all__ = ["lambda_interactions"]
