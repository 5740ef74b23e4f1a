"""Rendering of tunelab's pages: the HTML pages (report.html, compare.html, tune.html) and the
Markdown model card (README.md), Jinja2 templates in tunelab/templates. HTML templates are escaped
automatically, images embedded as data URIs so that a page is one file that opens without a
network; Markdown templates (``*.md.j2``) are not escaped (Markdown has no HTML entities to fear
in a YAML front matter or a code block, and ``&lt;`` would show up literally there).

    render("report.html.j2", title="tunelab report: demo", ...)  # the page, as a string
    render("model_card.md.j2", ...)                              # a model card, unescaped

The callers prepare plain data (rows of already formatted cells, texts, images); the templates
lay it out. Jinja2 is imported on the first render, so ``import tunelab`` does not pay for it.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import jinja2


class Image(NamedTuple):
    """A PNG to embed: its alt text and its bytes as a data URI."""

    alt: str
    src: str


def image(path: Path | None, alt: str) -> Image | None:
    """The PNG at ``path`` ready to embed, or None when there is none (the page leaves it out)."""
    if path is None or not path.is_file():
        return None
    return Image(alt, "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())


@functools.cache
def environment() -> jinja2.Environment:
    """The templates of the installed package; an undefined name is an error, not an empty string.
    Escaping is on for every template but the Markdown ones."""
    import jinja2

    escape = jinja2.select_autoescape(disabled_extensions=("md.j2",), default_for_string=True, default=True)
    return jinja2.Environment(
        loader=jinja2.PackageLoader("tunelab", "templates"),
        autoescape=escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """The template tunelab/templates/``template`` filled in with ``context``."""
    return environment().get_template(template).render(**context)
