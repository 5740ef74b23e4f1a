"""Decoded images kept as memory-mapped files, so that a data set is decoded once across runs.

With ``data.decode_cache: FOLDER`` the uint8 arrays at the working resolution are written to
``FOLDER/<key>.npy`` while decoding (chunk by chunk: memory does not grow with the data set) and
memory-mapped by later runs. The key covers the source, which items, each file's size and
modification time (or the array bytes of a built-in set), the resolution, the bad-image policy and
the decoder's version;
a ``.done`` marker is written last, so a half-written file is never read, and a finished file
damaged later (cut short by a full disk or a copy) is decoded again with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from tunelab.checkpoint import atomic_write_text, partial_npy, publish_npy
from tunelab.vision.data._decode import DECODER_VERSION
from tunelab.vision.data._sources import ArraySource, FileSource

log = logging.getLogger("tunelab")

CHUNK = 512  # images decoded per write


def decode_key(src: ArraySource | FileSource, idx: np.ndarray, size: int, on_bad: str) -> str:
    h = hashlib.sha256(repr((src.name, size, on_bad, len(idx), DECODER_VERSION)).encode())
    h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    if isinstance(src, FileSource):
        for i in idx:
            st = os.stat(src.paths[i])
            h.update(f"{src.paths[i]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        h.update(np.ascontiguousarray(src.images[idx]).tobytes())
    return h.hexdigest()[:24]


def load_decoded(
    src: ArraySource | FileSource, idx: np.ndarray, size: int, on_bad: str, folder: Path
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Like ``src.load_many`` (images, kept indices, skipped files), through the file store. A stored
    file that cannot be read as it was written (cut short by a full disk or a copy, edited) is
    decoded again, with a warning."""
    key = decode_key(src, idx, size, on_bad)
    npy, meta_path, done = folder / f"{key}.npy", folder / f"{key}.json", folder / f"{key}.done"
    if done.is_file():
        try:
            found = _read(npy, meta_path, (len(idx), 3, size, size))
            log.info("decoded images: memory-mapped from %s", npy)
            return found
        except (OSError, ValueError, KeyError, TypeError) as e:  # json's errors are ValueErrors
            log.warning("decoded images: %s is damaged (%s); decoding the images again", npy, e)
            done.unlink(missing_ok=True)
    _decode_into(src, idx, size, on_bad, npy, meta_path)
    done.write_text("ok")
    return _read(npy, meta_path, (len(idx), 3, size, size))


def _read(npy: Path, meta_path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """A stored file and its record of kept items, checked against each other and the shape asked for."""
    meta = json.loads(meta_path.read_text())
    arr = np.load(npy, mmap_mode="c")  # copy-on-write: the file is never modified; no pickles (allow_pickle=False)
    if arr.dtype != np.uint8 or arr.shape != shape:
        raise ValueError(f"it holds {arr.dtype} {arr.shape}, not uint8 {shape}")
    n, kept = int(meta["n"]), np.asarray(meta["kept"], dtype=np.int64)
    if len(kept) != n or n > shape[0]:
        raise ValueError(f"{meta_path.name} lists {len(kept)} kept images of {n}")
    return torch.from_numpy(arr[:n]), kept, [str(s) for s in meta["skipped"]]


def _decode_into(src: ArraySource | FileSource, idx: np.ndarray, size: int, on_bad: str, npy: Path, meta_path: Path) -> None:
    """Decode chunk by chunk into a memory-mapped ``npy`` (under a temporary name until complete:
    processes decoding the same data at once never truncate each other's file); which items were
    kept goes to ``meta_path``."""
    t0 = time.perf_counter()
    arr = partial_npy(npy, (len(idx), 3, size, size), np.uint8)
    kept: list[np.ndarray] = []
    skipped: list[str] = []
    n = 0
    for start in range(0, len(idx), CHUNK):
        images, k, bad = src.load_many(idx[start : start + CHUNK], size, on_bad)
        arr[n : n + len(k)] = images.numpy()
        n += len(k)
        kept.append(k)
        skipped += bad
    publish_npy(arr, npy)
    all_kept = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
    atomic_write_text(meta_path, json.dumps({"n": n, "kept": all_kept.tolist(), "skipped": skipped, "size": size}))
    log.info("decoded images: %d into %s in %.1f s", n, npy, time.perf_counter() - t0)
