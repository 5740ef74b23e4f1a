"""Penalties added to the loss, and the audit that proves each one reaches the gradient.

A penalty is a small object with one job: given the model (and, for L2-SP, the pretrained
weights) return a scalar tensor. The training loop adds the sum of all penalties to the data loss
and logs each one separately. Register your own with ``@register_penalty("name")``.

Why not just weight decay? AdamW's decoupled weight decay shrinks weights toward zero; for
fine-tuning, zero is the wrong target: the pretrained weights are what is known to work, so L2-SP
(Li et al., 2018) pulls toward them instead. Both can be used together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tunelab.config import PenaltyConfig
from tunelab.errors import ConfigError
from tunelab.freezing import select

__all__ = ["PENALTIES", "Penalty", "build_penalties", "pretrained_reference", "register_penalty"]

Ctx = dict[str, torch.Tensor]  # per-step values a penalty may use, e.g. ctx["pooled"] features


class Penalty:
    """Base class: covers a fixed set of named parameters; ``__call__`` returns the penalty."""

    needs_features = False  # True when the penalty reads ctx["pooled"]

    def __init__(self, cfg: PenaltyConfig, model: nn.Module, index: int) -> None:
        self.cfg = cfg
        self.name = cfg.name or cfg.type
        self.where = f"regularization.penalties.{index} ({self.name})"
        names = select(model, cfg.layers, where=f"{self.where}.layers")
        params = dict(model.named_parameters())
        self.params = [(n, params[n]) for n in params if n in names and _kind_ok(n, params[n], cfg.params)]
        if not self.params:
            raise ConfigError(
                f"{self.where}: layers: {cfg.layers} with params: {cfg.params} covers no parameter; "
                "use params: all, or select other layers"
            )

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.params if p.requires_grad]

    def __call__(self, model: nn.Module, ctx: Ctx) -> torch.Tensor:
        """The penalty over the trainable covered parameters (frozen ones add only a constant)."""
        terms = [self.term(n, p) for n, p in self.trainable()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def term(self, name: str, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _kind_ok(name: str, p: torch.Tensor, kind: str) -> bool:
    if kind == "all":
        return True
    is_kernel, is_bias = p.ndim >= 2, name.endswith(".bias")
    return {"kernels": is_kernel, "biases": is_bias, "both": is_kernel or is_bias}[kind]


PENALTIES: dict[str, Callable[..., Penalty]] = {}


def register_penalty(name: str) -> Callable[[type[Penalty]], type[Penalty]]:
    def deco(cls: type[Penalty]) -> type[Penalty]:
        if name in PENALTIES:
            raise ValueError(f"a penalty named '{name}' is registered already")
        PENALTIES[name] = cls
        return cls

    return deco


@register_penalty("l2")
class L2(Penalty):
    """strength * sum(w^2)."""

    def term(self, name: str, p: torch.Tensor) -> torch.Tensor:
        return self.cfg.strength * p.pow(2).sum()


@register_penalty("l1")
class L1(Penalty):
    """strength * sum(|w|)."""

    def term(self, name: str, p: torch.Tensor) -> torch.Tensor:
        return self.cfg.strength * p.abs().sum()


@register_penalty("elastic")
class Elastic(Penalty):
    """strength * (l1_ratio * sum(|w|) + (1 - l1_ratio) * sum(w^2))."""

    def term(self, name: str, p: torch.Tensor) -> torch.Tensor:
        r = self.cfg.l1_ratio
        return self.cfg.strength * (r * p.abs().sum() + (1 - r) * p.pow(2).sum())


@register_penalty("l2sp")
class L2SP(Penalty):
    """strength * sum((w - w_pretrained)^2) where a pretrained value exists (the backbone);
    head_strength * sum(w^2) on the rest (the new head, which has no pretrained value)."""

    def __init__(self, cfg: PenaltyConfig, model: nn.Module, index: int, reference: dict[str, torch.Tensor]) -> None:
        super().__init__(cfg, model, index)
        self.reference = {n: reference[n] for n, _ in self.params if n in reference}
        self.head_strength = cfg.head_strength if cfg.head_strength is not None else cfg.strength / 10

    def term(self, name: str, p: torch.Tensor) -> torch.Tensor:
        ref = self.reference.get(name)
        if ref is None:
            return self.head_strength * p.pow(2).sum()
        if ref.device != p.device:
            ref = self.reference[name] = ref.to(p.device)
        return self.cfg.strength * (p - ref).pow(2).sum()


@register_penalty("activity")
class Activity(Penalty):
    """strength * mean over the batch of ||pooled features||^2 (or ||.||_1 with norm: l1); it
    reaches the gradient through the trainable backbone parameters that produce the features."""

    needs_features = True

    def __init__(self, cfg: PenaltyConfig, model: nn.Module, index: int) -> None:
        super().__init__(cfg, model, index)
        self.params = [(n, p) for n, p in self.params if n.startswith("backbone.")]
        if not self.params:
            raise ConfigError(
                f"{self.where}: activity regularization acts on backbone parameters; layers: {cfg.layers} selects none"
            )

    def __call__(self, model: nn.Module, ctx: Ctx) -> torch.Tensor:
        f = ctx["pooled"].float()
        per_sample = f.abs().sum(1) if self.cfg.norm == "l1" else f.pow(2).sum(1)
        return self.cfg.strength * per_sample.mean()


def pretrained_reference(model: nn.Module, penalties: list[PenaltyConfig]) -> dict[str, torch.Tensor]:
    """A copy of the backbone weights as loaded, before any training: L2-SP's anchor. Only the
    parameters some l2sp penalty covers are kept."""
    if not any(p.type == "l2sp" for p in penalties):
        return {}
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("backbone.")}


def build_penalties(cfgs: list[PenaltyConfig], model: nn.Module, reference: dict[str, torch.Tensor]) -> list[Penalty]:
    out = []
    for i, c in enumerate(cfgs):
        if c.type not in PENALTIES:
            raise ConfigError(f"regularization.penalties.{i}.type: unknown penalty '{c.type}'; valid: {', '.join(PENALTIES)}")
        cls = PENALTIES[c.type]
        out.append(cls(c, model, i, reference) if cls is L2SP else cls(c, model, i))
    return out


def check_coverage(penalties: list[Penalty], stage_trainables: list[set[str]]) -> None:
    """A penalty whose parameters are frozen in every stage would silently do nothing: an error."""
    for pen in penalties:
        names = {n for n, _ in pen.params}
        if not any(names & t for t in stage_trainables):
            raise ConfigError(
                f"{pen.where}: layers: {pen.cfg.layers} covers only parameters that are frozen in every "
                "stage, so it would never change training; train those layers in some stage or "
                "select trainable ones"
            )
