"""Typed run configuration: YAML file first, then dotted ``--set`` overrides.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key or a value of the
wrong type fails before anything runs, with a message naming the key and what would be valid::

    cfg = load_config("examples/default.yaml", overrides=["optim.lr=3e-4", "data.samples_per_class=10"])
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tunelab._yaml import MAX_BYTES as MAX_YAML_BYTES
from tunelab._yaml import load_yaml
from tunelab.errors import ConfigError


class _Section(BaseModel):
    # inf and nan are refused in every float key: `lr: .inf` would train every epoch on a NaN loss
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1  # NumPy's seeds are 0 to 2**32 - 1 (torch takes more)


def _a_seed(v: int) -> int:
    if not 0 <= v <= SEED_MAX:
        raise ValueError(f"{v} is not a seed; valid: an integer from 0 to {SEED_MAX} (2**32 - 1, NumPy's range)")
    return v


Seed = Annotated[int, AfterValidator(_a_seed)]


class DataConfig(_Section):
    """Where the examples come from and how they are split: the keys every modality has. A run's
    data section is its modality's subclass of this one, with the modality's own keys besides."""

    train: str = Field(
        "fashion-mnist",
        description="built-in data set name (fashion-mnist, digits, rotten-tomatoes), a folder with one subfolder "
        "per class, or a CSV manifest with columns path,label; for text a CSV or JSON lines file",
    )
    test: str | None = Field(
        "auto",
        description="'auto' (the built-in data set's official test split, or none), a folder, a "
        "CSV manifest, a built-in name, or null for no test set",
    )
    val_split: float = Field(0.2, ge=0.0, lt=1.0, description="stratified fraction held out for validation")
    test_split: float = Field(0.0, ge=0.0, lt=1.0, description="stratified fraction held out as test when no test set is given")
    samples_per_class: int | None = Field(None, ge=1, description="sub-sample the training split (few-shot runs)")
    val_samples_per_class: int | None = Field(None, ge=1, description="cap the validation split per class")
    test_samples_per_class: int | None = Field(None, ge=1, description="cap the test set per class")
    batch_size: int = Field(32, ge=1, description="training batch size")
    eval_batch_size: int = Field(
        64,
        ge=1,
        description="batch size of evaluation and cache extraction "
        "(64 was 2-3x faster than 256 on 2 CPU cores; raise it on a GPU)",
    )
    evaluate_test: bool = Field(
        True,
        description="evaluate the test set at the end of the run; false still holds "
        "it out (train and validation splits stay the same) but never decodes or scores it: "
        "what `tunelab tune` trials do, so that no choice is made on the test set",
    )
    seed: Seed = Field(
        0,
        description="which examples go to the validation and test splits and which "
        "samples_per_class draws (run.seed decides the training randomness)",
    )
    refit: Literal["auto", "always", "never"] = Field(
        "auto",
        description="after the run, train the same recipe again on the training and validation examples "
        "together (the epochs each stage ran) and keep that model; validation metrics and the diagnosis stay the "
        "first fit's. auto: when training + validation hold at most 10 examples a class, where the held-out fifth "
        "costs most (docs/config.md)",
    )
    problem: Literal["single_label", "multi_label", "regression"] = Field(
        "single_label",
        description="single_label: one class per example; multi_label: any number of labels per example, "
        "joined by label_separator in the label column; regression: a number per example (docs/problems.md)",
    )
    label_separator: str = Field(
        "|", min_length=1, max_length=8, description="multi_label: what joins an example's labels in its label cell"
    )
    label_columns: list[str] | None = Field(
        None,
        min_length=1,
        description="multi_label: several 0/1 columns, one a label (in the label's name), instead of one label "
        "column holding the labels joined by label_separator",
    )
    regression_loss: Literal["mse", "huber"] = Field(
        "mse", description="regression: squared error, or Huber (robust to outlying targets), on standardised targets"
    )

    def target_column(self) -> str:
        """What the column of the targets is called in messages (a modality's section may say)."""
        return "label"

    def hparams(self) -> dict[str, Any]:
        """The modality's data keys that describe a run among others (TensorBoard's hyperparameters)."""
        return {}

    @model_validator(mode="after")
    def _label_columns_are_multi_label(self) -> DataConfig:
        if self.label_columns is not None and self.problem != "multi_label":
            raise ValueError(
                f"data.label_columns are 0/1 columns of a multi-label problem; data.problem is {self.problem}: "
                "set data.problem: multi_label, or remove label_columns"
            )
        if self.label_columns is not None and len(set(self.label_columns)) != len(self.label_columns):
            raise ValueError(f"data.label_columns names a column twice: {self.label_columns}")
        return self

    @model_validator(mode="after")
    def _separator_is_no_csv_syntax(self) -> DataConfig:
        if any(c in self.label_separator for c in '"\n\r'):
            raise ValueError(
                f"data.label_separator: {self.label_separator!r} cannot join labels inside one CSV cell; "
                "use | (the default), ;, a space or another character that no label contains"
            )
        return self


class ModelConfig(_Section):
    """The pretrained backbone and the new task head."""

    backbone: str = Field(
        "tf_efficientnet_lite0",
        description="a timm model name; for text a transformers "
        "encoder: minilm (packaged offline), a local folder, or a hub name",
    )
    family: str = Field(
        "auto",
        description="the backbone library, which chooses the modality: timm (images) or transformers (text); "
        "auto: transformers when data.text is set or data.train is a built-in text data set, else timm",
    )
    pretrained: bool = Field(True, description="load pretrained weights (see weights); false: random initialisation")
    weights: str = Field(
        "auto",
        description="'auto' (packaged offline weights when installed, else the hub), 'hub', "
        "'packaged', a path to a .safetensors/.pth state dict, or a Kaggle Models handle "
        "kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION] (through kagglehub; its cache is read offline)",
    )
    num_classes: int | Literal["data", "imagenet"] = Field(
        "data",
        description="'data' (one output per class found in the data), 'imagenet' (keep the pretrained classifier), or a number",
    )
    drop_path_rate: float = Field(
        0.0, ge=0.0, lt=1.0, description="stochastic depth inside the backbone (timm models that have it)"
    )
    timm_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="more keyword arguments for timm.create_model, e.g. {dynamic_img_size: "
        "true} or {drop_rate: 0.2}; what tunelab sets itself (pretrained, num_classes, drop_path_rate) is refused",
    )
    head: HeadConfig = Field(default_factory=lambda: HeadConfig(), description="the new task head")
    lexical: float | Literal["auto"] | None = Field(
        None,
        description="text: blend a logistic regression on word-piece TF-IDF into the model's class "
        "log-probabilities (docs/text.md): auto (the text default) scales the two by the lowest validation "
        "log-loss and writes the regression's share back here; a number w from 0 to 1 fixes the mix (1 - w, w); "
        "null: the network alone",
    )

    @field_validator("lexical")
    @classmethod
    def _a_weight(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError(f"model.lexical: {v} is not a blend weight; valid: a number from 0 to 1, auto, or null")
        return v

    @field_validator("timm_kwargs")
    @classmethod
    def _own_keys_elsewhere(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Keys tunelab sets itself have their own config keys; two ways to say one thing would disagree."""
        own = {
            "pretrained": "model.pretrained",
            "num_classes": "model.num_classes",
            "drop_path_rate": "model.drop_path_rate",
            "pretrained_cfg_overlay": "model.weights",
            "checkpoint_path": "model.weights",
            "features_only": "nothing (tunelab needs the whole model)",
        }
        for key in v:
            if key in own:
                raise ValueError(f"model.timm_kwargs.{key} is set by tunelab; use {own[key]}")
        return v


class HiddenLayer(_Section):
    units: int = Field(..., ge=1, description="width of the dense layer")
    activation: Literal["relu", "gelu", "silu", "tanh", "none"] = Field(
        "relu", description="after the dense layer (and its BatchNorm)"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout applied after this layer")
    batch_norm: bool = Field(False, description="BatchNorm1d between the dense layer and its activation")


class HeadConfig(_Section):
    """pooling -> dropout -> [dense -> (bn) -> activation -> dropout]* -> classifier."""

    pooling: Literal["auto", "avg", "max", "avgmax", "catavgmax", "mean", "cls", "pooler", "last"] = Field(
        "auto",
        description="auto: images, the model's own pre-logits features (timm's forward_head: its pooling, "
        "final norm, conv_head or class token, as the model defines them); text, mean. Images: avg, max, avgmax, "
        "catavgmax pool the last feature map instead (the model's own top is then left out). Text: avg (= mean "
        "over tokens), mean, max, cls (the first token), pooler (cls through the encoder's pretrained pooler), last "
        "(the last token: for decoders such as GPT-2, Qwen2, Llama)",
    )
    spatial_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout2d on the feature map before pooling "
        "(image models whose own top is only pooling, or with a pooling set)",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the pooled features")
    hidden: list[HiddenLayer] = Field(
        default_factory=list, description="dense layers between the pooled features and the classifier"
    )


ModelConfig.model_rebuild()

# A trainable-set selector: "head", "backbone", "all", "none", {"last_blocks": N}, {"last_layers": N},
# {"regex": "..."}. last_layers is another name for last_blocks (transformer layers read better so).
Selector = Literal["head", "backbone", "all", "none"] | dict[str, int | str]


def validate_selectors(v: list[Any]) -> list[Any]:
    for sel in v:
        if isinstance(sel, dict):
            if len(sel) != 1 or next(iter(sel)) not in ("last_blocks", "last_layers", "regex"):
                raise ValueError(
                    f"selector {sel!r} is not valid: use 'head', 'backbone', 'all', 'none', "
                    "{last_blocks: N}, {last_layers: N} or {regex: PATTERN}"
                )
            key, val = next(iter(sel.items()))
            if key in ("last_blocks", "last_layers") and (not isinstance(val, int) or val < 0):
                raise ValueError(f"{key} must be a non-negative integer, got {val!r}")
            if key == "regex" and not isinstance(val, str):
                raise ValueError(f"regex must be a string, got {val!r}")
    return v


# A list of selectors; a single selector is accepted as a list of one.
Selectors = Annotated[
    list[Selector], BeforeValidator(lambda v: [v] if isinstance(v, (str, dict)) else v), AfterValidator(validate_selectors)
]


class EarlyStopping(_Section):
    metric: str = Field(
        "val_loss",
        description="the validation metric watched: val_loss, or val_ and a metric of data.problem "
        "(single_label: accuracy, macro_f1; multi_label: map, micro_f1, macro_f1, subset_accuracy; "
        "regression: r2, mae, rmse, spearman); loss, mae and rmse fall, the others rise",
    )
    patience: int = Field(3, ge=1, description="epochs without improvement before the stage stops")
    min_delta: float = Field(0.0, ge=0.0, description="the least change that counts as an improvement")
    restore_best: bool = Field(True, description="at the end of the stage, load the weights of its best epoch")


class StageConfig(_Section):
    """One training stage: what is trainable, for how long, with which optimizer and schedule."""

    name: str | None = Field(None, description="label in the log, tables and plots; default: the stage's index")
    objective: Literal["classify", "contrastive", "probe"] = Field(
        "classify",
        description="classify: cross-entropy on the labels; contrastive: pull the pooled features of two "
        "examples of a class together and push other classes' apart (cosine similarity, as SetFit), to shape the "
        "features before a head stage; train accuracy is then the share of pairs told apart; probe: the head's "
        "linear layer fitted in one go as scikit-learn's balanced logistic regression (C by cross-validation) on the "
        "frozen backbone's pooled features (train: head, a head without hidden layers; one epoch, no optimizer)",
    )
    train: Selectors = Field(
        default_factory=lambda: ["head"],  # type: ignore[arg-type]
        description="what is trainable in this stage",
    )
    epochs: int = Field(5, ge=0, description="passes over the training split (see min_steps)")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="a fresh optimizer each stage")
    lr: float | None = Field(None, gt=0, description="absolute learning rate")
    lr_scale: float | None = Field(None, gt=0, description="learning rate as a multiple of the previous stage's")
    lr_if_features_fit: float | None = Field(
        None,
        gt=0,
        description="the learning rate instead of lr / lr_scale when the pretrained features already "
        "fit the data: a linear probe on them, cross-validated on the training split before training, reaches a "
        "chance-corrected accuracy (kappa against the majority class) of 0.9 or more. Decided once per run and "
        "written into its config.yaml (docs/suite.md)",
    )
    weight_decay: float = Field(0.01, ge=0.0, description="decoupled; never applied to biases or normalisation weights")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    schedule: Literal["constant", "cosine", "onecycle"] = Field("cosine", description="learning rate over the stage's steps")
    warmup_epochs: float = Field(0.0, ge=0.0, description="linear warmup (cosine schedule)")
    train_bn: bool = Field(False, description="BatchNorm in trainable parts updates its running statistics")
    layer_decay: float | None = Field(
        None, gt=0.0, le=1.0, description="layer-wise lr decay: a group d groups below the head trains at lr * layer_decay^d"
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="stop the stage when the validation metric stops improving (needs data.val_split > 0)"
    )
    min_steps: int | None = Field(
        None,
        ge=1,
        description="at least this many optimizer steps: on a small training "
        "set the stage runs more epochs than `epochs` (the log says how many)",
    )

    @model_validator(mode="after")
    def _lr_xor_scale(self) -> StageConfig:
        if self.lr is not None and self.lr_scale is not None:
            raise ValueError("give either lr or lr_scale, not both")
        if self.objective == "probe" and self.lr_if_features_fit is not None:
            raise ValueError("a probe stage has no learning rate: drop its lr_if_features_fit")
        if self.objective == "probe":
            if "epochs" in self.model_fields_set and self.epochs != 1:
                raise ValueError(f"a probe stage is fitted in one go: epochs is 1 (got {self.epochs})")
            self.__dict__["epochs"], self.__dict__["min_steps"] = 1, None
            if self.early_stopping is not None:
                raise ValueError("a probe stage is fitted in one go: drop its early_stopping")
        if self.objective == "contrastive" and self.early_stopping is not None:
            raise ValueError(
                "a contrastive stage has no validation accuracy of its own to stop on; drop its "
                "early_stopping (the head stage after it can have one)"
            )
        return self


# the validation metrics each problem type reports besides its loss, the primary first
# (tunelab.objectives declares the same; a test holds them together, so that checking a config needs no torch)
PROBLEM_METRICS: dict[str, tuple[str, ...]] = {
    "single_label": ("accuracy", "macro_f1"),
    "multi_label": ("map", "micro_f1", "macro_f1", "subset_accuracy"),
    "regression": ("r2", "mae", "rmse", "spearman"),
}

Recipe = Literal["default", "fast", "full", "probe"]

# the stages `recipe: default` gives a problem type where the benchmark chose another recipe's:
# regression trains every layer from the start, as a full fine-tune (benchmarks/results/problems.md:
# R^2 0.739 against 0.716 on tweets, every seed; level on solar-cell images)
PROBLEM_DEFAULT_RECIPE: dict[str, Recipe] = {"regression": "full"}
RECIPES = ("default", "fast", "full", "probe")


class PenaltyConfig(_Section):
    """A penalty added to the loss. Strengths multiply the sum (not the mean) over covered weights:
    l2 = strength * sum(w^2), l1 = strength * sum(|w|), l2sp = strength * sum((w - w_pretrained)^2)
    on parameters with a pretrained value plus head_strength * sum(w^2) on the new head."""

    type: str = Field(..., description="l1, l2, elastic, l2sp, activity, or a registered name")
    strength: float = Field(..., ge=0.0, description="multiplies the penalty (a sum over the covered weights)")
    head_strength: float | None = Field(None, ge=0.0, description="l2sp: plain L2 on the head (default: strength / 10)")
    l1_ratio: float = Field(0.5, ge=0.0, le=1.0, description="elastic: share of L1 in the mix")
    layers: Selectors = Field(
        default_factory=lambda: ["all"],  # type: ignore[arg-type]
        description="which layers (the selectors of stages.train)",
    )
    params: Literal["kernels", "biases", "both", "all"] = Field(
        "kernels", description="kernels: weights with 2+ dims; biases: *.bias; both; all (norm weights too)"
    )
    norm: Literal["l1", "l2"] = Field("l2", description="activity: norm of the pooled features")
    name: str | None = Field(None, description="label in the audit and metrics; default: the type")


class MixupConfig(_Section):
    """Mixup / CutMix (timm's implementation); targets become soft labels."""

    mixup_alpha: float = Field(0.2, ge=0.0, description="Beta(alpha, alpha) of the mixing weight; 0: no Mixup")
    cutmix_alpha: float = Field(0.0, ge=0.0, description="Beta(alpha, alpha) of the CutMix box area; 0: no CutMix")
    prob: float = Field(1.0, ge=0.0, le=1.0, description="probability of mixing a batch")
    switch_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability of CutMix instead of Mixup when both are on")


AugmentStep = dict[str, Any]


class RegularizationConfig(_Section):
    """Everything that fights overfitting, in one place (head dropout lives in model.head)."""

    auto: bool = Field(False, description="choose strengths from the data size (see docs/regularization.md)")
    penalties: list[PenaltyConfig] = Field(default_factory=list, description="penalties added to the training loss")
    augment: Literal["auto", "none", "flip", "light", "medium", "strong"] | list[AugmentStep] = Field(
        "auto",
        description="a preset, or a list of torchvision.transforms.v2 steps: [{name: RandomRotation, degrees: "
        "10}]. auto (images): flip, unless mirror images lose their class's evidence under a linear probe on the "
        "pretrained features (digits, letters); then none. With flips, light (crops too) when the training images' "
        "shorter side is 48 px or more before resizing. Decided once per run and written into its config.yaml",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="share of each target spread over the other classes")
    class_weight: Literal["none", "balanced", "auto"] = Field(
        "none",
        description="weight the training loss of each class by the inverse of its frequency (balanced), so "
        "that a rare class counts as much as a common one; auto: balanced when the largest training class has more "
        "than 1.5 times the examples of the smallest",
    )
    mixup: MixupConfig | None = Field(
        None, description="Mixup / CutMix of training batches (images only; turns the cache off in the stages it mixes)"
    )

    @field_validator("augment")
    @classmethod
    def _check_steps(cls, v: Any) -> Any:
        if isinstance(v, list):
            for step in v:
                if "name" not in step:
                    raise ValueError(f"augmentation step {step!r} has no 'name' (a torchvision.transforms.v2 class)")
        return v


class CacheConfig(_Section):
    """The freeze-boundary cache (see docs/speed.md)."""

    enabled: bool = Field(True, description="cache what the frozen part of the network computes")
    augment: Literal["views", "full_network"] = Field(
        "views", description="views: cache `views` augmented passes; full_network: no cache in stages that augment"
    )
    views: int = Field(2, ge=1, le=64, description="augmented views cached per image, cycled over epochs")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="storage type of cached features")
    autocast: Literal["auto", "off"] = Field(
        "auto", description="auto: bf16 autocast for extraction where the hardware has it (CPU avx512_bf16/AMX, CUDA bf16)"
    )
    max_memory_gb: float = Field(4.0, ge=0.0, description="larger caches go to memory-mapped files")
    folder: str | None = Field(None, description="where file caches live; default: RUN_DIR/cache (set one to share)")


class RunConfig(_Section):
    """Where outputs go and how the run behaves."""

    dir: str = Field("runs", description="folder that holds the run folders")
    name: str | None = Field(None, description="run folder name; default: a timestamp")
    seed: Seed = Field(
        0,
        description="training randomness: head initialisation, batch order, augmentation, dropout (data.seed decides the splits)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a CUDA GPU when there is one, else the CPU")
    threads: int | None = Field(None, ge=1, description="CPU threads of torch; default: torch's own choice")
    compile: bool = Field(
        False,
        description="torch.compile each block and the head: pays off on long GPU runs; "
        "on CPU compiling costs about a minute for no reliable gain (docs/speed.md)",
    )
    progress: bool = Field(True, description="progress bars on a terminal")
    baselines: bool = Field(
        True,
        description="score the problem type's cheap baselines (majority class or label frequencies or "
        "the mean; logistic or ridge regression on raw pixels or TF-IDF, and on the pretrained features) on "
        "the validation and test splits, beside the fine-tuned model (seconds on small data)",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="forward passes in training and evaluation: auto = bf16 autocast on CUDA GPUs that "
        "have bf16, fp32 on CPUs (bf16 training measured 2x slower than fp32 on an avx512_bf16 CPU; extraction "
        "has cache.autocast); bf16 = autocast wherever you run",
    )

    @field_validator("name")
    @classmethod
    def _one_folder(cls, v: str | None) -> str | None:
        """The run folder is run.dir/run.name: a name with a separator would write elsewhere."""
        if v is not None and (v.strip() in ("", ".", "..") or any(c in v for c in "/\\\0") or len(v.encode()) > 200):
            raise ValueError(
                f"{v!r} is not a folder name; valid: one folder name (not empty, not '.' or '..', no '/' "
                "or '\\', at most 200 bytes), e.g. resnet-lr3e-4; the folder goes under run.dir"
            )
        return v


class ParamSpec(_Section):
    """One searched value: a range ``{low, high, log, step}`` (integers when low, high and step are
    integers, else floats) or ``{choices: [...]}`` (any YAML values: numbers, strings, lists, mappings)."""

    low: int | float | None = Field(None, description="smallest value of a range")
    high: int | float | None = Field(None, description="largest value of a range (included)")
    log: bool = Field(False, description="sample the range on a log scale (learning rates, penalty strengths)")
    step: int | float | None = Field(None, gt=0, description="sample only low, low + step, ... (not with log)")
    choices: list[Any] | None = Field(None, min_length=1, description="the values to choose from, in place of a range")

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParamSpec:
        ranged = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
        if self.choices is not None:
            if ranged:
                raise ValueError(f"give either choices or a range (low, high), not both (got choices and {', '.join(ranged)})")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high, e.g. {low: 1.0e-4, high: 1.0e-2, log: true}; or give {choices: [...]}")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    @property
    def is_int(self) -> bool:
        """A range of integers: low, high (and step) written as integers."""
        return (
            self.choices is None
            and all(isinstance(v, int) for v in (self.low, self.high))
            and (self.step is None or isinstance(self.step, int))
        )


class TuneConfig(_Section):
    """``tunelab tune``: what the search optimizes, how it samples and prunes, and over which keys.
    ``tunelab fit`` ignores this section."""

    metric: str = Field(
        "auto",
        description="the validation metric a trial is judged by: auto (val_ and the primary metric of "
        "data.problem: val_accuracy, val_map, val_r2), val_loss or another metric of the problem as in "
        "early_stopping.metric; the final value of the run, after early stopping restored its best weights",
    )
    trials: int = Field(20, ge=1, description="trials per `tunelab tune` call (--trials overrides)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna's TPE (seeded from run.seed) or random search")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median",
        description="stop a trial whose validation metric is worse than the median of finished trials at "
        "the same epoch (median), Hyperband's successive halving, or never (none)",
    )
    repeats: int = Field(
        1,
        ge=1,
        le=10,
        description="training runs per trial, with run.seed, run.seed + 1, ...: the "
        "trial's value is their mean, so that a winner is less often one lucky seed (the data "
        "splits stay the same; pruning watches the first run)",
    )
    startup_trials: int = Field(5, ge=0, description="median: finished trials before any trial is pruned")
    warmup_epochs: int = Field(
        4,
        ge=0,
        description="epochs (counted across stages) a trial always runs before it can be pruned; hyperband: its smallest budget",
    )
    space: dict[str, ParamSpec] | None = Field(
        None,
        description="searched values by dotted key, the keys of --set (stages.0.lr, model.head.dropout, "
        "stages.1.train.1.last_blocks, ...); default: the space built around the two-stage recipe (README)",
    )


class DistillConfig(_Section):
    """Knowledge distillation: train the student (this config's model) to match a frozen teacher's
    outputs as well as the labels: loss = T^2 * KL(teacher || student at temperature T) + alpha *
    cross-entropy on the labelled examples (docs/patterns.md)."""

    teacher: str = Field(
        ...,
        description="the folder of a finished run trained on the same classes, in the same "
        "order (its model, input size and tokenizer are used as they were trained)",
    )
    temperature: float = Field(
        2.0,
        gt=0.0,
        description="softens both distributions: the teacher's ranking of the "
        "wrong classes carries more of the signal as T grows",
    )
    alpha: float = Field(
        0.5, ge=0.0, description="weight of the cross-entropy on the labels beside the distillation term; 0: the teacher alone"
    )
    unlabeled: str | None = Field(
        None,
        description="a folder of images without labels (flat or with subfolders, "
        "whose names are ignored) added to the training examples: they get the distillation "
        "term only, never enter validation, test, class counts, class weights or baselines "
        "(images only)",
    )


# ----------------------------------------------------------------------------------------------
# modalities: what the configuration knows of each (its data keys, defaults, recipes and checks)


@dataclass(frozen=True)
class Modality:
    """A modality as the configuration sees it; its package registers one (``MODALITY`` in its
    ``config`` module, named by an entry point of the ``tunelab.modalities`` group, or
    :func:`register_modality`). ``model.family`` chooses it; ``claims`` lets a config say so by
    its data alone (``data.text``); the modality with ``fallback`` takes what no other claims."""

    name: str  # what the examples are called: images, texts
    family: str  # model.family: the library its backbones come from (timm, transformers)
    data: type[DataConfig]  # the data section of its runs: the shared keys and its own
    stages: Callable[[str], list[StageConfig]]  # the stages of a recipe (RECIPES) for it
    claims: Callable[[dict[str, Any]], bool] = lambda raw: False  # a raw config (dict) that is its without model.family
    defaults: Callable[[dict[str, Any]], dict[str, Any]] = lambda raw: raw  # what it sets in a raw config left unset
    check: Callable[[Config], None] = lambda cfg: None  # raises ValueError for a key that does not fit it
    fallback: bool = False


_MODALITIES: dict[str, Modality] = {}
_DISCOVERED = False
ENTRY_POINTS = "tunelab.modalities"


def register_modality(modality: Modality) -> None:
    """Make a modality's runs configurable (the built-in ones register through their entry points)."""
    clash = next((m for m in _MODALITIES.values() if m.family == modality.family and m.name != modality.name), None)
    if clash is not None:
        raise ValueError(f"model.family {modality.family!r} is already the {clash.name} modality's")
    _MODALITIES[modality.name] = modality


def modalities() -> dict[str, Modality]:
    """Every registered modality by name, those of installed packages' entry points loaded on first use."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        for ep in entry_points(group=ENTRY_POINTS):
            register_modality(ep.load())
    if not any(m.fallback for m in _MODALITIES.values()):
        raise ConfigError(
            f"no modality is registered (entry points {ENTRY_POINTS!r}): tunelab is not installed; "
            "run `pip install -e .` in its folder (or bash scripts/setup.sh)"
        )
    return _MODALITIES


def modality_named(name: str) -> Modality:
    return modalities()[name]


def _by_family(family: str) -> Modality:
    found = {m.family: m for m in modalities().values()}
    if family not in found:
        raise ValueError(f"model.family: {family!r} is no modality's; valid: auto, {', '.join(found)}")
    return found[family]


def modality_of(raw: dict[str, Any]) -> Modality:
    """The one place a config's modality is chosen: its ``model.family``, else the modality whose
    data it is (``claims``), else the fallback one (images)."""
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    family = (model or {}).get("family", "auto")
    found = modalities().values()
    claimed = next((m for m in found if m.claims(raw)), None)
    if isinstance(family, str) and family != "auto":
        chosen = _by_family(family)
        if claimed is not None and claimed is not chosen:
            raise ValueError(
                f"model.family: {family} is a backbone for {chosen.name}, but the data is {claimed.name} "
                f"(the data section says so); use model.family: {claimed.family}"
            )
        return chosen
    return claimed or next(m for m in found if m.fallback)


def recipe_stages(recipe: str, modality: str | None = None) -> list[StageConfig]:
    """The stages of a named recipe (``recipe:`` in a config) for a modality (default: images)."""
    m = modality_named(modality) if modality else next(m for m in modalities().values() if m.fallback)
    return m.stages(recipe)


class Config(_Section):
    recipe: Recipe = Field(
        "default",
        description="the stages used when the config has no `stages` list: default "
        "(head, then the whole network; chosen on the benchmark suite), fast (head, then the top "
        "blocks, both on the freeze-boundary cache), full (one stage, everything trainable), "
        "probe (the head alone on frozen features)",
    )
    run: RunConfig = Field(default_factory=RunConfig)
    # before data: the modality (model.family) decides which data section the run has
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: SerializeAsAny[DataConfig] = Field(
        default_factory=dict,  # validated into the modality's section
        validate_default=True,
        json_schema_extra={"shown_default": "(section defaults)"},
    )
    stages: list[StageConfig] = Field(default_factory=list, json_schema_extra={"shown_default": "(the recipe's)"})
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    tune: TuneConfig | None = Field(None, description="the hyperparameter search of `tunelab tune`; ignored by fit")
    distill: DistillConfig | None = Field(
        None, description="knowledge distillation from a trained teacher run (see DistillConfig); null: plain fine-tuning"
    )

    @model_validator(mode="before")
    @classmethod
    def _auto_shorthand(cls, data: Any) -> Any:
        """``regularization: auto`` is short for ``regularization: {auto: true}``."""
        if isinstance(data, dict) and data.get("regularization") == "auto":
            data = {**data, "regularization": {"auto": True}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _modality_defaults(cls, data: Any) -> Any:
        """The modality's defaults for what the config leaves unset, and its family written out."""
        if not isinstance(data, dict) or not isinstance(data.get("data") or {}, dict):
            return data
        if not isinstance(data.get("model") or {}, dict):
            return data
        m = modality_of(data)
        data = m.defaults(data)
        return {**data, "model": {**(data.get("model") or {}), "family": m.family}}

    @field_validator("data", mode="wrap")
    @classmethod
    def _modality_data(cls, v: Any, handler: Any, info: ValidationInfo) -> DataConfig:
        """The data section as the modality's own (its keys and the shared ones)."""
        model = info.data.get("model")
        family = model.family if isinstance(model, ModelConfig) else "auto"
        m = _by_family(family) if family != "auto" else next(m for m in modalities().values() if m.fallback)
        if isinstance(v, m.data):
            return v
        if isinstance(v, DataConfig):
            v = v.model_dump()
        return m.data.model_validate(v)

    @property
    def modality(self) -> Modality:
        return _by_family(self.model.family)

    @model_validator(mode="after")
    def _recipe_stages(self) -> Config:
        """Stages the config leaves unset come from its recipe. Written past validation, so that
        ``stages`` still counts as unset (``regularization: auto`` may then choose them)."""
        if "stages" not in self.model_fields_set:
            recipe = PROBLEM_DEFAULT_RECIPE.get(self.data.problem, self.recipe) if self.recipe == "default" else self.recipe
            self.__dict__["stages"] = self.modality.stages(recipe)
        return self

    @model_validator(mode="after")
    def _fits_the_modality(self) -> Config:
        self.modality.check(self)
        return self

    @model_validator(mode="after")
    def _distill_fits(self) -> Config:
        """Unlabelled examples have no class for a probe or contrastive stage to use."""
        reg = self.regularization
        if self.data.problem != "single_label" and (reg.mixup is not None or reg.label_smoothing):
            key = "regularization.mixup" if reg.mixup is not None else "regularization.label_smoothing"
            raise ValueError(
                f"{key} makes soft class targets for one class per example; data.problem {self.data.problem} "
                "trains on its own targets: remove it"
            )
        if self.distill is not None and self.data.problem != "single_label":
            raise ValueError(
                f"distill matches the teacher's class probabilities (a softmax); data.problem {self.data.problem} "
                "has none: remove the distill section"
            )
        if self.distill is None or self.distill.unlabeled is None:
            return self
        for i, st in enumerate(self.stages):
            if st.objective != "classify":
                raise ValueError(
                    f"distill.unlabeled: stage {i} is a {st.objective} stage, which needs a label for "
                    "every example; use objective: classify stages (or no unlabeled folder)"
                )
        return self

    @model_validator(mode="after")
    def _metrics_of_the_problem(self) -> Config:
        """Every metric named (early stopping, the search) is one the run's problem type reports."""
        valid = ["val_loss"] + [f"val_{m}" for m in PROBLEM_METRICS[self.data.problem]]
        named = [
            (f"stages.{i}.early_stopping.metric", st.early_stopping.metric)
            for i, st in enumerate(self.stages)
            if st.early_stopping
        ]
        if self.tune is not None and self.tune.metric != "auto":
            named.append(("tune.metric", self.tune.metric))
        for key, metric in named:
            if metric not in valid:
                raise ValueError(
                    f"{key}: {metric!r} is not a metric of data.problem {self.data.problem}; valid: {', '.join(valid)}"
                )
        return self

    @model_validator(mode="after")
    def _first_stage_has_lr(self) -> Config:
        if self.stages and self.stages[0].lr is None:
            if self.stages[0].lr_scale is not None:
                raise ValueError("stages.0: the first stage needs an absolute lr, not lr_scale")
            self.stages[0].lr = 1e-3
        return self

    def stage_lrs(self) -> list[float]:
        """Absolute learning rate of every stage, resolving lr_scale against the previous stage."""
        lrs: list[float] = []
        for st in self.stages:
            if st.lr is not None:
                lrs.append(st.lr)
            else:
                lrs.append(lrs[-1] * (st.lr_scale if st.lr_scale is not None else 1.0))
        return lrs


# ----------------------------------------------------------------------------------------------
# loading, overrides, error messages


def _parse_scalar(text: str, key: str) -> Any:
    """Values in --set are YAML scalars/flow collections: 3e-4, true, null, [head, {last_blocks: 2}];
    a quoted value stays a string ("7"). Read with the limits of a config file (:mod:`tunelab._yaml`)."""
    try:
        value = load_yaml(text, f"--set {key}")
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and not text.strip().startswith(("'", '"')):  # YAML 1.1 reads 3e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def apply_override(raw: dict[str, Any], assignment: str, defaults: dict[str, Any] | None = None) -> None:
    """Apply one ``key.sub=value`` override to ``raw`` in place. List items are addressed by index
    (stages.1.lr); a list the raw config does not have yet is copied from ``defaults`` first, so the
    default stages can be overridden too. Keys left alone stay unset (auto still sees them unset)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. stages.0.lr=3e-4")
    key, _, value = assignment.partition("=")
    parts = key.strip().split(".")
    node: Any = raw
    default: Any = defaults or {}
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(parts[: i + 1]))
            default = default[int(part)] if isinstance(default, list) and int(part) < len(default) else {}
            continue
        sub_default = default.get(part) if isinstance(default, dict) else None
        if node.get(part) is None:
            node[part] = copy.deepcopy(sub_default) if isinstance(sub_default, list) else {}
        node, default = node[part], sub_default if sub_default is not None else {}
    last = parts[-1]
    if isinstance(node, list):
        _list_item(node, last, key)
        node[int(last)] = _parse_scalar(value, key)
    else:
        node[last] = _parse_scalar(value, key)


def _list_item(node: list[Any], part: str, path: str) -> Any:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {path}: '{part}' is not an index of a list with {len(node)} items")
    return node[int(part)]


def _format_validation_error(err: ValidationError, source: str, raw: dict[str, Any] | None = None) -> str:
    lines = [f"invalid configuration in {source}:"]
    data = _data_section_of(raw)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "literal[", "dict[")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            whose = _whose_key(e["loc"], data)
            msg = f"unknown key '{e['loc'][-1]}'" + whose
            section = _section_at(e["loc"][:-1], data)
            if section is not None:
                valid = sorted(section.model_fields)
                close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1) if not whose else []
                msg += (f" (did you mean '{close[0]}'?)" if close else "") + f"; valid keys: {', '.join(valid)}"
        elif "input" in e and e["type"] not in ("missing",) and loc:  # at the root the input is the whole config
            msg += f" (got {e['input']!r})"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def _data_section_of(raw: dict[str, Any] | None) -> type[DataConfig]:
    """The data section class of the modality a raw config chose (the fallback's if it chose none)."""
    with contextlib.suppress(Exception):  # a config too broken to choose one
        return modality_of(raw or {}).data
    return next(m for m in modalities().values() if m.fallback).data


def _whose_key(loc: tuple[Any, ...], data: type[DataConfig]) -> str:
    """For a data key of another modality: which, and this run's."""
    if len(loc) != 2 or loc[0] != "data":
        return ""
    owners = [m for m in modalities().values() if str(loc[1]) in m.data.model_fields and m.data is not data]
    mine = next((m.name for m in modalities().values() if m.data is data), "")
    return f" (a data key of {owners[0].name} runs; this is a run of {mine})" if owners else ""


def _section_at(loc: tuple[Any, ...], data: type[DataConfig] = DataConfig) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    keyed = False  # the next part is a key of a mapping of sections (tune.space.<key>)
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        if model is Config and part == "data":
            model = data
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for c in candidates:
            for cc in [c, *getattr(c, "__args__", ())]:
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    model, keyed = cc, getattr(c, "__origin__", None) is dict
                    break
            else:
                continue
            break
        else:
            return None
    return model


def build_config(raw: dict[str, Any] | None = None, overrides: list[str] | None = None, source: str = "config") -> Config:
    """Validate a plain dict (plus ``key=value`` overrides) into a :class:`Config`."""
    raw = copy.deepcopy(raw or {})
    try:
        if overrides:
            # a list the config lacks is copied from the defaults of the config as it is so far, so
            # that `--set recipe=fast --set stages.1.epochs=5` edits the fast recipe's stages
            defaults = Config().model_dump(mode="json")
            with contextlib.suppress(ValidationError):  # an override may mend the file: reported at the end
                defaults = Config.model_validate(raw).model_dump(mode="json")
            for ov in overrides:
                apply_override(raw, ov, defaults)
                _clear_other_lr(raw, ov)
                with contextlib.suppress(ValidationError):  # reported once all overrides are in
                    defaults = Config.model_validate(raw).model_dump(mode="json")
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, raw)) from None


def _clear_other_lr(resolved: dict[str, Any], assignment: str) -> None:
    """``--set stages.1.lr=X`` replaces that stage's lr_scale (and vice versa) instead of clashing,
    and its lr_if_features_fit: the rate set is the rate used."""
    parts = assignment.partition("=")[0].strip().split(".")
    if len(parts) == 3 and parts[0] == "stages" and parts[2] in ("lr", "lr_scale"):
        other = "lr_scale" if parts[2] == "lr" else "lr"
        stage = resolved["stages"][int(parts[1])]
        if isinstance(stage, dict):
            stage[other] = None
            stage.pop("lr_if_features_fit", None)


def read_raw(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, before validation (what overrides apply to)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"config file {p} is a folder; give a YAML file"
            + (f", e.g. {p / 'config.yaml'} (a run folder's saved config)" if (p / "config.yaml").is_file() else "")
        )
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise ConfigError(f"config file {p} is not a regular file; give a YAML file")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)  # a larger file is refused without reading it all
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"config file {p} is {p.stat().st_size} bytes; a config may be at most {MAX_YAML_BYTES} bytes (1 MiB)")
    try:
        loaded = load_yaml(data, str(p))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (run, data, model, stages)")
    return loaded or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (or start from defaults when ``path`` is None) and apply overrides."""
    if path is None:
        return build_config({}, overrides, "defaults")
    return build_config(read_raw(path), overrides, str(path))


def dump_config(cfg: Config) -> str:
    """The fully resolved config as YAML; ``load_config`` reads it back to the same Config. A config
    without a ``tune`` or ``distill`` section is written without one."""
    data = cfg.model_dump(mode="json")
    for optional in ("tune", "distill"):
        if data.get(optional) is None:
            data.pop(optional, None)
    return yaml.safe_dump(data, sort_keys=False)
