"""What a stage optimises beyond plain cross-entropy: class weights, soft targets, contrastive pairs
and their loss, the probe stage's conditions, the distillation loss."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.engine.model import FineTuneModel
from tunelab.errors import ConfigError
from tunelab.objectives import Objective
from tunelab.objectives.single_label import soft_cross_entropy

log = logging.getLogger("tunelab")


def check_probe_stage(model: FineTuneModel, trainable: Iterable[str], si: int, objective: Objective) -> None:
    """A probe stage fits the head's last linear layer on frozen features: nothing else may train,
    and the objective must be one class per example (the probe is a softmax logistic regression)."""
    if not objective.exclusive:
        raise ConfigError(
            f"stages.{si}: a probe stage fits a logistic regression to one class per example; for "
            f"data.problem {objective.name} train the head with objective: classify (train: head)"
        )
    head = model.head
    if getattr(head, "hidden", None) is None or len(head.hidden) or not isinstance(getattr(head, "fc", None), nn.Linear):
        raise ConfigError(
            f"stages.{si}: a probe stage fits a linear head; this head has hidden layers "
            "(model.head.hidden) or is the pretrained classifier; use objective: classify"
        )
    outside = sorted(n for n in trainable if not n.startswith("head."))
    if outside:
        raise ConfigError(f"stages.{si}: a probe stage trains the head only (train: head); it also selects {outside[0]}")


def check_pairs(contrastive: bool, si: int, objective: Objective) -> None:
    """A contrastive stage pairs examples of one class with each other: one class per example."""
    if contrastive and not objective.exclusive:
        raise ConfigError(
            f"stages.{si}: a contrastive stage pairs examples of one class; data.problem "
            f"{objective.name} has no single class per example: use objective: classify"
        )


def contrastive_partners(labels: torch.Tensor, epochs: int, seed: int) -> list[torch.Tensor]:
    """For each epoch, a partner of every example: with even odds another example of its class (when
    it has one) or an example of another class, so that about half of the pairs are positive, as in
    SetFit's sampling. A function of the labels and the seed only, so that every
    rank and a resumed run draw the same pairs."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    n = len(labels)
    order = torch.argsort(labels, stable=True)  # examples grouped by class
    counts = torch.bincount(labels)
    first = (torch.cumsum(counts, 0) - counts)[labels]  # where each example's class begins in `order`
    size = counts[labels]
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n)
    rank -= first  # each example's place within its class
    out = []
    for _ in range(epochs):
        r = (torch.rand(n, generator=g) * (size - 1).clamp_min(1)).long()
        same = order[(first + r + (r >= rank).long()).clamp_max(n - 1)]  # another example of the class
        r = (torch.rand(n, generator=g) * (n - size).clamp_min(1)).long()
        other = order[torch.where(r < first, r, r + size).clamp_max(n - 1)]  # any example outside the class
        positive = (torch.rand(n, generator=g) < 0.5) & (size > 1)
        out.append(torch.where(positive, same, other))
    return out


def contrastive_loss(emb: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, int]:
    """SetFit's pair loss: ``emb`` holds a batch's embeddings, then its partners'; the cosine of
    each pair is regressed onto 1 (same class) or 0. Returns the loss and the pairs on the right
    side of 0.5."""
    n = len(same)
    cos = F.cosine_similarity(emb[:n], emb[n:])
    return F.mse_loss(cos, same), int(((cos > 0.5).float() == same).sum())


def distill_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    y: torch.Tensor,
    temperature: float,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of the distillation loss: T^2 * KL(softmax(t/T) || softmax(s/T)) averaged over
    every row, and the cross-entropy on the labelled rows (``y == -1`` marks an unlabelled one; 0
    when the batch has none). ``y`` may be soft targets [B, classes] (a mixed batch) instead.
    T^2 keeps the KL's gradients on the scale of the cross-entropy's as T changes (Hinton et al.)."""
    t = temperature
    log_p_student = F.log_softmax(student.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * t * t
    if y.is_floating_point():
        return kl, soft_cross_entropy(student, y)
    if not bool((y >= 0).any()):
        return kl, student.sum() * 0.0  # keeps the graph (and DDP's view of used parameters) whole
    ce = F.cross_entropy(student.float(), y, weight=weight, ignore_index=-1, label_smoothing=label_smoothing)
    return kl, ce


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) + alpha * CE(student, y), the
    cross-entropy over the labelled rows only."""
    kl, ce = distill_terms(student, teacher, y, temperature)
    return kl + alpha * ce
