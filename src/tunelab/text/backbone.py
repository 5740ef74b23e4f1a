"""Pretrained text encoders: a thin adapter around a transformers ``AutoModel``, never a
re-implementation.

The encoder's parameters are exposed as ordered named groups, input side first, which freezing,
layer-wise learning-rate decay and the layer table act on::

    bb = create_text_backbone("minilm", pooling="mean")     # the packaged all-MiniLM-L6-v2, offline
    [g for g, _ in bb.groups]    # ['embeddings', 'layers.0', ..., 'layers.5']  (+ 'pooler' with pooling: pooler)
    bb(tokens)                   # [B, 384] pooled sentence features

For the freeze-boundary cache the encoder is split at a layer: ``hidden_at(tokens, k)`` is what
enters layer k, ``from_layer(h, tokens, k)`` runs layers k..N-1 and the pooling on it. Both go
through the model's own ``forward`` (its own attention-mask code), with the layers before k taken
out for the call; :func:`check_split` proves the split equals the whole forward for the model at
hand, and the cache falls back to the whole network where it does not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.text._encoders import PACKAGED_ENCODERS, from_pretrained, load_tokenizer, resolve_encoder
from tunelab.text.data import Tokens

__all__ = [
    "PACKAGED_ENCODERS",
    "TextBackbone",
    "check_split",
    "create_text_backbone",
    "load_tokenizer",
    "resolve_encoder",
]


def _layer_list(model: Any) -> tuple[str, str]:
    """(parent module name, attribute) of the ModuleList holding the transformer layers (encoder.layer for BERT
    and RoBERTa, transformer.layer for DistilBERT): the list with num_hidden_layers equal blocks."""
    n = int(getattr(model.config, "num_hidden_layers", -1))
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n and len({type(m) for m in mod}) == 1:
            parent_name, _, attr = name.rpartition(".")
            return parent_name, attr
    raise ModelError(f"{type(model).__name__}: no list of {n} transformer layers found; not an encoder tunelab can split")


class _Given(nn.Module):
    """Stands in for the embeddings during a split forward: returns the hidden states it holds."""

    def __init__(self, h: torch.Tensor) -> None:
        super().__init__()
        self.h = h

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.h


class _Stop(Exception):
    pass


class TextBackbone(nn.Module):
    """A transformers encoder plus pooling: token batch -> [B, hidden] features.

    pooling: ``mean`` (``avg``) masked mean of the last hidden states, ``max`` masked max, ``cls``
    the first token, ``pooler`` the first token through the pretrained pooler (dense + tanh). The
    pooler is dropped for the other poolings, so no unused parameters sit in the model.
    """

    pools = True  # the head gets pooled [B, C] features
    counts_layers = True  # {last_blocks: N} counts the groups layers.0 ... layers.N-1 (the pooler comes along)
    model: Any  # a transformers PreTrainedModel (config, embeddings, encoder layers)

    def __init__(self, model: Any, *, pooling: str, source: str) -> None:
        super().__init__()
        self.pooling = "mean" if pooling in ("auto", "avg") else pooling
        if self.pooling not in ("mean", "max", "cls", "pooler"):
            raise ModelError(f"model.head.pooling: {pooling} is not a text pooling; valid: avg (mean), mean, max, cls, pooler")
        if self.pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ModelError(f"model.head.pooling: pooler, but {type(model).__name__} has no pooler; use cls or mean")
        if self.pooling != "pooler" and getattr(model, "pooler", None) is not None:
            model.pooler = None
        if not hasattr(model, "embeddings"):
            raise ModelError(f"{type(model).__name__} has no .embeddings module; not an encoder tunelab can split")
        self.model = model
        self.source = source
        self.num_features = int(model.config.hidden_size)
        self.num_layers = int(model.config.num_hidden_layers)
        self._layers_at = _layer_list(model)  # names, not modules: no second path to the same parameters
        self.groups = self._named_groups()
        self.splits = True  # set by check_split: whether hidden_at/from_layer equal the whole forward

    @property
    def layers(self) -> nn.ModuleList:
        parent, attr = self._layers_at
        return getattr(self.model.get_submodule(parent), attr)

    def _named_groups(self) -> list[tuple[str, list[str]]]:
        """embeddings, layers.0 ... layers.N-1, (pooler): every parameter in exactly one group."""
        layer_ids = {id(p): i for i, layer in enumerate(self.layers) for p in layer.parameters()}
        emb_ids = {id(p) for p in self.model.embeddings.parameters()}
        groups: dict[str, list[str]] = {"embeddings": []}
        groups.update({f"layers.{i}": [] for i in range(self.num_layers)})
        for n, p in self.model.named_parameters():
            if id(p) in emb_ids:
                groups["embeddings"].append(n)
            elif id(p) in layer_ids:
                groups[f"layers.{layer_ids[id(p)]}"].append(n)
            else:  # the pooler, or a final LayerNorm of pre-norm encoders
                groups.setdefault(n.split(".")[0], []).append(n)
        return [(k, v) for k, v in groups.items() if v]

    # --- the whole forward ---------------------------------------------------------------------

    def _call(self, tokens: Any) -> Any:
        kwargs: dict[str, torch.Tensor] = {"input_ids": tokens.ids, "attention_mask": tokens.mask}
        if tokens.type_ids is not None:
            kwargs["token_type_ids"] = tokens.type_ids
        return self.model(**kwargs)

    def pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        h = out.last_hidden_state
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        if self.pooling == "max":
            return h.masked_fill(m == 0, torch.finfo(h.dtype).min).amax(1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, tokens: Any) -> torch.Tensor:
        return tokens.pool_windows(self.pool(self._call(tokens), tokens.mask))

    # --- the split forward, for the freeze-boundary cache ---------------------------------------

    def hidden_at(self, tokens: Any, k: int) -> torch.Tensor:
        """The hidden states entering layer ``k`` (k = num_layers: the last layer's output), [B, L, H].
        The forward stops there: the layers above are not computed."""
        target = self.model.embeddings if k == 0 else self.layers[k - 1]
        got: list[torch.Tensor] = []

        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            got.append(out[0] if isinstance(out, tuple) else out)
            raise _Stop

        handle = target.register_forward_hook(hook)
        try:
            self._call(tokens)
        except _Stop:
            pass
        finally:
            handle.remove()
        return got[0]

    def from_layer(self, h: torch.Tensor, tokens: Any, k: int) -> torch.Tensor:
        """Layers k..N-1 and the pooling on hidden states ``h`` entering layer k: pooled features."""
        with self._without_prefix(h, k):
            return self.forward(tokens)

    @contextlib.contextmanager
    def _without_prefix(self, h: torch.Tensor, k: int) -> Iterator[None]:
        parent, attr = self.model.get_submodule(self._layers_at[0]), self._layers_at[1]
        full, emb = getattr(parent, attr), self.model.embeddings
        setattr(parent, attr, nn.ModuleList(list(full)[k:]))
        self.model.embeddings = _Given(h)
        try:
            yield
        finally:
            setattr(parent, attr, full)
            self.model.embeddings = emb


def check_split(backbone: TextBackbone) -> bool:
    """True when hidden_at + from_layer reproduce the whole forward (checked on random tokens with
    padding, at the middle layer); the cache only splits encoders that pass."""
    was = backbone.training
    backbone.eval()
    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(backbone.model.config, "vocab_size", 100))
    ids = torch.randint(5, min(vocab, 1000), (3, 9), generator=gen)
    tokens = Tokens(ids, torch.tensor([9, 6, 3]), None)
    k = backbone.num_layers // 2
    try:
        with torch.inference_mode():
            ref = backbone(tokens)
            out = backbone.from_layer(backbone.hidden_at(tokens, k), tokens, k)
        return out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5, rtol=1e-4)
    except Exception:
        return False
    finally:
        backbone.train(was)


def create_text_backbone(name: str, *, pretrained: bool = True, weights: str = "auto", pooling: str = "mean") -> TextBackbone:
    """A transformers encoder (``AutoModel``) with pretrained weights, or randomly initialised from its
    config with ``pretrained=False`` (what reloading a finished run does before loading its weights)."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    path, source = resolve_encoder(name, weights)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no load report or progress bar in the run log
    hf_logging.disable_progress_bar()
    try:
        if pretrained:
            model = from_pretrained(AutoModel, path, source, "encoder")
        else:
            config = from_pretrained(AutoConfig, path, source, "encoder config")
            model = AutoModel.from_config(config)
            source = "random init"
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    bb = TextBackbone(model, pooling=pooling, source=source)
    bb.splits = check_split(bb)
    return bb
