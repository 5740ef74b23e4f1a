"""The training loop: stages of (choose trainable groups -> fresh optimizer -> epochs), one
explicit loop that reads top to bottom; :func:`tunelab.pipeline.fit` runs it.

After every epoch the full training state (weights, optimizer, scheduler, RNG, early stopping,
position) goes into ``checkpoints/last.safetensors`` atomically, so that a resumed run repeats
exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tunelab import checkpoint as ckpt
from tunelab.augment import MixTargets, build_augment, soft_cross_entropy
from tunelab.config import Config
from tunelab.distributed import Dist
from tunelab.engine.data import Splits
from tunelab.engine.device import autocast_bf16, predict_logits, to_memory_format
from tunelab.engine.loop import LoopAdapter, StagePlan
from tunelab.engine.model import FineTuneModel
from tunelab.engine.objectives import check_probe_stage, class_weights, contrastive_partners
from tunelab.engine.optim import make_optimizer, make_scheduler
from tunelab.engine.resume import restore_rng, save_last
from tunelab.engine.stopping import Stopper, make_stopper
from tunelab.engine.store import FeatureStore
from tunelab.engine.writer import record_stage, write_tensorboard
from tunelab.errors import ConfigError
from tunelab.freezing import layer_rows, lr_scales, param_totals, render_layer_table, select, set_train_mode, set_trainable
from tunelab.metrics import classification_metrics
from tunelab.regularizers import Penalty
from tunelab.regularizers._audit import audit_penalty, other_regularizers, render_audit

log = logging.getLogger("tunelab")

HOOKS = ("on_stage_start", "on_epoch_end", "on_fit_end")
Hook = Callable[..., None]


# --- small pieces --------------------------------------------------------------------------------


# --- the trainer ---------------------------------------------------------------------------------


@dataclass
class Position:
    """Where a resumed run continues: the stage and the last completed epoch in it."""

    stage: int = 0
    epoch: int = -1
    stopped: bool = False
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, splits: Splits, model: FineTuneModel, device: torch.device,
                 hooks: dict[str, Hook], penalties: list[Penalty], dist: Dist | None = None, *,
                 adapter: LoopAdapter) -> None:
        self.cfg, self.dir, self.splits, self.model, self.device, self.hooks = cfg, run_dir, splits, model, device, hooks
        self.dist = dist if dist is not None else Dist()
        self.bf16 = autocast_bf16(cfg.run.precision, device)  # forward passes under bf16 autocast
        self.lrs = cfg.stage_lrs()
        self.metrics_path = run_dir / "metrics.jsonl"
        self.ckpt_dir = run_dir / "checkpoints"
        reg = cfg.regularization
        self.penalties = penalties
        self.augment = build_augment(reg.augment, cfg.data.image_size)
        self.mixer = MixTargets(reg.mixup, model.head.fc.out_features, reg.label_smoothing) if reg.mixup else None
        self.class_weights = class_weights(reg.class_weight, splits.train.labels, len(splits.classes), device)
        self.ctx: dict[str, torch.Tensor] = {}  # per-step values penalties read (pooled features)
        if any(p.needs_features for p in penalties):
            model.head.pool.register_forward_hook(lambda mod, inp, out: self.ctx.__setitem__("pooled", out))
        self.adapter = adapter  # the task's part: batch order, training inputs, the stage cache
        # ranks share one copy of the cache through the page cache of its memory-mapped files
        self.store = FeatureStore(Path(cfg.cache.folder) if cfg.cache.folder else run_dir / "cache",
                                  0.0 if self.dist.enabled else cfg.cache.max_memory_gb)
        self.plan: StagePlan | None = None
        self.partners: list[torch.Tensor] | None = None  # a contrastive stage's partner of each example, per epoch
        self.net: nn.Module = model  # what a training step calls: the model, or the cached tail, maybe in DDP
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tensorboard")) if self.dist.main else None
        self.stage_cache = adapter.stage_cache(self)

    # hooks are called by name; fit() has checked the names
    def call(self, name: str, **kwargs: Any) -> None:
        if name in self.hooks:
            self.hooks[name](**kwargs)

    def prepare_stage(self, si: int) -> tuple[torch.optim.Optimizer, Any, Stopper]:
        stage, lr = self.cfg.stages[si], self.lrs[si]
        names = select(self.model, stage.train, where=f"stages.{si}.train")
        if not names:
            raise ConfigError(f"stages.{si}.train selects no parameters ({stage.train}); nothing would train")
        if stage.early_stopping is not None and self.splits.val is None:
            raise ConfigError(f"stages.{si}.early_stopping needs a validation set; set data.val_split > 0")
        set_trainable(self.model, names)
        set_train_mode(self.model, train_bn=stage.train_bn)
        opt = make_optimizer(self.model, stage, lr)
        sched = make_scheduler(opt, stage, lr, self.steps_per_epoch)
        title = f"stage {si + 1}/{len(self.cfg.stages)} '{stage.name or si}': {stage.epochs} epochs, " \
                f"{stage.optimizer} lr {lr:.2e}, {stage.schedule} schedule, BN {'trains' if stage.train_bn else 'frozen'}"
        table = render_layer_table(layer_rows(self.model, lr, lr_scales(self.model, stage.layer_decay)),
                                   param_totals(self.model), title)
        audit = render_audit(self.audit(si))
        log.info("\n" + table)
        log.info(audit)
        self.record_stage(si, layers=table, audit=audit)
        t0 = time.perf_counter()
        contrastive = stage.objective == "contrastive"
        if stage.objective == "probe":
            check_probe_stage(self.model, names, si)
        self.plan = None if stage.objective != "classify" else self.stage_cache.plan(si)
        self.partners = contrastive_partners(self.splits.train.labels, stage.epochs, self.cfg.run.seed * 7919 + si) \
            if contrastive else None
        self.plan_seconds = time.perf_counter() - t0  # reported with the stage's first epoch
        step: nn.Module = self.model
        if contrastive or self.plan is not None:  # a step that is not the model's own forward
            step = _Step(self.model, self.embed if contrastive else self.forward_cached)
        # gradients are averaged over ranks; buffers (BN statistics) follow rank 0 when BN trains
        self.net = self.dist.wrap(step, sync_buffers=stage.train_bn)
        return opt, sched, make_stopper(stage)

    def to_tensorboard(self, row: dict[str, Any]) -> None:
        if self.tb is not None:
            write_tensorboard(self.tb, self.cfg.stages, row)

    def record_stage(self, si: int, **values: Any) -> None:
        """Keep the tables printed for a stage (and its wall-clock seconds) in RUN_DIR/stages.json."""
        if self.dist.main:
            record_stage(self.dir, self.cfg.stages, si, **values)

    def save_last(self, si: int, epoch: int, opt: torch.optim.Optimizer, sched: Any, stopper: Stopper,
                  stopped: bool) -> None:
        save_last(self.ckpt_dir, self.model, self.dist, {"stage": si, "epoch": epoch, "stopped": stopped},
                  opt, sched, stopper)

    def save_best(self, si: int, epoch: int, stopper: Stopper) -> None:
        if self.dist.main:
            ckpt.save(self.ckpt_dir / "best.safetensors", self.model.state_dict(),
                      {"stage": si, "epoch": epoch, "metric": stopper.metric, "value": stopper.best})

    def forward_cached(self, batch: Any) -> torch.Tensor:
        assert self.plan is not None
        return self.stage_cache.forward(self.plan, batch)

    def validate(self) -> dict[str, Any]:
        assert self.splits.val is not None
        if self.plan is None or self.plan.val is None:
            logits = self.predict(self.splits.val.inputs)
        else:
            logits = self._gather_logits(len(self.plan.val), self._cached_logits)
        return classification_metrics(logits, self.splits.val.labels, self.splits.classes)

    def predict(self, inputs: Any) -> torch.Tensor:
        """Logits of the whole model for all of ``inputs``, each rank computing its share."""
        return self._gather_logits(len(inputs), lambda rows: predict_logits(
            self.model, inputs[rows], self.cfg.data.eval_batch_size, self.device, self.bf16))

    def _cached_logits(self, rows: slice) -> torch.Tensor:
        """Logits of the stage's tail on the cached validation features of ``rows``."""
        assert self.plan is not None and self.plan.val is not None
        was = self.model.training
        self.model.eval()
        bs = self.cfg.data.eval_batch_size
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = torch.cat([self.forward_cached(self.plan.val[i: min(i + bs, rows.stop)]).float().cpu()
                                for i in range(rows.start, rows.stop, bs)])
        self.model.train(was)
        return logits

    def _gather_logits(self, n: int, logits_of: Callable[[slice], torch.Tensor]) -> torch.Tensor:
        """Logits of rows 0..n-1 on every rank: each rank computes its share (whole batches) with
        ``logits_of``, then all shares are gathered in order."""
        rows = self.dist.shard(n, self.cfg.data.eval_batch_size)
        mine = logits_of(slice(rows.start, rows.stop)) if len(rows) else torch.empty(0, self.model.head.fc.out_features)
        return self.dist.gather_rows(mine)


    def audit(self, si: int) -> list[Any]:
        """Each penalty's coverage, first-batch value and gradient check, plus the other regularizers."""
        stage = self.cfg.stages[si]
        if any(p.needs_features for p in self.penalties):
            self.model.eval()  # deterministic probe forward: no dropout, BN statistics untouched
            x = self.splits.train.inputs[: self.cfg.data.batch_size].to(self.device)
            self.model(to_memory_format(x))
        rows = [audit_penalty(p, self.model, self.ctx) for p in self.penalties]
        set_train_mode(self.model, train_bn=stage.train_bn)
        dead = [r.name for r in rows if r.reaches_gradient == "NO"]
        if dead:
            raise ConfigError(f"stage {si + 1}: penalties {', '.join(dead)} cover trainable parameters but give them "
                              "no gradient; they would not regularize anything")
        return rows + other_regularizers(self.model, self.cfg.regularization, stage)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits.train) / self.cfg.data.batch_size)

    def epoch_order(self, si: int, epoch: int) -> torch.Tensor:
        """The shuffle of one epoch depends only on (seed, stage, epoch): identical after a resume."""
        g = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + si * 1009 + epoch)
        return self.adapter.epoch_order(self, torch.randperm(len(self.splits.train), generator=g), si, epoch)

    def train_epoch(self, si: int, epoch: int, opt: torch.optim.Optimizer, sched: Any) -> dict[str, float]:
        stage, data, bs, dist = self.cfg.stages[si], self.splits.train, self.cfg.data.batch_size, self.dist
        set_train_mode(self.model, train_bn=stage.train_bn)
        order = self.epoch_order(si, epoch)
        total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
        pen_sums = {p.name: 0.0 for p in self.penalties}
        lrs: list[float] = []
        bar = tqdm(range(0, len(order), bs), desc=f"stage {si + 1}/{len(self.cfg.stages)} epoch {epoch + 1}/{stage.epochs}",
                   disable=None if self.cfg.run.progress and dist.main else True, leave=False, file=sys.stderr,
                   unit="batch")
        for start in bar:
            batch = order[start: start + bs]
            if len(batch) < dist.world:  # a last batch too small to give every rank a share
                continue
            idx = dist.split_batch(batch)
            # each rank's mean loss weighted by its share: DDP's average over ranks is then the mean
            # over the global batch, whatever the shares' sizes (exactly 1 on one process)
            share = len(idx) * dist.world / len(batch)
            y = data.labels[idx].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                data_loss, hits = self.step_loss(epoch, idx, y)
            penalties = [p(self.model, self.ctx) for p in self.penalties]
            loss = data_loss * share + sum(penalties) if penalties else data_loss * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lrs.append(opt.param_groups[0]["lr"])
            sched.step()
            n = len(idx)
            for p, v in zip(self.penalties, penalties):
                pen_sums[p.name] += float(v.detach()) * n
            total_loss += data_loss.item() * n
            correct += hits
            seen += n
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        secs = time.perf_counter() - t0
        loss_sum, hit_sum, n_sum, *pens = dist.sum([total_loss, correct, seen, *pen_sums.values()])
        row = {"train_loss": loss_sum / n_sum, "train_accuracy": hit_sum / n_sum, "seconds": secs,
               "img_per_s": n_sum / secs, "lr": opt.param_groups[0]["lr"]}
        row.update({f"penalty_{name}": v / n_sum for name, v in zip(pen_sums, pens)})
        row["lr_steps"] = lrs[:: max(1, len(lrs) // 50)]  # for the learning-rate plot
        return row

    def step_loss(self, epoch: int, idx: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The data loss of one batch and how many of its examples (pairs) came out right."""
        if self.partners is not None:  # contrastive: each example against its partner of this epoch
            partner = self.partners[epoch][idx]
            emb = self.net(to_memory_format(self._images(torch.cat([idx, partner])))).float()
            cos = F.cosine_similarity(emb[: len(idx)], emb[len(idx):])
            same = (y == self.splits.train.labels[partner].to(self.device)).float()
            return F.mse_loss(cos, same), int(((cos > 0.5).float() == same).sum())
        smoothing = self.cfg.regularization.label_smoothing
        if self.plan is not None:  # the frozen prefix ran once, before the stage
            logits = self.net(self.plan.train[epoch % len(self.plan.train)][idx]).float()
            loss = F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=smoothing)
        elif self.mixer is not None:
            x, soft = self.mixer(self._images(idx), y)
            logits = self.net(to_memory_format(x)).float()
            loss = soft_cross_entropy(logits, soft)
        else:
            logits = self.net(to_memory_format(self._images(idx))).float()
            loss = F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=smoothing)
        return loss, int((logits.argmax(1) == y).sum())

    def fit_probe(self) -> dict[str, Any]:
        """A probe stage: the head's linear layer set to the balanced logistic regression (C by
        cross-validation) on the frozen backbone's pooled features of the training split."""
        from tunelab.baselines import linear_probe, pooled_features

        t0 = time.perf_counter()
        data, fc = self.splits.train, self.model.head.fc
        x = pooled_features(self.model, data.inputs, self.cfg.data.eval_batch_size, self.device)
        weight, bias = linear_probe(x, data.labels.numpy(), fc.out_features, seed=self.cfg.run.seed)
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy(weight))
            fc.bias.copy_(torch.from_numpy(bias))
            logits = torch.from_numpy(x).to(self.device) @ fc.weight.T + fc.bias
        y = data.labels.to(self.device)
        secs = time.perf_counter() - t0
        return {"train_loss": float(F.cross_entropy(logits, y)), "train_accuracy": float((logits.argmax(1) == y).float().mean()),
                "seconds": secs, "img_per_s": len(y) / secs, "lr": 0.0, "lr_steps": []}

    def embed(self, x: Any) -> torch.Tensor:
        """Pooled features (what the head's first layer sees): the contrastive stage's output."""
        return self.model.head.pool(self.model.forward_features(x))

    def _images(self, idx: torch.Tensor) -> Any:
        return self.adapter.train_inputs(self, idx)

    def run_stage(self, si: int, pos: Position) -> None:
        stage, t_stage = self.cfg.stages[si], time.perf_counter()
        opt, sched, stopper = self.prepare_stage(si)
        self.call("on_stage_start", trainer=self, stage=si)
        first_epoch, stopped = 0, False
        if pos.stage == si and pos.epoch >= 0:  # resuming inside this stage
            ckpt.optimizer_from_flat(opt, pos.tensors, pos.state["optimizer"])
            sched.load_state_dict(pos.state["scheduler"])
            stopper.load(pos.state["stopper"])
            restore_rng(pos.tensors, pos.state, self.dist.rank)
            first_epoch, stopped = pos.epoch + 1, pos.stopped
            log.info("resuming stage %d at epoch %d", si + 1, first_epoch + 1)
        for epoch in range(first_epoch, stage.epochs):
            if stopped:
                break
            row: dict[str, Any] = {"stage": si, "stage_name": stage.name, "epoch": epoch}
            row.update(self.fit_probe() if stage.objective == "probe" else self.train_epoch(si, epoch, opt, sched))
            if epoch == first_epoch:
                row["cache_seconds"] = self.plan_seconds
            if self.splits.val is not None:
                vm = self.validate()
                row.update({"val_loss": vm["loss"], "val_accuracy": vm["accuracy"], "val_macro_f1": vm["macro_f1"],
                            "val_count": len(self.splits.val)})
                if stopper.update(row[stopper.metric], epoch):
                    self.save_best(si, epoch, stopper)
                stopped = stopper.should_stop
            if self.dist.main:
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            self.to_tensorboard(row)
            self.save_last(si, epoch, opt, sched, stopper, stopped)
            log.info(_epoch_line(row, stage.epochs))
            self.call("on_epoch_end", trainer=self, stage=si, epoch=epoch, metrics=row)
        if stopped:
            log.info("early stopping in stage %d: %s did not improve for %d epochs (best %.4f at epoch %d)",
                     si + 1, stopper.metric, stopper.patience, stopper.best, stopper.best_epoch + 1)
        if stage.early_stopping is not None and stage.early_stopping.restore_best and stopper.best_epoch >= 0:
            self.dist.barrier()  # rank 0 has written the file
            tensors, _ = ckpt.load(self.ckpt_dir / "best.safetensors")
            self.model.load_state_dict(tensors)
            log.info("restored the best weights of stage %d (epoch %d, %s %.4f)", si + 1, stopper.best_epoch + 1,
                     stopper.metric, stopper.best)
        # everything the stage cost: tables, audit, cache, epochs, validation, checkpoints
        self.record_stage(si, seconds=round(time.perf_counter() - t_stage, 3))


class _Step(nn.Module):
    """A training step's forward as one module (the cached tail: ``fn`` runs it on cached prefix
    outputs), so that DistributedDataParallel can wrap it; ``model`` holds the parameters."""

    def __init__(self, model: nn.Module, fn: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.fn(batch)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    s = f"stage {row['stage'] + 1} epoch {row['epoch'] + 1}/{epochs}: train loss {row['train_loss']:.4f} " \
        f"acc {row['train_accuracy']:.4f}"
    pens = {k[8:]: v for k, v in row.items() if k.startswith("penalty_")}
    if pens:
        s += " | " + ", ".join(f"{k} {v:.4g}" for k, v in pens.items())
    if "val_loss" in row:
        s += f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}"
    return s + f" | {row['seconds']:.1f} s, {row['img_per_s']:.0f} img/s, lr {row['lr']:.2e}"
