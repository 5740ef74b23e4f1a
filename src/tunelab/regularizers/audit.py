"""The regularization audit: every penalty's coverage, strength, value and gradient, and the
other regularizers in force, printed before each stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.regularizers import Ctx, Penalty


@dataclass
class AuditRow:
    name: str
    covers: str
    strength: str
    value: float | None
    reaches_gradient: str  # "yes", "yes (probed at w0 + noise)", "no", "inactive: ..."


def _summarise(model: nn.Module, names: list[str]) -> str:
    """Covered parameters as layer groups: 'backbone.blocks.4.2 ... head.fc (8 groups)'."""
    wanted = set(names)
    labels = [label for label, group in model.groups() if wanted & set(group)]  # type: ignore[operator]
    if len(labels) <= 3:
        return ", ".join(labels)
    return f"{labels[0]} ... {labels[-1]} ({len(labels)} groups)"


def _grads_nonzero(value: torch.Tensor, params: list[nn.Parameter]) -> bool:
    if not value.requires_grad:
        return False
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def audit_penalty(pen: Penalty, model: nn.Module, ctx: Ctx) -> AuditRow:
    trainable = pen.trainable()
    n_params = sum(p.numel() for _, p in pen.params)
    covers = f"{n_params:,} params in {_summarise(model, [n for n, _ in pen.params])}"
    strength = f"{pen.cfg.strength:g}"
    if getattr(pen, "head_strength", None) is not None:
        strength += f" (head {pen.head_strength:g})"  # type: ignore[attr-defined]
    if not trainable:
        return AuditRow(pen.name, covers, strength, None, "inactive: all covered parameters frozen in this stage")
    value = pen(model, ctx)
    params = [p for _, p in trainable]
    if _grads_nonzero(value, params):
        return AuditRow(pen.name, covers, strength, float(value.detach()), "yes")
    # a distance penalty is exactly zero at its anchor; probe a point next to it
    gen = torch.Generator().manual_seed(0)
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(1e-3 * torch.randn(p.shape, generator=gen).to(p.device))
    try:
        ok = _grads_nonzero(pen(model, ctx), params)
    finally:
        with torch.no_grad():  # restore exactly (w + e - e can differ from w in the last bit)
            for p, w in zip(params, saved):
                p.copy_(w)
    return AuditRow(pen.name, covers, strength, float(value.detach()), "yes (probed next to w0)" if ok else "NO")


def other_regularizers(model: nn.Module, reg: Any, stage: Any) -> list[AuditRow]:
    """Dropout, drop-path, augmentation, label smoothing, mixup and weight decay as configured and active."""
    rows = _layer_rows(model) + _recipe_rows(reg)
    if stage.weight_decay and stage.optimizer in ("adamw", "sgd", "adam"):
        rows.append(_weight_decay_row(model, stage))
    return rows


def _layer_rows(model: nn.Module) -> list[AuditRow]:
    """The model's own stochastic layers: dropout and drop-path, and how many of them are active."""
    rows = []
    drops = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d)) and m.p > 0]
    if drops:
        active = sum(m.training for m in drops)
        rates = [f"{m.p:g}" for m in drops]
        if len(rates) > 4:  # a transformer has one or two per layer: list each rate once
            rates = list(dict.fromkeys(rates))
        rows.append(
            AuditRow(
                "dropout",
                f"{len(drops)} layers ({active} active)",
                ", ".join(rates),
                None,
                "yes" if active else "inactive: frozen",
            )
        )
    # the backbone type says which of its layers drop paths (timm's DropPath for images)
    paths = [m for m in model.drop_paths() if m.drop_prob > 0]  # type: ignore[operator]
    if paths:
        active = sum(m.training for m in paths)
        rows.append(
            AuditRow(
                "drop_path",
                f"{len(paths)} blocks ({active} active)",
                f"max {max(m.drop_prob for m in paths):g}",
                None,
                "yes" if active else "inactive: blocks frozen",
            )
        )
    return rows


def _recipe_rows(reg: Any) -> list[AuditRow]:
    """What the regularization section adds to the data and the loss: augmentation, class weights,
    label smoothing, mixup."""
    rows = []
    aug = reg.augment if isinstance(reg.augment, str) else "+".join(s["name"] for s in reg.augment)
    if aug != "none":
        rows.append(AuditRow("augment", "training images", aug, None, "yes"))
    if reg.class_weight != "none":
        rows.append(AuditRow("class_weight", "training loss", reg.class_weight, None, "yes"))
    if reg.label_smoothing:
        rows.append(AuditRow("label_smoothing", "targets", f"{reg.label_smoothing:g}", None, "yes"))
    if reg.mixup is not None:
        m = reg.mixup
        rows.append(
            AuditRow("mixup", "batches", f"mixup {m.mixup_alpha:g}, cutmix {m.cutmix_alpha:g}, p {m.prob:g}", None, "yes")
        )
    return rows


def _weight_decay_row(model: nn.Module, stage: Any) -> AuditRow:
    """The stage's weight decay on the trainable kernels (inactive when none trains)."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad and p.ndim >= 2)
    kind = "decoupled" if stage.optimizer == "adamw" else "L2 in gradient"
    return AuditRow(
        "weight_decay",
        f"{n:,} trainable kernel params",
        f"{stage.weight_decay:g} ({kind})",
        None,
        "yes" if n else "inactive",
    )


def render_audit(rows: list[AuditRow]) -> str:
    if not rows:
        return "regularization: none"
    head = ("regularizer", "covers", "strength", "first-batch value", "reaches gradient")
    table = [head] + [
        (r.name, r.covers, r.strength, "-" if r.value is None else f"{r.value:.4g}", r.reaches_gradient) for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "regularization audit\n" + "\n".join(lines)


def audit_stage(
    model: Any, penalties: list[Penalty], ctx: Ctx, reg: Any, stage: Any, si: int, probe: Callable[[], None]
) -> list[AuditRow]:
    """Each penalty's coverage, first-batch value and gradient check, plus the other regularizers
    of stage ``si``. ``probe`` runs one deterministic forward pass first when a penalty reads the
    step's pooled features (``ctx``); a penalty that reaches no gradient stops the run."""
    if any(p.needs_features for p in penalties):
        probe()
    rows = [audit_penalty(p, model, ctx) for p in penalties]
    dead = [r.name for r in rows if r.reaches_gradient == "NO"]
    if dead:
        raise ConfigError(
            f"stage {si + 1}: penalties {', '.join(dead)} cover trainable parameters but give them "
            "no gradient; they would not regularize anything"
        )
    return rows + other_regularizers(model, reg, stage)
