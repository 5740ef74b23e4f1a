"""Distillation end to end on tiny models: a teacher run teaches a student run, with unlabelled
images, the teacher's logits computed once per stage, clear errors, and an exact resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tunelab
from conftest import TINY
from tunelab.config import build_config
from tunelab.errors import ConfigError


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp_path_factory.mktemp("teacher")), name="teacher", baselines=False)
    cfg["stages"] = [{"name": "head", "train": "head", "epochs": 2, "lr": 1e-2}]
    return tunelab.fit(cfg).dir


def _student(tiny_cfg: dict[str, Any], teacher: Path, **distill: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["image_size"] = 24  # the teacher ran at 32: it gets the student's images resized
    cfg["stages"].append({"name": "all", "train": "all", "epochs": 1, "lr": 1e-4})  # uncached: per batch
    cfg["distill"] = {"teacher": str(teacher), **distill}
    return cfg


class TeacherCalls:
    """Counts the teacher's forward passes in each stage's training epochs (after its setup)."""

    def __init__(self) -> None:
        self.total, self.start = 0, 0
        self.calls: dict[int, int] = {}
        self.train_sizes: list[int] = []

    def on_stage_start(self, trainer: Any, stage: int) -> None:
        if stage == 0:
            trainer.distill.teacher.register_forward_hook(lambda m, i, o: setattr(self, "total", self.total + 1))
        self.start = self.total
        self.train_sizes.append(len(trainer.splits.train))

    def on_epoch_end(self, trainer: Any, stage: int, epoch: int, metrics: dict[str, Any]) -> None:
        self.calls[stage] = self.total - self.start

    def hooks(self) -> dict[str, Any]:
        return {"on_stage_start": self.on_stage_start, "on_epoch_end": self.on_epoch_end}


def test_a_distilled_run_with_unlabelled_images(tiny_cfg, teacher_dir, image_folder):
    plain = tunelab.fit(copy.deepcopy(tiny_cfg) | {"run": {**tiny_cfg["run"], "name": "plain"}})
    watch = TeacherCalls()
    run = tunelab.fit(_student(tiny_cfg, teacher_dir, unlabeled=str(image_folder)), hooks=watch.hooks())
    log = (run.dir / "log.txt").read_text()
    # cached stages read the teacher's logits computed once; the stage that trains everything runs it per batch
    assert "distill: teacher logits of 2 view(s) of 98 training examples (computed" in log
    assert "distill: teacher logits of 2 view(s) of 98 training examples (reused" in log
    assert "distill: teacher logits computed on each batch" in log
    assert watch.calls[0] == watch.calls[1] == 0 and watch.calls[2] > 0
    # the 18 unlabelled images train, and appear nowhere else
    assert watch.train_sizes == [98, 98, 98]
    assert run.metrics["n_train"] == 80 and run.metrics["n_unlabeled"] == 18
    assert json.loads((run.dir / "data.json").read_text()) == json.loads((plain.dir / "data.json").read_text())
    baselines = json.loads((run.dir / "baselines.json").read_text())
    assert baselines == json.loads((plain.dir / "baselines.json").read_text())
    # the KL term is reported like a penalty: metrics, epoch line, audit, report
    assert all("penalty_distill" in r for r in run.history)
    assert "| distill " in log
    audit = json.loads((run.dir / "stages.json").read_text())["0"]["audit"]
    assert "distill" in audit and "T 2, alpha 0.5" in audit
    assert "distillation" in (run.dir / "README.md").read_text()


def test_a_teacher_of_other_classes_is_a_clear_error(tiny_cfg, image_folder, tmp_path):
    other = copy.deepcopy(tiny_cfg)
    other["run"].update(name="other", baselines=False)
    other["data"].update(
        train=str(image_folder),
        samples_per_class=None,
        val_samples_per_class=None,
        test_samples_per_class=None,
        val_split=0.0,
        test_split=0.0,
    )
    other["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-3}]
    teacher = tunelab.fit(other).dir
    with pytest.raises(
        ConfigError,
        match=r"distill.teacher: .* was trained on the classes cat, dog, fox, the student's "
        r"data has class0.*same classes in the same order",
    ):
        tunelab.fit(_student(tiny_cfg, teacher))
    with pytest.raises(
        ConfigError,
        match=r"distill.teacher: .*nope is not a run folder .*valid: the folder of a "
        r"finished `tunelab fit` run",
    ):
        tunelab.fit(_student(tiny_cfg, tmp_path / "nope"))


def test_config_refuses_unlabelled_images_where_they_cannot_go():
    with pytest.raises(ConfigError, match=r"distill\.unlabeled: stage 0 is a probe stage"):
        build_config({"stages": [{"objective": "probe"}], "distill": {"teacher": "runs/t", "unlabeled": "photos"}})
    with pytest.raises(ConfigError, match=r"distill\.unlabeled is a folder of images"):
        build_config({"data": {"train": "rotten-tomatoes"}, "distill": {"teacher": "runs/t", "unlabeled": "photos"}})
    with pytest.raises(ConfigError, match=r"distill\.teacher: Field required"):
        build_config({"distill": {"alpha": 1.0}})


def test_resume_mid_distillation_ends_like_an_uninterrupted_run(tiny_cfg, teacher_dir, image_folder):
    cfg = _student(tiny_cfg, teacher_dir, unlabeled=str(image_folder), temperature=3.0, alpha=0.3)
    cfg["cache"] = {"autocast": "off"}
    clean = tunelab.fit(cfg)
    cfg = copy.deepcopy(cfg)
    cfg["run"]["name"] = "interrupted"

    def stop(trainer: Any, stage: int, epoch: int, metrics: dict[str, Any]) -> None:
        if (stage, epoch) == (1, 0):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tunelab.fit(cfg, hooks={"on_epoch_end": stop})
    resumed = tunelab.fit(resume=clean.dir.parent / "interrupted")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in clean.history]
    assert [r["penalty_distill"] for r in resumed.history] == [r["penalty_distill"] for r in clean.history]
    for (n, p), (_, q) in zip(clean.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(p, q), n


def test_a_text_student_distils_from_a_text_teacher(tiny_text_cfg):
    teacher = tunelab.fit(tiny_text_cfg)
    cfg = copy.deepcopy(tiny_text_cfg)
    cfg["run"].update(name="text-student", seed=1)
    cfg["stages"].append({"name": "all", "train": "all", "epochs": 1, "lr": 1e-4})  # random windows: per batch
    cfg["distill"] = {"teacher": str(teacher.dir)}
    run = tunelab.fit(cfg)
    log = (run.dir / "log.txt").read_text()
    assert "distill: teacher logits of 1 view(s)" in log and "distill: teacher logits computed on each batch" in log
    assert all(r["penalty_distill"] > 0 for r in run.history)
    cfg["run"]["name"] = "other-tokens"
    cfg["data"]["text"]["max_length"] = 24
    with pytest.raises(ConfigError, match=r"distill\.teacher: .* data\.text\.max_length: 16, the student has 24"):
        tunelab.fit(cfg)
