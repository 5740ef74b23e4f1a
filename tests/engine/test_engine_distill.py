"""The distillation loss and the engine's teacher: the formula, its limits, and where its gradient goes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tunelab.config import ModelConfig
from tunelab.distributed import Dist
from tunelab.engine.distill import Distiller
from tunelab.engine.loop import ViewBatches
from tunelab.engine.objectives import distill_loss, distill_terms
from tunelab.engine.store import FeatureStore
from tunelab.freezing import select, set_trainable
from tunelab.vision.model import build_image_model


def test_loss_is_the_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.tensor([0, 1, -1, 3, -1, 4, 2, -1])
    T, alpha = 3.0, 0.7
    p = F.softmax(t / T, dim=1)
    kl = (p * (p.log() - F.log_softmax(s / T, dim=1))).sum(1).mean()
    labelled = y >= 0
    ce = F.cross_entropy(s[labelled], y[labelled])
    assert distill_loss(s, t, y, T, alpha).item() == pytest.approx((T * T * kl + alpha * ce).item(), rel=1e-6)


def test_unlabelled_batch_has_no_cross_entropy():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    kl, ce = distill_terms(s, t, torch.full((4,), -1), 2.0)
    assert ce.item() == 0.0 and ce.requires_grad
    assert distill_loss(s, t, torch.full((4,), -1), 2.0, 0.5).item() == pytest.approx(kl.item())


def test_a_teacher_that_is_the_labels_doubles_the_cross_entropy_at_alpha_1_T_1():
    """softmax of a teacher that puts all its mass on the label is one-hot: the KL is then the
    cross-entropy itself, and the loss at alpha = T = 1 is twice it."""
    g = torch.Generator().manual_seed(1)
    s, y = torch.randn(16, 4, generator=g), torch.randint(0, 4, (16,), generator=g)
    teacher = F.one_hot(y, 4).float() * 100.0
    ce = F.cross_entropy(s, y)
    assert distill_loss(s, teacher, y, 1.0, 1.0).item() == pytest.approx(2 * ce.item(), rel=1e-5)
    assert distill_loss(s, teacher, y, 1.0, 0.0).item() == pytest.approx(ce.item(), rel=1e-5)
    # a student equal to the teacher has nothing left to learn from it
    assert distill_terms(teacher, teacher, y, 2.0)[0].item() == pytest.approx(0.0, abs=1e-6)


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_image_model(ModelConfig(backbone="test_efficientnet", pretrained=False), 3).eval()


def _distiller(teacher: torch.nn.Module, tmp_path: Path, memory_gb: float = 1.0) -> Distiller:
    return Distiller(
        teacher,
        temperature=2.0,
        alpha=0.5,
        source="teacher",
        store=FeatureStore(tmp_path, memory_gb),
        device=torch.device("cpu"),
        bf16=False,
        dist=Dist(),
    )


def test_kl_reaches_the_trainable_student_and_nothing_frozen(tmp_path):
    student, teacher = _tiny(0), _tiny(1)
    set_trainable(student, select(student, ["head", {"last_blocks": 1}], where="test"))
    frozen_before = {n: p.detach().clone() for n, p in student.named_parameters() if not p.requires_grad}
    d = _distiller(teacher, tmp_path)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8).float()
    kl, _ = distill_terms(student(x), d.logits(x), torch.full((4,), -1), 2.0)
    kl.backward()
    trainable = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    assert any(n.startswith("backbone.") for n, _ in trainable)
    assert all(p.grad is not None for _, p in trainable)
    assert any(bool(p.grad.abs().sum() > 0) for n, p in trainable if n.startswith("backbone."))
    assert student.head.fc.weight.grad.abs().sum() > 0
    for n, p in student.named_parameters():
        if n in frozen_before:
            assert p.grad is None and torch.equal(p, frozen_before[n]), n
    # the teacher never gets a gradient
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    row = d.audit_row(student, x, "classify")
    assert row.name == "distill" and row.reaches_gradient == "yes" and row.value == pytest.approx(kl.item(), rel=1e-4)
    assert d.audit_row(student, x, "probe").reaches_gradient.startswith("inactive")


def test_teacher_logits_are_computed_once_per_key(tmp_path):
    teacher = _tiny(1)
    calls = []
    teacher.register_forward_hook(lambda m, i, o: calls.append(len(o)))
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8).float()

    def batches():
        for v in range(2):
            for i in range(0, 10, 4):
                yield v, i, images[i : i + 4] + v  # view 1: another fixed variant

    inputs = ViewBatches("images-v2", 2, 10, batches)
    d = _distiller(teacher, tmp_path, memory_gb=0.0)  # a file another run can find
    assert "computed" in d.prepare("classify", lambda: inputs, 3)
    assert sum(calls) == 20
    assert d.cached is not None and d.cached.shape == (2, 10, 3)
    torch.testing.assert_close(d.targets(3, torch.tensor([7, 2]), None), d.logits(images[[7, 2]] + 1))
    # the next stage with the same inputs, and another run sharing the store: no teacher pass
    assert "reused" in d.prepare("classify", lambda: inputs, 3)
    assert "reused" in _distiller(teacher, tmp_path, memory_gb=0.0).prepare("classify", lambda: inputs, 3)
    assert sum(calls) == 22  # the one check above, and nothing else
    assert "on each batch" in d.prepare("classify", lambda: None, 3) and d.cached is None
    assert "off" in d.prepare("contrastive", lambda: inputs, 3)
