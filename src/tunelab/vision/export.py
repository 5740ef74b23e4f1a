"""An image run's model as a graph export (ONNX, TorchScript) takes it: raw uint8 images in."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.config import Config
from tunelab.vision.config import image_data


class ImageClassifier(nn.Module):
    """uint8 images [B, 3, S, S] (0-255, RGB) -> outputs [B, K]; the normalisation is inside, and
    ``head`` (the objective's export head: a softmax, a sigmoid or nothing) after the model."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(images))


class ImageGraph:
    """The image side of :class:`tunelab.tasks.GraphInputs`."""

    def wrap(self, model: nn.Module, head: nn.Module) -> nn.Module:
        return ImageClassifier(model, head)

    def input_names(self, cfg: Config) -> list[str]:
        return ["images"]

    def as_tensors(self, examples: Any, n: int) -> tuple[torch.Tensor, ...]:
        return (examples.inputs[:n].contiguous(),)

    def image_size(self, cfg: Config) -> int | None:
        return image_data(cfg).image_size

    def dynamic_dims(self) -> dict[int, str]:
        return {0: "batch"}

    def feed(self, cfg: Config, names: list[str]) -> str:
        size = image_data(cfg).image_size
        return f"raw RGB images, uint8 [B, 3, {size}, {size}] (0-255; resize the shorter side to {size}, crop the centre)"
