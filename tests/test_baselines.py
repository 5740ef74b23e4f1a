"""The cheap baselines of every run: majority class, logistic regression on pixels / TF-IDF, and
the linear probe. Synthetic data here; the suite's data sets stay out of the tests."""

import numpy as np
import pytest
import torch

from tunelab import baselines
from tunelab.vision.baselines import pixel_features


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
    scores = baselines.score_baselines(pixel_features(tx), ty, {"val": (pixel_features(vx), vy)}, kind="pixels", num_classes=3)
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
        kind="tfidf",
        num_classes=2,
        features=(feats, {"val": np.eye(2)}),
    )
    assert scores["val"]["logreg_tfidf"]["accuracy"] == 1.0
    assert scores["val"]["linear_probe"]["accuracy"] == 1.0


def test_one_example_of_a_class_falls_back_to_a_plain_regression():
    x = np.random.default_rng(0).normal(size=(5, 4))
    y = np.array([0, 0, 0, 0, 1])
    x[4] += 5
    preds = baselines.fit_predict("features", x, y, {"val": x})
    assert list(preds["val"]) == list(y)


def test_a_single_class_scores_only_the_majority():
    x = np.zeros((4, 3))
    scores = baselines.score_baselines(
        x, np.zeros(4, dtype=int), {"val": (x, np.zeros(4, dtype=int))}, kind="features", num_classes=2
    )
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
