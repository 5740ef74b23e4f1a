"""End-to-end on the real offline assets: EfficientNet-Lite0 ImageNet weights, Fashion-MNIST."""

from pathlib import Path

import pytest

import tunelab

DEFAULT = Path(__file__).resolve().parents[1] / "examples" / "default.yaml"

pytestmark = pytest.mark.e2e


def _short_run(tmp_path, name, *extra):
    return tunelab.fit(DEFAULT, overrides=[
        f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", "data.samples_per_class=10",
        "data.val_samples_per_class=5", "data.test_samples_per_class=50", "stages.0.epochs=4", "stages.1.epochs=3",
        *extra])


def test_pretrained_lite0_fine_tunes_and_beats_random_init(tmp_path):
    pre = _short_run(tmp_path, "pretrained")
    assert pre.model.backbone.source == "packaged"
    scratch = _short_run(tmp_path, "scratch", "model.pretrained=false")
    acc_pre, acc_scratch = pre.metrics["test"]["accuracy"], scratch.metrics["test"]["accuracy"]
    assert pre.metrics["test"]["n"] == 500
    assert acc_pre > 0.6, acc_pre
    assert acc_pre > acc_scratch + 0.2, (acc_pre, acc_scratch)
