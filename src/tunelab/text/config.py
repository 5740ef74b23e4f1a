"""What a text run's configuration has of its own: the ``data.text`` section (columns, windows,
tokenizer), the text defaults and recipes, and the keys that do not fit text; registered as the
``texts`` modality. A config is a text run's when it says ``model.family: transformers``, has a
``data.text`` section or names a built-in text data set.

Light on purpose (pydantic only): a config is read before anything heavy is imported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tunelab.config import Config, DataConfig, Modality, StageConfig, _Section

# Built-in text data sets; naming one as data.train makes the run a text run.
TEXT_DATASETS = ("rotten-tomatoes",)


class TextOptions(_Section):
    """Where the text and label are in each CSV row / JSON line, and how it is tokenized."""

    column: str = Field("text", description="CSV column / JSON key holding the text")
    pair_column: str | None = Field(
        None, description="a second text column for pair tasks, encoded as one sequence [CLS] text [SEP] pair [SEP]"
    )
    label_column: str = Field("label", description="CSV column / JSON key holding the class name")
    max_length: int = Field(128, ge=4, le=8192, description="tokens per window; see max_windows")
    max_windows: int = Field(
        8,
        ge=1,
        le=256,
        description="a text longer than max_length is read as up to this many "
        "half-overlapping windows spread over it, their features averaged; 1: truncate "
        "(text pairs are always truncated)",
    )
    train_windows: int | None = Field(
        2,
        ge=1,
        description="windows of a long text in one training step, drawn at "
        "random each time (evaluation averages all of them); null: all",
    )
    on_empty: Literal["error", "skip"] = Field("error", description="what to do with an empty text")
    tokenizer: str | None = Field(None, description="default: model.backbone's tokenizer")
    token_cache: str | None = Field(
        "~/.cache/tunelab/tokens",
        description="folder for tokenized data, keyed by tokenizer, max_length and the texts; null: tokenize in memory only",
    )


class TextDataConfig(DataConfig):
    """The data section of a text run: the shared keys and `data.text` (its columns and tokenization)."""

    text: TextOptions = Field(default_factory=TextOptions, description="the columns and tokenization (see TextOptions)")

    def target_column(self) -> str:
        return self.text.label_column


def text_options(cfg: Config | DataConfig) -> TextOptions:
    """The ``data.text`` section of a text run's config."""
    data = cfg.data if isinstance(cfg, Config) else cfg
    if not isinstance(data, TextDataConfig):
        raise TypeError(f"not a text run's data section: {type(data).__name__}")
    return data.text


def text_stages(recipe: str) -> list[StageConfig]:
    """The stages of a recipe for text: the image recipes' shapes at a transformer's learning rates."""
    head = StageConfig(name="head", train=["head"], epochs=10, lr=3e-3, schedule="cosine", min_steps=50)
    every = StageConfig(name="all", train=["all"], epochs=4, lr=5e-5, schedule="cosine", warmup_epochs=0.5, min_steps=60)
    if recipe == "probe":
        return [StageConfig(name="head", train=["head"], epochs=30, lr=3e-3, schedule="cosine", min_steps=150)]
    if recipe == "full":
        return [every]
    if recipe == "fast":
        top = StageConfig(
            name="finetune",
            train=["head", {"last_layers": 4}],
            epochs=3,
            lr=1e-4,
            schedule="cosine",
            warmup_epochs=0.5,
            layer_decay=0.8,
        )
        return [StageConfig(name="head", train=["head"], epochs=10, lr=3e-3, schedule="cosine"), top]
    return [head, every]


def _claims(raw: dict[str, Any]) -> bool:
    """data.text set, or a built-in text data set named."""
    d = raw.get("data") or {}
    return d.get("text") is not None or d.get("train") in TEXT_DATASETS


def _defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """The packaged MiniLM, no image augmentation, the lexical blend, the backbone's tokenizer."""
    d, m = raw.get("data") or {}, raw.get("model") or {}
    d = {**d, "text": dict(d.get("text") or {})}
    m = {**m}
    m.setdefault("backbone", "minilm")
    m.setdefault("lexical", "auto")
    if d["text"].get("tokenizer") is None:
        d["text"]["tokenizer"] = m["backbone"]
    reg = raw.get("regularization")
    reg = {"auto": True} if reg == "auto" else dict(reg or {})
    reg.setdefault("augment", "none")
    return {**raw, "data": d, "model": m, "regularization": reg}


def check_text_config(cfg: Config) -> None:
    head, reg = cfg.model.head, cfg.regularization
    if head.pooling in ("avgmax", "catavgmax"):
        raise ValueError(
            f"model.head.pooling: {head.pooling} is for image feature maps; text: avg (mean), mean, max, cls, pooler, last"
        )
    if head.spatial_dropout:
        raise ValueError("model.head.spatial_dropout applies to image feature maps; for text use model.head.dropout")
    if cfg.model.timm_kwargs:
        raise ValueError("model.timm_kwargs are for timm image backbones; a text encoder takes none")
    if reg.augment != "none":
        raise ValueError(f"regularization.augment: {reg.augment!r} is image augmentation; text runs need none")
    if reg.mixup is not None:
        raise ValueError("regularization.mixup mixes images; it does not apply to text (remove it)")
    if cfg.distill is not None and cfg.distill.unlabeled is not None:
        raise ValueError(
            "distill.unlabeled is a folder of images; a text run distils on its labelled texts only (set distill.unlabeled: null)"
        )


MODALITY = Modality(
    name="texts",
    family="transformers",
    data=TextDataConfig,
    stages=text_stages,
    claims=_claims,
    defaults=_defaults,
    check=check_text_config,
)
