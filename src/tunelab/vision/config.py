"""What an image run's configuration has of its own: the data keys of decoded images, the image
recipes and the keys that fit only images; registered as the ``images`` modality (the fallback:
a config that names no other modality is an image run).

Light on purpose (pydantic only): a config is read before anything heavy is imported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tunelab.config import Config, DataConfig, Modality, StageConfig


class ImageDataConfig(DataConfig):
    """The data section of an image run: the shared keys and how images are decoded."""

    image_size: int = Field(64, ge=8, le=1024, description="working resolution; images are decoded once at it")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="an unreadable image stops the run (error) or is left out, logged and counted (skip)"
    )
    decode_cache: str | None = Field(
        None,
        description="folder for decoded images as memory-mapped files, "
        "reused by later runs (default: decode into memory each run)",
    )

    def hparams(self) -> dict[str, Any]:
        return {"image_size": self.image_size}


def image_data(cfg: Config | DataConfig) -> ImageDataConfig:
    """The image data section of a config (an image run's, which its modality made sure of)."""
    data = cfg.data if isinstance(cfg, Config) else cfg
    if not isinstance(data, ImageDataConfig):
        raise TypeError(f"not an image run's data section: {type(data).__name__}")
    return data


def _default_stages() -> list[StageConfig]:
    """LP-FT: a short head stage on the cached frozen features, so that the new head does not send
    random gradients into the pretrained layers, then the whole network at a low learning rate.
    Chosen on the benchmark suite (benchmarks/results/suite.md) by its mean and worst case over the
    suite's tasks, against the other recipes, a full fine-tune and scikit-learn."""
    return [
        StageConfig(name="head", train=["head"], epochs=4, lr=3e-3, schedule="cosine", min_steps=20),
        StageConfig(
            name="all",
            train=["all"],
            epochs=20,
            lr=3e-4,
            lr_if_features_fit=1e-4,
            schedule="cosine",
            warmup_epochs=1,
            min_steps=60,
        ),
    ]


def _fast_stages() -> list[StageConfig]:
    """Head on the frozen backbone, then the top blocks at a lower learning rate: both stages run on
    the freeze-boundary cache, so this is the cheapest recipe that adapts features."""
    return [
        StageConfig(name="head", train=["head"], epochs=8, lr=3e-3, schedule="cosine"),
        StageConfig(
            name="finetune", train=["head", {"last_blocks": 3}], epochs=12, lr_scale=0.1, schedule="cosine", warmup_epochs=1
        ),
    ]


def image_stages(recipe: str) -> list[StageConfig]:
    """The stages of a recipe for images (probe: the head alone on the frozen backbone's features)."""
    if recipe == "probe":
        return [StageConfig(name="head", train=["head"], epochs=30, lr=3e-3, schedule="cosine", min_steps=150)]
    if recipe == "full":
        return [StageConfig(name="all", train=["all"], epochs=20, lr=3e-4, schedule="cosine", warmup_epochs=1)]
    return _fast_stages() if recipe == "fast" else _default_stages()


TEXT_POOLING = ("mean", "cls", "pooler", "last")


def check_image_config(cfg: Config) -> None:
    if cfg.model.head.pooling in TEXT_POOLING:
        raise ValueError(
            f"model.head.pooling: {cfg.model.head.pooling} is for text encoders; images: avg, max, avgmax, catavgmax"
        )
    if cfg.model.lexical not in (None, 0.0):
        raise ValueError(
            f"model.lexical: {cfg.model.lexical} blends word counts into a text model; image runs take none (remove it)"
        )


MODALITY = Modality(
    name="images",
    family="timm",
    data=ImageDataConfig,
    stages=image_stages,
    check=check_image_config,
    fallback=True,
)
