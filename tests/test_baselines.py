"""The cheap baselines of every run, each problem type's own: majority class (label frequencies,
the mean), logistic (one-vs-rest, ridge) regression on pixels / TF-IDF, and the linear (ridge)
probe. Synthetic data here; the suite's data sets stay out of the tests."""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tunelab import baselines
from tunelab.engine.probe import stratified_sample
from tunelab.objectives import objective_for
from tunelab.text.baselines import TfidfInputs
from tunelab.vision.baselines import PixelInputs, pixel_features

SINGLE = objective_for("single_label")


def single(k: int) -> dict[str, Any]:
    return {"objective": SINGLE, "names": [f"c{i}" for i in range(k)]}


def blobs(n_per_class: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Grey 16x16 images whose class is where a bright square sits: pixels separate them linearly."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(3 * n_per_class, 1, 16, 16)).astype(np.uint8)
    y = np.repeat(np.arange(3), n_per_class)
    for i, c in enumerate(y):
        x[i, 0, 5 * c : 5 * c + 5, 4:12] = 250
    return torch.from_numpy(np.repeat(x, 3, axis=1)), y


def test_logistic_regression_on_pixels_beats_the_majority_class():
    (tx, ty), (vx, vy) = blobs(10, 0), blobs(10, 1)
    scores = baselines.score_baselines(pixel_features(tx), ty, {"val": (pixel_features(vx), vy)}, raw=PixelInputs(), **single(3))
    assert scores["val"]["majority"]["accuracy"] == pytest.approx(1 / 3)
    assert scores["val"]["logreg_pixels"]["accuracy"] == 1.0


def test_tfidf_baseline_and_linear_probe_features():
    texts = ["good great fine", "great good", "bad awful", "awful terrible bad", "good fine", "terrible awful"] * 2
    y = np.array([0, 0, 1, 1, 0, 1] * 2)
    feats = np.eye(2)[y] + 0.01 * np.random.default_rng(0).normal(size=(12, 2))
    scores = baselines.score_baselines(
        texts,
        y,
        {"val": (["fine good", "bad terrible"], np.array([0, 1]))},
        raw=TfidfInputs(),
        **single(2),
        features=(feats, {"val": np.eye(2)}),
    )
    assert scores["val"]["logreg_tfidf"]["accuracy"] == 1.0
    assert scores["val"]["linear_probe"]["accuracy"] == 1.0


def test_one_example_of_a_class_falls_back_to_a_plain_regression():
    x = np.random.default_rng(0).normal(size=(5, 4))
    y = np.array([0, 0, 0, 0, 1])
    x[4] += 5
    outputs = baselines.fit_predict(None, x, y, {"val": x}, objective=SINGLE, k=2)
    assert outputs["val"].argmax(1).tolist() == list(y)


def test_a_single_class_scores_only_the_majority():
    x = np.zeros((4, 3))
    scores = baselines.score_baselines(x, np.zeros(4, dtype=int), {"val": (x, np.zeros(4, dtype=int))}, raw=None, **single(2))
    assert list(scores["val"]) == ["majority"]


def test_a_run_sends_only_the_sampled_training_examples_through_the_network(tiny_cfg, monkeypatch):
    """Above MAX_TRAIN the regressions are fitted on a stratified sample, so only that sample's
    features are computed (a 10,000-image run extracted all of them and used a tenth)."""
    import tunelab

    seen = []
    real = baselines.pooled_features

    def spy(model, inputs, batch_size, device):
        seen.append(len(inputs))
        return real(model, inputs, batch_size, device)

    monkeypatch.setattr(baselines, "MAX_TRAIN", 20)
    monkeypatch.setattr(baselines, "pooled_features", spy)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    run = tunelab.fit(tiny_cfg)
    assert run.metrics["n_train"] == 80 and seen[0] == 20  # the training split's sample, then val and test
    assert seen[1:] == [run.metrics["val"]["n"], run.metrics["test"]["n"]]
    assert set(run.metrics["baselines"]["val"]) == {"majority", "logreg_pixels", "linear_probe"}


def test_the_baselines_looser_solver_budget_scores_as_the_probes_does():
    """The baselines bound L-BFGS more loosely than the probe that chooses learning rates (they
    outlasted training at the probe's budget); on a synthetic 5-class problem both score the same."""
    from sklearn.datasets import make_classification

    from tunelab.engine.probe import fit_standardised

    x, y = make_classification(n_samples=1200, n_features=200, n_informative=10, n_classes=5, class_sep=2.0, random_state=0)
    train, test = slice(0, 600), slice(600, None)
    accuracy = {}
    for name, solver in (("baseline", baselines.BASELINE_SOLVER), ("probe", {})):
        features, model = fit_standardised(x[train], y[train], 0, **solver)
        accuracy[name] = float((model.predict(features.transform(x[test])) == y[test]).mean())
    assert accuracy["probe"] > 0.6 and abs(accuracy["baseline"] - accuracy["probe"]) <= 0.01, accuracy


def bits(n: int, seed: int) -> np.ndarray:
    """n examples of 8 random bits: every problem type's target below is a function of them."""
    return np.random.default_rng(seed).integers(0, 2, size=(n, 8))


# problem type -> (target of the bits, output names, constant, raw-input model, probe)
PROBLEMS: dict[str, tuple[Any, list[str], str, str, str]] = {
    "single_label": (lambda b: b[:, 0] + 2 * b[:, 1], ["c0", "c1", "c2", "c3"], "majority", "logreg", "linear_probe"),
    "multi_label": (lambda b: b[:, :3].astype(np.float32), ["a", "b", "c"], "majority", "logreg", "linear_probe"),
    "regression": (
        lambda b: (b @ np.arange(1.0, 9.0) + 10).astype(np.float32),
        ["score"],
        "mean",
        "ridge",
        "ridge_probe",
    ),
}


def inputs(b: np.ndarray, kind: str, seed: int) -> Any:
    """The bits as noisy pixel values, or as texts naming the bits that are set among filler words."""
    if kind == "tfidf":
        return [" ".join(["filler"] + [f"w{j}" for j in np.flatnonzero(row)]) for row in b]
    return b + 0.1 * np.random.default_rng(seed).normal(size=b.shape)


@pytest.mark.parametrize("kind", ["pixels", "tfidf"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_each_problem_type_scores_its_own_baselines_and_the_informative_ones_beat_the_constant(problem, kind):
    target, names, constant, model, probe = PROBLEMS[problem]
    objective = objective_for(problem)
    (tb, vb) = bits(160, 0), bits(60, 1)
    scores = baselines.score_baselines(
        inputs(tb, kind, 0),
        target(tb),
        {"val": (inputs(vb, kind, 1), target(vb))},
        raw=PixelInputs() if kind == "pixels" else TfidfInputs(),
        objective=objective,
        names=names,
        features=(inputs(tb, "pixels", 2), {"val": inputs(vb, "pixels", 3)}),
    )["val"]
    assert list(scores) == [constant, f"{model}_{kind}", probe]
    assert all(tuple(m) == objective.reported for m in scores.values())  # the objective's metrics, primary first
    primary = objective.primary
    assert scores[f"{model}_{kind}"][primary] > scores[constant][primary] + 0.3, scores
    assert scores[probe][primary] > scores[constant][primary] + 0.3, scores


def test_the_constant_baselines_predict_the_majority_the_label_frequencies_and_the_mean():
    ml = objective_for("multi_label")
    freq = torch.sigmoid(ml.constant_outputs(np.array([[1, 0], [1, 1], [1, 0]], dtype=np.float32), 2))
    assert freq.numpy() == pytest.approx(np.array([[1 - 1e-6, 1 / 3]]), abs=1e-6)  # probability = frequency
    assert objective_for("regression").constant_outputs(np.array([1.0, 2.0, 6.0]), 1).tolist() == [[3.0]]
    assert SINGLE.constant_outputs(np.array([2, 1, 2]), 4).argmax(1).tolist() == [2]


def test_a_label_on_every_training_example_keeps_its_frequency_in_the_one_vs_rest_regression():
    b = bits(40, 0)
    y = np.column_stack([b[:, 0], np.ones(40)]).astype(np.float32)
    outputs = baselines.fit_predict(None, b, y, {"val": b}, objective=objective_for("multi_label"), k=2)
    p = torch.sigmoid(outputs["val"]).numpy()
    assert ((p[:, 0] > 0.5) == (b[:, 0] == 1)).all() and (p[:, 1] > 0.99).all()


def test_render_compares_on_the_baselines_metrics_primary_first():
    single_label = {"majority": {"accuracy": 0.25, "macro_f1": 0.1}}
    model = {"loss": 0.3, "accuracy": 0.9, "macro_f1": 0.85, "n": 40}
    assert baselines.render(single_label, model) == (
        "  fine-tuned model  accuracy 0.9000  macro-F1 0.8500\n  majority          accuracy 0.2500  macro-F1 0.1000"
    )
    regression = {"mean": {"r2": 0.0, "mae": 2.0}, "ridge_probe": {"r2": 0.5, "mae": 1.0}}
    lines = baselines.render(regression, {"loss": 0.1, "r2": 0.7, "mae": 0.5, "n": 9}).splitlines()
    assert lines[0].split() == ["fine-tuned", "model", "R^2", "0.7000", "MAE", "0.5000"]
    assert lines[2].split()[:3] == ["ridge_probe", "R^2", "0.5000"]


def test_a_stratum_of_one_example_falls_back_to_a_random_sample():
    strata = np.array([0] * 30 + [1] * 30 + [2])  # the one example of stratum 2 cannot be split
    idx = stratified_sample(strata, 20, 0)
    assert len(idx) == 20 and len(set(idx)) == 20 and (np.diff(idx) > 0).all()


def manifest(tmp_path: Path, problem: str) -> Path:
    """The synthetic images' manifest with a multi-label (parity, low, multiple of three) or a
    regression (1.5 x class + 10) target of each image's class."""
    from conftest import synthetic_images

    rows = []
    for d in sorted(synthetic_images().iterdir()):
        c = int(d.name.removeprefix("class"))
        labels = ["even" if c % 2 == 0 else "odd"] + (["low"] if c < 5 else []) + (["three"] if c % 3 == 0 else [])
        for f in sorted(d.iterdir()):
            rows.append((str(f), "|".join(labels) if problem == "multi_label" else str(c * 1.5 + 10)))
    path = tmp_path / f"{problem}.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])
    return path


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("multi_label", {"majority", "logreg_pixels", "linear_probe"}),
        ("regression", {"mean", "ridge_pixels", "ridge_probe"}),
    ],
)
def test_a_run_writes_its_problem_types_baselines(tiny_cfg, tmp_path, problem, expected):
    import tunelab

    tiny_cfg["data"] = {
        "train": str(manifest(tmp_path, problem)),
        "problem": problem,
        "image_size": 32,
        "test_split": 0.2,
        "val_split": 0.2,
        "batch_size": 16,
    }
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    run = tunelab.fit(tiny_cfg)
    written = json.loads((run.dir / "baselines.json").read_text())
    assert json.dumps(written, sort_keys=True) == json.dumps(run.metrics["baselines"], sort_keys=True)  # NaN != NaN
    assert set(written) == {"val", "test"}
    reported = objective_for(problem).reported
    for split in ("val", "test"):
        assert set(written[split]) == expected
        assert all(tuple(m) == reported for m in written[split].values())
