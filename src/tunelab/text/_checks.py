"""Checks of labelled text files before a run, as images have them (:mod:`tunelab.vision.data._checks`):
the same text twice would put copies of training texts into validation and test. Texts count as
the same when they differ only in Unicode form (NFKC), case or whitespace."""

from __future__ import annotations

import logging
import unicodedata

import numpy as np

from tunelab.duplicates import first_of_each
from tunelab.errors import DataError
from tunelab.objectives import label_text
from tunelab.text._sources import TextSource

log = logging.getLogger("tunelab")


def text_key(text: str, pair: str | None = None) -> str:
    """What two texts share when they are the same text: NFKC form, case folded, whitespace runs
    as one space (a pair: both of its texts)."""
    key = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return key if pair is None else f"{key}\x00{text_key(pair)}"


def _keys(src: TextSource) -> list[str]:
    return [text_key(t, None if src.pairs is None else src.pairs[i]) for i, t in enumerate(src.texts)]


def _subset(src: TextSource, keep: list[int]) -> TextSource:
    pairs = None if src.pairs is None else [src.pairs[i] for i in keep]
    return TextSource(src.name, [src.texts[i] for i in keep], pairs, src.labels[keep], src.classes, [src.items[i] for i in keep])


def drop_duplicates(src: TextSource, field: str) -> TextSource:
    """``src`` with every text once (its first row kept), the duplicates reported in the log, those
    whose label differs from the kept row's named as such."""
    keep, repeats = first_of_each(_keys(src))
    pairs = [f"{src.items[i]} = {src.items[j]}{_clash(src, i, j)}" for i, j in repeats]
    clashes = sum(int(not np.array_equal(src.labels[i], src.labels[j])) for i, j in repeats)
    if not pairs:
        return src
    shown = pairs[:10] + (["..."] if len(pairs) > 10 else [])
    conflict = (
        f"; {clashes} of them with another label than the kept row: check those labels, the first is kept" if clashes else ""
    )
    log.warning(
        "data.%s (%s): %d duplicate text(s) removed (the same text up to case, whitespace and Unicode form), "
        "so that no copy of a training text is validated or tested on; the first row of each is kept%s:\n  %s",
        field,
        src.name,
        len(pairs),
        conflict,
        "\n  ".join(shown),
    )
    return _subset(src, keep)


def _clash(src: TextSource, i: int, j: int) -> str:
    if np.array_equal(src.labels[i], src.labels[j]):
        return ""
    return f" (labelled {label_text(src.labels[j], src.classes)} there, {label_text(src.labels[i], src.classes)} here)"


def drop_overlap(test: TextSource, train: TextSource) -> TextSource:
    """``test`` without the texts the training source also has (reported in the log)."""
    seen = set(_keys(train))
    keys = _keys(test)
    keep = [i for i, k in enumerate(keys) if k not in seen]
    if len(keep) == len(keys):
        return test
    if not keep:
        raise DataError(
            f"data.test ({test.name}): every text is also in the training data ({train.name}); a test set "
            "must hold texts the model never trained on"
        )
    dropped = [test.items[i] for i, k in enumerate(keys) if k in seen]
    log.warning(
        "data.test (%s): %d text(s) also in the training data (%s) removed from the test set: %s",
        test.name,
        len(dropped),
        train.name,
        ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
    )
    return _subset(test, keep)
