"""The cache's store and keys, for every task: prefix outputs by key, in memory or in memory-mapped
files that runs may share; digests of what a cached output depends on."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tunelab.checkpoint import partial_npy, partial_npy_path, publish_npy

log = logging.getLogger("tunelab")

__all__ = ["STORE_DTYPES", "FeatureStore", "bf16_supported", "module_digest", "tensor_digest"]


STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # cache.dtype
_NUMPY = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.float16: np.float16}  # how files hold them


def tensor_digest(h: hashlib._Hash, tensors: Sequence[torch.Tensor]) -> None:
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        if t.numel():  # the buffer itself, not a bytes copy (the decoded images can be gigabytes)
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def module_digest(h: hashlib._Hash, modules: Sequence[nn.Module]) -> None:
    """Feed each module's weights and buffers and its repr (architecture and hyper-parameters: pool
    type, strides...) to ``h``: what a frozen prefix computes depends on nothing else of it."""
    for m in modules:
        tensor_digest(h, list(m.state_dict().values()))
        h.update(repr(m).encode())


class FeatureStore:
    """Cached prefix outputs by key: in memory when they fit ``max_memory_gb``, else memory-mapped
    ``.npy`` files in ``folder`` (which may be shared between runs).

    ``lookup`` finds a finished entry; ``create`` makes room for a new one and ``commit`` marks it
    complete (a file gets its ``.done`` marker only then, so a half-written cache is never read)."""

    def __init__(self, folder: Path, max_memory_gb: float) -> None:
        self.folder, self.budget = folder, max_memory_gb * 2**30
        self.memory: dict[str, torch.Tensor] = {}
        self._open: dict[str, np.memmap] = {}

    def lookup(self, key: str, dtype: torch.dtype) -> torch.Tensor | None:
        if key in self.memory:
            return self.memory[key]
        path, done = self._npy(key), self.folder / f"{key}.done"
        if path.is_file() and done.is_file():
            try:
                arr = np.load(path, mmap_mode="c")  # copy-on-write: the file is never modified
                if arr.dtype != _NUMPY[dtype]:
                    raise ValueError(f"it holds {arr.dtype}, not {np.dtype(_NUMPY[dtype])}")
                return _from_numpy(arr, dtype)
            except (OSError, ValueError) as e:  # cut short (a full disk, a copy) or edited: computed again
                log.warning("cache: %s is damaged (%s); computing it again", path, e)
                done.unlink(missing_ok=True)
        return None

    def create(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, *, shared: bool = False) -> torch.Tensor:
        """Room for a new entry: in memory when it fits the budget, else a memory-mapped file written
        under a temporary name until :meth:`commit`. ``shared``: always a file, under a name the
        other ranks of a distributed run open with :meth:`open_partial` to write their shares."""
        nbytes = int(np.prod(shape)) * torch.finfo(dtype).bits // 8
        if nbytes <= self.budget and not shared:
            self.memory[key] = torch.empty(shape, dtype=dtype)
            return self.memory[key]
        self._open[key] = partial_npy(self._npy(key), shape, _NUMPY[dtype], shared=shared)
        return _from_numpy(self._open[key], dtype)

    def open_partial(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        """Write access to a shared entry another rank created and has not committed yet."""
        self._open[key] = np.load(partial_npy_path(self._npy(key), True), mmap_mode="r+")
        return _from_numpy(self._open[key], dtype)

    def flush(self, key: str) -> None:
        """Write this process's share to disk and let go of it (a rank that does not commit)."""
        self._open.pop(key).flush()

    def commit(self, key: str) -> None:
        """Mark an entry complete: a file is moved into place (:func:`publish_npy`), then marked done."""
        if key in self._open:
            publish_npy(self._open.pop(key), self._npy(key))
            (self.folder / f"{key}.done").write_text("ok")

    def _npy(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def get(
        self, key: str, shape: tuple[int, ...], dtype: torch.dtype, fill: Callable[[torch.Tensor], None]
    ) -> tuple[torch.Tensor, bool]:
        """The cached tensor for ``key``; on a miss, ``fill`` writes it. Returns (tensor, was_hit)."""
        found = self.lookup(key, dtype)
        if found is not None:
            return found, True
        t = self.create(key, shape, dtype)
        fill(t)
        self.commit(key)
        return t, False

    def keep_only(self, keys: set[str]) -> None:
        """Drop in-memory entries not in ``keys`` (one stage's features, and what later stages
        already got from the same pass, stay in memory)."""
        for k in [k for k in self.memory if k not in keys]:
            del self.memory[k]


def _from_numpy(arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(arr)
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA GPUs with bf16 and on CPUs with avx512_bf16 or AMX; elsewhere
    it is slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))
