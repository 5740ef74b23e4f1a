"""The linear probe on the pretrained features choosing a stage's learning rate (lr_if_features_fit)."""

import json

import numpy as np
import pytest
import torch

import tunelab
from tunelab.config import build_config, load_config
from tunelab.engine.probe import cv_accuracy, fit_logistic
from tunelab.errors import ConfigError
from tunelab.pretrained_fit import FIT_KAPPA, apply_fit, probe_fit, wanted

STAGES = [{"train": "head", "epochs": 2, "lr": 3e-3},
          {"train": "all", "epochs": 3, "lr_scale": 0.1, "lr_if_features_fit": 1e-4}]


def _fit(kappa: float) -> dict:
    return {"cv_accuracy": 0.5 + kappa / 2, "majority": 0.5, "kappa": kappa, "examples": 40, "threshold": FIT_KAPPA}


def test_features_that_fit_set_the_lower_rate_and_others_keep_theirs():
    cfg = build_config({"stages": STAGES})
    assert wanted(cfg)
    fitted, chosen = apply_fit(cfg, _fit(0.95))
    assert fitted.stages[1].lr == 1e-4 and fitted.stages[1].lr_scale is None
    assert "lr 0.0001" in chosen["stages.1"] and "kappa 0.95 >= 0.9" in chosen["stages.1"]
    kept, chosen = apply_fit(cfg, _fit(0.85))
    assert kept.stages[1].lr is None and kept.stages[1].lr_scale == 0.1 and "kappa 0.85 < 0.9" in chosen["stages.1"]
    edge = {**_fit(0.9), "kappa": (11 / 12 - 1 / 6) / (1 - 1 / 6)}  # 0.8999... in floating point
    assert apply_fit(cfg, edge)[0].stages[1].lr == 1e-4
    none, chosen = apply_fit(cfg, None)
    assert none.stages[1].lr_scale == 0.1 and "no probe" in chosen["stages.1"]
    for c in (fitted, kept, none):  # decided once: nothing is left for a resume or the refit to decide again
        assert not wanted(c) and c.stages[0] == cfg.stages[0]


def test_the_default_image_recipe_has_it_and_a_rate_the_user_sets_wins():
    cfg = build_config({})
    assert cfg.stages[1].lr == 3e-4 and cfg.stages[1].lr_if_features_fit == 1e-4
    assert not wanted(build_config({"model": {"family": "transformers", "backbone": "minilm"}}))
    assert not wanted(build_config({}, ["stages.1.lr=1e-3"])) and build_config({}, ["stages.1.lr=1e-3"]).stages[1].lr == 1e-3
    assert not wanted(build_config({}, ["stages.1.lr_scale=0.5"]))
    with pytest.raises(ConfigError, match="lr_if_features_fit"):
        build_config({"stages": [{"objective": "probe", "train": "head", "lr_if_features_fit": 1e-4}]})


def test_cv_accuracy_is_the_cross_validated_score_at_the_chosen_c():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    separable = rng.normal(0, 0.1, (30, 4)) + np.eye(3, 4)[y] * 5
    assert cv_accuracy(fit_logistic(separable, y, 0)) == pytest.approx(1.0)
    noise = rng.normal(0, 1, (30, 4))
    assert cv_accuracy(fit_logistic(noise, y, 0)) < 0.8
    assert cv_accuracy(fit_logistic(noise[:4], np.array([0, 1, 2, 2]), 0)) is None  # one example a class: no CV


def test_no_probe_when_a_class_has_one_training_example():
    y = np.array([0, 0, 1])
    assert probe_fit(None, torch.zeros(3, 3, 8, 8), y, 4, torch.device("cpu"), 0) is None  # type: ignore[arg-type]


def test_a_run_decides_once_and_writes_the_rate_into_its_config(tiny_cfg):
    tiny_cfg["stages"] = STAGES
    run = tunelab.fit(tiny_cfg)
    fit = run.metrics["pretrained_fit"]
    assert fit["examples"] == run.metrics["n_train"] and 0.0 <= fit["cv_accuracy"] <= 1.0
    assert fit["kappa"] == pytest.approx((fit["cv_accuracy"] - fit["majority"]) / (1 - fit["majority"]))
    saved = load_config(run.dir / "config.yaml")
    assert not wanted(saved)
    expect = 1e-4 if fit["kappa"] >= FIT_KAPPA else 3e-3 * 0.1
    stage1 = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines() if '"stage": 1' in x]
    assert max(max(r["lr_steps"]) for r in stage1) == pytest.approx(expect, rel=1e-6)  # the peak rate
    assert (saved.stages[1].lr or 3e-3 * saved.stages[1].lr_scale) == pytest.approx(expect)
    page = (run.dir / "report.html").read_text()
    assert f"kappa {fit['kappa']:.2f}" in page and ("already fit the data" in page) == (fit["kappa"] >= FIT_KAPPA)
