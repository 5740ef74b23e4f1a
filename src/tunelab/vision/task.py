"""The image modality as the engine and the use cases see it (:class:`tunelab.engine.task.Task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunelab.config import ModelConfig
from tunelab.engine.model import FineTuneModel
from tunelab.engine.task import Gallery, Task
from tunelab.vision import data as image_data
from tunelab.vision.auto_augment import AugmentByProbe, probe_outcome
from tunelab.vision.baselines import PixelInputs
from tunelab.vision.card import card_facts
from tunelab.vision.config import MODALITY, ImageDataConfig
from tunelab.vision.data.predict import image_inputs, labelled
from tunelab.vision.distill import image_teacher
from tunelab.vision.export import ImageGraph
from tunelab.vision.loop import ImageLoop
from tunelab.vision.model import build_image_model
from tunelab.vision.timm_export import TimmFolder


def _gallery(run_dir: Path, val: Any, probs: np.ndarray | None, classes: list[str]) -> Gallery | None:
    return (val.images.numpy(), val.labels.numpy(), probs) if val is not None and probs is not None else None


def _model(cfg: ModelConfig, num_classes: int, data: ImageDataConfig | None) -> FineTuneModel:
    return build_image_model(cfg, num_classes, image_size=data.image_size if data is not None else None)


IMAGES: Task[ImageDataConfig] = Task(
    modality=MODALITY,
    raw=PixelInputs(),
    load_data=image_data.load_data,
    load_eval_set=image_data.load_eval_set,
    held_out=image_data.load_held_out,
    classes=image_data.count_classes,
    model=_model,
    loop=ImageLoop,
    prediction_inputs=image_inputs,
    report_extras=_gallery,
    card_facts=card_facts,
    noun="image",
    library="timm",
    augment_presets=("none", "flip", "light"),
    few_shot=False,
    labelled=labelled,
    teacher=image_teacher,
    graph=ImageGraph(),
    library_export=TimmFolder(),
    decode_key="decode_cache",
    summary_lines=probe_outcome,
    probe_choice=AugmentByProbe(),
    unlabeled=image_data.load_unlabeled,
)
