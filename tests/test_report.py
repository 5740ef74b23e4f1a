"""The report, compare page and TensorBoard logs of a real tiny run; the report is rendered in a real
browser (Debian's Chromium driven by Playwright)."""

from pathlib import Path

import pytest

import tunelab
from conftest import CHROMIUM, CHROMIUM_FLAGS
from tunelab.report import SECTIONS

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import copy

    from conftest import TINY

    cfg = copy.deepcopy(TINY)
    cfg["run"]["dir"] = str(tmp_path_factory.mktemp("runs"))
    cfg["regularization"] = {"penalties": [{"type": "l2sp", "strength": 0.1, "params": "all"}]}
    return tunelab.fit(cfg)


def test_fit_writes_report_plots_and_diagnosis(run):
    assert (run.dir / "report.html").is_file()
    # the cheap baselines, fitted before training, scored on both evaluation splits
    assert set(run.metrics["baselines"]) == {"val", "test"}
    assert set(run.metrics["baselines"]["val"]) == {"majority", "logreg_pixels", "linear_probe"}
    for name in ("curves", "lr", "penalties", "confusion", "per_class", "wrong"):
        assert (run.dir / "plots" / f"{name}.png").is_file(), name
    assert run.metrics["diagnosis"]["verdict"] in ("good fit", "overfitting", "underfitting", "unstable", "too short")
    html = (run.dir / "report.html").read_text()
    assert 'src="http' not in html and "<script" not in html  # self-contained, no network


def test_report_renders_in_chromium(run):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: sudo apt-get install chromium (scripts/setup.sh does this as root)")
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run.dir / "report.html").as_uri())
        for s in SECTIONS:
            assert page.locator(f"section#{s} h2").inner_text() == s
            assert page.locator(f"section#{s} > *").count() >= 2  # heading plus content
        n_images = page.locator("img").count()
        assert n_images >= 6
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert all(w > 0 for w in widths), widths  # every embedded image decoded
        assert "l2sp" in page.locator("section#regularization").inner_text()
        baselines = page.locator("section#summary table.baselines").inner_text()
        assert all(n in baselines for n in ("fine-tuned model", "majority", "logreg_pixels", "linear_probe"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert errors == []


def test_report_command_rewrites_and_keeps_gallery(run, capsys):
    from tunelab.cli import main

    (run.dir / "report.html").unlink()
    assert main(["report", str(run.dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run.dir / "report.html")
    html = (run.dir / "report.html").read_text()
    assert 'alt="most confidently wrong"' in html


def test_compare_shows_config_differences_and_metrics(run, tmp_path):
    other = tunelab.fit(tunelab.load_config(run.dir / "config.yaml", ["run.name=other", "data.image_size=24"]))
    out = tunelab.compare([run.dir, other.dir], tmp_path / "cmp.html")
    html = out.read_text()
    assert "data.image_size" in html and "test accuracy" in html and "data:image/png;base64" in html
    assert "model.backbone" not in html  # equal keys are not listed


def test_tensorboard_has_scalars_hparams_and_confusion_image(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {"scalars": set(), "images": set()}
    for events in (run.dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags["scalars"] |= set(acc.Tags()["scalars"])
        tags["images"] |= set(acc.Tags()["images"])
    assert {"lr", "penalty/l2sp", "hparam/test_accuracy"} <= tags["scalars"]
    assert any(t.startswith("loss") for t in tags["scalars"])
    assert "test/confusion_matrix" in tags["images"]


def test_report_escapes_class_names_and_texts(run, tmp_path):
    """Names and texts from the data reach the page as text, never as markup."""
    import json
    import shutil

    from tunelab.report import write_report

    d = tmp_path / "odd"
    shutil.copytree(run.dir, d)
    classes = json.loads((d / "classes.json").read_text())
    classes[0] = "<script>alert(1)</script>"
    (d / "classes.json").write_text(json.dumps(classes))
    data = json.loads((d / "data.json").read_text())
    data["classes"] = classes
    (d / "data.json").write_text(json.dumps(data))
    (d / "wrong_texts.json").write_text(
        json.dumps(
            [
                {
                    "text": "<img src=x onerror=alert(1)> " + "y" * 400,
                    "item": 0,
                    "true": "<b>",
                    "predicted": "a & b",
                    "probability": 0.9,
                }
            ]
        )
    )
    html = write_report(d).read_text()
    assert "<script" not in html and "<td><b>" not in html and "<img src=x" not in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html  # the data section's row of that class
    assert "&lt;img src=x onerror=alert(1)&gt; " + "y" * 271 + "...</td>" in html  # cut at 300 characters
    assert "<td>&lt;b&gt;</td><td>a &amp; b</td><td>0.900</td>" in html


def test_the_summary_says_when_augment_auto_added_crops():
    from tunelab.config import build_config
    from tunelab.report import _pretrained_fit
    from tunelab.tasks import IMAGES

    fit = {
        "cv_accuracy": 0.9,
        "majority": 0.5,
        "kappa": 0.8,
        "examples": 40,
        "threshold": 0.9,
        "mirror": {"loss": 0.0, "t": 0.0, "accuracy": 0.9, "accuracy_mirrored": 0.9, "keeps_labels": True},
    }
    m = {"pretrained_fit": fit}
    light = _pretrained_fit(m, IMAGES.summary_lines(m, build_config({"regularization": {"augment": "light"}}))["probe"])
    flip = _pretrained_fit(m, IMAGES.summary_lines(m, build_config({"regularization": {"augment": "flip"}}))["probe"])
    assert light is not None and flip is not None
    assert "cropped them (source images of 48 px or more)" in light["outcome"] and "cropped" not in flip["outcome"]
