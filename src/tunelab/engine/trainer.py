"""The training loop: stages of (choose trainable groups -> fresh optimizer -> epochs), one
explicit loop that reads top to bottom; :func:`tunelab.pipeline.fit` runs it.

The loop knows no modality: the task's :class:`~tunelab.engine.loop.TaskLoop` (made by
``Task.loop`` from this trainer) orders each epoch, gives the training inputs (augmented, maybe
mixed) and caches what a stage's frozen prefix computes. After every epoch the full training state
(weights, optimizer, scheduler, RNG, early stopping, position) goes into
``checkpoints/last.safetensors`` atomically, so that a resumed run repeats exactly what an
uninterrupted one would have done.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.config import Config
from tunelab.distributed import Dist
from tunelab.engine.data import Splits
from tunelab.engine.device import autocast_bf16, gather_logits, predict_logits, tail_logits, to_memory_format
from tunelab.engine.distill import Distiller
from tunelab.engine.loop import LoopContext, StagePlan, TaskLoop
from tunelab.engine.model import FineTuneModel, Step
from tunelab.engine.objectives import check_pairs, check_probe_stage, contrastive_loss, contrastive_partners
from tunelab.engine.optim import make_optimizer, make_scheduler
from tunelab.engine.probe import fit_probe
from tunelab.engine.resume import Position, restore_best, resume_stage, save_best, save_last
from tunelab.engine.step import descend
from tunelab.engine.stopping import Stopper, diverged, make_stopper
from tunelab.engine.store import FeatureStore
from tunelab.engine.tally import EpochTally
from tunelab.engine.writer import epoch_line, record_stage, stage_title, val_columns, write_epoch
from tunelab.errors import ConfigError
from tunelab.freezing import layer_rows, lr_scales, param_totals, render_layer_table, select, set_train_mode, set_trainable
from tunelab.objectives import Objective
from tunelab.regularizers import Penalty
from tunelab.regularizers.audit import audit_stage, render_audit
from tunelab.run_folder import RunFolder

log = logging.getLogger("tunelab")

HOOKS = ("on_stage_start", "on_epoch_end", "on_fit_end")
Hook = Callable[..., None]
__all__ = ["HOOKS", "Hook", "Position", "Trainer"]


class Trainer:
    def __init__(
        self,
        *,
        cfg: Config,
        run_dir: Path,
        splits: Splits[Any],
        model: FineTuneModel,
        device: torch.device,
        task_loop: Callable[[LoopContext], TaskLoop],
        objective: Objective,
        hooks: dict[str, Hook] | None = None,
        penalties: list[Penalty] | None = None,
        dist: Dist | None = None,
        distill: Callable[[Trainer], Distiller] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.cfg, self.dir, self.splits, self.model, self.device = cfg, run_dir, splits, model, device
        self.run_id = run_id  # written into the checkpoints' state, so that a resume knows them for the run's own
        self.hooks, self.penalties = hooks or {}, penalties or []
        self.dist = dist if dist is not None else Dist()
        self.bf16 = autocast_bf16(cfg.run.precision, device)  # forward passes under bf16 autocast
        self.lrs = cfg.stage_lrs()
        self.ckpt_dir = run_dir / RunFolder.CHECKPOINTS
        self.objective = objective  # the loss and metrics of the run's problem type (fitted to its training targets)
        self.ctx: dict[str, torch.Tensor] = {}  # per-step values penalties read (pooled features)
        if any(p.needs_features for p in self.penalties):
            model.head.pool.register_forward_hook(lambda mod, inp, out: self.ctx.__setitem__("pooled", out))
        # ranks share one copy of the cache through the page cache of its memory-mapped files
        self.store = FeatureStore(
            Path(cfg.cache.folder) if cfg.cache.folder else run_dir / "cache",
            0.0 if self.dist.enabled else cfg.cache.max_memory_gb,
        )
        self.plan: StagePlan | None = None
        self.partners: list[torch.Tensor] | None = None  # a contrastive stage's partner of each example, per epoch
        self.net: nn.Module = model  # what a training step calls: the model, or the cached tail, maybe in DDP
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tensorboard")) if self.dist.main else None
        # the task's part: batch order, training inputs, the stage cache
        self.task = task_loop(LoopContext(cfg, splits, model, device, self.store, self.dist, self.record_stage, self.ctx))
        self.distill = distill(self) if distill is not None else None  # the teacher, when the run distils

    # hooks are called by name; fit() has checked the names
    def call(self, name: str, **kwargs: Any) -> None:
        if name in self.hooks:
            self.hooks[name](**kwargs)

    def record_stage(self, si: int, **values: Any) -> None:
        """Keep the tables printed for a stage (and its wall-clock seconds) in RUN_DIR/stages.json."""
        if self.dist.main:
            record_stage(self.dir, self.cfg.stages, si, **values)

    # --- one stage -------------------------------------------------------------------------------

    def run_stage(self, si: int, pos: Position) -> None:
        stage, t_stage = self.cfg.stages[si], time.perf_counter()
        opt, sched, stopper = self.prepare_stage(si)
        self.call("on_stage_start", trainer=self, stage=si)
        first_epoch, stopped = resume_stage(pos, si, opt, sched, stopper, self.dist.rank)
        for epoch in range(first_epoch, stage.epochs):
            if stopped:
                break
            row: dict[str, Any] = {"stage": si, "stage_name": stage.name, "epoch": epoch}
            row.update(self.fit_probe() if stage.objective == "probe" else self.train_epoch(si, epoch, opt, sched))
            if epoch == first_epoch:
                row["cache_seconds"] = self.plan_seconds
            if self.splits.val is not None:
                row.update(val_columns(self.validate(), len(self.splits.val), self.objective.reported))
                if stopper.update(row[stopper.metric], epoch):
                    save_best(self.ckpt_dir, self.model, self.dist, si, epoch, stopper, self.run_id)
                stopped = stopper.should_stop
            write_epoch(self.dir if self.dist.main else None, self.tb, self.cfg.stages, row)
            position = {"stage": si, "epoch": epoch, "stopped": stopped, "run_id": self.run_id}
            save_last(self.ckpt_dir, self.model, self.dist, position, opt, sched, stopper)
            log.info(epoch_line(row, stage.epochs))
            self.call("on_epoch_end", trainer=self, stage=si, epoch=epoch, metrics=row)
        if stopped:
            log.info(stopper.stopped_line(si))
        if stage.early_stopping is not None and stage.early_stopping.restore_best and stopper.best_epoch >= 0:
            restore_best(self.ckpt_dir, self.model, self.dist, si, stopper, self.run_id)
        # everything the stage cost: tables, audit, cache, epochs, validation, checkpoints
        self.record_stage(si, seconds=round(time.perf_counter() - t_stage, 3))

    def prepare_stage(self, si: int) -> tuple[torch.optim.Optimizer, Any, Stopper]:
        """Trainable groups and BN mode, a fresh optimizer and schedule, the printed tables, and the
        stage's step: the model, its cached tail, or the contrastive embedding."""
        stage, lr = self.cfg.stages[si], self.lrs[si]
        names = select(self.model, stage.train, where=f"stages.{si}.train")
        if not names:
            raise ConfigError(f"stages.{si}.train selects no parameters ({stage.train}); nothing would train")
        if stage.early_stopping is not None and self.splits.val is None:
            raise ConfigError(f"stages.{si}.early_stopping needs a validation set; set data.val_split > 0")
        if stage.objective == "probe":
            check_probe_stage(self.model, names, si, self.objective)
        set_trainable(self.model, names)
        set_train_mode(self.model, train_bn=stage.train_bn)
        opt = make_optimizer(self.model, stage, lr)
        sched = make_scheduler(opt, stage, lr, self.steps_per_epoch)
        self.announce_stage(si, lr)
        t0 = time.perf_counter()
        contrastive = stage.objective == "contrastive"
        check_pairs(contrastive, si, self.objective)
        self.plan = self.task.plan(si) if stage.objective == "classify" else None
        self.partners = (
            contrastive_partners(self.splits.train.labels, stage.epochs, self.cfg.run.seed * 7919 + si) if contrastive else None
        )
        if self.distill is not None:  # the teacher's logits on the stage's fixed inputs, computed once
            self.record_stage(
                si,
                distill=self.distill.prepare(
                    stage.objective, lambda: self.task.teacher_inputs(si, self.plan), self.model.head.fc.out_features
                ),
            )
        self.plan_seconds = time.perf_counter() - t0  # reported with the stage's first epoch
        step: nn.Module = self.model
        if contrastive or self.plan is not None:  # a step that is not the model's own forward
            step = Step(self.model, self.embed if contrastive else self.forward_cached)
        # gradients are averaged over ranks; buffers (BN statistics) follow rank 0 when BN trains
        self.net = self.dist.wrap(step, sync_buffers=stage.train_bn)
        return opt, sched, make_stopper(stage, self.objective)

    def announce_stage(self, si: int, lr: float) -> None:
        """Print (and keep in stages.json) the stage's layer table and regularization audit."""
        stage = self.cfg.stages[si]
        layers = layer_rows(self.model, lr, lr_scales(self.model, stage.layer_decay))
        table = render_layer_table(layers, param_totals(self.model), stage_title(self.cfg.stages, si, lr))
        rows = audit_stage(self.model, self.penalties, self.ctx, self.cfg.regularization, stage, si, self.probe_forward)
        if self.distill is not None:
            rows.append(self.distill.audit_row(self.model, self.probe_inputs(), stage.objective))
        audit = render_audit(rows)
        set_train_mode(self.model, train_bn=stage.train_bn)
        log.info("\n" + table)
        log.info(audit)
        self.record_stage(si, layers=table, audit=audit)

    def probe_forward(self) -> None:
        """One deterministic forward pass (no dropout, BN statistics untouched) for the audit."""
        self.model.eval()
        self.model(self.probe_inputs())

    def probe_inputs(self) -> Any:
        return to_memory_format(self.splits.train.inputs[: self.cfg.data.batch_size].to(self.device))

    # --- one epoch -------------------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits.train) / self.cfg.data.batch_size)

    def epoch_order(self, si: int, epoch: int) -> torch.Tensor:
        """The shuffle of one epoch depends only on (seed, stage, epoch): identical after a resume."""
        g = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + si * 1009 + epoch)
        return self.task.epoch_order(torch.randperm(len(self.splits.train), generator=g), si, epoch)

    def train_epoch(self, si: int, epoch: int, opt: torch.optim.Optimizer, sched: Any) -> dict[str, float]:
        stage, bs, dist = self.cfg.stages[si], self.cfg.data.batch_size, self.dist
        set_train_mode(self.model, train_bn=stage.train_bn)
        order = self.epoch_order(si, epoch)
        tally = EpochTally(
            [p.name for p in self.penalties],
            range(0, len(order), bs),
            f"stage {si + 1}/{len(self.cfg.stages)} epoch {epoch + 1}/{stage.epochs}",
            show=self.cfg.run.progress and dist.main,
            metric=self.objective.train_metric,
        )
        for start in tally:
            batch = order[start : start + bs]
            if len(batch) < dist.world:  # a last batch too small to give every rank a share
                continue
            idx = dist.split_batch(batch)
            # each rank's mean loss weighted by its share: DDP's average over ranks is then the mean
            # over the global batch, whatever the shares' sizes (exactly 1 on one process)
            share = len(idx) * dist.world / len(batch)
            y = self.splits.train.labels[idx].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                data_loss, hits = self.step_loss(epoch, idx, y)
            penalties = [(p.name, p(self.model, self.ctx)) for p in self.penalties]
            terms, total, lr = descend(opt, sched, data_loss, share, penalties)
            tally.lrs.append(lr)
            if not math.isfinite(total):  # nan from here on: stop with the last finished epoch's checkpoint
                raise diverged(self.cfg, self.dir, si, epoch, start // bs, total, lr)
            if self.distill is not None and self.distill.active:
                terms.update(self.distill.last)  # its cross-entropy is the training loss; its KL term a penalty
            # unlabelled examples (label -1, single-label distillation) count no hit or miss; a target is one row
            tally.add(terms, len(idx), hits, int((y.reshape(len(y), -1) >= 0).all(1).sum()), total)
        return tally.row(dist, opt.param_groups[0]["lr"])

    def step_loss(self, epoch: int, idx: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The data loss of one batch and how many of its examples (pairs) came out right."""
        if self.partners is not None:  # contrastive: each example against its partner of this epoch
            partner = self.partners[epoch][idx]
            emb = self.net(self.task.train_inputs(torch.cat([idx, partner]))).float()
            return contrastive_loss(emb, (y == self.splits.train.labels[partner].to(self.device)).float())
        x: Any = None  # the batch's inputs, when it has its own (not cached features)
        if self.plan is not None:  # the frozen prefix ran once, before the stage
            logits, target = self.net(self.plan.train[epoch % len(self.plan.train)][idx]).float(), y
        else:
            x, target = self.task.mix(self.task.train_inputs(idx), y)
            logits = self.net(x).float()
        if self.distill is not None and self.distill.active:  # KL to the teacher + alpha * cross-entropy
            weight = getattr(self.objective, "weight", None)  # distillation is single-label (checked with the config)
            loss = self.distill.loss(
                logits, self.distill.targets(epoch, idx, x), target, weight, self.cfg.regularization.label_smoothing
            )
        else:
            loss = self.objective.loss(logits, target)
        return loss, self.objective.hits(logits, y)

    def fit_probe(self) -> dict[str, Any]:
        return fit_probe(self.model, self.splits.train, self.cfg.data.eval_batch_size, self.device, self.cfg.run.seed)

    def embed(self, x: Any) -> torch.Tensor:
        """Pooled features (what the head's first layer sees): the contrastive stage's output."""
        return self.model.head.pool(self.model.forward_features(x))

    def forward_cached(self, batch: Any) -> torch.Tensor:
        assert self.plan is not None
        return self.task.forward(self.plan, batch)

    # --- evaluation ------------------------------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        assert self.splits.val is not None
        if self.plan is None or self.plan.val is None:
            logits = self.predict(self.splits.val.inputs)
        else:
            logits = self.gather(len(self.plan.val), self._cached_logits)
        return self.objective.metrics(logits, self.splits.val.labels, self.splits.classes)

    def predict(self, inputs: Any) -> torch.Tensor:
        """Logits of the whole model for all of ``inputs``, each rank computing its share."""
        return self.gather(
            len(inputs),
            lambda rows: predict_logits(self.model, inputs[rows], self.cfg.data.eval_batch_size, self.device, self.bf16),
        )

    def gather(self, n: int, logits_of: Callable[[slice], torch.Tensor]) -> torch.Tensor:
        return gather_logits(self.dist, n, self.cfg.data.eval_batch_size, self.model.head.fc.out_features, logits_of)

    def _cached_logits(self, rows: slice) -> torch.Tensor:
        """Logits of the stage's tail on the cached validation features of ``rows``."""
        assert self.plan is not None and self.plan.val is not None
        return tail_logits(
            self.model, self.forward_cached, self.plan.val, rows, self.cfg.data.eval_batch_size, self.device, self.bf16
        )
