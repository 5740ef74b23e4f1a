"""Evaluate, predict and summarise: the functions behind ``tunelab evaluate|predict|summary``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab import checkpoint as ckpt
from tunelab.config import Config, load_config
from tunelab.engine.device import place, predict_logits
from tunelab.engine.model import FineTuneModel
from tunelab.errors import ConfigError, DataError, RunError
from tunelab.freezing import layer_rows, lr_scales, param_totals, render_layer_table, select, set_train_mode, set_trainable
from tunelab.objectives import Objective, objective_of
from tunelab.run_folder import RunFolder, read_json
from tunelab.run_record import check_model
from tunelab.runs import Run, read_classes, read_metrics
from tunelab.tasks import random_weights, task_for

log = logging.getLogger("tunelab")


def load_run(run_dir: str | Path, *, device: str = "cpu") -> Run:
    """Rebuild a finished run's model from its config and final weights (no hub access needed)."""

    d = Path(run_dir)
    if not (d / RunFolder.CONFIG).is_file():
        raise ConfigError(f"{d} is not a run folder (no config.yaml)")
    cfg = load_config(d / RunFolder.CONFIG)
    weights = d / RunFolder.MODEL
    if not weights.is_file():
        raise ConfigError(f"{d} has no model.safetensors: the run did not finish; continue it with `tunelab fit --resume {d}`")
    classes = read_classes(d)
    num = len(classes) if cfg.model.num_classes == "data" else cfg.model.num_classes
    if num != len(classes):  # a run of an earlier tunelab, which let model.num_classes exceed the data's classes
        raise RunError(
            f"{d}/classes.json names {len(classes)} classes, but the model has {num} outputs "
            f"(model.num_classes: {num} in {d}/config.yaml): outputs without a class name cannot be "
            "reported; train the run again with model.num_classes: data"
        )
    check_model(d, weights)
    objective = read_objective(d, cfg)
    model = task_for(cfg).build_model(random_weights(cfg), int(num))
    model.head.out = objective.output_layer()  # its buffers (a regression's target scale) come with the weights
    tensors, _ = ckpt.load(weights)
    ckpt.load_model_state(model, tensors, str(weights))
    place(model, device).eval()
    return Run(d, cfg, model, classes, read_metrics(d, classes), objective=objective)


def read_objective(run_dir: Path, cfg: Config) -> Objective:
    """The run's objective with what it decided (thresholds): RUN_DIR/objective.json; a run of an
    earlier tunelab, which has none, was single-label with nothing decided."""
    objective = objective_of(cfg)
    path = run_dir / RunFolder.OBJECTIVE
    state = read_json(path, dict, {})
    if state.get("problem", objective.name) != objective.name:
        raise RunError(
            f"{path} is the record of a {state.get('problem')} run, but {run_dir}/config.yaml says data.problem "
            f"{objective.name}; restore the file (or the config) from a copy"
        )
    objective.load(state)
    return objective


def evaluate(run_dir: str | Path, data: str | None = None) -> dict[str, Any]:
    """Metrics of a finished run on ``data`` (a folder, CSV manifest or built-in name), or on the
    run's own test set (validation set when it has none)."""
    run = load_run(run_dir)
    cfg, task = run.config, task_for(run.config)
    if data is not None and data == cfg.data.train:
        # the data it trained on: scoring all of it would count the training examples
        log.info("%s is the run's own training data: scoring the part the run held out", data)
        data = None
    if data is not None:
        eval_set = task.load_eval_set(data, run.classes, cfg.data)
    else:
        splits = task.load_data(cfg.data)
        eval_set = splits.test or splits.val
        if eval_set is None:
            raise DataError(f"{run_dir}: the run has no test or validation set; pass --data FOLDER|CSV")
    logits = predict_logits(run.model, eval_set.inputs, cfg.data.eval_batch_size, torch.device("cpu"))
    return run.objective.metrics(logits, eval_set.labels, run.classes, detailed=True)


@dataclass
class Prediction:
    path: str  # the image file; for text, where the text came from (FILE:LINE, or --text N)
    top: list[tuple[str, float]]  # (class name, probability), best first; a regression's (target, value)
    text: str | None = None
    labels: list[str] | None = None  # multi-label: the labels predicted (each over its threshold)
    value: float | None = None  # regression: the predicted value, in the target's units


def _imagenet_classes() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def _model_for(target: str | Path) -> tuple[FineTuneModel, list[str], Config, Objective]:
    """A finished run folder, or a config whose model keeps its pretrained ImageNet classifier."""
    p = Path(target)
    if p.is_dir():
        run: Run = load_run(p)
        return run.model, run.classes, run.config, run.objective
    cfg = load_config(p)
    if cfg.model.num_classes != "imagenet":
        raise ConfigError(
            f"{p}: predicting from a config needs model.num_classes: imagenet (the pretrained "
            "classifier); for a fine-tuned model pass its run folder"
        )
    model = place(task_for(cfg).build_model(cfg, 1000), "cpu").eval()
    return model, _imagenet_classes(), cfg, objective_of(cfg)


def predict(
    target: str | Path, inputs: list[str] | None = None, top_k: int = 5, *, texts: list[str] | None = None
) -> list[Prediction]:
    """Top-k classes with probabilities for each image file (folders are searched for images). For a
    text run: for each of ``texts`` and each line of the ``inputs`` files (the text column of a
    CSV/TSV/JSON lines file, or one text per line of any other file)::

        predict("runs/rotten-tomatoes", texts=["A triumph."])[0].top   # [("fresh", 0.93), ("rotten", 0.07)]
    """
    if top_k < 1:
        raise ConfigError(f"top_k (--top-k) is {top_k}; it must be at least 1 (the number of best classes shown)")
    model, classes, cfg, objective = _model_for(target)
    try:
        items, shown, inputs_ = task_for(cfg).prediction_inputs(cfg, list(inputs or []), list(texts or []))
    except DataError as e:
        raise DataError(f"{target}: {e}") from None
    decoded = objective.decode(predict_logits(model, inputs_, cfg.data.eval_batch_size, torch.device("cpu")))
    rows = objective.predictions(decoded, classes, min(top_k, len(classes)))
    return [
        Prediction(item, row["top"], text, labels=row.get("labels"), value=row.get("value"))
        for item, text, row in zip(items, shown, rows)
    ]


def summary(config: Config | str | Path, overrides: list[str] | None = None) -> str:
    """The per-stage layer tables (trainable, parameters, BN mode, learning rate) without training."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if cfg.model.num_classes == "imagenet":
        num = 1000
    elif cfg.model.num_classes == "data":
        num = len(task_for(cfg).classes(cfg.data))
    else:
        num = int(cfg.model.num_classes)
    model = task_for(cfg).build_model(random_weights(cfg), num)
    parts = [f"backbone {cfg.model.backbone}, {num} classes"]
    for si, (stage, lr) in enumerate(zip(cfg.stages, cfg.stage_lrs())):
        set_trainable(model, select(model, stage.train, where=f"stages.{si}.train"))
        set_train_mode(model, train_bn=stage.train_bn)
        title = f"stage {si + 1}/{len(cfg.stages)} '{stage.name or si}': {stage.epochs} epochs, {stage.optimizer} lr {lr:.2e}"
        if stage.lr_if_features_fit is not None and cfg.model.pretrained:  # fit decides (tunelab.pretrained_fit)
            title += f" ({stage.lr_if_features_fit:.2e} if the pretrained features already fit the data)"
        rows = layer_rows(model, lr, lr_scales(model, stage.layer_decay))
        parts.append(render_layer_table(rows, param_totals(model), title))
    return "\n\n".join(parts)
