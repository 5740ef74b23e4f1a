"""A third modality defined in the tests alone: 1-D signals (``model.family: signals``).

It touches no file of ``src/``: its configuration (:class:`~tunelab.config.Modality`) and its
:class:`~tunelab.engine.task.Task` are built here from the engine's and the core's parts, and
``tunelab.tasks.register(SIGNALS)`` makes ``tunelab.fit`` run it like images and texts. The data is
a built-in synthetic set (``data.train: sines``): class k is a sine of k + 1 periods over the
signal, at a random phase, in noise. The backbone is a small 1-D CNN (a stem with BatchNorm, one
block, global average pooling) with random weights; a stage that trains only the head runs on its
cached pooled features, as the built-in modalities' stages do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tunelab import config, tasks
from tunelab.config import Config, DataConfig, Modality, ModelConfig, StageConfig
from tunelab.engine.data import Splits
from tunelab.engine.loop import LoopContext, StagePlan, ViewBatches
from tunelab.engine.model import FineTuneModel
from tunelab.engine.probe import standardise
from tunelab.engine.task import Task
from tunelab.errors import DataError
from tunelab.heads import Head
from tunelab.objectives import data_objective
from tunelab.splitting import split_indices

log = logging.getLogger("tunelab")
CLASSES = ["one", "two", "three"]


class SignalDataConfig(DataConfig):
    """The data section of a signal run: the shared keys and the signals' length."""

    length: int = Field(48, ge=8, le=4096, description="samples per signal")
    per_class: int = Field(30, ge=2, description="signals per class in the built-in set")


def _stages(recipe: str) -> list[StageConfig]:
    head = StageConfig(name="head", train=["head"], epochs=3, lr=1e-2, schedule="cosine")
    every = StageConfig(name="all", train=["all"], epochs=3, lr=3e-3, schedule="cosine")
    return {"probe": [head], "full": [every]}.get(recipe, [head, every])


def _defaults(raw: dict[str, Any]) -> dict[str, Any]:
    reg = raw.get("regularization")
    reg = {"auto": True} if reg == "auto" else dict(reg or {})
    reg.setdefault("augment", "none")  # the image presets do not apply
    return {**raw, "regularization": reg}


def _check(cfg: Config) -> None:
    if cfg.regularization.augment != "none" or cfg.regularization.mixup is not None:
        raise ValueError("signals take no image augmentation or mixup: set regularization.augment: none")


MODALITY = Modality(name="signals", family="signals", data=SignalDataConfig, stages=_stages, defaults=_defaults, check=_check)


# --- data --------------------------------------------------------------------------------------


@dataclass
class SignalSet:
    signals: torch.Tensor  # float32 [N, 1, L]
    labels: torch.Tensor
    items: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> torch.Tensor:
        return self.signals

    def concat(self, other: SignalSet) -> SignalSet:
        return SignalSet(
            torch.cat([self.signals, other.signals]), torch.cat([self.labels, other.labels]), self.items + other.items
        )


def sines(n_per_class: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    t = np.linspace(0.0, 1.0, length, endpoint=False)
    phase = rng.uniform(0, 2 * np.pi, size=(len(labels), 1))
    x = np.sin(2 * np.pi * (labels[:, None] + 1) * t[None, :] + phase) + 0.5 * rng.normal(size=(len(labels), length))
    return x.astype(np.float32)[:, None, :], labels


def load_signals(cfg: SignalDataConfig) -> Splits[SignalSet]:
    if cfg.train != "sines":
        raise DataError(f"data.train: {cfg.train!r} is not a signal data set; valid: sines")
    x, labels = sines(cfg.per_class, cfg.length, seed=1234)
    data_objective(cfg).check(labels, CLASSES, "sines")
    train, val, test, _ = split_indices(labels, CLASSES, "sines", cfg, separate_test=False)

    def subset(idx: np.ndarray | None) -> SignalSet | None:
        if idx is None or not len(idx):
            return None
        return SignalSet(torch.from_numpy(x[idx]), torch.from_numpy(labels[idx]), [f"sines[{i}]" for i in idx])

    train_set = subset(train)
    assert train_set is not None
    return Splits(CLASSES, train_set, subset(val), subset(test) if cfg.evaluate_test else None)


# --- model -------------------------------------------------------------------------------------


class SignalBackbone(nn.Module):
    """Conv stem (with BatchNorm), one conv block, global average pooling: [B, 1, L] -> [B, width]."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.model = nn.Sequential(
            OrderedDict(
                stem=nn.Sequential(nn.Conv1d(1, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU()),
                block=nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.ReLU()),
                pool=nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten()),
            )
        )
        # the named groups freezing acts on (``{last_blocks: 1}`` is the block)
        self.groups = [
            (name, [f"{name}.{n}" for n, _ in m.named_parameters()])
            for name, m in self.model.named_children()
            if any(True for _ in m.parameters())
        ]
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_signal_model(cfg: ModelConfig, num_classes: int, data: SignalDataConfig | None) -> FineTuneModel:
    backbone = SignalBackbone()
    return FineTuneModel(backbone, Head(cfg.head, backbone.num_features, num_classes))


# --- the loop's side: the cache of pooled features ----------------------------------------------


class SignalLoop:
    def __init__(self, run: LoopContext) -> None:
        self.run = run

    def epoch_order(self, order: torch.Tensor, si: int, epoch: int) -> torch.Tensor:
        return order

    def train_inputs(self, idx: torch.Tensor) -> torch.Tensor:
        return self.run.splits.train.inputs[idx].to(self.run.device)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def plan(self, si: int) -> StagePlan | None:
        model, run = self.run.model, self.run
        if not run.cfg.cache.enabled:
            return None
        if any(p.requires_grad for p in model.backbone.parameters()):
            log.info("cache: off in this stage (the backbone trains)")
            return None
        log.info("cache: pooled features (the whole backbone is frozen)")
        val = run.splits.val
        return StagePlan("pooled", [self._pooled(run.splits.train.inputs)], self._pooled(val.inputs) if val else None)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        was = self.run.model.training
        self.run.model.eval()
        with torch.inference_mode():
            out = self.run.model.backbone(x.to(self.run.device)).float()
        self.run.model.train(was)
        return out.clone()

    def forward(self, plan: StagePlan, batch: Any) -> torch.Tensor:
        h = batch.to(self.run.device).float()
        self.run.step_values["pooled"] = h
        return self.run.model.head(h)

    def teacher_inputs(self, si: int, plan: StagePlan | None) -> ViewBatches | None:
        if plan is None:
            return None
        x = self.run.splits.train.inputs
        key = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:24]
        return ViewBatches(key, 1, len(x), lambda: self._batches(x))

    def _batches(self, x: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        bs = self.run.cfg.data.eval_batch_size
        for i in range(0, len(x), bs):
            yield 0, i, x[i : i + bs].to(self.run.device)


# --- what the use cases read ---------------------------------------------------------------------


class SampleInputs:
    """The raw-input baseline: a linear model on the standardised samples."""

    name = "samples"

    def inputs(self, split: Any, rows: np.ndarray | None = None) -> np.ndarray:
        x = split.signals if rows is None else split.signals[torch.from_numpy(rows)]
        return x.flatten(1).numpy()

    def features(self, x: Any) -> tuple[Any, Any]:
        return standardise(x)


class SignalGraph:
    def wrap(self, model: nn.Module, head: nn.Module) -> nn.Module:
        return nn.Sequential(model, head)

    def input_names(self, cfg: Config) -> list[str]:
        return ["signals"]

    def as_tensors(self, examples: Any, n: int) -> tuple[torch.Tensor, ...]:
        return (examples.inputs[:n].contiguous(),)

    def image_size(self, cfg: Config) -> int | None:
        return None

    def feed(self, cfg: Config, names: list[str]) -> str:
        return "float32 signals [B, 1, L]"

    def dynamic_dims(self) -> dict[int, str]:
        return {0: "batch"}


def _prediction_inputs(cfg: Config, files: list[str], texts: list[str]) -> tuple[list[str], list[str | None], Any]:
    arrays = [np.load(f, allow_pickle=False).astype(np.float32) for f in files]
    return files, [None] * len(files), torch.from_numpy(np.stack(arrays))[:, None, :]


def _card_facts(cfg: Config) -> dict[str, str]:
    length = cfg.data.length if isinstance(cfg.data, SignalDataConfig) else 0
    return {
        "pipeline_tag": "other",
        "input": f"1-D float signals of {length} samples",
        "limitation": "A synthetic modality of the tests.",
        "predict_args": "SIGNAL.npy",
    }


def _no_extras(run_dir: Path, val: Any, probs: np.ndarray | None, classes: list[str]) -> None:
    return None


def _no_teacher(model: nn.Module, cfg: Config, tcfg: Config, spec: str) -> nn.Module:
    return model


def _held_out(cfg: SignalDataConfig, classes: list[str]) -> Any:
    splits = load_signals(cfg)
    return splits.test or splits.val or splits.train


SIGNALS: Task[SignalDataConfig] = Task(
    modality=MODALITY,
    raw=SampleInputs(),
    load_data=load_signals,
    load_eval_set=lambda spec, classes, cfg: load_signals(cfg).train,
    held_out=_held_out,
    classes=lambda cfg: list(CLASSES),
    model=build_signal_model,
    loop=SignalLoop,
    prediction_inputs=_prediction_inputs,
    report_extras=_no_extras,
    card_facts=_card_facts,
    noun="signal",
    library="torch",
    augment_presets=(),
    few_shot=False,
    labelled=lambda spec: spec == "sines",
    teacher=_no_teacher,
    graph=SignalGraph(),
)


@contextlib.contextmanager
def registered() -> Iterator[Task[SignalDataConfig]]:
    """The modality registered (``tunelab.tasks.register``, its only registration) for the tests
    inside, then taken out again, so that the other tests see the built-in modalities alone."""
    tasks.register(SIGNALS)
    try:
        yield SIGNALS
    finally:
        tasks.TASKS.pop(SIGNALS.name, None)
        config._MODALITIES.pop(SIGNALS.name, None)


def signal_cfg(tmp_path: Path) -> dict[str, Any]:
    """A config of a few seconds on the sines."""
    return {
        "run": {"name": "signals", "progress": False, "seed": 0, "dir": str(tmp_path / "runs")},
        "model": {"family": "signals", "backbone": "cnn1d", "pretrained": False},
        "data": {"train": "sines", "test_split": 0.2, "batch_size": 16},
        "stages": [
            {"name": "head", "train": "head", "epochs": 6, "lr": 3e-2},
            {"name": "top", "train": ["head", {"last_blocks": 1}], "epochs": 6, "lr_scale": 0.3},
        ],
    }
