"""Freeze-boundary cache: compute what the frozen part of the network outputs once, then train only
what is trainable.

A stage that trains the head alone trains it on cached pooled features; a stage that trains the
last N blocks caches the activations at the input of the first trainable block and runs only the
trainable tail. The cache key covers everything that feeds it: the frozen weights and buffers, where
the boundary is, the images (their bytes), the augmentation and view count, and the precision. Any
change gives another key, so a stale cache is never used.

Random augmentation and a cache conflict; ``cache.views: K`` extracts K augmented views of every
image (K passes) and epochs cycle through them; ``cache.augment: full_network`` instead runs the
whole network in stages that augment.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tunelab.engine.store import module_digest, tensor_digest
from tunelab.vision.backbones.sequence import backbone_sequence, split_backbone

if TYPE_CHECKING:
    from tunelab.vision.model import TuneModel

log = logging.getLogger("tunelab")

__all__ = [
    "Boundary",
    "backbone_sequence",
    "cache_key",
    "cache_keys",
    "find_boundary",
    "run_prefix",
    "run_prefixes",
    "run_tail",
    "split_backbone",
    "why_no_boundary",
]


@dataclass
class Boundary:
    """Where a stage's frozen prefix ends. ``start`` indexes the backbone sequence; ``pooled`` means
    the whole backbone and the head's pooling are frozen, so pooled features are cached."""

    start: int
    pooled: bool

    def describe(self, seq: list[tuple[str, nn.Module]]) -> str:
        if self.pooled:
            return "pooled features (the whole backbone is frozen)"
        if self.start == len(seq):
            return f"the last feature map ({len(seq)} of {len(seq)} backbone modules frozen; the model's top trains)"
        return f"the input of {seq[self.start][0]} ({self.start} of {len(seq)} backbone modules frozen)"


def find_boundary(
    model: TuneModel, seq: list[tuple[str, nn.Module]] | None, trainable: set[str] | None = None
) -> Boundary | None:
    """The freeze boundary of the parameters named in ``trainable`` (default: those with
    ``requires_grad``), or None when nothing before the trainable part can be cached."""
    return _boundary(model, seq, trainable)[0]


def why_no_boundary(model: TuneModel, seq: list[tuple[str, nn.Module]] | None, split_note: str = "") -> str:
    """Why :func:`find_boundary` finds none for the current trainable set (for the log);
    ``split_note`` says why the backbone has no chain, when it has none."""
    return _boundary(model, seq, None, split_note)[1]


def _boundary(
    model: TuneModel, seq: list[tuple[str, nn.Module]] | None, trainable: set[str] | None, split_note: str = ""
) -> tuple[Boundary | None, str]:
    names = trainable if trainable is not None else {n for n, p in model.named_parameters() if p.requires_grad}
    trains = {id(p) for n, p in model.named_parameters() if n in names}

    def any_trains(m: nn.Module) -> bool:
        return any(id(p) in trains for p in m.parameters())

    head = model.head
    if not any_trains(model.backbone):
        if not any_trains(head.pool) and isinstance(head.spatial_drop, nn.Identity):
            return Boundary(len(seq) if seq else 0, pooled=True), ""
        if seq is None:
            return None, f"the backbone is not split: {split_note or 'no chain of modules'}"
        return Boundary(len(seq), pooled=False), ""
    if seq is None:
        return None, f"part of the backbone trains and it is not split: {split_note or 'no chain of modules'}"
    # the modules after the chain (the model's own top: final norm, conv_head) always run in the tail
    start = next((i for i, (_, m) in enumerate(seq) if any_trains(m)), len(seq))
    if start == 0:
        return None, f"its first backbone module ({seq[0][0]}) trains: nothing frozen before it"
    return Boundary(start, pooled=False), ""


def run_prefix(model: TuneModel, seq: list[tuple[str, nn.Module]] | None, boundary: Boundary, x: torch.Tensor) -> torch.Tensor:
    """The frozen prefix of ``model`` on (normalised later) images ``x``."""
    return run_prefixes(model, seq, [boundary], x)[0]


def run_prefixes(
    model: TuneModel, seq: list[tuple[str, nn.Module]] | None, boundaries: Sequence[Boundary], x: torch.Tensor
) -> list[torch.Tensor]:
    """The outputs at several boundaries from one pass through the network: a stage's own boundary
    and a later stage's deeper or shallower one cost one extraction instead of two."""
    if len(boundaries) == 1 and boundaries[0].pooled:
        return [model.head.pool(model.forward_features(x))]
    if seq is None:
        raise ValueError("several or mid-network boundaries need a split backbone sequence")
    ends = {len(seq) if b.pooled else b.start for b in boundaries}
    at: dict[int, torch.Tensor] = {}
    h = model.normalize(x)
    for i, (_, m) in enumerate(seq[: max(ends)]):
        if i in ends:
            at[i] = h
        h = m(h)
    at[max(ends)] = h
    return [model.head.pool(model.backbone.top(at[len(seq)])) if b.pooled else at[b.start] for b in boundaries]


def run_tail(model: TuneModel, seq: list[tuple[str, nn.Module]] | None, boundary: Boundary, h: torch.Tensor) -> torch.Tensor:
    """The trainable rest of ``model`` on cached prefix outputs ``h``: logits."""
    if boundary.pooled:
        head = model.head
        return head.out(head.fc(head.hidden(head.drop(h))))
    assert seq is not None
    for _, m in seq[boundary.start :]:
        h = m(h)
    return model.head(model.backbone.top(h))


def cache_key(
    model: TuneModel,
    seq: list[tuple[str, nn.Module]] | None,
    boundary: Boundary,
    images: torch.Tensor,
    augment: str,
    views: int,
    dtype: torch.dtype,
    seed: int,
    autocast: bool = False,
) -> str:
    """A digest of everything the cached features depend on."""
    return cache_keys(model, seq, [boundary], images, augment, views, dtype, seed, autocast)[0]


def cache_keys(
    model: TuneModel,
    seq: list[tuple[str, nn.Module]] | None,
    boundaries: Sequence[Boundary],
    images: torch.Tensor,
    augment: str,
    views: int,
    dtype: torch.dtype,
    seed: int,
    autocast: bool = False,
) -> list[str]:
    """:func:`cache_key` of each boundary; the images (possibly gigabytes) are digested once."""
    pixels = hashlib.sha256()
    tensor_digest(pixels, [images])
    keys = []
    for boundary in boundaries:
        h = hashlib.sha256()
        if boundary.pooled:
            prefix: list[nn.Module] = [model.backbone, model.head.pool]
        else:
            assert seq is not None
            prefix = [m for _, m in seq[: boundary.start]]
        module_digest(h, prefix)
        h.update(
            repr(
                (
                    boundary.start,
                    boundary.pooled,
                    augment,
                    views,
                    str(dtype),
                    seed,
                    autocast,
                    tuple(model.mean.flatten().tolist()),
                    tuple(model.std.flatten().tolist()),
                )
            ).encode()
        )
        h.update(pixels.digest())
        keys.append(h.hexdigest()[:24])
    return keys
