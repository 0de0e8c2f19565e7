"""Model zoo: ResNets, lambda ResNets, the LambdaResNet family, EfficientNets."""

from lambda_networks.models.common import count_parameters
from lambda_networks.models.efficientnet import EfficientNet, EfficientNetConfig
from lambda_networks.models.registry import available_models
from lambda_networks.models.registry import get_config
from lambda_networks.models.registry import get_model
from lambda_networks.models.registry import get_spec
from lambda_networks.models.resnet import FeatureInfo, ResNet, ResNetConfig

__all__ = [
    "EfficientNet",
    "EfficientNetConfig",
    "FeatureInfo",
    "ResNet",
    "ResNetConfig",
    "available_models",
    "count_parameters",
    "get_config",
    "get_model",
    "get_spec",
]
