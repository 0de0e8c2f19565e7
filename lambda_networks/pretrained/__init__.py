"""Pretrained weights from outside: timm's ImageNet-trained lambda ResNets.

    from lambda_networks import pretrained
    model, preprocessing = pretrained.load_timm("lambda_resnet26t",
                                                "model.safetensors")

`model` is our registry model (eval mode) holding timm's weights and batch
statistics; it takes NHWC float32 images scaled to [0, 1] and normalised by
`preprocessing.mean` / `.std`, resized and centre-cropped as
`preprocessing` says (timm's pretrained config, kept as data).
"""

from lambda_networks.pretrained.timm_files import read_tensors
from lambda_networks.pretrained.timm_models import TIMM_MODELS
from lambda_networks.pretrained.timm_models import Preprocessing
from lambda_networks.pretrained.timm_models import TimmModel
from lambda_networks.pretrained.timm_resnet import Pretrained
from lambda_networks.pretrained.timm_resnet import load_timm
from lambda_networks.pretrained.timm_resnet import timm_to_model

__all__ = [
    "TIMM_MODELS",
    "Preprocessing",
    "Pretrained",
    "TimmModel",
    "load_timm",
    "read_tensors",
    "timm_to_model",
]
