"""Every mainstream timm family, one table: random weights, tiny images, a two-stage fit (the head,
then ``last_blocks: 2``). For each family: the layer table counts what runs, the default features
are timm's own pre-logits, both stages cache (stage 2 at a split inside the backbone), the cached
run trains the same numbers as the uncached one, and every trainable parameter gets a gradient.

A new family joins by adding a row to ``FAMILIES``; the whole table takes about 2.5 minutes on one
CPU thread, 1.5 without the row marked slow.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import timm
import torch

import tunelab
from conftest import TINY
from tunelab.config import ModelConfig
from tunelab.vision.model import build_image_model
from watch import Watch, assert_trains_the_same, fit_uncached

# (timm name, image size). ViT/DeiT/EVA/Swin are resized by timm, LeViT is built for the size; Swin
# at 64 px, as at 32 its last stage is one token (softmax over one key: a zero gradient to its biases)
FAMILIES = [
    ("resnet18", 32),
    ("regnety_002", 32),
    ("efficientnet_b0", 32),
    ("mobilenetv2_050", 32),
    ("mobilenetv3_small_050", 32),
    ("ghostnet_050", 32),
    ("efficientvit_b0", 32),
    ("mobilevit_xxs", 32),
    ("fastvit_t8", 32),
    ("convnext_atto", 32),
    ("vit_tiny_patch16_224", 32),
    ("deit_tiny_patch16_224", 32),
    ("eva02_tiny_patch14_224", 28),
    ("levit_128s", 32),
    ("densenet121", 32),
    ("swin_tiny_patch4_window7_224", 64),
    pytest.param("vgg11", 32, marks=pytest.mark.slow),  # 133 M parameters, 120 M of them in its top: a minute
]


def _cfg(arch: str, size: int, tmp_path: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp_path / "runs"), baselines=False)
    cfg["data"].update(
        image_size=size,
        samples_per_class=2,
        val_samples_per_class=2,
        test_samples_per_class=2,
        refit="never",
        evaluate_test=False,
    )
    cfg["model"]["backbone"] = arch
    cfg["regularization"] = {"augment": "none"}  # augmented views would differ between the two runs
    # SGD: its step is linear in the gradient, so float rounding stays rounding (Adam's first step is
    # lr * sign(gradient), which turns rounding noise on a near-zero gradient into a whole step)
    cfg["stages"] = [
        {"name": "head", "train": "head", "epochs": 1, "lr": 0.05, "optimizer": "sgd"},
        {"name": "top", "train": ["head", {"last_blocks": 2}], "epochs": 1, "lr": 0.01, "optimizer": "sgd"},
    ]
    cfg["cache"] = {"enabled": True, "autocast": "off"}  # fp32 both ways: equal to 1e-4
    return cfg


def _timm_reference(arch: str, size: int, model: Any) -> Any:
    """A plain timm model with the backbone's weights, resized the way timm resizes it."""
    if hasattr(timm.create_model(arch, pretrained=False), "set_input_size"):
        ref = timm.create_model(arch, pretrained=False, num_classes=0)
        if ref.pretrained_cfg.get("fixed_input_size"):
            ref.set_input_size(img_size=(size, size))
    else:
        fixed = timm.get_pretrained_cfg(arch)
        kwargs = {"img_size": size} if fixed is not None and fixed.fixed_input_size else {}
        ref = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    missing, unexpected = ref.load_state_dict(model.backbone.model.state_dict(), strict=False)
    assert not unexpected and not [k for k in missing if "attention_bias_idxs" not in k], (missing, unexpected)
    return ref.eval()


@pytest.mark.parametrize(("arch", "size"), FAMILIES)
def test_default_features_are_timm_pre_logits(arch, size):
    torch.manual_seed(0)
    model = build_image_model(ModelConfig(backbone=arch, pretrained=False), 3, image_size=size).eval()
    ref = _timm_reference(arch, size, model)
    x = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        ours = model.head.pool(model.forward_features(x))
        theirs = ref.forward_head(ref.forward_features(model.normalize(x)), pre_logits=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert model.backbone.left_out == []  # the model's own top runs whole


@pytest.mark.parametrize(("arch", "size"), FAMILIES)
def test_two_stage_fit_caches_and_matches_the_uncached_run(arch, size, tmp_path):
    cfg = _cfg(arch, size, tmp_path)
    watch = Watch()
    cached = tunelab.fit(cfg, hooks=watch.hooks())
    log = (cached.dir / "log.txt").read_text()

    # the layer table counts exactly the model's parameters (nothing that never runs)
    total = sum(p.numel() for p in cached.model.parameters())
    assert f"total {total:,} parameters" in tunelab.summary(cached.dir / "config.yaml")
    # last_blocks: 2 is the last two of timm's groups, whatever their names (Swin's are layers.N)
    groups = [names for label, names in cached.model.groups() if label.startswith("backbone.")]
    assert watch.trainable[1] - {n for n in watch.trainable[1] if n.startswith("head.")} == set(groups[-2] + groups[-1])
    # both stages cached: pooled features, then a split inside the backbone
    assert "cache: pooled features" in log
    split = re.search(r"cache: the input of \S+ \((\d+) of (\d+) backbone modules frozen\)|cache: the last feature map", log)
    assert split is not None, [line for line in log.splitlines() if "cache" in line]
    # every parameter a stage trains got a gradient, and what it froze stayed as it was
    for stage, names in watch.trainable.items():
        assert names - watch.reached[stage] == set(), f"stage {stage + 1}: no gradient reached these"
        # LeViT's attention biases get a zero gradient at random init, cached or not, at any size
        zero = {n for n in names - watch.graded[stage] if not (arch.startswith("levit") and "attention_biases" in n)}
        assert zero == set(), f"stage {stage + 1}: these got a zero gradient"
        assert not watch.frozen_changed[stage], f"stage {stage + 1} changed frozen tensors"

    assert_trains_the_same(cached, fit_uncached(cfg))
