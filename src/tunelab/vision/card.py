"""What the model card (:mod:`tunelab.card`) says of an image run: its input, its limits, its library."""

from __future__ import annotations

from tunelab.config import Config
from tunelab.vision.config import image_data


def card_facts(cfg: Config) -> dict[str, str]:
    """The image side of the card: the keys of :attr:`tunelab.tasks.Task.card_facts`."""
    side = image_data(cfg).image_size
    return {
        "pipeline_tag": "image-classification",
        "input": f"RGB images of {side} x {side} pixels, uint8 0-255; the normalisation is inside the model",
        "limitation": f"Images are resized (shorter side) to {side} pixels and centre-cropped to {side} x {side}; details "
        "smaller than that resolution allows are lost, and content outside the centre square is cut.",
        "predict_args": "IMAGE_OR_FOLDER",
    }
