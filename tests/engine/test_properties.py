"""What the engine promises every task and model, run once over a table of (task, tiny model) pairs
instead of a copy per modality: the cached run trains the same numbers as the uncached one, a
resumed run ends where an uninterrupted one does, what a stage freezes stays bit-identical
(weights and BatchNorm statistics), and every parameter a stage trains gets a gradient.

A new task or model family joins by adding a row to ``CASES``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
from torch import nn

import tunelab
from conftest import TINY


def _image_cfg(backbone: str) -> Any:
    def make(tmp_path, tiny_text_cfg):
        cfg = copy.deepcopy(TINY)
        cfg["model"]["backbone"] = backbone
        cfg["regularization"] = {"augment": "none"}  # augmented views would differ between the two runs
        cfg["run"]["dir"] = str(tmp_path / "runs")
        return cfg
    return make


def _text_cfg(tmp_path, tiny_text_cfg):
    return json.loads(json.dumps(tiny_text_cfg))


CASES = {
    "images/efficientnet": _image_cfg("test_efficientnet"),
    "images/resnet": _image_cfg("test_resnet"),
    "texts/bert": _text_cfg,
}


class Watch:
    """Hooks that record, per stage, which parameters got a non-zero gradient and whether anything
    frozen in the stage changed."""

    def __init__(self) -> None:
        self.trainable: dict[int, set[str]] = {}
        self.graded: dict[int, set[str]] = {}
        self.frozen_changed: dict[int, list[str]] = {}
        self._handles: list[Any] = []
        self._frozen: dict[str, torch.Tensor] = {}

    def on_stage_start(self, trainer: Any, stage: int) -> None:
        for h in self._handles:
            h.remove()
        model: nn.Module = trainer.model
        self.trainable[stage] = {n for n, p in model.named_parameters() if p.requires_grad}
        self.graded[stage] = set()
        self._handles = [p.register_post_accumulate_grad_hook(self._graded(stage, n))
                         for n, p in model.named_parameters() if p.requires_grad]
        self._frozen = {k: v.detach().clone() for k, v in _frozen_state(model).items()}

    def _graded(self, stage: int, name: str) -> Any:
        def hook(p: torch.Tensor) -> None:
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


@pytest.fixture(params=list(CASES))
def case_cfg(request, tmp_path, tiny_text_cfg):
    cfg = CASES[request.param](tmp_path, tiny_text_cfg)
    cfg["cache"] = {"enabled": True, "autocast": "off"}  # fp32 both ways: equal to 1e-4
    return cfg


def test_shared_properties(case_cfg):
    watch = Watch()
    cached = tunelab.fit(case_cfg, hooks=watch.hooks())

    # the cache engaged, and every stage's frozen part stayed bit-identical
    assert "cache: pooled features" in (cached.dir / "log.txt").read_text()
    assert set(watch.frozen_changed) == set(range(len(case_cfg["stages"])))
    for stage, changed in watch.frozen_changed.items():
        assert not changed, f"stage {stage + 1} changed frozen tensors: {changed[:5]}"
    # every parameter a stage trains got a non-zero gradient in that stage
    for stage, names in watch.trainable.items():
        assert names - watch.graded[stage] == set(), f"stage {stage + 1}: no gradient reached these"

    plain_cfg = copy.deepcopy(case_cfg)
    plain_cfg["run"]["name"] = "uncached"
    plain_cfg["cache"]["enabled"] = False
    plain = tunelab.fit(plain_cfg)
    assert "cache:" not in (plain.dir / "log.txt").read_text()
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    for (n, p), (_, q) in zip(cached.model.state_dict().items(), plain.model.state_dict().items()):
        torch.testing.assert_close(p.float(), q.float(), rtol=1e-4, atol=1e-5, msg=n)


def test_resume_ends_where_an_uninterrupted_run_does(case_cfg):
    clean = tunelab.fit(case_cfg)
    cfg = copy.deepcopy(case_cfg)
    cfg["run"]["name"] = "interrupted"

    def stop(trainer: Any, stage: int, epoch: int, metrics: dict[str, Any]) -> None:
        if (stage, epoch) == (1, 0):  # after the checkpoint of stage 2's first epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tunelab.fit(cfg, hooks={"on_epoch_end": stop})
    resumed = tunelab.fit(resume=clean.dir.parent / "interrupted")
    assert "resuming stage 2 at epoch 2" in (resumed.dir / "log.txt").read_text()
    # bit-equal: the resumed optimizer's moments keep their parameters' channels_last strides (a
    # ResNet resumed with contiguous moments drifted by 1e-6 in the loss, 1e-3 in its weights)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in clean.history]
    for split in ("val", "test"):
        assert resumed.metrics[split]["loss"] == clean.metrics[split]["loss"]
    for (n, p), (_, q) in zip(clean.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(p, q), n
