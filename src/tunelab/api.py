"""Evaluate, predict and summarise: the functions behind ``tunelab evaluate|predict|summary``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.config import Config, load_config
from tunelab.data import ImageSet, count_classes, load_data, load_eval_set
from tunelab.data._decode import IMAGE_EXTENSIONS, BadImage, decode_file
from tunelab.engine.model import FineTuneModel
from tunelab.errors import ConfigError, DataError
from tunelab.freezing import layer_rows, lr_scales, param_totals, render_layer_table, select, set_train_mode, set_trainable
from tunelab.metrics import classification_metrics
from tunelab.model import build_model, place
from tunelab.runs import Run, load_run
from tunelab.train import predict_logits

log = logging.getLogger("tunelab")


def evaluate(run_dir: str | Path, data: str | None = None) -> dict[str, Any]:
    """Metrics of a finished run on ``data`` (a folder, CSV manifest or built-in name), or on the
    run's own test set (validation set when it has none)."""
    run = load_run(run_dir)
    cfg = run.config
    eval_set: ImageSet | None
    if data is not None:
        eval_set = load_eval_set(data, run.classes, cfg.data)
    else:
        splits = load_data(cfg.data)
        eval_set = splits.test or splits.val
        if eval_set is None:
            raise DataError(f"{run_dir}: the run has no test or validation set; pass --data FOLDER|CSV")
    logits = predict_logits(run.model, eval_set.inputs, cfg.data.eval_batch_size, torch.device("cpu"))
    return classification_metrics(logits, eval_set.labels, run.classes, detailed=True)


@dataclass
class Prediction:
    path: str  # the image file; for text, where the text came from (FILE:LINE, or --text N)
    top: list[tuple[str, float]]  # (class name, probability), best first
    text: str | None = None


def _imagenet_classes() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def _model_for(target: str | Path) -> tuple[FineTuneModel, list[str], Config]:
    """A finished run folder, or a config whose model keeps its pretrained ImageNet classifier."""
    p = Path(target)
    if p.is_dir():
        run: Run = load_run(p)
        return run.model, run.classes, run.config
    cfg = load_config(p)
    if cfg.model.num_classes != "imagenet":
        raise ConfigError(f"{p}: predicting from a config needs model.num_classes: imagenet (the pretrained "
                          "classifier); for a fine-tuned model pass its run folder")
    model = place(build_model(cfg.model, 1000), "cpu").eval()
    return model, _imagenet_classes(), cfg


def _expand_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p} does not exist (expected an image file or a folder of images)")
    if not files:
        raise DataError(f"no image files in {', '.join(inputs)} ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def predict(target: str | Path, inputs: list[str] | None = None, top_k: int = 5, *,
            texts: list[str] | None = None) -> list[Prediction]:
    """Top-k classes with probabilities for each image file (folders are searched for images). For a
    text run: for each of ``texts`` and each line of the ``inputs`` files (the text column of a
    CSV/TSV/JSON lines file, or one text per line of any other file)::

        predict("runs/rotten-tomatoes", texts=["A triumph."])[0].top   # [("fresh", 0.93), ("rotten", 0.07)]
    """
    model, classes, cfg = _model_for(target)
    if cfg.is_text:
        from tunelab.text.predict import text_inputs

        items, texts_shown, inputs_ = text_inputs(cfg, list(inputs or []), list(texts or []))
        shown: list[str | None] = list(texts_shown)
    else:
        if texts:
            raise DataError(f"{target}: --text needs a text model; this run's backbone {cfg.model.backbone} takes images")
        files = _expand_inputs(list(inputs or []))
        try:
            inputs_ = torch.stack([decode_file(f, cfg.data.image_size) for f in files])
        except BadImage as e:
            raise DataError(str(e)) from None
        items, shown = [str(f) for f in files], [None for _ in files]
    probs = predict_logits(model, inputs_, cfg.data.eval_batch_size, torch.device("cpu")).softmax(1)
    val, idx = probs.topk(min(top_k, len(classes)), dim=1)
    return [Prediction(item, [(classes[i], float(v)) for v, i in zip(vs, ix)], text)
            for item, text, vs, ix in zip(items, shown, val.tolist(), idx.tolist())]


def summary(config: Config | str | Path, overrides: list[str] | None = None) -> str:
    """The per-stage layer tables (trainable, parameters, BN mode, learning rate) without training."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if cfg.model.num_classes == "imagenet":
        num = 1000
    elif cfg.model.num_classes == "data":
        num = len(count_classes(cfg.data))
    else:
        num = int(cfg.model.num_classes)
    model = build_model(cfg.model.model_copy(update={"pretrained": False}), num)
    parts = [f"backbone {cfg.model.backbone}, {num} classes"]
    for si, (stage, lr) in enumerate(zip(cfg.stages, cfg.stage_lrs())):
        set_trainable(model, select(model, stage.train, where=f"stages.{si}.train"))
        set_train_mode(model, train_bn=stage.train_bn)
        title = f"stage {si + 1}/{len(cfg.stages)} '{stage.name or si}': {stage.epochs} epochs, {stage.optimizer} lr {lr:.2e}"
        rows = layer_rows(model, lr, lr_scales(model, stage.layer_decay))
        parts.append(render_layer_table(rows, param_totals(model), title))
    return "\n\n".join(parts)
