"""What the engine promises every task and model, run once over a table of (task, tiny model) pairs
instead of a copy per modality: the cached run trains the same numbers as the uncached one, a
resumed run ends where an uninterrupted one does, what a stage freezes stays bit-identical
(weights and BatchNorm statistics), and every parameter a stage trains gets a gradient.

A new task or model family joins by adding a row to ``CASES``: ``signals/cnn1d`` is a third modality
defined in the tests alone (:mod:`toy_signals`), registered and run through ``tunelab.fit``.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
import torch

import tunelab
from conftest import TINY
from toy_signals import registered, signal_cfg
from watch import Watch, assert_trains_the_same, fit_uncached


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


def _signal_cfg(tmp_path, tiny_text_cfg):
    return signal_cfg(tmp_path)  # registered by the fixture below


CASES = {
    "images/efficientnet": _image_cfg("test_efficientnet"),
    "images/resnet": _image_cfg("test_resnet"),
    "texts/bert": _text_cfg,
    "signals/cnn1d": _signal_cfg,
}


@pytest.fixture(params=list(CASES))
def case_cfg(request, tmp_path, tiny_text_cfg):
    cfg = CASES[request.param](tmp_path, tiny_text_cfg)
    cfg["cache"] = {"enabled": True, "autocast": "off"}  # fp32 both ways: equal to 1e-4
    with registered() if request.param.startswith("signals/") else contextlib.nullcontext():
        yield cfg


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

    plain = fit_uncached(case_cfg)
    assert "cache:" not in (plain.dir / "log.txt").read_text()
    assert_trains_the_same(cached, plain)


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
