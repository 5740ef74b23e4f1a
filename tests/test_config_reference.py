"""docs/config-reference.md is generated from the config's pydantic models and must be current."""

from pathlib import Path

from tunelab.config import Config
from tunelab.config_reference import _sections, reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def test_the_committed_reference_is_current():
    assert DOC.read_text() == reference(), (
        "docs/config-reference.md is stale: python -m tunelab.config_reference > docs/config-reference.md"
    )


def test_every_key_has_a_description_and_is_in_the_reference():
    rows = {line.split(" | ")[0][3:-1]: line for line in reference().splitlines() if line.startswith("| `")}
    for prefix, model in _sections(Config, ""):
        for name in model.model_fields:
            key = f"{prefix}{name}"
            assert key in rows, f"{key} is not in the reference"
            description = rows[key].rsplit(" | ", 1)[1].removesuffix("|").strip()
            assert description and not description.startswith("("), (
                f"{key} has no description, only bounds (a section links to its table)"
            )


def test_types_defaults_and_bounds_as_a_user_writes_them():
    text = reference()
    assert '| `stages.N.schedule` | "constant" \\| "cosine" \\| "onecycle" | `"cosine"` |' in text
    assert "| `data.image_size` | int | `64` | working resolution; images are decoded once at it (>= 8, <= 1024) |" in text
    assert "| `regularization.penalties.N.strength` | float | required |" in text
    assert "## `tune.space.KEY`" in text
