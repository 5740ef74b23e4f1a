"""End-to-end on the real offline assets: EfficientNet-Lite0 ImageNet weights, Fashion-MNIST."""

import re
from pathlib import Path

import pytest

import tunelab

DEFAULT = Path(__file__).resolve().parents[1] / "examples" / "default.yaml"

pytestmark = pytest.mark.e2e


def _short_run(tmp_path, name, *extra):
    """The two-stage cached recipe (recipe: fast), shortened: these tests check the machinery."""
    return tunelab.fit(
        DEFAULT,
        overrides=[
            "recipe=fast",
            f"run.dir={tmp_path}",
            f"run.name={name}",
            "run.progress=false",
            "data.samples_per_class=10",
            "data.val_samples_per_class=5",
            "data.test_samples_per_class=50",
            "stages.0.epochs=4",
            "stages.1.epochs=3",
            *extra,
        ],
    )


def test_pretrained_lite0_fine_tunes_and_beats_random_init(tmp_path):
    pre = _short_run(tmp_path, "pretrained")
    assert pre.model.backbone.source == "packaged"
    scratch = _short_run(tmp_path, "scratch", "model.pretrained=false")
    acc_pre, acc_scratch = pre.metrics["test"]["accuracy"], scratch.metrics["test"]["accuracy"]
    assert pre.metrics["test"]["n"] == 500
    assert acc_pre > 0.6, acc_pre
    assert acc_pre > acc_scratch + 0.2, (acc_pre, acc_scratch)


def test_auto_regularization_on_lite0_reaches_the_real_backbone(tmp_path):
    """regularization: auto on the real network: L2-SP is chosen, covers all 3.4M parameters, and
    the audit shows it reaching the gradient in the stage that unfreezes blocks (the stages given
    here are kept: auto fills only what the config leaves unset)."""
    run = _short_run(tmp_path, "auto", "regularization.auto=true")
    cfg = run.config
    assert cfg.regularization.penalties[0].type == "l2sp" and cfg.model.head.dropout == 0.5
    stages = __import__("json").loads((run.dir / "stages.json").read_text())
    audit = stages["1"]["audit"]
    l2sp = next(line for line in audit.splitlines() if line.startswith("l2sp"))
    assert "3,383,818 params" in l2sp and l2sp.rstrip().endswith(("yes", "yes (probed next to w0)"))
    assert all(r["penalty_l2sp"] > 0 for r in run.history)
    assert run.metrics["test"]["accuracy"] > 0.6


def test_one_extraction_pass_serves_both_stages_on_lite0(tmp_path):
    """The fast recipe on the real network: stage 1's extraction pass also caches the input of
    stage 2's first trainable block, stage 2 reuses it, decoded images go to the decode store and a
    second load maps them instead of decoding, and the run ends with a diagnosis and a report."""
    store = tmp_path / "decoded"
    run = _short_run(tmp_path, "cache", f"data.decode_cache={store}")
    log = (run.dir / "log.txt").read_text()
    assert "cache: pooled features (the whole backbone is frozen)" in log
    assert "the same pass cached stage 2's boundary (the input of blocks.5.2" in log
    assert "cache: the input of blocks.5.2 (15 of 20 backbone modules frozen)" in log and "reused in" in log
    assert len(list(store.glob("*.done"))) == 3  # train, val and test images
    again = _short_run(tmp_path, "cache-again", f"data.decode_cache={store}", "stages.0.epochs=1", "stages.1.epochs=1")
    assert "memory-mapped from" in (again.dir / "log.txt").read_text()
    assert run.metrics["diagnosis"]["verdict"] in ("good fit", "overfitting", "underfitting", "unstable", "too short")
    assert (run.dir / "report.html").is_file() and run.metrics["test"]["accuracy"] > 0.6


def test_tune_example_on_lite0(tmp_path):
    """The tune example on the real backbone and data, cut to 3 trials of a few epochs: trials share
    one decode and the cache, best.yaml fits with the test set scored."""
    example = DEFAULT.parent / "tune_fashion_mnist.yaml"
    result = tunelab.tune(
        example,
        trials=3,
        overrides=[
            f"run.dir={tmp_path}",
            "data.samples_per_class=10",
            "data.val_samples_per_class=10",
            "data.test_samples_per_class=50",
            "stages.0.epochs=3",
            "tune.repeats=1",
            "tune.pruner=none",
            "tune.space={stages.0.lr: {low: 1.0e-3, high: 1.0e-2, log: true}, stages.1.epochs: {low: 1, high: 2}}",
        ],
    )
    assert result.counts() == {"complete": 3} and result.best_value > 0.5
    logs = [(result.dir / "trials" / str(i) / "log.txt").read_text() for i in range(3)]
    assert "computed" in logs[0] and all("reused" in lg and "computed" not in lg for lg in logs[1:])
    run = tunelab.fit(result.best_config)
    assert run.metrics["test"]["n"] == 500 and run.metrics["val"]["accuracy"] == result.best_value


def test_two_processes_match_one_on_lite0(tmp_path):
    """The two-stage cached recipe (recipe: fast), cut short, data-parallel on 2 gloo processes with
    the real backbone and data: the same final weights and test predictions as one process (no
    dropout, and the flips are cached views with fixed seeds: nothing random drawn per rank)."""
    import json
    import os
    import subprocess
    import sys

    from tunelab.checkpoint import load

    common = [
        "recipe=fast",
        f"run.dir={tmp_path}",
        "run.progress=false",
        "data.samples_per_class=10",
        "data.val_samples_per_class=5",
        "data.test_samples_per_class=50",
        "stages.0.epochs=2",
        "stages.1.epochs=2",
        "model.head.dropout=0.0",
    ]
    one = tunelab.fit(DEFAULT, overrides=common + ["run.name=one"])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tunelab",
        "fit",
        str(DEFAULT),
        *[a for kv in common + ["run.name=two"] for a in ("--set", kv)],
    ]
    out = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["processes"] == 2 and two["test"]["n"] == 500
    assert two["test"]["confusion_matrix"] == one.metrics["test"]["confusion_matrix"]
    assert abs(two["test"]["loss"] - one.metrics["test"]["loss"]) < 1e-4
    ta, _ = load(one.dir / "model.safetensors")
    tb, _ = load(tmp_path / "two" / "model.safetensors")
    assert max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta) < 1e-4


def _photo_folder(root: Path) -> Path:
    """scikit-image's bundled grey photographs (none of them in the benchmark suite), 172-660 px:
    textures against objects, each photo and its top half."""
    from PIL import Image
    from skimage import data

    for label, names in {"texture": ["brick", "grass", "gravel"], "object": ["camera", "coins", "moon"]}.items():
        (root / label).mkdir(parents=True)
        for n in names:
            img = Image.fromarray(getattr(data, n)())
            img.save(root / label / f"{n}.png")
            img.crop((0, 0, img.width, img.height // 2)).save(root / label / f"{n}-top.png")
    return root


@pytest.mark.parametrize("source, preset", [("fashion-mnist", "flip"), ("photos", "light")])
def test_augment_auto_on_real_images_crops_photos_but_not_28_px_garments(tmp_path, source, preset):
    """The packaged Lite0's probe keeps flips on both; the source size (28 px against 151-512 px
    before resizing to 64) decides the crops, and the log says why."""
    train = str(_photo_folder(tmp_path / "photos")) if source == "photos" else source
    run = tunelab.fit(
        DEFAULT,
        overrides=[
            f"data.train={train}",
            "data.test=null",
            "data.test_split=0",
            "data.samples_per_class=6",
            "data.val_samples_per_class=1",
            f"run.dir={tmp_path}",
            "run.name=aug",
            "run.progress=false",
            "run.baselines=false",
            "stages=[{train: [head], epochs: 1, lr: 0.003}]",
        ],
    )
    assert tunelab.load_config(run.dir / "config.yaml").regularization.augment == preset
    side = re.search(r"source images' shorter side (\d+) px", (run.dir / "log.txt").read_text())
    assert side is not None and (int(side.group(1)) == 28 if source == "fashion-mnist" else int(side.group(1)) >= 151)
