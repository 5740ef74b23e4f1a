"""The feature store: cached prefix outputs in memory or in memory-mapped files runs can share."""

import torch

from tunelab.engine.store import FeatureStore


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


def test_a_finished_cache_file_cut_short_or_of_another_dtype_is_recomputed_with_a_warning(tmp_path, caplog):
    """Was: a ValueError traceback (mmap length is greater than file size) for a file cut short by a
    full disk or a copy, with its .done marker in place."""
    fill = lambda t: t.copy_(torch.arange(t.numel(), dtype=t.dtype).view(t.shape))  # noqa: E731
    ref, _ = FeatureStore(tmp_path, max_memory_gb=0).get("k", (64, 32), torch.float32, fill)
    ref = ref.clone()
    npy = tmp_path / "k.npy"
    npy.write_bytes(npy.read_bytes()[:3000])  # the header and part of the data
    t, hit = FeatureStore(tmp_path, max_memory_gb=0).get("k", (64, 32), torch.float32, fill)
    assert not hit and torch.equal(t, ref) and f"cache: {npy} is damaged" in caplog.text
    again, hit = FeatureStore(tmp_path, max_memory_gb=0).get("k", (64, 32), torch.float32, fill)
    assert hit and torch.equal(again, ref)  # the rewritten file is whole
    b, hit = FeatureStore(tmp_path, max_memory_gb=0).get("k", (64, 32), torch.bfloat16, fill)
    assert not hit and "it holds float32, not uint16" in caplog.text and b.dtype == torch.bfloat16
