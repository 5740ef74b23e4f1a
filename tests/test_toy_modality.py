"""A modality of the tests' own (:mod:`toy_signals`, 1-D signals) goes through every use case by
its registration alone: fit (baselines, report, model card), evaluate, predict, the graph exports
with onnxruntime parity, and the config's refusals name it. The engine's properties over it are in
tests/engine/test_properties.py."""

from __future__ import annotations

import numpy as np
import pytest

import tunelab
from toy_signals import SIGNALS, registered, signal_cfg, sines
from tunelab.config import build_config, modalities
from tunelab.errors import ConfigError
from tunelab.tasks import TASKS, task_for


@pytest.fixture(scope="module")
def signals():
    with registered():
        yield


@pytest.fixture(scope="module")
def signal_run(signals, tmp_path_factory):
    return tunelab.fit(signal_cfg(tmp_path_factory.mktemp("signals")))


def test_a_registered_modality_is_chosen_by_its_family_and_keeps_its_own_data_keys(signals):
    cfg = build_config({"model": {"family": "signals"}, "data": {"train": "sines", "length": 64}})
    assert task_for(cfg) is SIGNALS and cfg.data.length == 64 and cfg.regularization.augment == "none"
    assert [s.name for s in cfg.stages] == ["head", "all"]  # its own recipe
    with pytest.raises(
        ConfigError, match=r"data.image_size: unknown key 'image_size' \(a data key of images runs; this is a run of signals\)"
    ):
        build_config({"model": {"family": "signals"}, "data": {"image_size": 32}})
    with pytest.raises(
        ConfigError, match=r"data.length: unknown key 'length' \(a data key of signals runs; this is a run of images\)"
    ):
        build_config({"data": {"length": 32}})


def test_fit_scores_baselines_and_writes_the_report_and_card(signal_run):
    m = signal_run.metrics
    assert set(m["baselines"]["test"]) == {"majority", "logreg_samples", "linear_probe"}
    assert m["test"]["accuracy"] > m["baselines"]["test"]["majority"]["accuracy"]  # it learnt something
    assert (signal_run.dir / "report.html").is_file()
    assert "1-D float signals of 48 samples" in (signal_run.dir / "README.md").read_text()
    assert "data: 3 classes" in (signal_run.dir / "log.txt").read_text()


def test_evaluate_predict_and_export_read_the_modality(signal_run, tmp_path):
    again = tunelab.evaluate(signal_run.dir, "sines")
    assert again["n"] > 0 and 0.0 <= again["accuracy"] <= 1.0
    x, _ = sines(1, 48, seed=9)
    files = []
    for i, signal in enumerate(x):
        np.save(tmp_path / f"s{i}.npy", signal[0])
        files.append(str(tmp_path / f"s{i}.npy"))
    predictions = tunelab.predict(signal_run.dir, files)
    assert len(predictions) == 3 and all(abs(sum(p for _, p in pr.top) - 1.0) < 1e-4 for pr in predictions)
    onnx = tunelab.export(signal_run.dir, "onnx")
    assert onnx.max_abs_diff < 1e-4 and onnx.checked_by == "onnxruntime"
    with pytest.raises(ConfigError, match="--format timm is for image runs; signal runs export as onnx or torchscript"):
        tunelab.export(signal_run.dir, "timm")


def test_taking_the_modality_out_again_leaves_the_built_in_ones():
    with registered():
        assert "signals" in modalities() and "signals" in TASKS
    assert "signals" not in modalities() and "signals" not in TASKS
    with pytest.raises(ConfigError, match=r"model.family: 'signals' is no modality's; valid: auto, timm, transformers"):
        build_config({"model": {"family": "signals"}})
