"""The HTML templates: shipped in the package, found there, and escaping what they are given."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
import pytest
from PIL import Image as PILImage

import tunelab
from tunelab._html import environment, image, render

ROOT = Path(__file__).resolve().parents[1]


def test_templates_load_from_the_installed_package():
    shipped = sorted(f.name for f in (resources.files("tunelab") / "templates").iterdir() if f.is_file())
    assert {"base.html.j2", "report.html.j2", "compare.html.j2", "tune.html.j2", "style.css"} <= set(shipped)
    assert sorted(environment().list_templates()) == shipped
    package = Path(tunelab.__file__).parent / "templates"
    for name in shipped:  # each one parses, and comes from the package that is imported
        assert Path(environment().get_template(name).filename or "").parent == package, name


def test_package_data_ships_every_template():
    """A wheel holds tunelab/templates/* only because pyproject.toml says so."""
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tunelab"]
    package = Path(tunelab.__file__).parent
    shipped = {p for g in globs for p in package.glob(g)}
    assert set((package / "templates").iterdir()) <= shipped


def test_render_escapes_text_and_rejects_unknown_names():
    rows = [{"text": "<script>alert(1)</script>", "label": 'a "b"', "predicted": "x & y", "probability": "0.900"}]
    page = render("_wrong_texts.html.j2", wrong_texts=rows)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &#34;b&#34;" in page and "x &amp; y" in page
    assert render("_wrong_texts.html.j2", wrong_texts=None) == ""
    with pytest.raises(jinja2.UndefinedError, match="wrong_texts"):  # a typo in a caller fails, not an empty page
        render("_wrong_texts.html.j2")


def test_image_embeds_a_png_or_nothing(tmp_path):
    png = tmp_path / "a.png"
    PILImage.new("RGB", (2, 2)).save(png)
    img = image(png, 'alt "<text>"')
    assert img is not None and img.src.startswith("data:image/png;base64,iVBOR")
    assert image(tmp_path / "missing.png", "x") is None and image(None, "x") is None
    page = render("compare.html.j2", title="t", names=[], config_rows=[], metric_rows=[], curves=img)
    assert 'alt="alt &#34;&lt;text&gt;&#34;"' in page
