"""The linear probe on the pretrained features choosing a stage's learning rate (lr_if_features_fit)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import tunelab
from conftest import write_images
from tunelab.config import build_config, load_config
from tunelab.engine.probe import cv_accuracy, fit_logistic
from tunelab.errors import ConfigError
from tunelab.pretrained_fit import FIT_KAPPA, apply_fit, probe_fit, wanted
from tunelab.tasks import IMAGES

STAGES = [{"train": "head", "epochs": 2, "lr": 3e-3}, {"train": "all", "epochs": 3, "lr_scale": 0.1, "lr_if_features_fit": 1e-4}]


def _apply(cfg, fit, side=None):
    """apply_fit as an image run calls it: the probe also decides augment: auto, by the source size."""
    return apply_fit(cfg, fit, SimpleNamespace(native_side=side), IMAGES.probe_choice)


def _fit(kappa: float) -> dict:
    return {"cv_accuracy": 0.5 + kappa / 2, "majority": 0.5, "kappa": kappa, "examples": 40, "threshold": FIT_KAPPA}


def test_features_that_fit_set_the_lower_rate_and_others_keep_theirs():
    cfg = build_config({"stages": STAGES})
    assert wanted(cfg)
    fitted, chosen = _apply(cfg, _fit(0.95))
    assert fitted.stages[1].lr == 1e-4 and fitted.stages[1].lr_scale is None
    assert "lr 0.0001" in chosen["stages.1"] and "kappa 0.95 >= 0.9" in chosen["stages.1"]
    kept, chosen = _apply(cfg, _fit(0.85))
    assert kept.stages[1].lr is None and kept.stages[1].lr_scale == 0.1 and "kappa 0.85 < 0.9" in chosen["stages.1"]
    edge = {**_fit(0.9), "kappa": (11 / 12 - 1 / 6) / (1 - 1 / 6)}  # 0.8999... in floating point
    assert _apply(cfg, edge)[0].stages[1].lr == 1e-4
    none, chosen = _apply(cfg, None)
    assert none.stages[1].lr_scale == 0.1 and "no probe" in chosen["stages.1"]
    for c in (fitted, kept, none):  # decided once: nothing is left for a resume or the refit to decide again
        assert not wanted(c) and c.stages[0] == cfg.stages[0]


def test_the_default_image_recipe_has_it_and_a_rate_the_user_sets_wins():
    cfg = build_config({})
    assert cfg.stages[1].lr == 3e-4 and cfg.stages[1].lr_if_features_fit == 1e-4
    assert not wanted(build_config({"model": {"family": "transformers", "backbone": "minilm"}}))
    set_lr = build_config({}, ["stages.1.lr=1e-3"])
    assert set_lr.stages[1].lr_if_features_fit is None and set_lr.stages[1].lr == 1e-3
    assert build_config({}, ["stages.1.lr_scale=0.5"]).stages[1].lr_if_features_fit is None
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


def test_random_weights_are_not_probed_keep_their_rates_and_flip(tiny_cfg):
    """Random features say nothing about the data: no probe, every stage keeps its lr, auto flips."""
    tiny_cfg["stages"] = STAGES
    tiny_cfg.pop("regularization", None)  # augment: auto
    run = tunelab.fit(tiny_cfg)
    saved = load_config(run.dir / "config.yaml")
    assert not wanted(saved) and saved.stages[1].lr_scale == 0.1 and saved.regularization.augment == "flip"
    assert "pretrained_fit" not in run.metrics and not (run.dir / "pretrained_fit.json").exists()


@pytest.mark.e2e
def test_a_run_decides_once_and_writes_the_rate_into_its_config(tiny_cfg):
    """The packaged Lite0 on the fixtures' images: the probe runs before training, its choices are
    in config.yaml (so a resume or refit trains the same), metrics.json and the report."""
    tiny_cfg["model"] = {"backbone": "tf_efficientnet_lite0", "pretrained": True}
    tiny_cfg["stages"] = [{**STAGES[0], "epochs": 1}, {**STAGES[1], "epochs": 1}]
    tiny_cfg.pop("regularization", None)  # augment: auto
    run = tunelab.fit(tiny_cfg)
    fit = run.metrics["pretrained_fit"]
    assert fit["examples"] == run.metrics["n_train"] and 0.0 <= fit["cv_accuracy"] <= 1.0
    assert fit["kappa"] == pytest.approx((fit["cv_accuracy"] - fit["majority"]) / (1 - fit["majority"]))
    saved = load_config(run.dir / "config.yaml")
    assert not wanted(saved) and saved.regularization.augment == ("flip" if fit["mirror"]["keeps_labels"] else "none")
    expect = 1e-4 if fit["kappa"] >= FIT_KAPPA else 3e-3 * 0.1
    stage1 = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines() if '"stage": 1' in x]
    assert max(max(r["lr_steps"]) for r in stage1) == pytest.approx(expect, rel=1e-6)  # the peak rate
    assert (saved.stages[1].lr or 3e-3 * saved.stages[1].lr_scale) == pytest.approx(expect)
    page = (run.dir / "report.html").read_text()
    assert f"kappa {fit['kappa']:.2f}" in page and ("already fit the data" in page) == (fit["kappa"] >= FIT_KAPPA)


def test_augment_auto_resolves_to_flip_unless_mirrors_lose_their_labels():
    cfg = build_config({})
    assert cfg.regularization.augment == "auto" and wanted(cfg)
    mirror = {"loss": 0.2, "t": 5.0, "accuracy": 0.9, "accuracy_mirrored": 0.5, "keeps_labels": False}
    off, chosen = _apply(cfg, {**_fit(0.5), "mirror": mirror})
    assert off.regularization.augment == "none" and chosen["regularization.augment"].startswith("none")
    on, _ = _apply(cfg, {**_fit(0.5), "mirror": {**mirror, "keeps_labels": True}})
    assert on.regularization.augment == "flip" and _apply(cfg, None)[0].regularization.augment == "flip"
    assert not wanted(off) and not wanted(on)
    assert build_config({"regularization": {"augment": "light"}}).regularization.augment == "light"


def test_augment_auto_adds_crops_for_source_images_of_48_px_or_more_unless_mirrors_lose_their_labels():
    cfg = build_config({})
    keep = {"loss": 0.0, "t": 0.0, "accuracy": 0.9, "accuracy_mirrored": 0.9, "keeps_labels": True}
    lose = {**keep, "keeps_labels": False}
    picks = {
        (side, labels): _apply(cfg, {**_fit(0.5), "mirror": m}, side)[0].regularization.augment
        for side in (None, 28, 47, 48, 500)
        for labels, m in (("keep", keep), ("lose", lose))
    }
    assert picks == {
        (None, "keep"): "flip",
        (28, "keep"): "flip",
        (47, "keep"): "flip",
        (48, "keep"): "light",
        (500, "keep"): "light",
        **{(s, "lose"): "none" for s in (None, 28, 47, 48, 500)},
    }
    # random weights (no probe): crops by size alone, and the reason is logged
    light, chosen = _apply(cfg, None, 64)
    assert light.regularization.augment == "light" and "64 px" in chosen["regularization.augment"]


def test_no_flip_advice_for_a_run_whose_mirror_images_lose_their_labels():
    from tunelab.diagnosis import diagnose

    rows = [
        {"stage": 0, "epoch": e, "train_loss": 0.5 / (e + 1), "train_accuracy": 1.0, "val_loss": 1.0 + e / 5, "val_accuracy": 0.5}
        for e in range(6)
    ]
    cfg = build_config({"recipe": "full", "regularization": {"augment": "none"}})
    mirror = {"loss": 0.2, "t": 5.0, "accuracy": 0.9, "accuracy_mirrored": 0.5, "keeps_labels": False}
    assert any("augment=flip" in r for r in diagnose(rows, cfg).recommendations)
    told = diagnose(rows, cfg, final={"pretrained_fit": {**_fit(0.5), "mirror": mirror}})
    assert told.verdict == "overfitting" and not any("regularization.augment" in r for r in told.recommendations)


def _arrows(n: int, size: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    """Arrows pointing left (class 0) or right (class 1): a mirror image is the other class."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    imgs, ys = [], []
    for i in range(n):
        c = i % 2
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 255, 3)))
        d, y0 = ImageDraw.Draw(im), int(rng.integers(10, 22))
        tip, tail = (4, size - 4) if c == 0 else (size - 4, 4)
        d.line([(tail, y0), (tip, y0)], fill=(0, 0, 0), width=3)
        d.polygon([(tip, y0), (tip + (8 if c == 0 else -8), y0 - 6), (tip + (8 if c == 0 else -8), y0 + 6)], fill=0)
        imgs.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
        ys.append(c)
    return torch.stack(imgs), np.array(ys)


@pytest.mark.e2e
def test_the_packaged_lite0_sees_that_mirrored_arrows_change_class_and_mirrored_stripes_do_not():
    """Real weights: left/right arrows lose their labels when mirrored (no flips); colour and
    stripe-direction classes (the test fixtures' images) keep them (flips)."""
    from tests.conftest import TINY

    from tunelab.engine.device import place
    from tunelab.tasks import task_for
    from tunelab.vision.data import load_data

    cfg = build_config({"data": {"image_size": 32}, "run": {"threads": 2}})
    model = place(task_for(cfg).build_model(cfg, 2), "cpu")
    x, y = _arrows(60)
    arrows = probe_fit(model, x, y, 32, torch.device("cpu"), 0, choice=IMAGES.probe_choice)
    assert arrows is not None and not arrows["mirror"]["keeps_labels"], arrows
    shapes = load_data(build_config({"data": {**TINY["data"], "val_split": 0.0}}).data).train
    stripes = probe_fit(model, shapes.images, shapes.labels.numpy(), 32, torch.device("cpu"), 0, choice=IMAGES.probe_choice)
    assert stripes is not None and stripes["mirror"]["keeps_labels"], stripes


def test_the_probe_sees_a_stratified_sample_of_at_most_probe_max(monkeypatch):
    """Cross-validating the probe on every example of a large set would cost more than a training
    epoch; PROBE_MAX bounds it (the features of only the sample go through the network)."""
    import tunelab.pretrained_fit as pf

    seen = []
    import tunelab.vision.auto_augment as aa

    def features(model, x, bs, dev):
        return seen.append(len(x)) or np.random.default_rng(len(seen)).normal(0, 1, (len(x), 8)) + x[:, :1, 0, 0].numpy()

    monkeypatch.setattr(pf, "PROBE_MAX", 30)
    monkeypatch.setattr(pf, "pooled_features", features)
    monkeypatch.setattr(aa, "pooled_features", features)  # the mirror images' features
    x = torch.cat([torch.zeros(60, 3, 4, 4), torch.ones(40, 3, 4, 4)]) * 5
    y = np.repeat([0, 1], [60, 40])
    fit = probe_fit(None, x, y, 16, torch.device("cpu"), 0, choice=IMAGES.probe_choice)  # type: ignore[arg-type]
    assert seen == [30, 30] and fit is not None and fit["examples"] == 30 and fit["majority"] == pytest.approx(0.6)


@pytest.mark.parametrize("side, preset", [(20, "flip"), (48, "light")])
def test_a_run_on_larger_source_images_takes_crops_as_well(tiny_cfg, tmp_path, side, preset):
    """The source images' size reaches the decision through a run (random weights: no probe, so
    the size alone decides) and is written into config.yaml; the working size is 32 px either way."""
    write_images(tmp_path / "imgs", {"a": 14, "b": 14}, size=side)
    tiny_cfg["data"].update(train=str(tmp_path / "imgs"), test_samples_per_class=2)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    tiny_cfg["run"]["baselines"] = False
    run = tunelab.fit(tiny_cfg)
    assert load_config(run.dir / "config.yaml").regularization.augment == preset


def test_a_run_without_a_probe_says_why():
    """Was: a multi-label run logged "not probed (random weights, or too few examples)"; the probe is
    a classifier of one class per example."""
    from tunelab.pretrained_fit import why_not_probed

    assert why_not_probed(build_config({"model": {"pretrained": False}})) == "random weights"
    multi = build_config({"data": {"problem": "multi_label"}})
    assert why_not_probed(multi) == "the probe classifies one class per example; data.problem is multi_label"
    _, chosen = _apply(multi, None)
    assert "no probe: the probe classifies one class per example" in chosen["stages.1"]
