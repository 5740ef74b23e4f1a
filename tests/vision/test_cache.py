import json

import pytest
import torch

import tunelab
from tunelab.config import ModelConfig
from tunelab.freezing import select, set_trainable
from tunelab.tasks import build_model
from tunelab.vision.cache import backbone_sequence, cache_key, find_boundary, run_prefix, run_prefixes, run_tail


@pytest.fixture(params=["test_efficientnet", "test_resnet"])
def model(request):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=request.param, pretrained=False), 5).eval()


def images(n=6, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_sequence_reproduces_forward_features(model):
    seq = backbone_sequence(model.backbone)
    assert seq is not None and len(seq) > 4


@pytest.mark.parametrize("train", [["head"], ["head", {"last_blocks": 1}], ["head", {"last_blocks": 2}]])
def test_prefix_then_tail_equals_the_whole_model(model, train):
    seq = backbone_sequence(model.backbone)
    set_trainable(model, select(model, train))
    b = find_boundary(model, seq)
    assert b is not None and b.pooled == (train == ["head"])
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(run_tail(model, seq, b, run_prefix(model, seq, b, x)), model(x), rtol=1e-4, atol=1e-5)


def test_one_pass_gives_every_boundary(model):
    seq = backbone_sequence(model.backbone)
    bounds = []
    for train in (["head"], ["head", {"last_blocks": 1}], ["head", {"last_blocks": 2}]):
        set_trainable(model, select(model, train))
        bounds.append(find_boundary(model, seq))
    x = images()
    with torch.no_grad():
        together = run_prefixes(model, seq, bounds, x)
        for b, h in zip(bounds, together):
            torch.testing.assert_close(h, run_prefix(model, seq, b, x), rtol=1e-5, atol=1e-6)


def test_no_boundary_when_everything_trains(model):
    set_trainable(model, select(model, ["all"]))
    assert find_boundary(model, backbone_sequence(model.backbone)) is None


def test_key_changes_with_everything_that_feeds_the_cache(model):
    seq = backbone_sequence(model.backbone)
    set_trainable(model, select(model, ["head", {"last_blocks": 1}]))
    b = find_boundary(model, seq)
    x = images()
    base = cache_key(model, seq, b, x, "none", 1, torch.float32, 0)
    assert cache_key(model, seq, b, x.clone(), "none", 1, torch.float32, 0) == base  # same inputs, same key
    x2 = x.clone()
    x2[0, 0, 0, 0] ^= 1
    assert cache_key(model, seq, b, x2, "none", 1, torch.float32, 0) != base  # one pixel of the data
    assert cache_key(model, seq, b, x, "'flip'", 2, torch.float32, 0) != base  # augmentation and views
    assert cache_key(model, seq, b, x, "none", 1, torch.bfloat16, 0) != base  # storage precision
    assert cache_key(model, seq, b, x, "none", 1, torch.float32, 0, autocast=True) != base  # bf16 compute
    set_trainable(model, select(model, ["head", {"last_blocks": 2}]))
    assert cache_key(model, seq, find_boundary(model, seq), x, "none", 1, torch.float32, 0) != base  # unfrozen set
    with torch.no_grad():
        next(seq[0][1].parameters()).mul_(1.0001)
    assert cache_key(model, seq, b, x, "none", 1, torch.float32, 0) != base  # frozen weights
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(0.01)
                break
    assert cache_key(model, seq, b, x, "none", 1, torch.float32, 0) != base  # BN statistics (buffers)


def test_one_extraction_pass_fills_both_stages_caches(tiny_cfg):
    """Stage 1's pass through the frozen prefix also caches stage 2's boundary, which stage 2 then
    finds (that cached runs train the same numbers as uncached ones: tests/engine/test_properties.py)."""
    tiny_cfg["regularization"] = {"augment": "none"}
    run = tunelab.fit(tiny_cfg)
    log = (run.dir / "log.txt").read_text()
    assert "cache: pooled features" in log and "cache: the input of" in log
    assert "the same pass cached stage 2's boundary" in log and "reused in" in log
    stages = json.loads((run.dir / "stages.json").read_text())
    assert all(v["seconds"] > 0 for v in stages.values())


def test_bf16_extraction_stays_close_to_fp32(tiny_cfg):
    tiny_cfg["regularization"] = {"augment": "none"}
    losses = {}
    for autocast in ("auto", "off"):
        tiny_cfg["run"]["name"] = f"autocast-{autocast}"
        tiny_cfg["cache"] = {"autocast": autocast}
        losses[autocast] = [r["train_loss"] for r in tunelab.fit(tiny_cfg).history]
    assert losses["auto"] == pytest.approx(losses["off"], rel=0.05)


def test_cache_policies_in_the_log(tiny_cfg):
    tiny_cfg["cache"] = {"augment": "full_network"}
    run = tunelab.fit(tiny_cfg)
    assert "cache: off in this stage (cache.augment: full_network" in (run.dir / "log.txt").read_text()
    tiny_cfg["run"]["name"] = "views"
    tiny_cfg["cache"] = {"views": 3}
    run = tunelab.fit(tiny_cfg)
    assert "3 view(s) of 80 training images" in (run.dir / "log.txt").read_text()


def test_a_stage_that_cannot_cache_says_why(tiny_cfg):
    tiny_cfg["regularization"] = {"augment": "none"}
    tiny_cfg["stages"][1]["train"] = "all"
    run = tunelab.fit(tiny_cfg)
    assert (
        "cache: off in this stage (its first backbone module (conv_stem) trains: nothing frozen before it)"
        in (run.dir / "log.txt").read_text()
    )


@pytest.mark.parametrize("arch", ["test_vit", "test_convnext"])
def test_token_and_norm_topped_models_split_too(arch):
    """A ViT (class token and position embeddings between its modules) and a ConvNeXt (its own top,
    head.norm, after the chain) cache inside the backbone, and prefix + tail equal the model."""
    model = build_model(ModelConfig(backbone=arch, pretrained=False), 5).eval()
    seq = backbone_sequence(model.backbone)
    assert seq is not None
    set_trainable(model, select(model, ["head", {"last_blocks": 2}]))
    b = find_boundary(model, seq)
    assert b is not None and 0 < b.start <= len(seq)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(run_tail(model, seq, b, run_prefix(model, seq, b, x)), model(x), rtol=1e-4, atol=1e-5)
