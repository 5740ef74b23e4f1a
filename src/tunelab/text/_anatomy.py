"""What a transformers model is made of, found by looking at it run rather than by its class name:
the list of its transformer layers, the parameters below (or shared by) them, and whether it is
causal. One probe forward on random tokens at build time answers the last two.

    layers = find_layers(model)                  # ('encoder', 'layer', shared=False) for BERT
    anatomy = probe(model, layers, run)          # input-side parameters and modules; causal or not
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunelab.errors import ModelError


@dataclass(frozen=True)
class LayerList:
    """Where the transformer layers sit: ``getattr(model.get_submodule(parent), attr)``."""

    parent: str
    attr: str
    shared: bool  # fewer distinct layers than the model runs (ALBERT runs one layer num_hidden_layers times)


def find_layers(model: Any) -> LayerList:
    """The ModuleList of equal blocks the model runs as its layers: encoder.layer (BERT, RoBERTa),
    transformer.layer (DistilBERT), h (GPT-2), layers (Llama, Qwen2, ModernBERT). ALBERT's config
    says its num_hidden_layers layers share num_hidden_groups sets of weights: that list is shared."""
    n = int(getattr(model.config, "num_hidden_layers", -1))
    distinct = int(getattr(model.config, "num_hidden_groups", n))
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == distinct and len({type(m) for m in mod}) == 1:
            parent, _, attr = name.rpartition(".")
            return LayerList(parent, attr, shared=distinct < n)
    raise ModelError(f"{type(model).__name__}: no list of {distinct} transformer layers found; not an encoder tunelab can use")


class Stop(Exception):
    """Raised by a hook to end a forward once what was wanted has been seen."""


def hidden_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states a layer is called with (every transformers layer takes them first)."""
    return args[0] if args else kwargs["hidden_states"]


def hidden_out(out: Any) -> torch.Tensor:
    """The hidden states a layer returns (alone, or first of a tuple)."""
    return out[0] if isinstance(out, tuple) else out


def run_until(run: Callable[[], Any], layer: nn.Module, *, entering: bool) -> torch.Tensor:
    """Run the model's forward until ``layer`` is called: the hidden states entering it, or (with
    ``entering=False``) leaving it. Nothing after that point is computed."""
    got: list[torch.Tensor] = []

    def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        got.append(hidden_in(args, kwargs))
        raise Stop

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        got.append(hidden_out(out))
        raise Stop

    handle = layer.register_forward_pre_hook(pre, with_kwargs=True) if entering else layer.register_forward_hook(post)
    try:
        run()
    except Stop:
        pass
    finally:
        handle.remove()
    return got[0]


@dataclass(frozen=True)
class Anatomy:
    input_params: set[str]  # outside the layers, and the layers' output depends on them
    input_modules: list[str]  # outside the layers, run before the first layer (embeddings, their dropout)
    causal: bool  # a token never sees the tokens after it (GPT-2, Llama, Qwen2)


def probe(model: Any, layers: nn.ModuleList, run: Callable[[torch.Tensor, torch.Tensor], Any]) -> Anatomy:
    """One forward of two texts that differ in their last token, up to the last layer's output.

    The parameters outside the layers that this output depends on are the input side: the token and
    position embeddings, what maps them to the layers' width (ELECTRA's embeddings_project) and the
    tables every layer reads (DeBERTa's rel_embeddings, MPNet's relative_attention_bias). A model is
    causal when the first token's output is the same for both texts."""
    token = model.get_input_embeddings().weight
    # the token embeddings are input side by definition; leaving them out of the gradient spares a
    # vocabulary-sized temporary (Qwen2's is 151k x 896)
    known = {id(p) for p in layers.parameters()} | {id(token)}
    candidates = {n: p for n, p in model.named_parameters() if id(p) not in known}
    vocab = int(getattr(model.config, "vocab_size", 100))
    ids = torch.randint(min(5, vocab - 2), min(vocab, 1000), (1, 8), generator=torch.Generator().manual_seed(0))
    ids = torch.cat([ids, ids]).to(token.device)
    ids[1, -1] = ids[0, -1] + 1 if int(ids[0, -1]) + 1 < vocab else ids[0, -1] - 1
    with _modules_before(model, layers[0]) as before, _grad_on(list(candidates.values())), _eval(model):
        out = run_until(lambda: run(ids, torch.ones_like(ids)), layers[-1], entering=False)
        used = _reached(out, candidates)
    causal = torch.allclose(out[0, 0], out[1, 0], rtol=1e-5, atol=1e-6) and not torch.equal(out[0, -1], out[1, -1])
    return Anatomy(used | {n for n, p in model.named_parameters() if p is token}, before, causal)


def _reached(out: torch.Tensor, params: dict[str, nn.Parameter]) -> set[str]:
    """Names of the ``params`` that ``out`` depends on."""
    if not params or not out.requires_grad:
        return set()
    grads = torch.autograd.grad(out.float().sum(), list(params.values()), allow_unused=True)
    return {n for n, g in zip(params, grads) if g is not None}


@contextmanager
def _modules_before(model: nn.Module, first: nn.Module) -> Iterator[list[str]]:
    """Names of the modules that run before the layer ``first`` does, in call order; not those that
    hold the layers (their ``eval()`` would reach the layers too) nor those inside them."""
    names: list[str] = []
    seen = {"done": False}

    def record(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            if not seen["done"] and name not in names:
                names.append(name)

        return hook

    def stop(mod: nn.Module, args: Any) -> None:
        seen["done"] = True

    path = next(n for n, m in model.named_modules() if first in m.children())  # the layer list
    around = {n for n, _ in model.named_modules() if path == n or path.startswith(f"{n}.") or n.startswith(f"{path}.")}
    handles = [first.register_forward_pre_hook(stop)]
    handles += [m.register_forward_pre_hook(record(n)) for n, m in model.named_modules() if n and n not in around]
    try:
        yield names
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _grad_on(params: list[nn.Parameter]) -> Iterator[None]:
    was = [p.requires_grad for p in params]
    try:
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            yield
    finally:
        for p, w in zip(params, was):
            p.requires_grad_(w)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)
