import torch
from torch import nn

from tunelab.config import HeadConfig
from tunelab.heads import Head


def test_pooled_features_skip_pooling():
    h = Head(HeadConfig(), 16, 3)
    assert isinstance(h.pool, nn.Identity) and h(torch.randn(2, 16)).shape == (2, 3)
