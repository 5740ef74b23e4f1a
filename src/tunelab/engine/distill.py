"""Knowledge distillation, the engine's part: the frozen teacher's logits on the student's training
inputs, the loss, and the audit's row for it. The task's part (:mod:`tunelab.distill`) loads the
teacher and the unlabelled examples.

The teacher is fully frozen, so its logits on a fixed input are a freeze-boundary cache like any
other: in a stage whose inputs are fixed views (cached features, or no augmentation) they are
computed once, kept in the :class:`~tunelab.engine.store.FeatureStore` under a key of the teacher's
weights and the inputs, and read back by row; in a stage that augments or mixes each batch afresh
the teacher runs on that batch, without gradients.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunelab.distributed import Dist
from tunelab.engine.loop import ViewBatches
from tunelab.engine.objectives import distill_terms
from tunelab.engine.store import FeatureStore, module_digest
from tunelab.regularizers.audit import AuditRow

log = logging.getLogger("tunelab")

NAME = "distill"  # the term's name in metrics.jsonl (penalty_distill), the epoch line and the audit


class Distiller:
    """One run's teacher: ``teacher(inputs) -> logits`` over the student's classes, frozen here."""

    def __init__(
        self,
        teacher: nn.Module,
        *,
        temperature: float,
        alpha: float,
        source: str,
        store: FeatureStore,
        device: torch.device,
        bf16: bool,
        dist: Dist,
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha, self.source = temperature, alpha, source
        self.store, self.device, self.bf16, self.dist = store, device, bf16, dist
        h = hashlib.sha256()
        module_digest(h, [teacher])
        self.digest = h.hexdigest()
        self.active = True  # off in probe and contrastive stages: they have losses of their own
        self.cached: torch.Tensor | None = None  # this stage's [views, N, classes], or None: per batch
        self.held: tuple[str, torch.Tensor] | None = None  # the last logits computed, kept for the next stage
        self.last: dict[str, float] = {}  # the last step's terms, as the epoch's sums take them

    def prepare(self, objective: str, inputs_of: Callable[[], ViewBatches | None], classes: int) -> str:
        """Get a stage ready: the teacher's logits on every fixed view of its inputs (``inputs_of``,
        the task's), computed once or found in the store, or nothing to do when the stage draws its
        inputs afresh. Returns the log line."""
        self.active, self.cached = objective == "classify", None
        inputs = inputs_of() if self.active else None
        if not self.active:
            msg = f"distill: off in this stage (a {objective} stage has a loss of its own)"
        elif inputs is None:
            msg = "distill: teacher logits computed on each batch (the stage augments or mixes its inputs afresh)"
        else:
            t0 = time.perf_counter()
            key = hashlib.sha256(f"{self.digest}|{inputs.key}|{self.bf16}".encode()).hexdigest()[:24]
            if self.held is not None and self.held[0] == key:  # the task's stage cache may have let go of them
                self.cached, hit = self.held[1], True
            else:
                with self.dist.main_first():  # rank 0 computes them; the other ranks then find them
                    self.cached, hit = self.store.get(
                        key, (inputs.views, inputs.n, classes), torch.float32, lambda out: self._fill(out, inputs)
                    )
                self.held = key, self.cached
            msg = (
                f"distill: teacher logits of {inputs.views} view(s) of {inputs.n} training examples "
                f"({'reused' if hit else 'computed'} in {time.perf_counter() - t0:.1f} s)"
            )
        log.info(msg)
        return msg

    def _fill(self, out: torch.Tensor, inputs: ViewBatches) -> None:
        for view, start, x in inputs.batches():
            logits = self.logits(x)
            out[view, start : start + len(logits)] = logits.cpu()

    def logits(self, x: Any) -> torch.Tensor:
        """The teacher's logits on a batch, in fp32 (no gradients: the teacher never trains)."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.teacher(x).float()

    def targets(self, epoch: int, idx: torch.Tensor, x: Any) -> torch.Tensor:
        """The teacher's logits for training rows ``idx`` as the student sees them in ``epoch``:
        from this stage's views when they are fixed, else computed on the batch ``x``."""
        if self.cached is not None:
            return self.cached[epoch % len(self.cached)][idx].to(self.device, non_blocking=True)
        return self.logits(x)

    def loss(
        self, student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, label_smoothing: float
    ) -> torch.Tensor:
        """:func:`~tunelab.engine.objectives.distill_loss` (with the run's class weights and label
        smoothing on its cross-entropy); its two terms are kept in :attr:`last` for the metrics."""
        kl, ce = distill_terms(student, teacher, y, self.temperature, weight, label_smoothing)
        self.last = {"loss": float(ce.detach()), f"penalty_{NAME}": float(kl.detach())}
        return kl + self.alpha * ce

    def audit_row(self, model: nn.Module, x: Any, objective: str) -> AuditRow:
        """The distillation term in the stage's audit: its first-batch value and whether it reaches
        the trainable parameters' gradient (one forward and backward pass, in eval mode)."""
        strength = f"T {self.temperature:g}, alpha {self.alpha:g}"
        trainable = [p for p in model.parameters() if p.requires_grad]
        covers = f"{sum(p.numel() for p in trainable):,} trainable params, logits vs teacher {self.source}"
        if objective != "classify":
            return AuditRow(NAME, covers, strength, None, f"inactive: a {objective} stage")
        was = model.training
        model.eval()
        try:
            unlabelled = torch.full((1,), -1)  # the KL term alone
            kl, _ = distill_terms(model(x), self.logits(x), unlabelled, self.temperature)
            grads = torch.autograd.grad(kl, trainable, allow_unused=True) if kl.requires_grad else []
        finally:
            model.train(was)
        reaches = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
        return AuditRow(NAME, covers, strength, float(kl.detach()), "yes" if reaches else "NO")
