"""The image head: timm's adaptive pooling of a feature map, then the configured head."""

import torch
from torch import nn

from tunelab.config import HeadConfig
from tunelab.vision.model import image_head


def kinds(head):
    return [type(m).__name__ for m in [head.pool, head.drop, *head.hidden, head.fc]]


def test_gap_dense1024_dropout_head():
    h = image_head(
        HeadConfig(pooling="avg", hidden=[{"units": 1024, "activation": "relu", "dropout": 0.5}]), 32, 7, feature_map=True
    )
    assert kinds(h) == ["SelectAdaptivePool2d", "Identity", "Linear", "ReLU", "Dropout", "Linear"]
    assert h.hidden[0].out_features == 1024 and h.fc.out_features == 7
    assert h(torch.randn(2, 32, 5, 5)).shape == (2, 7)


def test_gap_dropout_dense128_dropout_head():
    h = image_head(HeadConfig(dropout=0.5, hidden=[{"units": 128, "dropout": 0.5}]), 32, 4, feature_map=True)
    assert kinds(h) == ["SelectAdaptivePool2d", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert h.drop.p == 0.5 and h.hidden[2].p == 0.5


def test_catavgmax_pooling_doubles_width_and_batchnorm_option():
    h = image_head(HeadConfig(pooling="catavgmax", hidden=[{"units": 8, "batch_norm": True}]), 16, 3, feature_map=True)
    assert h.hidden[0].in_features == 32 and isinstance(h.hidden[1], nn.BatchNorm1d)
    assert h.hidden[0].bias is None  # BN follows, a bias would be redundant
    h.eval()
    assert h(torch.randn(2, 16, 3, 3)).shape == (2, 3)


def test_spatial_dropout_before_pooling():
    h = image_head(HeadConfig(spatial_dropout=0.2), 16, 3, feature_map=True)
    assert isinstance(h.spatial_drop, nn.Dropout2d) and h.spatial_drop.p == 0.2
    h.train()
    torch.manual_seed(0)
    x = torch.ones(4, 16, 3, 3)
    dropped = h.spatial_drop(x)
    assert ((dropped == 0).all(-1).all(-1) | (dropped > 0).all(-1).all(-1)).all()  # whole channels
