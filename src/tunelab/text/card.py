"""What the model card (:mod:`tunelab.card`) says of a text run: its input, its limits, its library."""

from __future__ import annotations

from tunelab.config import Config
from tunelab.text.config import text_options


def card_facts(cfg: Config) -> dict[str, str]:
    """The text side of the card: the keys of :attr:`tunelab.tasks.Task.card_facts`."""
    text = text_options(cfg)
    return {
        "pipeline_tag": "text-classification",
        "input": f"token ids of up to {text.max_length} tokens per window",
        "limitation": f"Texts are read as up to {text.max_windows} windows of {text.max_length} tokens; the rest of a "
        "longer text is not read.",
        "predict_args": '--text "..."',
    }
