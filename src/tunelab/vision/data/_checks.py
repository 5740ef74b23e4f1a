"""Checks of labelled image files before a run: the same image twice (one path listed twice, or the
same bytes under another name) would put copies of training images into validation and test."""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from pathlib import Path

import numpy as np

from tunelab.checkpoint import file_sha256
from tunelab.duplicates import first_of_each
from tunelab.errors import DataError
from tunelab.objectives import label_text
from tunelab.vision.data._sources import FileSource

log = logging.getLogger("tunelab")


def identities(paths: list[Path]) -> list[str]:
    """One string per file, equal for files that are the same image: the real path, or the content
    hash for files whose size another file has (only those are read, so a folder of differently
    sized photos costs a stat per file)."""
    real = [os.path.realpath(p) for p in paths]
    sizes: dict[str, int] = {}
    for r in dict.fromkeys(real):
        try:
            st = os.stat(r)
        except (OSError, ValueError):  # missing or unreadable: decoding reports it
            continue
        if stat.S_ISREG(st.st_mode):  # never read a FIFO (blocks) or a device (/dev/zero never ends): decoding reports them
            sizes[r] = st.st_size
    shared = {n for n, c in Counter(sizes.values()).items() if c > 1}
    ident = {r: r for r in real}
    for r, n in sizes.items():
        if n in shared:
            ident[r] = f"sha256:{file_sha256(r)}"
    return [ident[r] for r in real]


def drop_duplicates(src: FileSource, field: str) -> FileSource:
    """``src`` with every image once (its first row kept), the duplicates reported in the log."""
    keep, repeats = first_of_each(identities(src.paths))
    pairs = [f"{src.paths[i]} = {src.paths[j]}{_clash(src, i, j)}" for i, j in repeats]
    if not pairs:
        return src
    shown = pairs[:10] + (["..."] if len(pairs) > 10 else [])
    log.warning(
        "data.%s (%s): %d duplicate image(s) removed (the same file listed twice, or the same bytes under "
        "another name), so that no copy of a training image is validated or tested on; the first row of "
        "each is kept:\n  %s",
        field,
        src.name,
        len(pairs),
        "\n  ".join(shown),
    )
    return FileSource(src.name, [src.paths[i] for i in keep], src.labels[keep], src.classes)


def _clash(src: FileSource, i: int, j: int) -> str:
    a, b = src.labels[j], src.labels[i]
    return f" ({label_text(a, src.classes)} and {label_text(b, src.classes)})" if not np.array_equal(a, b) else ""


def drop_overlap(test: FileSource, train: FileSource) -> FileSource:
    """``test`` without the images the training source also has (reported in the log)."""
    ids = identities(train.paths + test.paths)
    seen = set(ids[: len(train.paths)])
    keep = [i for i, k in enumerate(ids[len(train.paths) :]) if k not in seen]
    if len(keep) == len(test.paths):
        return test
    if not keep:
        raise DataError(
            f"data.test ({test.name}): every image is also in the training data ({train.name}); a test set "
            "must hold images the model never trained on"
        )
    log.warning(
        "data.test (%s): %d image(s) also in the training data (%s) removed from the test set",
        test.name,
        len(test.paths) - len(keep),
        train.name,
    )
    return FileSource(test.name, [test.paths[i] for i in keep], test.labels[keep], test.classes)
