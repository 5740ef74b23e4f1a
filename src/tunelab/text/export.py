"""A text run's model as a graph export (ONNX, TorchScript) takes it: token ids and their attention
mask in (and segment ids for text pairs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.config import Config
from tunelab.text.config import text_options
from tunelab.text.data import Tokens


class TextClassifier(nn.Module):
    """Token ids [B, L] and attention mask [B, L] (right-padded, 1 on tokens), and the segment ids
    of text pairs -> outputs [B, K] (``head``, the objective's export head, after the model). Each
    row is one text: a text longer than the tokenizer's max_length is read as its first window (a
    run reads up to data.text.max_windows and averages)."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.model(Tokens(input_ids, attention_mask.sum(1), token_type_ids)))


class TextGraph:
    """The text side of :class:`tunelab.tasks.GraphInputs`."""

    def wrap(self, model: nn.Module, head: nn.Module) -> nn.Module:
        return TextClassifier(model, head)

    def input_names(self, cfg: Config) -> list[str]:
        pairs = text_options(cfg).pair_column is not None
        return ["input_ids", "attention_mask"] + (["token_type_ids"] if pairs else [])

    def as_tensors(self, examples: Any, n: int) -> tuple[torch.Tensor, ...]:
        tokens: Tokens = examples.inputs[:n]
        rows = (tokens.ids, tokens.mask)
        return rows + ((tokens.type_ids,) if tokens.type_ids is not None else ())

    def image_size(self, cfg: Config) -> int | None:
        return None

    def dynamic_dims(self) -> dict[int, str]:
        return {0: "batch", 1: "length"}

    def feed(self, cfg: Config, names: list[str]) -> str:
        return "token ids and attention mask [B, L] (int64, right-padded) from the model's tokenizer" + (
            " and token_type_ids" if "token_type_ids" in names else ""
        )
