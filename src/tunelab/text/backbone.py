"""Pretrained text encoders: a thin adapter around a transformers ``AutoModel``, never a
re-implementation. Encoders (BERT, RoBERTa, DeBERTa, ModernBERT...) and decoders read as encoders
(GPT-2, Qwen2, Llama: mean or last-token pooling) alike.

The encoder's parameters are exposed as ordered named groups, input side first, which freezing,
layer-wise learning-rate decay and the layer table act on::

    bb = create_text_backbone("minilm", pooling="mean")     # the packaged all-MiniLM-L6-v2, offline
    [g for g, _ in bb.groups]    # ['embeddings', 'layers.0', ..., 'layers.5']  (+ 'pooler' with pooling: pooler)
    bb(tokens)                   # [B, 384] pooled sentence features

``embeddings`` is everything the layers' output depends on outside the layers (found by a probe
forward, :mod:`tunelab.text._anatomy`): the embeddings, a projection to the layers' width, and the
relative-position tables every layer reads, which must freeze with the layers below a boundary.

For the freeze-boundary cache the encoder is split at a layer: ``hidden_at(tokens, k)`` is what
enters layer k, ``from_layer(h, tokens, k)`` runs layers k..N-1 and the pooling on it. Both go
through the model's own ``forward`` (its own attention-mask code), with the layers before k taken
out for the call; :func:`split_problem` proves the split equals the whole forward for the model at
hand, and the cache falls back to the whole network (saying why) where it does not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.text._anatomy import find_layers, probe, run_until
from tunelab.text._encoders import PACKAGED_ENCODERS, from_pretrained, load_tokenizer, resolve_encoder
from tunelab.text.data import Tokens

__all__ = [
    "PACKAGED_ENCODERS",
    "POOLINGS",
    "TextBackbone",
    "create_text_backbone",
    "last_token",
    "load_tokenizer",
    "resolve_encoder",
    "split_problem",
]


POOLINGS = ("mean", "max", "cls", "pooler", "last")


class TextBackbone(nn.Module):
    """A transformers encoder (or a decoder read as one) plus pooling: token batch -> [B, hidden] features.

    pooling: ``mean`` (``avg``) masked mean of the last hidden states, ``max`` masked max, ``cls``
    the first token, ``pooler`` the first token through the pretrained pooler (dense + tanh),
    ``last`` the last token that is not padding (what causal models such as GPT-2, Qwen2 or Llama
    have read the whole text by). The pooler is dropped for the other poolings, so no unused
    parameters sit in the model.
    """

    pools = True  # the head gets pooled [B, C] features
    counts_layers = True  # {last_blocks: N} counts the groups layers.0 ... layers.N-1 (the pooler comes along)
    model: Any  # a transformers PreTrainedModel (config, embeddings, encoder layers)

    def __init__(self, model: Any, *, pooling: str, source: str) -> None:
        super().__init__()
        self.pooling = "mean" if pooling in ("auto", "avg") else pooling
        if self.pooling not in POOLINGS:
            raise ModelError(f"model.head.pooling: {pooling} is not a text pooling; valid: avg (mean), {', '.join(POOLINGS)}")
        if self.pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ModelError(f"model.head.pooling: pooler, but {type(model).__name__} has no pooler; use cls or mean")
        if self.pooling != "pooler" and getattr(model, "pooler", None) is not None:
            model.pooler = None
        self.model = model
        self.source = source
        self.num_features = int(model.config.hidden_size)
        self._layers_at = find_layers(model)  # names, not modules: no second path to the same parameters
        self.num_layers = len(self.layers)  # distinct layers: ALBERT's one shared layer counts once
        anatomy = probe(model, self.layers, self._run)
        self.causal = anatomy.causal
        if self.causal and self.pooling == "cls":
            raise ModelError(
                f"model.head.pooling: cls, but {type(model).__name__} is causal: its first token has seen "
                "nothing after it; use last (the last token has read the whole text) or mean"
            )
        self._input_modules = anatomy.input_modules
        self.groups = self._named_groups(anatomy.input_params)
        self.splits = True  # set from split_problem: whether hidden_at/from_layer equal the whole forward
        self.split_reason: str | None = None

    @property
    def layers(self) -> nn.ModuleList:
        at = self._layers_at
        return getattr(self.model.get_submodule(at.parent), at.attr)

    def _named_groups(self, input_side: set[str]) -> list[tuple[str, list[str]]]:
        """embeddings, layers.0 ... layers.N-1, then what runs after the layers (pooler, final norm):
        every parameter in exactly one group. ``embeddings`` holds the whole input side, including
        the tables every layer reads: freezing a layer freezes them too, so a cached prefix never
        used values that the layers above it then train."""
        layer_of = {id(p): i for i, layer in enumerate(self.layers) for p in layer.parameters()}
        groups: dict[str, list[str]] = {"embeddings": []}
        groups.update({f"layers.{i}": [] for i in range(self.num_layers)})
        for n, p in self.model.named_parameters():
            if id(p) in layer_of:
                groups[f"layers.{layer_of[id(p)]}"].append(n)
            elif n in input_side:
                groups["embeddings"].append(n)
            else:  # the pooler, or a final LayerNorm of pre-norm encoders
                groups.setdefault(n.split(".")[0], []).append(n)
        return [(k, v) for k, v in groups.items() if v]

    def input_side(self) -> list[nn.Module]:
        """The largest modules that hold only parameters of the ``embeddings`` group (what the
        cached prefix below the first layer depends on)."""
        names = set(dict(self.groups).get("embeddings", []))
        out: list[str] = []
        for mname, mod in self.model.named_modules():
            if not mname or any(mname.startswith(f"{o}.") for o in out):
                continue
            params = [f"{mname}.{n}" for n, _ in mod.named_parameters()]
            if params and all(n in names for n in params):
                out.append(mname)
        return [self.model.get_submodule(o) for o in out]

    def input_side_trains(self) -> bool:
        params = dict(self.model.named_parameters())
        return any(params[n].requires_grad for n in dict(self.groups).get("embeddings", []))

    def train(self, mode: bool = True) -> TextBackbone:
        """Also inference mode for what runs between frozen embeddings and the first layer outside
        the embeddings module (GPT-2's dropout): it belongs to the frozen input side, and the cache
        computes that side once, without dropout."""
        super().train(mode)
        if mode and not self.input_side_trains():
            for name in self._input_modules:
                self.model.get_submodule(name).eval()
        return self

    # --- the whole forward ---------------------------------------------------------------------

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor | None = None) -> Any:
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if type_ids is not None:
            kwargs["token_type_ids"] = type_ids
        if getattr(self.model.config, "use_cache", False) and getattr(self, "causal", False):
            kwargs["use_cache"] = False  # a decoder would keep the keys and values for generation
        return self.model(**kwargs)

    def _call(self, tokens: Any) -> Any:
        return self._run(tokens.ids, tokens.mask, tokens.type_ids)

    def pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        h = out.last_hidden_state
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return h[:, 0]
        if self.pooling == "last":
            return h[torch.arange(len(h), device=h.device), last_token(mask)]
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
        if k < self.num_layers:
            return run_until(lambda: self._call(tokens), self.layers[k], entering=True)
        return run_until(lambda: self._call(tokens), self.layers[k - 1], entering=False)

    def from_layer(self, h: torch.Tensor, tokens: Any, k: int) -> torch.Tensor:
        """Layers k..N-1 and the pooling on hidden states ``h`` entering layer k: pooled features."""
        with self._layers_from(h, k):
            return self.forward(tokens)

    @contextlib.contextmanager
    def _layers_from(self, h: torch.Tensor, k: int) -> Iterator[None]:
        """The model's own forward with layers 0..k-1 taken out and ``h`` given to layer k in place
        of what the (frozen, cheap) input side computes. For k = N the last layer stays, its output
        replaced by ``h``: only what follows the layers (pooler, final norm) trains then."""
        parent, attr = self.model.get_submodule(self._layers_at.parent), self._layers_at.attr
        full = getattr(parent, attr)
        first = full[min(k, self.num_layers - 1)]

        def given_in(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

        def given_out(mod: nn.Module, args: Any, out: Any) -> Any:
            return (h, *out[1:]) if isinstance(out, tuple) else h

        handle = (
            first.register_forward_pre_hook(given_in, with_kwargs=True)
            if k < self.num_layers
            else first.register_forward_hook(given_out)
        )
        setattr(parent, attr, nn.ModuleList(list(full)[min(k, self.num_layers - 1) :]))
        try:
            yield
        finally:
            handle.remove()
            setattr(parent, attr, full)


def last_token(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row [B], for right and left padding alike."""
    width = mask.shape[1]
    return width - 1 - mask.flip(1).argmax(1)


def split_problem(backbone: TextBackbone) -> str | None:
    """Why the cache cannot split this encoder between layers, or None when hidden_at + from_layer
    reproduce the whole forward (checked on random tokens with padding, at the middle layer)."""
    if backbone._layers_at.shared:
        n = int(backbone.model.config.num_hidden_layers)
        return (
            f"{type(backbone.model).__name__} runs the weights of {backbone.num_layers} layer group(s) at all {n} depths: "
            "a layer that trains also runs below any boundary; only a stage with the whole encoder frozen is cached"
        )
    was = backbone.training
    backbone.eval()
    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(backbone.model.config, "vocab_size", 100))
    ids = torch.randint(min(5, vocab - 1), min(vocab, 1000), (3, 9), generator=gen)
    tokens = Tokens(ids, torch.tensor([9, 6, 3]), None).to(next(backbone.parameters()).device)
    k = backbone.num_layers // 2
    try:
        with torch.inference_mode():
            ref = backbone(tokens)
            out = backbone.from_layer(backbone.hidden_at(tokens, k), tokens, k)
        if out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5, rtol=1e-4):
            return None
        return f"splitting {type(backbone.model).__name__} at layer {k} does not reproduce its whole forward"
    except Exception as e:
        return f"{type(backbone.model).__name__} cannot be split at layer {k} ({type(e).__name__}: {str(e)[:80]})"
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
    bb.split_reason = split_problem(bb)
    bb.splits = bb.split_reason is None
    return bb
