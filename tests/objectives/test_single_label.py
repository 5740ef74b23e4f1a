import pytest
import torch

from tunelab.objectives.single_label import class_weights


def test_balanced_class_weights_make_every_class_count_the_same():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 20)
    w = class_weights("balanced", labels, 3, torch.device("cpu"))
    assert w is not None
    assert (w * torch.bincount(labels)).tolist() == pytest.approx([20.0, 20.0, 20.0])  # equal total weight per class
    assert float((w[labels]).mean()) == pytest.approx(1.0)  # the loss keeps its scale
    assert class_weights("none", labels, 3, torch.device("cpu")) is None
    assert class_weights("auto", torch.tensor([0] * 10 + [1] * 14), 2, torch.device("cpu")) is None  # 1.4x: balanced enough
    assert class_weights("auto", labels, 3, torch.device("cpu")) is not None
