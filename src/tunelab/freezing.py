"""Freezing by named groups, the BatchNorm policy, and the per-layer table.

Selectors (used by stages and, later, by regularizers): ``"head"``, ``"backbone"``, ``"all"``,
``"none"``, ``{"last_blocks": N}`` (the last N groups of timm's ``group_matcher``, so for
EfficientNet a block is one MBConv block; for a transformer encoder the top N layers and what
follows them, the pooler), ``{"last_layers": N}`` (the same), ``{"regex": PATTERN}`` (searched in
parameter names).

BatchNorm policy: a BN layer whose parameters are frozen always runs in inference mode, so its
running statistics never move; BN in trainable parts updates its statistics only when the stage
says ``train_bn: true``. Any module whose parameters are all frozen runs in eval mode too (no
dropout or drop-path inside frozen blocks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from tunelab.errors import ConfigError


def select(model: nn.Module, selectors: Sequence[Any], *, where: str = "train") -> set[str]:
    """Parameter names matched by the union of ``selectors``; a selector matching nothing is an error."""
    all_names = [n for n, _ in model.named_parameters()]
    backbone_groups = [g for g in model.groups() if g[0].startswith("backbone.")]  # type: ignore[operator]
    chosen: set[str] = set()
    for sel in selectors:
        if sel == "all":
            names = set(all_names)
        elif sel == "none":
            names = set()
        elif sel == "head":
            names = {n for n in all_names if n.startswith("head.")}
        elif sel == "backbone":
            names = {n for n in all_names if n.startswith("backbone.")}
        elif isinstance(sel, dict) and ("last_blocks" in sel or "last_layers" in sel):
            names = {n for _, g in _top_groups(backbone_groups, sel, where, _counts_layers(model)) for n in g}
        elif isinstance(sel, dict) and "regex" in sel:
            try:
                pat = re.compile(str(sel["regex"]))
            except re.error as e:
                raise ConfigError(f"{where}: regex {sel['regex']!r} is not a valid regular expression: {e}") from None
            names = {n for n in all_names if pat.search(n)}
            if not names:
                raise ConfigError(
                    f"{where}: regex {sel['regex']!r} matches no parameter; names look like "
                    f"{all_names[0]}, {all_names[len(all_names) // 2]}, {all_names[-1]}"
                )
        else:
            raise ConfigError(
                f"{where}: unknown selector {sel!r}; valid: head, backbone, all, none, {{last_blocks: N}}, {{regex: PATTERN}}"
            )
        chosen |= names
    return chosen


def _units(backbone_groups: list[tuple[str, list[str]]], counts_layers: bool) -> tuple[list[int], bool]:
    """Indices of the groups that ``{last_blocks: N}`` counts: the transformer layers of a text
    encoder (``counts_layers``, so the pooler above them comes along), else every group (timm
    blocks, whatever their names: a Swin stage is ``layers.N`` too); and whether they are layers."""
    layers = [i for i, (label, _) in enumerate(backbone_groups) if re.fullmatch(r"backbone\.layers\.\d+", label)]
    if counts_layers and layers:
        return layers, True
    return list(range(len(backbone_groups))), False


def _counts_layers(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "backbone", None), "counts_layers", False))


def block_count(model: nn.Module) -> int:
    """The largest N that ``{last_blocks: N}`` (or ``{last_layers: N}``) accepts for ``model``."""
    groups = [g for g in model.groups() if g[0].startswith("backbone.")]  # type: ignore[operator]
    return len(_units(groups, _counts_layers(model))[0])


def _top_groups(
    backbone_groups: list[tuple[str, list[str]]], sel: dict[str, Any], where: str, counts_layers: bool
) -> list[tuple[str, list[str]]]:
    """The backbone groups from the k-th last unit on (see :func:`_units`)."""
    key, k = next(iter(sel.items()))
    k = int(k)
    units, layers = _units(backbone_groups, counts_layers)
    if k > len(units):
        what = "layers" if layers else "blocks"
        raise ConfigError(
            f"{where}: {key}: {k} but the backbone has {len(units)} {what} "
            f"({backbone_groups[units[0]][0]} ... {backbone_groups[units[-1]][0]}); use at most {len(units)}"
        )
    return backbone_groups[units[len(units) - k] :] if k else []


def lr_scales(model: nn.Module, layer_decay: float | None) -> dict[str, float]:
    """Learning-rate multiplier of every named group for layer-wise lr decay: the head groups 1, the
    backbone's top group ``layer_decay``, the one below ``layer_decay**2``, down to the input side.
    Depth counts frozen groups too, so a layer's lr does not depend on what else trains."""
    groups = [label for label, _ in model.groups()]  # type: ignore[operator]
    if layer_decay is None:
        return {label: 1.0 for label in groups}
    backbone = [label for label in groups if label.startswith("backbone.")]
    scales = {label: 1.0 for label in groups}
    for depth, label in enumerate(reversed(backbone), start=1):
        scales[label] = layer_decay**depth
    return scales


def set_trainable(model: nn.Module, names: set[str]) -> None:
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)


def _is_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def set_train_mode(model: nn.Module, *, train_bn: bool) -> None:
    """``model.train()``, then inference mode for frozen modules and (unless ``train_bn``) all BN."""
    model.train()
    _freeze_modes(model, train_bn)


def _freeze_modes(module: nn.Module, train_bn: bool) -> None:
    params = list(module.parameters(recurse=True))
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    if _is_bn(module) and not train_bn:
        module.eval()
        return
    for child in module.children():
        _freeze_modes(child, train_bn)


@dataclass
class LayerRow:
    name: str
    params: int
    trainable: str  # "yes", "no", "partly"
    bn: str  # "train", "eval", "-"
    lr: float | None


def layer_rows(model: nn.Module, lr: float | None, scales: dict[str, float] | None = None) -> list[LayerRow]:
    """One row per named group; reflects the model's current requires_grad and module modes.
    ``scales`` (from :func:`lr_scales`) gives each group its share of ``lr``."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    rows = []
    for label, names in model.groups():  # type: ignore[operator]
        n_total = sum(params[n].numel() for n in names)
        n_train = sum(params[n].numel() for n in names if params[n].requires_grad)
        trainable = "yes" if n_train == n_total else ("no" if n_train == 0 else "partly")
        owners = {n.rsplit(".", 1)[0] for n in names}
        bns = [modules[o] for o in owners if o in modules and _is_bn(modules[o])]
        if not bns:
            bn = "-"
        else:
            modes = {"train" if m.training else "eval" for m in bns}
            bn = modes.pop() if len(modes) == 1 else "mixed"
        group_lr = lr * scales.get(label, 1.0) if lr is not None and scales else lr
        rows.append(LayerRow(label, n_total, trainable, bn, group_lr if n_train else None))
    return rows


def render_layer_table(rows: list[LayerRow], totals: tuple[int, int], title: str = "") -> str:
    """Plain-text table like Keras ``summary(show_trainable=True)``, with totals."""
    w = max([len(r.name) for r in rows] + [5])
    lines = [title] if title else []
    lines.append(f"{'layer':<{w}}  {'params':>10}  {'trainable':>9}  {'BN':>5}  {'lr':>9}")
    lines.append("-" * (w + 42))
    for r in rows:
        lr = f"{r.lr:.2e}" if r.lr is not None else "-"
        lines.append(f"{r.name:<{w}}  {r.params:>10,}  {r.trainable:>9}  {r.bn:>5}  {lr:>9}")
    lines.append("-" * (w + 42))
    trainable, frozen = totals
    lines.append(f"total {trainable + frozen:,} parameters: {trainable:,} trainable, {frozen:,} frozen")
    return "\n".join(lines)


def param_totals(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    t = sum(p.numel() for p in model.parameters() if p.requires_grad)
    f = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return t, f
