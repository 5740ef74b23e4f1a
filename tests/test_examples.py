"""Every example config is valid, its layer table builds, and its recipe runs (on tiny data,
random weights, so no download is needed)."""

from pathlib import Path

import pytest

import tunelab
from conftest import synthetic_images

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_is_valid_and_summarises(path):
    cfg = tunelab.load_config(path)
    if cfg.model.num_classes == "imagenet":
        assert cfg.stages == []
        return
    text = tunelab.summary(cfg)
    assert text.count("total ") == len(cfg.stages)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.stem != "imagenet"], ids=lambda p: p.stem)
def test_example_recipe_runs(path, tmp_path, request):
    if tunelab.load_config(path).modality.name == "texts":  # a tiny local encoder on a tiny CSV
        encoder, csv = request.getfixturevalue("tiny_encoder"), request.getfixturevalue("text_csv")
        overrides = [
            f"run.dir={tmp_path}",
            "run.progress=false",
            f"model.backbone={encoder}",
            f"data.train={csv}",
            "data.test=null",
            "data.test_split=0",
            "data.samples_per_class=3",
            "data.val_samples_per_class=2",
            "data.refit=never",
            f"data.text.token_cache={tmp_path / 'tokens'}",
            "stages.1.train=[head, {last_layers: 1}]",
        ]  # 3 layers
    else:
        overrides = [
            f"run.dir={tmp_path}",
            "run.progress=false",
            "model.pretrained=false",
            f"data.train={synthetic_images()}",
            "data.test=null",
            "data.image_size=32",
            "data.samples_per_class=3",
            "data.val_samples_per_class=2",
            "data.refit=never",
        ]  # refit has tests of its own
    if tunelab.load_config(path).distill is not None:  # its teacher is a run of its own (tests/test_distill.py)
        overrides.append("distill=null")
    cfg = tunelab.load_config(path, overrides)
    for i in range(len(cfg.stages)):
        overrides += [f"stages.{i}.epochs=1", f"stages.{i}.min_steps=null"]
    run = tunelab.fit(path, overrides=overrides)
    assert len(run.history) == len(cfg.stages)
    assert "val" in run.metrics
