"""Finding repeated examples by a key, for every modality's data checks: images by file identity
(:mod:`tunelab.vision.data._checks`), texts by normalised text (:mod:`tunelab.text._checks`). Each check
formats and reports its own findings."""

from __future__ import annotations

from collections.abc import Sequence


def first_of_each(keys: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """The index of each key's first occurrence, in order, and a ``(repeat, first)`` index pair
    for every later occurrence."""
    first: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for i, k in enumerate(keys):
        if k in first:
            repeats.append((i, first[k]))
        else:
            first[k] = i
    return list(first.values()), repeats
