"""The backbone as a chain of modules: a flat list of (name, module) whose application in order
equals timm's ``forward_features``, so that a stage training only the top of the network can cache
the input of its first trainable module and run only what follows (:mod:`tunelab.vision.cache`).

The chain is found, not written per model: the modules ``forward_features`` calls at its top level,
in call order (a few models add a :class:`Step` for the code between their modules: a ViT's class
token and position embeddings, LeViT's flattening to tokens, EVA's rotary embeddings), then every
container holding more than one of timm's parameter groups is opened into its children when they,
applied in order, give what it gives (a freeze boundary only ever falls between groups, so opening
further would buy nothing). Each opening, and the whole chain, is checked on the backbone's
working input size; a model that is no such chain gets None and the reason, which the log shows.

    seq, why = split_backbone(backbone)   # [("conv_stem", ...), ("bn1", ...), ("blocks.0.0", ...), ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from tunelab.vision.backbones._runs import probe_images

Chain = list[tuple[str, nn.Module]]


class Step(nn.Module):
    """Code of a model's forward that sits between its modules, as a module: ``fn``, with the
    parameters and modules it uses registered here too, so that the freeze boundary and the cache
    key see them. A step lives only in the chain, never in the model."""

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        params: Sequence[nn.Parameter] = (),
        modules: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList(list(params))
        self.uses = nn.ModuleList(list(modules))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def split_backbone(backbone: Any) -> tuple[Chain | None, str]:
    """(chain, "") for a :class:`tunelab.vision.backbones.Backbone` whose ``forward_features`` the chain
    reproduces, else (None, why not)."""
    model = backbone.model
    # on the model's device: a CPU probe into a GPU model raised, and the split was then never used
    x = probe_images(backbone.input_size, 2).to(next(model.parameters()).device)
    group_by_name = {n: i for i, (_, names) in enumerate(backbone.groups) for n in names}
    group_of = {id(p): group_by_name.get(n, -1) for n, p in model.named_parameters()}
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            top = _top_level(model, x)
            if top is None:
                return None, f"{type(model).__name__}.forward_features is not a chain of modules"
            seq = _open(top, x, group_of)
            if not _same(_run(seq, x), model.forward_features(x), exact=False):
                return None, f"the modules of {type(model).__name__}.forward_features, in order, do not reproduce it"
        missing = _uncovered(model, seq, x)
        if missing:
            return None, f"{type(model).__name__}.forward_features uses {', '.join(missing[:3])} outside its modules"
        return seq, ""
    except Exception as e:  # a model that breaks on being taken apart is simply not split
        return None, f"{type(model).__name__} could not be split ({type(e).__name__}: {e})"
    finally:
        model.train(was)


def backbone_sequence(backbone: Any) -> Chain | None:
    """The chain of :func:`split_backbone`, or None."""
    return split_backbone(backbone)[0]


def _run(seq: Chain, x: torch.Tensor) -> torch.Tensor:
    for _, m in seq:
        x = m(x)
    return x


def _same(a: Any, b: torch.Tensor, exact: bool) -> bool:
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return False
    return torch.equal(a, b) if exact else torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def _top_level(model: Any, x: torch.Tensor) -> Chain | None:
    """The model's own recipe when it has one, else the modules its forward_features calls that are
    not inside another module, in call order (None when one is called twice)."""
    recipe = _RECIPES.get(type(model).__name__)
    if recipe is not None:
        return recipe(model)
    names = {id(m): n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    depth = [0]

    def enter(mod: nn.Module, args: Any) -> None:
        if depth[0] == 0:
            order.append(mod)
        depth[0] += 1

    def leave(mod: nn.Module, args: Any, out: Any) -> None:
        depth[0] -= 1

    subs = [m for m in model.modules() if m is not model]
    handles = [m.register_forward_pre_hook(enter) for m in subs] + [m.register_forward_hook(leave) for m in subs]
    try:
        model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    if len({id(m) for m in order}) != len(order):
        return None
    return [(names[id(m)], m) for m in order]


def _open(items: Chain, x: torch.Tensor, group_of: dict[int, int]) -> Chain:
    """``items`` with every container that spans groups replaced by its parts, where checked equal."""
    out: Chain = []
    for name, mod in items:
        out += _open_one(name, mod, x, group_of)
        x = mod(x)
    return out


def _open_one(name: str, mod: nn.Module, x: torch.Tensor, group_of: dict[int, int]) -> Chain:
    if isinstance(mod, Step) or len({group_of.get(id(p)) for p in mod.parameters()}) < 2:
        return [(name, mod)]
    ref = mod(x)
    for parts in _ways_to_open(name, mod):
        try:
            ok = bool(parts) and _same(_run(parts, x), ref, exact=True)
        except Exception:  # children that do not chain (a residual block's branches)
            ok = False
        if ok:
            return _open(parts, x, group_of)
    return [(name, mod)]


def _ways_to_open(name: str, mod: nn.Module) -> Iterator[Chain]:
    yield [(f"{name}.{n}", c) for n, c in mod.named_children()]
    if type(mod).__name__ == "DenseBlock":  # each layer reads the concatenation of all before it
        yield [(f"{name}.{n}", Step(partial(_dense_step, c), modules=[c])) for n, c in mod.named_children()]


def _dense_step(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h, layer(h)], 1)


def _uncovered(model: Any, seq: Chain, x: torch.Tensor) -> list[str]:
    """Parameters forward_features uses that no module of the chain holds: a split would cache
    their old values while they train."""
    held = {id(p) for _, m in seq for p in m.parameters()}
    params = [(n, p) for n, p in model.named_parameters()]
    out = model.forward_features(x)
    grads = torch.autograd.grad(out.float().sum(), [p for _, p in params], allow_unused=True)
    return [n for (n, p), g in zip(params, grads) if g is not None and id(p) not in held]


# --- models whose forward_features has code between its modules --------------------------------


def _own_params(model: nn.Module) -> list[nn.Parameter]:
    """The model's parameters that belong to no submodule (class and register tokens, position embeddings)."""
    return list(model.parameters(recurse=False))


def _vit(model: Any) -> Chain:
    return [
        ("patch_embed", model.patch_embed),
        ("pos_embed", Step(model._pos_embed, params=_own_params(model), modules=[model.pos_drop])),
        ("patch_drop", model.patch_drop),
        ("norm_pre", model.norm_pre),
        ("blocks", model.blocks),
        ("norm", model.norm),
    ]


def _eva_rope(model: Any) -> Any:
    if model.rope is None:
        return None
    return (
        model.rope.get_embed() if hasattr(model.rope, "feat_shape") else model.rope.get_embed(shape=model.patch_embed.grid_size)
    )


def _eva_block(model: Any, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return blk(x, rope=_eva_rope(model))


def _eva(model: Any) -> Chain | None:
    if getattr(model, "dynamic_img_size", False) or getattr(model, "rope_mixed", False):
        return None  # rotary embeddings per input size or per depth: not a plain chain
    seq: Chain = [
        ("patch_embed", model.patch_embed),
        (
            "pos_embed",
            Step(
                lambda x: model._pos_embed(x)[0],
                params=_own_params(model),
                modules=[m for m in (model.pos_drop, model.patch_drop) if m is not None],
            ),
        ),
        ("norm_pre", model.norm_pre),
    ]
    seq += [(f"blocks.{i}", Step(partial(_eva_block, model, blk), modules=[blk])) for i, blk in enumerate(model.blocks)]
    return seq + [("norm", model.norm)]


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _levit(model: Any) -> Chain:
    seq: Chain = [("stem", model.stem)]
    if not model.use_conv:
        seq.append(("tokens", Step(_tokens)))
    return seq + [("stages", model.stages)]


_RECIPES: dict[str, Callable[[Any], Chain | None]] = {
    "VisionTransformer": _vit,
    "VisionTransformerDistilled": _vit,
    "Eva": _eva,
    "Levit": _levit,
    "LevitDistilled": _levit,
}
