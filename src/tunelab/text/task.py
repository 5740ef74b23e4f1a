"""The text modality as the engine and the use cases see it (:class:`tunelab.engine.task.Task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunelab.config import ModelConfig
from tunelab.engine.model import FineTuneModel
from tunelab.engine.task import Gallery, Task
from tunelab.errors import DataError
from tunelab.text import data as text_data
from tunelab.text.baselines import TfidfInputs
from tunelab.text.card import card_facts
from tunelab.text.config import MODALITY, TextDataConfig
from tunelab.text.distill import text_teacher
from tunelab.text.export import TextGraph
from tunelab.text.lexical_fit import blend_line, lexical_step
from tunelab.text.loop import TextLoop
from tunelab.text.model import build_text_model
from tunelab.text.predict import labelled, text_inputs
from tunelab.text.report import write_wrong_texts
from tunelab.text.transformers_export import TransformersFolder


def _wrong_texts(run_dir: Path, val: Any, probs: np.ndarray | None, classes: list[str]) -> Gallery | None:
    write_wrong_texts(run_dir, val, probs, classes)  # the texts the model is most confidently wrong about
    return None


def _held_out(cfg: TextDataConfig, classes: list[str]) -> Any:
    """A text run's own test set (else its validation, else its training set), split as the run split
    it (tokenizing is cheap beside decoding images, so the whole data is read as by the run)."""
    splits = text_data.load_text_data(cfg.model_copy(update={"evaluate_test": True}))
    if splits.classes != classes:
        raise DataError(
            f"data.train ({cfg.train}) has changed since the run: its classes are now "
            f"{', '.join(splits.classes)}, the run's {', '.join(classes)}; point data.train at the run's data"
        )
    return splits.test or splits.val or splits.train


def _model(cfg: ModelConfig, num_classes: int, data: TextDataConfig | None) -> FineTuneModel:
    return build_text_model(cfg, num_classes)


TEXTS: Task[TextDataConfig] = Task(
    modality=MODALITY,
    raw=TfidfInputs(),
    load_data=text_data.load_text_data,
    load_eval_set=text_data.load_text_eval_set,
    held_out=_held_out,
    classes=text_data.text_classes,
    model=_model,
    loop=TextLoop,
    prediction_inputs=text_inputs,
    report_extras=_wrong_texts,
    card_facts=card_facts,
    noun="text",
    library="transformers",
    augment_presets=(),
    few_shot=True,
    labelled=labelled,
    teacher=text_teacher,
    graph=TextGraph(),
    library_export=TransformersFolder(),
    post_fit=lexical_step,
    summary_lines=blend_line,
)
