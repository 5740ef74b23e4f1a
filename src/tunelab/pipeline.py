"""``fit``: from a config to a trained, evaluated, reported run. The task of the config (images,
texts: :mod:`tunelab.tasks`) supplies the data, the model and the trainer; the loop itself is
:class:`tunelab.engine.trainer.Trainer`.

    run = tunelab.fit("examples/default.yaml", overrides=["data.samples_per_class=20"])
    run.metrics["test"]["accuracy"]

Resume: after every epoch the full training state (weights, optimizer, scheduler, RNG, early
stopping, position) goes into ``checkpoints/last.safetensors`` atomically; ``fit(resume=RUN_DIR)``
rebuilds the model from the run's saved config and continues with the next epoch, giving the same
result as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab import checkpoint as ckpt
from tunelab import distributed
from tunelab.auto import apply_auto, apply_min_steps
from tunelab.baselines import render as render_baselines
from tunelab.baselines import run_baselines
from tunelab.card import write_model_card
from tunelab.config import Config, build_config, load_config
from tunelab.diagnosis import Score, diagnose, prior_loss, score_of
from tunelab.distill import add_unlabeled, distiller, load_teacher
from tunelab.distributed import Dist
from tunelab.engine.data import Splits
from tunelab.engine.device import pick_device, place
from tunelab.engine.distill import Distiller
from tunelab.engine.model import FineTuneModel
from tunelab.engine.resume import Position, position_from_state
from tunelab.engine.rng import seed_everything
from tunelab.engine.trainer import HOOKS, Hook, Trainer
from tunelab.errors import ConfigError, DiskFullError, Interrupted
from tunelab.few_shot import apply_few_shot
from tunelab.freezing import select
from tunelab.metrics import format_metrics, per_class_table
from tunelab.objectives import Objective, counted, objective_of
from tunelab.pretrained_fit import apply_fit, probe_fit, probe_wanted, wanted, why_not_probed
from tunelab.refit import refit_stages, should_refit
from tunelab.regularizers import Penalty, build_penalties, check_coverage, pretrained_reference
from tunelab.report import write_report
from tunelab.run_folder import RunFolder
from tunelab.run_record import check_checkpoint, check_config, read_record, record_model, run_id, write_config
from tunelab.runs import (
    Run,
    lock_run_dir,
    new_run_dir,
    read_history,
    remove_stale_files,
    run_logging,
)
from tunelab.tasks import PostFit, Task, decode_folder, task_for, with_decode_folder

log = logging.getLogger("tunelab")


def fit(
    config: Config | str | Path | dict[str, Any] | None = None,
    *,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
    hooks: dict[str, Hook] | None = None,
) -> Run:
    """Train per the config's stages and evaluate; returns the :class:`Run` (metrics, model, folder).

    ``config`` is a :class:`Config`, a YAML path, a dict, or None for the defaults. ``resume`` is a
    run folder of an interrupted run; its saved config is used (giving a config too is an error).
    The run folder is locked while fit writes it (:func:`tunelab.runs.lock_run_dir`).
    """
    hooks = _check_hooks(hooks)
    if resume is not None:
        if config is not None or overrides:
            raise ConfigError(
                f"a resume continues {resume} with the config saved in it (config.yaml); give a config "
                "to start a new run, or resume=RUN_DIR alone to continue one, not both"
            )
        run_dir = Path(resume)
        cfg = _resume_config(run_dir)
    elif isinstance(config, Config):
        cfg = config.model_copy(deep=True)
    elif isinstance(config, dict):
        cfg = build_config(config, overrides)
    else:
        cfg = load_config(config, overrides)
    # under accelerate launch / torchrun: join the other processes; rank 0 names the run folder
    dist, dist_device = distributed.init(cfg.run.device)
    if resume is None:
        run_dir = Path(dist.broadcast(str(new_run_dir(cfg)) if dist.main else None))
    try:
        # rank 0 writes the folder: it alone holds the lock, from before it reads the saved state
        with lock_run_dir(run_dir) if dist.main else contextlib.nullcontext():
            return _fit_in(cfg, run_dir, resume is not None, hooks, dist, dist_device)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM under the CLI: the checkpoints keep every finished epoch
        raise Interrupted(
            f"the run continues from its last finished epoch with `tunelab fit --resume {run_dir}`", getattr(e, "signum", 2)
        ) from None


def _fit_in(
    cfg: Config, run_dir: Path, resuming: bool, hooks: dict[str, Hook], dist: Dist, dist_device: torch.device | None
) -> Run:
    """fit in its locked run folder: the saved config and checkpoint checked on a resume, the log
    opened, and a full disk turned into a message that says how to continue."""
    if resuming:
        check_config(run_dir, cfg)
    pos = _read_position(run_dir, cfg) if resuming else Position()
    if dist.main and (not resuming or not read_record(run_dir)):  # a folder of an older tunelab gets its record now
        write_config(run_dir, cfg)
    dist.barrier()
    try:
        with run_logging(run_dir, main=dist.main):
            if resuming and dist.main:
                _remove_stale_files(run_dir)
            return _fit(cfg, run_dir, pos, hooks, dist, dist_device or pick_device(cfg.run.device))
    except DiskFullError as e:  # checkpoints are atomic: everything up to the last epoch is kept
        raise DiskFullError(
            f"{e}. Nothing is lost: once there is room, continue the run with `tunelab fit --resume {run_dir}`"
        ) from None


def _check_hooks(hooks: dict[str, Hook] | None) -> dict[str, Hook]:
    hooks = dict(hooks or {})
    unknown = [k for k in hooks if k not in HOOKS]
    if unknown:
        raise ConfigError(f"unknown hook name(s) {', '.join(unknown)}; valid: {', '.join(HOOKS)}")
    return hooks


def _resume_config(run_dir: Path) -> Config:
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such folder; give the run folder of the run to continue")
    cfg_path = run_dir / RunFolder.CONFIG
    if not cfg_path.is_file():
        raise ConfigError(f"--resume {run_dir}: not a run folder (no config.yaml)")
    return load_config(cfg_path)


def _read_position(run_dir: Path, cfg: Config) -> Position:
    """Where the run in ``run_dir`` stopped: its last checkpoint's position, checked against the config."""
    last = run_dir / RunFolder.LAST
    if not last.is_file():  # killed before the first epoch ended: start over in the same folder
        return Position()
    tensors, state = ckpt.load(last)
    check_checkpoint(run_dir, state, last)
    return position_from_state(tensors, state, [st.epochs for st in cfg.stages], str(last))


def _remove_stale_files(run_dir: Path) -> None:
    stale = remove_stale_files(run_dir)
    if stale:
        log.info(
            "removed %d temporary file(s) an interrupted process left behind: %s",
            len(stale),
            ", ".join(str(p.relative_to(run_dir)) for p in stale[:5]) + (" ..." if len(stale) > 5 else ""),
        )


def _truncate_metrics(run_dir: Path, pos: Position) -> None:
    """Drop metric rows written after the checkpoint a resume starts from."""
    keep = [r for r in read_history(run_dir) if (r["stage"], r["epoch"]) <= (pos.stage, pos.epoch)]
    if (run_dir / RunFolder.HISTORY).is_file():
        ckpt.atomic_write_text(run_dir / RunFolder.HISTORY, "".join(json.dumps(r) + "\n" for r in keep))


@dataclass
class _Findings:
    """What the steps before training found, handed on in memory to the diagnoses and the report
    (the files of the same names are for users and for a resume, which reads them back once)."""

    baselines: dict[str, Any] | None = None
    pretrained_fit: dict[str, Any] | None = None

    @classmethod
    def of(cls, run_dir: Path) -> _Findings:
        """What an interrupted run had found before its first checkpoint (nothing for a new run)."""
        folder = RunFolder(run_dir)
        return cls(folder.read_json(RunFolder.BASELINES, dict), folder.read_json(RunFolder.PROBE, dict))

    def as_metrics(self) -> dict[str, Any]:
        return {k: v for k, v in (("baselines", self.baselines), ("pretrained_fit", self.pretrained_fit)) if v is not None}


@dataclass(frozen=True)
class _FitContext:
    """What the steps of one fit share and never change: its task, objective (the problem type's
    loss and metrics), run folder, hooks, processes, device and the model's number of outputs."""

    task: Task[Any]
    objective: Objective
    run_dir: Path
    hooks: dict[str, Hook]
    dist: Dist
    device: torch.device
    num_classes: int
    found: _Findings
    score: Score  # what the diagnoses read of the run's problem type
    post_fit: PostFit | None  # the modality's step after training, holding what it chose


@dataclass(frozen=True)
class _FirstFit:
    """What the first fit hands to the final model: how many training examples have labels (the
    first ``n_labelled``), the teacher to distil from and its validation logits."""

    n_labelled: int
    teacher: Callable[[Trainer], Distiller] | None
    val_logits: torch.Tensor | None


def _fit(cfg: Config, run_dir: Path, pos: Position, hooks: dict[str, Hook], dist: Dist, device: torch.device) -> Run:
    t_start, task, objective = time.perf_counter(), task_for(cfg), objective_of(cfg)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)
    log.info("run folder: %s", run_dir)
    cfg, splits, scratch = _load_data(cfg, task, objective, run_dir, dist, device)
    cfg, num_classes = _fitted_config(cfg, splits, objective, run_dir, dist)
    objective = objective_of(cfg)  # as the fitted config makes it; learns from the labelled training targets
    objective.fit(splits.train.labels, num_classes, device)
    score = score_of(objective, _prior_loss(objective, splits.train.labels))
    post_fit = task.post_fit(cfg, run_dir) if task.post_fit is not None else None
    ctx = _FitContext(task, objective, run_dir, hooks, dist, device, num_classes, _Findings.of(run_dir), score, post_fit)
    model, penalties = _model_for_training(cfg, ctx, pos, run_dir)
    cfg = _before_training(cfg, ctx, splits, model, penalties, pos)
    n_labelled = len(splits.train)
    teacher = distiller(cfg, load_teacher(cfg, splits.classes, num_classes, device)) if cfg.distill else None
    splits = add_unlabeled(cfg, splits)  # after the counts and baselines, which need labels
    trainer = _trainer(cfg, ctx, run_dir, splits, model, penalties, teacher)
    _train_stages(trainer, pos, ctx, diagnose_stages=True)

    trainer.model.eval()
    val_logits = trainer.predict(splits.val.inputs) if splits.val is not None else None
    if ctx.post_fit is not None:  # the modality's step after training (texts: the lexical blend)
        cfg = ctx.post_fit.choose(cfg, trainer.model, splits, val_logits, dist.main)
        if dist.main:
            write_config(run_dir, cfg)
    first = _FirstFit(n_labelled, teacher, val_logits)
    model, trainer, final, val_probs = _final_model(cfg, ctx, splits, trainer, first)
    final["seconds"] = time.perf_counter() - t_start
    if score.prior is not None:
        final["prior_loss"] = score.prior  # for the report's diagnoses of the stages
    dist.barrier()  # metrics.jsonl and model.safetensors are complete; no rank reads the caches any more
    history = read_history(run_dir)
    if dist.main:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    if not dist.main:  # rank 0 writes the metrics, the report and TensorBoard's summary
        return Run(run_dir, cfg, model, splits.classes, final, history, rank=dist.rank)
    _report(cfg, task, run_dir, splits, final, history, val_probs, trainer, ctx.found)
    return Run(run_dir, cfg, model, splits.classes, final, history)


def _load_data(
    cfg: Config, task: Task[Any], objective: Objective, run_dir: Path, dist: Dist, device: torch.device
) -> tuple[Config, Splits[Any], list[Path]]:
    """The run's data splits (decoded on rank 0 first where the ranks share a decode cache), with the
    config as the shared folders make it and the folders only this run uses."""
    cfg, scratch = _shared_folders(cfg, task, run_dir, dist, device)
    with dist.main_first() if decode_folder(cfg, task) else contextlib.nullcontext():
        splits = task.load_data(cfg.data)
    log.info("data: %s\n%s", counted(objective, len(splits.classes)), splits.count_table(objective))
    return cfg, splits, scratch


def _before_training(
    cfg: Config, ctx: _FitContext, splits: Splits[Any], model: FineTuneModel, penalties: list[Penalty], pos: Position
) -> Config:
    """What is done with the pretrained model before any training: the penalties' coverage checked,
    the stages' rates chosen by the probe, and (rank 0) the metrics after a resume's checkpoint
    dropped and the baselines scored. Returns the config as the probe makes it."""
    log.info("backbone %s (weights: %s)", cfg.model.backbone, model.weights_source())
    check_coverage(penalties, [select(model, st.train, where=f"stages.{i}.train") for i, st in enumerate(cfg.stages)])
    if wanted(cfg) and not pos.tensors:  # the pretrained features, before any training
        cfg = _rates_by_probe(cfg, splits, model, ctx)
    if ctx.dist.main and not pos.tensors:  # the config resolved (the data's and the probe's choices): once
        write_config(ctx.run_dir, cfg)
    if ctx.dist.main:
        _truncate_metrics(ctx.run_dir, pos)
        if cfg.run.baselines and not pos.tensors:  # before training: the probe needs the pretrained features
            scores = run_baselines(
                splits,
                model,
                raw=ctx.task.raw,
                objective=ctx.objective,
                batch_size=cfg.data.eval_batch_size,
                device=ctx.device,
                seed=cfg.run.seed,
            )
            ctx.found.baselines = scores
            RunFolder(ctx.run_dir).write_json(RunFolder.BASELINES, scores)
    return cfg


def _trainer(
    cfg: Config,
    ctx: _FitContext,
    folder: Path,
    splits: Splits[Any],
    model: FineTuneModel,
    penalties: list[Penalty],
    teacher: Callable[[Trainer], Distiller] | None,
) -> Trainer:
    """The loop that trains ``model`` per ``cfg``'s stages, writing into ``folder`` (the run folder,
    or its refit's) under the run's id."""
    return Trainer(
        cfg=cfg,
        run_dir=folder,
        splits=splits,
        model=model,
        device=ctx.device,
        task_loop=ctx.task.loop,
        objective=ctx.objective,
        hooks=ctx.hooks,
        penalties=penalties,
        dist=ctx.dist,
        distill=teacher,
        run_id=run_id(ctx.run_dir),
    )


def _prior_loss(objective: Objective, labels: torch.Tensor) -> float | None:
    """What the diagnosis compares a multi-label run's training loss with: the loss of predicting
    each label's frequency, weighted as the objective weighs the training loss (positive weights)."""
    weights = getattr(objective, "pos_weight", None)  # a multi-label objective's, set by its fit
    return prior_loss(labels.numpy(), None if weights is None else weights.cpu().numpy())


def _train_stages(trainer: Trainer, pos: Position, ctx: _FitContext, *, diagnose_stages: bool = False) -> None:
    """Every stage of the trainer's config from ``pos`` on (the first fit's and the refit's loop);
    with ``diagnose_stages`` each trained stage's diagnosis is logged (rank 0), knowing what the
    probe on the pretrained features found (no flip advice where it turned flips off)."""
    cfg = trainer.cfg
    for si in range(pos.stage, len(cfg.stages)):
        trainer.run_stage(si, pos)
        if diagnose_stages and cfg.stages[si].epochs and ctx.dist.main:
            found = {"pretrained_fit": ctx.found.pretrained_fit} if ctx.found.pretrained_fit is not None else None
            log.info(diagnose(read_history(trainer.dir), cfg, stage=si, final=found, score=ctx.score).render())


def _rates_by_probe(cfg: Config, splits: Splits[Any], model: FineTuneModel, ctx: _FitContext) -> Config:
    """The stages' ``lr_if_features_fit`` resolved by the linear probe on the pretrained features
    (:mod:`tunelab.pretrained_fit`), with what the modality asks the probe to decide, on rank 0 for
    every rank."""
    run_dir, dist, device, choice = ctx.run_dir, ctx.dist, ctx.device, ctx.task.probe_choice
    fit = dist.broadcast(
        probe_fit(
            model,
            splits.train.inputs,
            splits.train.labels.numpy(),
            cfg.data.eval_batch_size,
            device,
            cfg.run.seed,
            choice=choice if choice is not None and choice.wanted(cfg) else None,
        )
        if dist.main and probe_wanted(cfg)
        else None
    )
    cfg, chosen = apply_fit(cfg, fit, splits.train, choice)
    log.info(
        "pretrained features: %s\n%s",
        f"not probed ({why_not_probed(cfg)})"
        if fit is None
        else f"linear probe {fit['cv_accuracy']:.3f} cross-validated, majority class {fit['majority']:.3f}, "
        f"kappa {fit['kappa']:.2f}",
        "\n".join(f"  {k}: {v}" for k, v in chosen.items()),
    )
    ctx.found.pretrained_fit = fit
    if dist.main and fit is not None:
        RunFolder(run_dir).write_json(RunFolder.PROBE, fit)
    return cfg


def _final_model(
    cfg: Config, ctx: _FitContext, splits: Splits[Any], trainer: Trainer, first: _FirstFit
) -> tuple[FineTuneModel, Trainer, dict[str, Any], np.ndarray | None]:
    """Validation metrics of the trained model, the refit when there is one (distilling from the
    first fit's teacher too), the lexical blend attached, the saved weights and the test metrics:
    (final model, its trainer, metrics, validation probabilities)."""
    model, objective = trainer.model, ctx.objective
    final = _fit_facts(splits, first.n_labelled, ctx.dist)
    val_probs = None
    if splits.val is not None and first.val_logits is not None:
        decision = objective.tune(first.val_logits, splits.val.labels)  # kept through the refit, export and predict
        if decision:
            final["decision"] = decision
            log.info("chosen on the validation split: %s", ", ".join(f"{k} {v}" for k, v in decision.items()))
        final["val"] = objective.metrics(first.val_logits, splits.val.labels, splits.classes, detailed=True)
        val_probs = objective.decode(first.val_logits)
    if splits.val is not None and should_refit(cfg, first.n_labelled, len(splits.val), len(splits.classes)):
        model, trainer, final["refit"] = _refit_scored(cfg, ctx, splits, trainer, first.teacher)
    logits = trainer.predict(splits.test.inputs) if splits.test is not None else None  # the network alone
    step = ctx.post_fit
    if step is not None and step.record:
        step.finish(model, splits, cfg.run.seed, ctx.device)
        final[step.name] = step.record
    if ctx.dist.main:
        state = {"problem": objective.name, **objective.state()}
        RunFolder(ctx.run_dir).write_json(RunFolder.OBJECTIVE, state)
        ckpt.save(
            ctx.run_dir / RunFolder.MODEL,
            model.state_dict(),
            {"backbone": cfg.model.backbone},
            before_rename=lambda tmp: record_model(ctx.run_dir, tmp),
        )
    if splits.test is not None and logits is not None:
        if step is not None and step.record:
            logits = step.test_logits(logits, splits.test, cfg.data.eval_batch_size)
        final["test"] = objective.metrics(logits, splits.test.labels, splits.classes, detailed=True)
    return model, trainer, final, val_probs


def _fit_facts(splits: Splits[Any], n_labelled: int, dist: Dist) -> dict[str, Any]:
    """The metrics' first entries: unreadable examples, how many examples trained (labelled and
    not) and under how many processes."""
    final: dict[str, Any] = {"skipped_images": splits.skipped, "n_train": n_labelled}
    if len(splits.train) > n_labelled:
        final["n_unlabeled"] = len(splits.train) - n_labelled
    if dist.enabled:
        final["processes"] = dist.world
    return final


def _refit_scored(
    cfg: Config, ctx: _FitContext, splits: Splits[Any], trainer: Trainer, teacher: Callable[[Trainer], Distiller] | None
) -> tuple[FineTuneModel, Trainer, dict[str, Any]]:
    """The refit (:func:`_refit`), its record holding the first fit's test metrics for comparison."""
    first_test = trainer.predict(splits.test.inputs) if splits.test is not None else None
    model, trainer, record = _refit(cfg, ctx, splits, teacher)
    if first_test is not None and splits.test is not None:
        record["first_fit_test"] = ctx.objective.metrics(first_test, splits.test.labels, splits.classes)
    return model, trainer, record


def _shared_folders(cfg: Config, task: Task[Any], run_dir: Path, dist: Dist, device: torch.device) -> tuple[Config, list[Path]]:
    """Under several processes: where the ranks share decoded images and cached features, and the
    folders only this run uses (removed when it ends)."""
    scratch: list[Path] = []
    if not dist.enabled:
        return cfg, scratch
    log.info(
        "distributed: %d processes (%s backend), global batch %d, %s per process",
        dist.world,
        torch.distributed.get_backend(),
        cfg.data.batch_size,
        device,
    )
    if task.decode_key is not None and decode_folder(cfg, task) is None:  # decode once, on rank 0; the others map the files
        cfg = with_decode_folder(cfg, task, str(run_dir / "decoded"))
        scratch.append(run_dir / "decoded")
    if cfg.cache.folder is None:  # the ranks share the cache through files here
        scratch.append(run_dir / "cache")
    return cfg, scratch


def _fitted_config(cfg: Config, splits: Splits[Any], objective: Objective, run_dir: Path, dist: Dist) -> tuple[Config, int]:
    """The config as the data makes it (the few-shot text recipe, ``regularization: auto``, stages
    stretched to their min_steps; config.yaml gets it with the probe's choices, once, before
    training: :func:`_before_training`), and the number of outputs."""
    num_classes = _outputs(cfg, splits.classes)
    labelled = len(splits.train) + (len(splits.val) if splits.val is not None else 0)
    cfg, few = apply_few_shot(cfg, labelled / max(1, len(splits.classes)))
    if few:
        log.info("few labelled texts a class:\n%s", "\n".join(f"  {k}: {v}" for k, v in few.items()))
    if cfg.regularization.auto:
        cfg, chosen = apply_auto(cfg, len(splits.train) / len(splits.classes), len(splits.classes))
        if chosen:
            log.info("regularization: auto chose\n%s", "\n".join(f"  {k}: {v}" for k, v in chosen.items()))
    cfg, stretched = apply_min_steps(cfg, len(splits.train))
    if stretched:
        log.info(
            "small training set: more epochs for the stages' min_steps\n%s",
            "\n".join(f"  {k}: {v}" for k, v in stretched.items()),
        )
    if dist.main:
        RunFolder(run_dir).write_json(RunFolder.CLASSES, splits.classes)
        RunFolder(run_dir).write_json(RunFolder.DATA, splits.summary(objective))
    return cfg, num_classes


def _outputs(cfg: Config, classes: list[str]) -> int:
    """The model's outputs: one per class of the data (checked before anything is trained: an output
    without a class has no name for the report or a prediction)."""
    if cfg.model.num_classes == "imagenet":
        raise ConfigError(
            "model.num_classes: imagenet keeps the pretrained classifier, which cannot be fine-tuned "
            "on this data; use 'data' (one output per class found) for fit"
        )
    if cfg.model.num_classes != "data" and int(cfg.model.num_classes) != len(classes):
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(
            f"model.num_classes: {cfg.model.num_classes}, but the data has {len(classes)} classes "
            f"({shown}); a model has one output per class: set model.num_classes: data (or "
            f"{len(classes)})"
        )
    return len(classes)


def _report(
    cfg: Config,
    task: Task[Any],
    run_dir: Path,
    splits: Splits[Any],
    final: dict[str, Any],
    history: list[dict[str, Any]],
    val_probs: Any,
    trainer: Trainer,
    found: _Findings,
) -> None:
    """metrics.json, the printed summary, the diagnosis, the HTML report and TensorBoard's summary."""
    final.update(found.as_metrics())
    verdict = diagnose(history, cfg, final=final, score=score_of(trainer.objective, final.get("prior_loss")))
    final["diagnosis"] = verdict.to_dict()
    RunFolder(run_dir).write_json(RunFolder.METRICS, final)
    if "test" in final and per_class_table(final["test"]):
        log.info("per-class test metrics:\n%s", per_class_table(final["test"]))
    for name in ("val", "test"):
        if name in final:
            log.info("%s: %s", name, format_metrics(final[name]))
            if name in final.get("baselines", {}):
                log.info("%s, against the baselines:\n%s", name, render_baselines(final["baselines"][name], final[name]))
    if splits.skipped:
        log.info("skipped %d unreadable images (listed in metrics.json)", len(splits.skipped))
    log.info(verdict.render())
    objective = trainer.objective
    # the most confidently wrong examples read class probabilities: one class per example
    gallery = task.report_extras(run_dir, splits.val, val_probs, splits.classes) if objective.exclusive else None
    val = (splits.val.labels.numpy(), val_probs) if splits.val is not None and val_probs is not None else None
    log.info("report: %s", write_report(run_dir, gallery=gallery, val=val))
    log.info("model card: %s", write_model_card(run_dir))
    _final_tensorboard(trainer.tb, cfg, final, objective.reported, run_dir / "plots" / "confusion.png")
    trainer.call("on_fit_end", trainer=trainer, metrics=final)


def _model_for_training(cfg: Config, ctx: _FitContext, pos: Position, folder: Path) -> tuple[FineTuneModel, list[Penalty]]:
    """The model with its pretrained weights (placed, compiled if asked) and its penalties; then
    each rank's own seed, and the weights of the checkpoint in ``folder`` a resume starts from."""
    dist = ctx.dist
    model = ctx.task.build_model(ctx.post_fit.trained_config(cfg) if ctx.post_fit else cfg, ctx.num_classes)
    model.head.out = ctx.objective.output_layer()  # after the objective learned the training targets' scale
    ctx.objective.init_head(model.head.fc)  # a resume's checkpoint replaces it below
    model = place(model, ctx.device)
    if cfg.run.compile:
        log.info("torch.compile: %d backbone modules and the head (compiled on first use)", model.compile_blocks())
    penalties = build_penalties(cfg.regularization.penalties, model, pretrained_reference(model, cfg.regularization.penalties))
    if dist.enabled:  # same initial weights everywhere (above); from here on each rank draws its own
        # augmentations and dropout masks, not copies of rank 0's
        seed_everything(cfg.run.seed + 7919 * dist.rank)
    if pos.tensors:
        ckpt.load_model_state(
            model, {k[6:]: v for k, v in pos.tensors.items() if k.startswith("model.")}, f"{folder}/checkpoints/last.safetensors"
        )
    return model, penalties


def _refit(
    cfg: Config, ctx: _FitContext, splits: Splits[Any], teacher: Callable[[Trainer], Distiller] | None
) -> tuple[FineTuneModel, Trainer, dict[str, Any]]:
    """Train the recipe again from the pretrained weights on the training and validation examples
    together, each stage for the epochs it ran, in RUN_DIR/refit (resumable like the run itself)."""
    assert splits.val is not None
    run_dir, dist = ctx.run_dir, ctx.dist
    sub = run_dir / "refit"
    rcfg = cfg.model_copy(update={"stages": refit_stages(cfg, read_history(run_dir))})
    merged = replace(splits, train=splits.train.concat(splits.val), val=None)
    if dist.main:
        sub.mkdir(exist_ok=True)
        write_config(sub, rcfg, run_id=run_id(run_dir))  # the refit's checkpoints are the run's
    dist.barrier()
    pos = _read_position(sub, rcfg)
    log.info(
        "refit: the same recipe on all %d training and validation examples (epochs %s, as the first fit ran)",
        len(merged.train),
        ", ".join(str(st.epochs) for st in rcfg.stages),
    )
    seed_everything(cfg.run.seed)
    ctx.objective.fit(merged.train.labels, ctx.num_classes, ctx.device)  # class weights, target scale of all labelled examples
    model, penalties = _model_for_training(cfg, ctx, pos, sub)
    if dist.main:
        _truncate_metrics(sub, pos)
    trainer = _trainer(rcfg, ctx, sub, merged, model, penalties, teacher)
    _train_stages(trainer, pos, ctx)
    model.eval()
    if trainer.tb is not None:
        trainer.tb.close()
    return model, trainer, {"examples": len(merged.train), "epochs": [st.epochs for st in rcfg.stages]}


def _final_tensorboard(tb: Any, cfg: Config, final: dict[str, Any], reported: tuple[str, ...], confusion_png: Path) -> None:
    """Hyper-parameters with the final metrics (the problem type's ``reported``, the primary first),
    and the report's confusion matrix as an image where there is one."""
    import matplotlib.image as mpimg

    split = "test" if "test" in final else "val" if "val" in final else None
    hparams = {
        "backbone": cfg.model.backbone,
        **cfg.data.hparams(),
        "stages": len(cfg.stages),
        "lr": cfg.stage_lrs()[0] if cfg.stages else 0.0,
        "samples_per_class": cfg.data.samples_per_class or 0,
        "augment": str(cfg.regularization.augment),
        "penalties": len(cfg.regularization.penalties),
    }
    scores = {f"hparam/{split}_{k}": final[split][k] for k in reported if split is not None and k in final[split]}
    if split is not None:
        tb.add_hparams(hparams, scores, run_name=".")
        if confusion_png.is_file():
            tb.add_image(f"{split}/confusion_matrix", mpimg.imread(confusion_png)[..., :3], dataformats="HWC")
    tb.close()
