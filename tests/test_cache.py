import json

import pytest
import torch

import tunelab
from tunelab.cache import backbone_sequence, cache_key, find_boundary, run_prefix, run_prefixes, run_tail
from tunelab.config import ModelConfig
from tunelab.engine.store import FeatureStore
from tunelab.freezing import select, set_trainable
from tunelab.tasks import build_model


@pytest.fixture(params=["test_efficientnet", "test_resnet"])
def model(request):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=request.param, pretrained=False), 5).eval()


def images(n=6, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_sequence_reproduces_forward_features(model):
    seq = backbone_sequence(model.backbone.model)
    assert seq is not None and len(seq) > 4


@pytest.mark.parametrize("train", [["head"], ["head", {"last_blocks": 1}], ["head", {"last_blocks": 2}]])
def test_prefix_then_tail_equals_the_whole_model(model, train):
    seq = backbone_sequence(model.backbone.model)
    set_trainable(model, select(model, train))
    b = find_boundary(model, seq)
    assert b is not None and b.pooled == (train == ["head"])
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(run_tail(model, seq, b, run_prefix(model, seq, b, x)), model(x), rtol=1e-4, atol=1e-5)


def test_one_pass_gives_every_boundary(model):
    seq = backbone_sequence(model.backbone.model)
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
    assert find_boundary(model, backbone_sequence(model.backbone.model)) is None


def test_key_changes_with_everything_that_feeds_the_cache(model):
    seq = backbone_sequence(model.backbone.model)
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


def test_store_memory_and_file_roundtrip(tmp_path):
    calls = []

    def fill(t):
        calls.append(1)
        t.copy_(torch.arange(t.numel(), dtype=t.dtype).view(t.shape))

    mem = FeatureStore(tmp_path, max_memory_gb=1)
    a, hit = mem.get("k", (2, 3), torch.float32, fill)
    b, hit2 = mem.get("k", (2, 3), torch.float32, fill)
    assert not hit and hit2 and torch.equal(a, b) and len(calls) == 1
    disk = FeatureStore(tmp_path, max_memory_gb=0)
    c, hit = disk.get("d", (2, 3), torch.bfloat16, fill)
    assert not hit and (tmp_path / "d.npy").is_file() and (tmp_path / "d.done").is_file()
    d, hit = FeatureStore(tmp_path, max_memory_gb=0).get("d", (2, 3), torch.bfloat16, fill)  # another run reuses it
    assert hit and torch.equal(c, d) and d.dtype == torch.bfloat16 and len(calls) == 2


def test_incomplete_cache_file_is_recomputed(tmp_path):
    store = FeatureStore(tmp_path, max_memory_gb=0)
    (tmp_path / "k.npy").write_bytes(b"half written")  # no .done marker: a crash during extraction
    t, hit = store.get("k", (1, 2), torch.float32, lambda t: t.fill_(3))
    assert not hit and torch.equal(t, torch.full((1, 2), 3.0))


def test_cached_training_matches_uncached(tiny_cfg):
    """Without augmentation the cached stages see the same numbers as running the full network."""
    tiny_cfg["regularization"] = {"augment": "none"}
    runs = {}
    for enabled in (True, False):
        tiny_cfg["run"]["name"] = f"cache-{enabled}"
        tiny_cfg["cache"] = {"enabled": enabled, "autocast": "off"}  # fp32 both ways: equal to 1e-4
        runs[enabled] = tunelab.fit(tiny_cfg)
    for a, b in zip(runs[True].history, runs[False].history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert runs[True].metrics["test"]["accuracy"] == runs[False].metrics["test"]["accuracy"]
    log = (runs[True].dir / "log.txt").read_text()
    assert "cache: pooled features" in log and "cache: the input of" in log
    # stage 1's extraction pass also filled stage 2's cache, which stage 2 then found
    assert "the same pass cached stage 2's boundary" in log and "reused in" in log
    stages = json.loads((runs[True].dir / "stages.json").read_text())
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
