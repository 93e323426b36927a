"""Model families, each built from a plain config dict (see `kmnist.trainer.params`)."""

from typing import Any

from torch import nn

from kmnist.trainer.models.cnn import N_CLASSES, deep_cnn, starter_cnn
from kmnist.trainer.models.knn import KNNClassifier
from kmnist.trainer.models.resnet import resnet

NETWORK_BUILDERS = {"cnn": starter_cnn, "deep_cnn": deep_cnn, "resnet": resnet}


def build_network(config: dict[str, Any]) -> nn.Module:
    return NETWORK_BUILDERS[config["model"]](config)


__all__ = ["NETWORK_BUILDERS", "N_CLASSES", "KNNClassifier", "build_network"]
