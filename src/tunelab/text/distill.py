"""A text teacher (:mod:`tunelab.distill`) checked to read the student's token ids."""

from __future__ import annotations

from torch import nn

from tunelab.config import Config
from tunelab.errors import ConfigError
from tunelab.text.config import text_options


def text_teacher(model: nn.Module, cfg: Config, tcfg: Config, spec: str) -> nn.Module:
    """The teacher run's model as it is, once its tokenization is checked to be the student's."""
    _check_tokens(cfg, tcfg, spec)
    return model


def _check_tokens(cfg: Config, tcfg: Config, spec: str) -> None:
    """A text teacher reads the student's token ids: it must tokenize the same way."""
    mine, theirs = text_options(cfg), text_options(tcfg)
    for key in ("tokenizer", "max_length", "max_windows"):
        if getattr(mine, key) != getattr(theirs, key):
            raise ConfigError(
                f"distill.teacher: {spec} was trained with data.text.{key}: {getattr(theirs, key)}, "
                f"the student has {getattr(mine, key)}; a text teacher reads the student's token ids, "
                "so both need the same tokenizer, max_length and max_windows"
            )
