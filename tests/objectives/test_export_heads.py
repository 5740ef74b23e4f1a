"""What each objective hands the exporters: the graphs' head gives what ``decode`` gives, and the
head's last linear layer with the output layer folded in gives the model's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.objectives import objective_for


@pytest.mark.parametrize("problem", ["single_label", "multi_label", "regression"])
def test_fold_and_export_head_agree_with_the_model_and_decode(problem):
    objective = objective_for(problem)
    k = 1 if problem == "regression" else 3
    targets = {"single_label": torch.tensor([0, 1, 2]), "multi_label": torch.eye(3), "regression": torch.tensor([2.0, 5.0, 11.0])}
    objective.fit(targets[problem], k, torch.device("cpu"))
    torch.manual_seed(0)
    fc, x = torch.nn.Linear(4, k), torch.randn(5, 4)
    model = torch.nn.Sequential(fc, objective.output_layer())
    weight, bias = objective.fold(fc.weight.detach(), fc.bias.detach())
    with torch.no_grad():
        outputs = model(x)
        np.testing.assert_allclose(x @ weight.T + bias, outputs, atol=1e-5)
        exported = objective.export_head()(outputs).numpy()
    if problem == "single_label":  # the graphs keep the logits; the softmax is decode's, named in decoding.json
        assert objective.decoding(["a", "b", "c"])["activation"] == "softmax"
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(exported), 1), objective.decode(outputs), atol=1e-6)
    else:
        np.testing.assert_allclose(exported, objective.decode(outputs), atol=1e-6)
    assert objective.decoding(["a", "b", "c"][:k])["problem"] == problem
