"""Freeze-boundary cache for text encoders, by the rules of :mod:`tunelab.vision.cache` for images.

A stage that trains only the head trains on cached pooled sentence features ``[N, H]``; a stage
that trains the top layers caches the hidden states entering the first trainable layer
``[N, L, H]`` (padded to the longest text of the set; each batch is cut back to its own longest
text, and the attention mask comes from the token lengths, so the tail sees exactly what the
whole network would). The key covers the frozen weights and the encoder's config, the boundary,
the pooling, the token ids, the storage dtype and the seed; a stale cache is never used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tunelab.engine.store import module_digest, tensor_digest
from tunelab.text.data import Tokens

if TYPE_CHECKING:
    from tunelab.text.model import TextModel

__all__ = ["CachedStates", "TextBoundary", "cache_key", "find_text_boundary", "run_prefix", "run_tail", "uncached_reason"]


@dataclass
class TextBoundary:
    """``start``: the first encoder layer that trains (num_layers when only the pooler trains);
    ``pooled``: the whole encoder and its pooling are frozen, pooled features are cached."""

    start: int
    pooled: bool

    def describe(self, num_layers: int) -> str:
        if self.pooled:
            return "pooled features (the whole encoder is frozen)"
        return f"the hidden states entering layer {self.start} ({self.start} of {num_layers} layers frozen)"


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def find_text_boundary(model: TextModel) -> TextBoundary | None:
    """The stage's freeze boundary (from requires_grad), or None (:func:`uncached_reason` says why)
    when the input side trains (nothing to cache) or the encoder cannot be split."""
    bb = model.backbone
    if not _trains(bb):
        return TextBoundary(bb.num_layers, pooled=True)
    if not bb.splits or bb.input_side_trains():
        return None
    start = next((i for i, layer in enumerate(bb.layers) if _trains(layer)), bb.num_layers)
    return TextBoundary(start, pooled=False)


def uncached_reason(model: TextModel) -> str:
    """Why :func:`find_text_boundary` found no boundary in this stage, for the log."""
    bb = model.backbone
    if not bb.splits:
        return bb.split_reason or "the encoder cannot be split"
    return (
        "backbone.embeddings trains: the embeddings and what every layer shares (relative positions) "
        "feed all layers, so nothing below a layer stays fixed"
    )


def run_prefix(model: TextModel, boundary: TextBoundary, tokens: Tokens) -> torch.Tensor:
    """The frozen prefix: pooled features [B, H], or the hidden states entering layer ``start`` [B, L, H]."""
    if boundary.pooled:
        return model.backbone(tokens)
    return model.backbone.hidden_at(tokens, boundary.start)


def run_tail(model: TextModel, boundary: TextBoundary, h: torch.Tensor, tokens: Tokens) -> torch.Tensor:
    """The trainable rest on cached prefix outputs ``h`` of ``tokens``: logits."""
    if boundary.pooled:
        return model.head(h)
    return model.head(model.backbone.from_layer(h, tokens, boundary.start))


def cache_key(model: TextModel, boundary: TextBoundary, tokens: Tokens, dtype: torch.dtype, seed: int) -> str:
    """A digest of everything the cached features depend on."""
    bb = model.backbone
    prefix = [bb] if boundary.pooled else [*bb.input_side(), *list(bb.layers)[: boundary.start]]
    h = hashlib.sha256()
    module_digest(h, prefix)
    h.update(bb.model.config.to_json_string().encode())  # attention implementation, dropout, sizes
    h.update(repr((boundary.start, boundary.pooled, bb.pooling, str(dtype), seed, type(bb.model).__name__)).encode())
    tensor_digest(h, tokens.tensors())
    return h.hexdigest()[:24]


@dataclass
class CachedStates:
    """Cached prefix outputs of a whole set with its tokens. Selecting rows gives the pair the tail
    needs, ``(h, tokens)``, with hidden states cut to the batch's longest text."""

    h: torch.Tensor  # pooled [N, H] (one row a text), or hidden states [rows, L, H] (one row a window)
    tokens: Tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, idx: slice | torch.Tensor) -> tuple[torch.Tensor, Tokens]:
        tokens, rows = self.tokens.take(idx)
        if self.h.ndim == 2:
            return self.h[idx], tokens
        return self.h[rows][:, : tokens.ids.shape[1]], tokens


def fill_prefix(
    model: TextModel, boundary: TextBoundary, tokens: Tokens, out: torch.Tensor, batch_size: int, device: torch.device
) -> None:
    """Write the prefix outputs of ``tokens`` into ``out`` ([N, H] pooled, or [rows, L, H]), texts
    of similar length together (less padding to compute); positions past a text's end are zero."""
    order = tokens.eval_order()
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        batch, rows = tokens.take(idx)
        h = run_prefix(model, boundary, batch.to(device)).to(out.dtype).cpu()
        if h.ndim == 3:
            out[rows, : h.shape[1]] = h
            out[rows, h.shape[1] :] = 0
        else:
            out[idx] = h
