"""The lexical blend of a text run (``model.lexical``, :mod:`tunelab.text.lexical`), the text
modality's post-fit step (:class:`LexicalStep`, ``Task.post_fit``), fitted after training: the
word-piece TF-IDF regression on the training split, its scale and the network's chosen on the
validation split, its share written back into config.yaml; then the regression is fitted again on
every labelled text (the validation split too), at the same scales.

The choice itself goes into RUN_DIR/lexical.json before config.yaml records its share: the share
is rounded and loses the overall scale (scales 0, 100 have the share 1.0 of scales 0, 1), so a
resume rebuilds the blend from the choice this run made, never from the share read back as if it
were a fixed setting.

The network trains alone (the blend is attached after its last stage), so nothing of the training
changes; the blend is part of the saved model, ``predict`` and the graph exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from tunelab import checkpoint as ckpt
from tunelab.config import Config
from tunelab.engine.data import Splits
from tunelab.engine.model import FineTuneModel
from tunelab.objectives import objective_of
from tunelab.text.lexical import LexicalBlend, fit_lexical, fit_scales, scores_at
from tunelab.text.model import TextModel

log = logging.getLogger("tunelab")

CHOICE_FILE = "lexical.json"  # the blend's scales as this run chose them, and what the choice saw


def wanted(cfg: Config) -> bool:
    """A blend of class probabilities: a run of one class per example that asks for it (the
    config refuses model.lexical for any run but a text run)."""
    return cfg.model.lexical not in (None, 0.0) and objective_of(cfg).exclusive


def saved_choice(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The blend's choice this run made before (RUN_DIR/lexical.json): what a resume blends with,
    as long as config.yaml still holds the setting the choice was made from ('auto') or the share it
    wrote there. A user's later setting in config.yaml is not overridden."""
    path = run_dir / CHOICE_FILE
    if not path.is_file():  # only a text run with a blend writes the file
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        scales, share = [float(x) for x in record["scales"]], float(record["share"])
        assert len(scales) == 2
    except (ValueError, KeyError, TypeError, AssertionError, OSError):
        log.warning("%s is unreadable; the lexical blend follows model.lexical in config.yaml (%s)", path, cfg.model.lexical)
        return None
    if cfg.model.lexical not in ("auto", share):
        return None
    return dict(record)


def without_blend(cfg: Config) -> Config:
    """``cfg`` for building the model that trains: the blend is attached after training."""
    if cfg.model.lexical is None:
        return cfg
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"lexical": None})})


def fit_blend(model: FineTuneModel, texts: Any, num_classes: int, seed: int) -> LexicalBlend:
    """The regression on the labelled texts of a text set (unlabelled ones, label -1, left out)."""
    assert isinstance(model, TextModel)
    labelled = torch.nonzero(texts.labels >= 0).flatten()
    return fit_lexical(
        texts.inputs[labelled],
        texts.labels[labelled].numpy(),
        vocab_size=model.vocab_size(),
        num_classes=num_classes,
        ignore=special_ids(model),
        seed=seed,
    )


def attach(model: FineTuneModel, blend: LexicalBlend, device: torch.device) -> None:
    """The blend becomes part of the model (its forward, its saved weights)."""
    assert isinstance(model, TextModel)
    model.lexical = blend.to(device)


def special_ids(model: Any) -> list[int]:
    """The encoder's special tokens ([CLS], [SEP], padding...): structure, not words."""
    conf = model.backbone.model.config
    names = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "unk_token_id", "mask_token_id")
    return sorted({int(getattr(conf, n)) for n in names if isinstance(getattr(conf, n, None), int)})


@torch.inference_mode()
def blend_log_probs(blend: LexicalBlend, inputs: Any, batch_size: int) -> torch.Tensor:
    """The regression's class log-probabilities of all of ``inputs``, on the CPU (computed where the
    blend is: an attached blend stays on the model's device)."""
    at = blend.idf.device
    parts = [blend.log_probs(inputs[i : i + batch_size].to(at)).cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, blend.coef.shape[0])


def choose(
    cfg: Config, blend: LexicalBlend, val_logits: torch.Tensor | None, val: Any
) -> tuple[tuple[float, float], dict[str, Any]]:
    """The scales (a, b) of the network's and the regression's log-probabilities: ``1 - w, w`` for a
    number ``w`` in ``model.lexical``, else those of the lowest validation log-loss (the network
    alone without a validation split); and what the choice saw."""
    fixed = cfg.model.lexical if isinstance(cfg.model.lexical, float) else None
    scales = (1.0 - fixed, fixed) if fixed is not None else (1.0, 0.0)
    record: dict[str, Any] = {"chosen_by": "config" if fixed is not None else "no validation split"}
    if val_logits is not None and val is not None:
        lex = blend_log_probs(blend, val.inputs, cfg.data.eval_batch_size)
        if fixed is None:
            a, b, record["val"] = fit_scales(val_logits, lex, val.labels)
            scales, record["chosen_by"] = (a, b), "validation log-loss"
        else:
            record["val"] = scores_at(val_logits, lex, val.labels, *scales)
    return scales, {"scales": list(scales), **record}


def test_scores(
    blend: LexicalBlend, net_logits: torch.Tensor, test: Any, batch_size: int
) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """The blended test logits, and the test scores of the network alone, the blend and the
    regression alone (what the benchmark suite reads; nothing is chosen on them)."""
    lex = blend_log_probs(blend, test.inputs, batch_size)
    a, b = (float(x) for x in blend.scales)
    return a * net_logits.float().log_softmax(1) + b * lex, scores_at(net_logits, lex, test.labels, a, b)


def lexical_summary(record: dict[str, Any]) -> str:
    """The lexical blend's share and what it did on the validation split, in a line."""
    a, b = record["scales"]
    head = f"lexical blend: word counts' share {record['share']} (scales {a:g}, {b:g}; {record['chosen_by']})"
    val = record.get("val")
    if not val:
        return head
    line = (
        f"{head}; validation accuracy {val['network']['accuracy']:.3f} network alone, "
        f"{val['blend']['accuracy']:.3f} blended, {val['words']['accuracy']:.3f} word counts alone"
    )
    sure = val.get("sureness")
    if sure:
        line += (
            f"; the lowest log-loss, at scales {val['uncapped']['net_scale']:g}, {val['uncapped']['lex_scale']:g}, "
            f"was {sure['mean_top_before']:.3f} sure on average: both scales x{sure['factor']:.3g}, "
            f"{sure['mean_top']:.3f} sure, as the validation accuracy supports ((right + 1) / (n + 2) = "
            f"{sure['bound']:.3f})"
        )
    refused = val.get("refused")
    if refused:
        line += (
            f"; the lowest log-loss, at scales {refused['net_scale']:g}, {refused['lex_scale']:g}, scored "
            f"{refused['accuracy']:.3f}, below the network alone: refused, the network kept as trained"
        )
    return line


class LexicalStep:
    """The blend as a post-fit step (:class:`tunelab.engine.task.PostFit`): chosen after the first
    fit, fitted again on every labelled text and attached to the final model, its record under
    ``lexical`` in metrics.json (with the test scores of the network, the blend and the words)."""

    name = "lexical"

    def __init__(self, run_dir: Path, chosen: dict[str, Any] | None, active: bool) -> None:
        self.run_dir, self.chosen, self.active = run_dir, chosen, active
        self.blend: LexicalBlend | None = None
        self.record: dict[str, Any] = {}

    def trained_config(self, cfg: Config) -> Config:
        return without_blend(cfg)

    def choose(
        self, cfg: Config, model: FineTuneModel, splits: Splits[Any], val_logits: torch.Tensor | None, main: bool
    ) -> Config:
        """The regression on the labelled training texts, its scales chosen on the validation split
        (on a resume: as this run chose them before), the choice written into RUN_DIR/lexical.json;
        the config with its share (for config.yaml, which must follow the file)."""
        if not self.active:
            return cfg
        blend = fit_blend(model, splits.train, len(splits.classes), cfg.run.seed)
        if self.chosen is None:
            scales, record = choose(cfg, blend, val_logits, splits.val)
            record["share"] = blend.with_scales(*scales).share
            if main:  # first: wherever config.yaml holds the share, the choice it came from is on disk
                ckpt.atomic_write_text(self.run_dir / CHOICE_FILE, json.dumps(record, indent=1))
        else:
            record = self.chosen
            blend.with_scales(*record["scales"])
        self.blend, self.record = blend, record
        log.info(lexical_summary(record))
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"lexical": record["share"]})})

    def finish(self, model: FineTuneModel, splits: Splits[Any], seed: int, device: torch.device) -> None:
        """Once its scales are chosen the regression (seconds to fit) learns from every labelled text,
        the validation split too, as a refit network does; then it joins the model."""
        if self.blend is None or self.blend.share <= 0:
            return
        if splits.val is not None:
            refit = fit_blend(model, splits.train.concat(splits.val), len(splits.classes), seed)
            self.blend = refit.with_scales(*self.blend.scales.tolist())
        attach(model, self.blend, device)

    def test_logits(self, logits: torch.Tensor, test: Any, batch_size: int) -> torch.Tensor:
        if self.blend is None:
            return logits
        blended, self.record["test"] = test_scores(self.blend, logits, test, batch_size)
        return blended


def lexical_step(cfg: Config, run_dir: Path) -> LexicalStep | None:
    """The run's blend step: for a config that names a blend (``model.lexical``); it blends when the
    run asks for one of class probabilities or chose one before (:func:`saved_choice`)."""
    if cfg.model.lexical is None:
        return None
    chosen = saved_choice(run_dir, cfg)
    return LexicalStep(run_dir, chosen, chosen is not None or wanted(cfg))


def blend_line(metrics: dict[str, Any], cfg: Config) -> dict[str, str]:
    """The report summary's line on the blend the run kept (metrics.json's ``lexical``)."""
    return {"post_fit": lexical_summary(metrics["lexical"])} if metrics.get("lexical") else {}
