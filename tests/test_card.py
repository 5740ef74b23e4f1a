"""The model card every run folder gets: README.md with Hugging Face's YAML front matter."""

from __future__ import annotations

import json
import shutil

import yaml

import tunelab
from tunelab.card import model_card


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_fit_writes_a_model_card_with_metrics_baselines_and_limits(tiny_cfg, tmp_path):
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    run = tunelab.fit(tiny_cfg)
    card = (run.dir / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "tunelab" and meta["pipeline_tag"] == "image-classification"
    assert "base_model" not in meta  # random weights: no pretrained model to name
    scores = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert scores["test accuracy"] == round(run.metrics["test"]["accuracy"], 4)
    assert scores["val macro-F1"] == round(run.metrics["val"]["macro_f1"], 4)
    for section in ("## Model", "## Data", "## Training", "## Metrics", "## Intended use", "## Limitations", "## Config"):
        assert section in card
    assert "| val | linear_probe |" in card and "| test | majority |" in card  # the run's baselines
    assert "centre-cropped to 32 x 32" in card and ", ".join(run.classes) in card
    assert "backbone: test_efficientnet" in card  # the config, verbatim


def test_card_is_markdown_not_escaped_html(tiny_cfg, tmp_path):
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    tiny_cfg["run"]["baselines"] = False
    run = tunelab.fit(tiny_cfg)
    copy = tmp_path / "copy"
    shutil.copytree(run.dir, copy)
    (copy / "classes.json").write_text(json.dumps(["T-shirt/top & <b>"] + run.classes[1:]))
    card = model_card(copy, library_name="timm", usage="```python\nx < 1\n```")
    assert "T-shirt/top & <b>" in card and "&amp;" not in card and "&lt;" not in card
    assert _front_matter(card)["library_name"] == "timm" and "x < 1" in card


def test_text_run_card_names_the_task_and_the_windows(tiny_text_cfg):
    tiny_text_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    run = tunelab.fit(tiny_text_cfg)
    card = (run.dir / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "text-classification" and "transformers" in meta["tags"]
    assert "windows of 16 tokens" in card and "texts" in card
