"""Refit on training + validation data after the validation split has decided (data.refit)."""

import json

import pytest
import torch

import tunelab
from tunelab.config import build_config
from tunelab.refit import refit_stages, should_refit


def test_refit_stages_keep_the_epochs_run_and_drop_early_stopping():
    cfg = build_config(
        {
            "stages": [
                {"train": "head", "epochs": 5, "lr": 1e-3},
                {
                    "train": "all",
                    "epochs": 9,
                    "lr_scale": 0.1,
                    "min_steps": 50,
                    "early_stopping": {"metric": "val_loss", "patience": 2},
                },
            ]
        }
    )
    history = [{"stage": 0, "epoch": e} for e in range(5)] + [
        {"stage": 1, "epoch": e, "val_loss": v} for e, v in enumerate([0.9, 0.5, 0.6, 0.7])
    ]
    st = refit_stages(cfg, history)
    assert [s.epochs for s in st] == [5, 2]  # stage 2 stopped after 4 epochs and restored its 2nd
    assert st[1].early_stopping is None and st[1].min_steps is None and st[1].lr_scale == 0.1


def test_auto_the_default_refits_few_shot_training_sets_only():
    cfg = build_config({})  # the default: auto
    assert should_refit(cfg, 40, 10, 10) and should_refit(cfg, 25, 7, 4)  # 5 and 8 examples a class
    assert not should_refit(cfg, 160, 40, 10) and not should_refit(cfg, 40, 0, 10)  # 20 a class; no validation
    assert not should_refit(build_config({"data": {"refit": "never"}}), 40, 10, 10)
    assert should_refit(build_config({"data": {"refit": "always"}}), 4000, 1000, 10)


def test_concat_of_text_sets_pads_to_the_longer():
    from tunelab.text.data import TextSet, Tokens

    a = TextSet(
        Tokens(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 2])), torch.tensor([0, 1]), ["a", "b"], None, ["f:1", "f:2"]
    )
    b = TextSet(Tokens(torch.ones(1, 5, dtype=torch.long), torch.tensor([5])), torch.tensor([1]), ["c"], None, ["f:3"])
    m = a.concat(b)
    assert m.tokens.ids.shape == (3, 5) and m.tokens.ids[0, 3:].tolist() == [0, 0]
    assert m.labels.tolist() == [0, 1, 1] and m.texts == ["a", "b", "c"] and len(m) == 3


def test_a_refit_run_trains_on_train_and_val_and_keeps_that_model(tiny_cfg):
    tiny_cfg["data"]["refit"] = "always"
    run = tunelab.fit(tiny_cfg)
    m = run.metrics
    assert m["refit"]["examples"] == m["n_train"] + m["val"]["n"]
    assert m["refit"]["epochs"] == [2, 3] and "first_fit_test" in m["refit"]
    rows = [json.loads(x) for x in (run.dir / "refit" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all("val_loss" not in r for r in rows)
    reloaded = tunelab.load_run(run.dir)  # the saved model is the refit one: it gives the reported test metrics
    again = tunelab.evaluate(run.dir)
    assert again["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert reloaded.metrics["refit"]["examples"] == m["refit"]["examples"]


@pytest.mark.e2e
def test_the_default_refits_a_few_shot_fashion_mnist_run_with_lite0(tmp_path):
    """Real data and weights: Fashion-MNIST at 4 + 1 images a class (5 a class, under auto's 10)
    with the packaged EfficientNet-Lite0 refits by default; 20 + 20 a class (the demo's) does not."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    common = [
        f"run.dir={tmp_path}",
        "run.progress=false",
        "run.baselines=false",
        "data.image_size=32",
        "data.test_samples_per_class=10",
        "stages.0.epochs=1",
        "stages.0.min_steps=null",
        "stages.1.epochs=1",
        "stages.1.min_steps=null",
    ]
    few = tunelab.fit(
        root / "examples" / "default.yaml",
        overrides=common + ["run.name=few", "data.samples_per_class=4", "data.val_samples_per_class=1"],
    )
    assert few.metrics["refit"]["examples"] == 50 and few.metrics["n_train"] == 40
    assert (few.dir / "refit" / "metrics.jsonl").is_file() and "first_fit_test" in few.metrics["refit"]
    more = tunelab.fit(
        root / "examples" / "default.yaml",
        overrides=common + ["run.name=more", "data.samples_per_class=20", "data.val_samples_per_class=20"],
    )
    assert "refit" not in more.metrics
