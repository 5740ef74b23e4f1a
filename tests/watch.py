"""Training hooks that record what each stage trains, which parameters got a gradient, and whether
anything frozen changed, and the uncached twin of a cached run: shared by the table-driven tests of
the engine, the backbone families and the text encoders."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import tunelab


class Watch:
    """Hooks that record, per stage, which parameters got a non-zero gradient and whether anything
    frozen in the stage changed."""

    def __init__(self) -> None:
        self.trainable: dict[int, set[str]] = {}
        self.graded: dict[int, set[str]] = {}  # a non-zero gradient
        self.reached: dict[int, set[str]] = {}  # any gradient: the parameter is in the graph
        self.frozen_changed: dict[int, list[str]] = {}
        self._handles: list[Any] = []
        self._frozen: dict[str, torch.Tensor] = {}

    def on_stage_start(self, trainer: Any, stage: int) -> None:
        for h in self._handles:
            h.remove()
        model: nn.Module = trainer.model
        self.trainable[stage] = {n for n, p in model.named_parameters() if p.requires_grad}
        self.graded[stage] = set()
        self.reached[stage] = set()
        self._handles = [
            p.register_post_accumulate_grad_hook(self._graded(stage, n)) for n, p in model.named_parameters() if p.requires_grad
        ]
        self._frozen = {k: v.detach().clone() for k, v in _frozen_state(model).items()}

    def _graded(self, stage: int, name: str) -> Any:
        def hook(p: torch.Tensor) -> None:
            self.reached[stage].add(name)
            if p.grad is not None and bool(p.grad.ne(0).any()):
                self.graded[stage].add(name)

        return hook

    def on_epoch_end(self, trainer: Any, stage: int, epoch: int, metrics: dict[str, Any]) -> None:
        if epoch == trainer.cfg.stages[stage].epochs - 1:
            now = _frozen_state(trainer.model)
            self.frozen_changed[stage] = [k for k, v in self._frozen.items() if not torch.equal(now[k], v)]

    def hooks(self) -> dict[str, Any]:
        return {"on_stage_start": self.on_stage_start, "on_epoch_end": self.on_epoch_end}


def _frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Frozen parameters, and the buffers (BatchNorm statistics) of modules whose parameters are all frozen."""
    out = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    for name, mod in model.named_modules():
        params = list(mod.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            out.update({f"{name}.{b}": t for b, t in mod.named_buffers(recurse=False)})
    return out


def fit_uncached(cfg: dict[str, Any]) -> Any:
    """The same run as ``cfg`` with the freeze-boundary cache off (run name "uncached")."""
    plain = copy.deepcopy(cfg)
    plain["run"]["name"] = "uncached"
    plain.setdefault("cache", {})["enabled"] = False
    return tunelab.fit(plain)


def assert_trains_the_same(cached: Any, plain: Any) -> None:
    """Every epoch's training and validation loss, and every final weight, agree to float noise."""
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    for (n, p), (_, q) in zip(cached.model.state_dict().items(), plain.model.state_dict().items()):
        torch.testing.assert_close(p.float(), q.float(), rtol=1e-4, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
