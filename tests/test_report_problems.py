"""The diagnosis, report, model card and TensorBoard summary of each problem type beside
single-label classification: one tiny fit per type (synthetic images; the labels of the multi-label
and regression manifests follow from each picture's class), shared by the tests of the type."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest

import tunelab
from conftest import CHROMIUM, CHROMIUM_FLAGS, TINY, synthetic_images, text_rows, write_text_csv
from tunelab.report import SECTIONS

VERDICTS = ("good fit", "overfitting", "underfitting", "unstable", "too short")


def _image_label(problem: str, c: int) -> str:
    if problem == "multi_label":  # parity, small numbers, multiples of three: 1 to 3 labels each
        return "|".join(["even" if c % 2 == 0 else "odd"] + (["low"] if c < 5 else []) + (["three"] if c % 3 == 0 else []))
    return str(c * 1.5 + 10)


def _image_manifest(problem: str, folder: Path) -> Path:
    rows = [
        (str(f), _image_label(problem, int(d.name[5:])))
        for d in sorted(synthetic_images().iterdir())
        for f in sorted(d.iterdir())
    ]
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])
    return path


def _image_config(problem: str, folder: Path) -> dict[str, Any]:
    cfg = copy.deepcopy(TINY)
    cfg["run"]["dir"] = str(folder / "runs")
    cfg["data"] = {
        "train": str(_image_manifest(problem, folder)),
        "problem": problem,
        "image_size": 32,
        "test_split": 0.2,
        "val_split": 0.2,
        "batch_size": 16,
    }
    return cfg


def _text_config(problem: str, folder: Path, encoder: Path) -> dict[str, Any]:
    """Texts tagged with their sentiment and, for every third, 'long' (multi-label)."""
    rows = [(t, label + ("|long" if i % 3 == 0 else "")) for i, (t, label) in enumerate(text_rows(30))]
    return {
        "run": {"name": "tiny-text", "progress": False, "seed": 0, "dir": str(folder / "runs")},
        "data": {
            "train": str(write_text_csv(folder / "texts.csv", rows)),
            "problem": problem,
            "test_split": 0.2,
            "val_split": 0.2,
            "batch_size": 8,
            "refit": "never",
            "text": {"max_length": 16, "token_cache": str(folder / "tokens")},
        },
        "model": {"backbone": str(encoder)},
        "stages": [{"name": "head", "train": "head", "epochs": 3, "lr": 1e-2}],
    }


# (problem type, modality, what the report's and the card's evidence names)
CASES = [
    ("multi_label", "images", "mAP"),
    ("regression", "images", "R^2"),
    ("multi_label", "texts", "mAP"),
]


@pytest.fixture(scope="module", params=CASES, ids=[f"{p}-{m}" for p, m, _ in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Any]:
    problem, modality, primary = request.param
    folder = tmp_path_factory.mktemp(f"{problem}-{modality}")
    if modality == "texts":
        cfg = _text_config(problem, folder, request.getfixturevalue("tiny_encoder"))
    else:
        cfg = _image_config(problem, folder)
    return problem, primary, tunelab.fit(cfg)


def test_the_diagnosis_is_a_verdict_whose_evidence_names_the_primary_metric(case):
    _problem, primary, run = case
    d = run.metrics["diagnosis"]
    assert d["verdict"] in VERDICTS
    assert any(primary in e for e in d["evidence"]), d["evidence"]


def test_the_report_has_the_problem_types_tables_and_figures_and_none_of_single_labels(case):
    problem, primary, run = case
    html = (run.dir / "report.html").read_text()
    assert 'src="http' not in html and "<script" not in html
    assert f"<th>{primary}</th>" in html  # the metrics table names the primary metric
    assert "confusion matrix" not in html and "most confidently wrong" not in html
    assert f'alt="loss and {primary} curves"' in html
    if problem == "multi_label":
        assert '<table class="per-label">' in html and "<th>AP</th><th>threshold</th>" in html
        assert 'alt="precision-recall curves per label"' in html and (run.dir / "plots" / "pr_curves.png").is_file()
    else:
        assert '<table class="target">' in html and "<th>MAE</th><th>RMSE</th>" in html
        assert 'alt="predicted against true values and residuals"' in html
        assert (run.dir / "plots" / "regression.png").is_file()


def test_the_report_renders_in_chromium(case):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: sudo apt-get install chromium (scripts/setup.sh does this as root)")
    from playwright.sync_api import sync_playwright

    problem, primary, run = case
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run.dir / "report.html").as_uri())
        for s in SECTIONS:
            assert page.locator(f"section#{s} h2").inner_text() == s
            assert page.locator(f"section#{s} > *").count() >= 2
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 3 and all(w > 0 for w in widths), widths
        summary = page.locator("section#summary").inner_text()
        assert f"{primary} " in summary
        metrics = page.locator("section#metrics").inner_text()
        if problem == "multi_label":
            assert all(label in metrics for label in run.classes)  # the per-label table
        else:
            assert "MAE" in metrics and "RMSE" in metrics
        browser.close()
    assert errors == []


def test_the_report_command_keeps_the_figures_of_the_validation_predictions(case):
    from tunelab.report import write_report

    problem, _primary, run = case
    html = write_report(run.dir).read_text()  # no predictions at hand: the fit's figures are kept
    alt = "precision-recall curves per label" if problem == "multi_label" else "predicted against true values and residuals"
    assert f'alt="{alt}"' in html


def test_the_card_names_the_problem_type_its_metrics_and_how_it_decides(case):
    import yaml

    problem, primary, run = case
    card = (run.dir / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert problem.replace("_", "-") in " ".join(meta["tags"])
    names = [m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]]
    assert f"test {primary}" in names and "test accuracy" not in names
    assert f"Problem type: `{problem}`; primary metric: {primary}" in card
    assert "&id0" not in card  # no YAML anchors
    if problem == "multi_label":
        thresholds = json.loads((run.dir / "objective.json").read_text())["thresholds"]  # what the card reads
        assert f"{run.classes[0]} {thresholds[0]:.3f}" in card
        assert "label set" in card
    else:
        assert "standardised by the training targets' mean" in card and "in its own units" in card


def test_tensorboard_has_the_primary_metric(case):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _problem, primary, run = case
    key = {"mAP": "map", "R^2": "r2"}[primary]
    scalars: set[str] = set()
    for events in (run.dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
    assert f"hparam/test_{key}" in scalars and "hparam/test_accuracy" not in scalars


def test_compare_lists_the_problem_types_metrics(case, tmp_path):
    problem, _primary, run = case
    html = tunelab.compare([run.dir, run.dir], tmp_path / "cmp.html").read_text()
    key = "map" if problem == "multi_label" else "r2"
    assert f"<td>test {key}</td>" in html and "test accuracy" not in html
