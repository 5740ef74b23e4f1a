"""What every objective promises the engine, table-driven over the registered problem types, and
the errors each gives for targets it cannot read."""

import numpy as np
import pytest
import torch

from tunelab.config import PROBLEM_METRICS, Config
from tunelab.errors import DataError
from tunelab.objectives import better, objective_for, objective_names

CELLS = {
    "single_label": ["cat", "dog", "cat", "fox", "dog", "fox"] * 4,
    "multi_label": ["cat|small", "dog", "cat", "fox|small", "dog|small", "fox"] * 4,
    "regression": ["1.5", "2", "-3", "4.25", "0", "10"] * 4,
}


def where(i: int) -> str:
    return f"data.csv, line {i + 2}"


@pytest.mark.parametrize("problem", objective_names())
def test_every_objective_reads_trains_scores_and_decodes_its_targets(problem):
    objective = objective_for(problem)
    labels, names = objective.encode(CELLS[problem], where)
    assert len(labels) == len(CELLS[problem]) and names
    assert objective.reported == PROBLEM_METRICS[problem] and objective.primary == objective.reported[0]
    strata = objective.strata(labels)
    assert strata.dtype == np.int64 and len(strata) == len(labels)
    objective.check(labels, names, "data.csv")
    y = torch.from_numpy(labels)
    objective.fit(y, len(names), torch.device("cpu"))
    head = objective.output_layer()
    outputs = head(torch.randn(len(y), len(names), requires_grad=True))
    loss = objective.loss(outputs, y)
    loss.backward()  # the loss reaches the outputs
    m = objective.metrics(outputs.detach(), y, names, detailed=True)
    assert {"loss", *objective.reported} <= set(m) and m["n"] == len(y)
    assert better(objective, "val_loss") == "min"
    decoded = objective.decode(outputs.detach())
    rows = objective.predictions(decoded, names, top=2)
    assert len(rows) == len(y) and all(r["top"] for r in rows)
    objective.tune(outputs.detach(), y)
    again = objective_for(problem)
    again.load(objective.state())
    assert again.state() == objective.state()  # what a finished run keeps decodes the same way


def test_a_test_set_is_read_against_the_training_names():
    ml = objective_for("multi_label")
    _, names = ml.encode(["a|b", "b", "c"], where)
    test, _ = ml.encode(["c|a"], where, names)
    assert names == ["a", "b", "c"] and test.tolist() == [[1.0, 0.0, 1.0]]
    with pytest.raises(DataError, match=r"line 2: the label 'd' is not among the training labels \(a, b, c\)"):
        ml.encode(["d|a"], where, names)


@pytest.mark.parametrize(
    "problem, cells, message",
    [
        ("regression", ["1.0", "high", "2"], r"line 3: the target 'high' is not a number"),
        ("regression", ["1.0", "nan", "2"], r"line 3: the target is nan; a regression target is a finite number"),
        ("regression", ["1.0", "", "2"], r"line 3: the target '' is not a number"),
        ("multi_label", ["", " ", ""], r"no example has a label"),
        (
            "multi_label",
            ["a;b", "b;c", "c", "a;c"],
            r"line 2: data.label_separator is '\|', which joins no label cell, but 3 cells hold ';'",
        ),
    ],
)
def test_unreadable_targets_are_refused_naming_the_row(problem, cells, message):
    with pytest.raises(DataError, match=message):
        objective_for(problem).encode(cells, where)


def test_targets_that_cannot_be_learnt_are_refused():
    with pytest.raises(DataError, match=r"every target is 2\.0"):
        objective_for("regression").check(np.full(5, 2.0, dtype=np.float32), ["y"], "data.csv")
    ml = objective_for("multi_label")
    with pytest.raises(DataError, match="the label\\(s\\) b occur on no training example"):
        ml.check(np.array([[1, 0], [1, 0]], dtype=np.float32), ["a", "b"], "data.csv")


def test_regression_outputs_are_in_the_targets_units_and_the_loss_in_standard_units():
    reg = objective_for("regression")
    y = torch.tensor([100.0, 200.0, 300.0])
    reg.fit(y, 1, torch.device("cpu"))
    out = reg.output_layer()(torch.zeros(3, 1))
    assert out[:, 0].tolist() == pytest.approx([200.0] * 3)  # a new head starts at the mean
    assert float(reg.loss(out, y)) == pytest.approx(2 / 3)  # (1 + 0 + 1) / 3 standard deviations squared


def test_multi_label_thresholds_are_chosen_per_label_on_validation_where_a_label_has_enough_positives():
    from tunelab.objectives.multi_label import choose_thresholds

    p = np.array([[0.9, 0.2], [0.7, 0.35], [0.4, 0.3], [0.1, 0.1]])
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]]) > 0
    own = choose_thresholds(p, y, min_positives=2)
    assert 0.4 < own[0] <= 0.7 and 0.2 < own[1] <= 0.3  # label 1 needs a low threshold to catch its positives
    shared = choose_thresholds(p, y, min_positives=3)  # two positives each: too few for a threshold of their own
    assert shared[0] == shared[1] and 0.2 < shared[0] <= 0.3  # the best F1 over all decisions together
    ml = objective_for("multi_label")
    big_p, big_y = np.tile(p, (5, 1)), np.tile(y, (5, 1))  # ten positives a label
    chosen = ml.tune(torch.logit(torch.from_numpy(big_p)), torch.from_numpy(big_y).float())["thresholds"]
    assert chosen == pytest.approx(own.round(4).tolist())
    assert ml.metrics(torch.logit(torch.from_numpy(p)), torch.from_numpy(y).float(), ["a", "b"])["macro_f1"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "problem, setting, message",
    [
        ("regression", {"regularization": {"label_smoothing": 0.1}}, "label_smoothing makes soft class targets"),
        ("multi_label", {"regularization": {"mixup": {}}}, "regularization.mixup makes soft class targets"),
        (
            "regression",
            {"stages": [{"train": "head", "early_stopping": {"metric": "val_accuracy"}}]},
            "not a metric of data.problem regression; valid: val_loss, val_r2",
        ),
        ("multi_label", {"tune": {"metric": "val_r2"}}, "tune.metric: 'val_r2' is not a metric of data.problem multi_label"),
    ],
)
def test_settings_made_for_one_class_per_example_are_refused_for_other_problems(problem, setting, message):
    with pytest.raises(ValueError, match=message):
        Config.model_validate({"data": {"problem": problem}, **setting})


def test_multi_label_strata_group_by_the_rarest_label_and_fold_groups_too_small_to_split():
    ml = objective_for("multi_label")
    cells = ["a"] * 20 + ["a|b"] * 6 + ["a|c"] * 2  # c is on two examples: too few for a group of its own
    labels, names = ml.encode(cells, where)
    strata = ml.strata(labels)
    assert set(strata[:20]) == {0} and set(strata[20:26]) == {1} and set(strata[26:]) == {len(names)}


def test_a_new_multi_label_head_starts_at_the_label_priors():
    from torch import nn

    ml = objective_for("multi_label")
    labels, names = ml.encode(["a|b", "a", "a", "c"], where)
    ml.fit(torch.from_numpy(labels), len(names), torch.device("cpu"))
    fc = nn.Linear(8, len(names))
    ml.init_head(fc)
    assert torch.sigmoid(fc.bias).tolist() == pytest.approx([0.75, 0.25, 0.25], abs=1e-6)
    single = objective_for("single_label")
    before = fc.bias.clone()
    single.init_head(fc)  # the other problem types leave a new head as it is
    assert torch.equal(fc.bias, before)


def test_a_regression_s_default_recipe_trains_every_layer_from_the_start():
    from tunelab.config import recipe_stages

    reg = Config.model_validate({"data": {"problem": "regression"}})
    assert [s.train for s in reg.stages] == [s.train for s in recipe_stages("full")]
    assert [s.train for s in Config.model_validate({}).stages] == [s.train for s in recipe_stages("default")]
