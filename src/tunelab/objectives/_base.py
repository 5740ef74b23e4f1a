"""What most objectives do the same way, as defaults an objective overrides where it differs: the
label is one column read as written, the head ends in its last linear layer, the export adds
nothing, validation decides nothing and a finished run keeps nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


def plain_cell(row: Mapping[str, Any], column: str) -> str:
    """The cell of ``column`` as text ('' when it is missing or empty; a JSON 0 stays '0')."""
    value = row.get(column)
    return "" if value is None else str(value).strip()


class BaseObjective:
    name: ClassVar[str]
    exclusive: ClassVar[bool]

    examples: ClassVar[str]

    def strata(self, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def split_groups(self, labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
        strata = self.strata(labels)
        return strata, [f"{self.examples} group {k}" for k in range(int(strata.max()) + 1)] if len(strata) else []

    def unprobed(self) -> str | None:
        return None if self.exclusive else f"the probe classifies one class per example; data.problem is {self.name}"

    def columns(self, column: str) -> list[str]:
        return [column]

    def cell(self, row: Mapping[str, Any], column: str, where: str) -> str:
        return plain_cell(row, column)

    def output_layer(self) -> nn.Module:
        return nn.Identity()

    def init_head(self, fc: nn.Module) -> None:
        """Set the new head's last linear layer from the training targets (nothing by default)."""
        return None

    def export_head(self) -> nn.Module:
        return nn.Identity()

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return weight, bias

    def tune(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        return None
