"""Read the training curves and say what happened and what to change, in the terms of the config.

Verdicts, checked in this order (thresholds are the module constants below):

- ``unstable`` when the loss is not finite;
- ``underfitting`` when the final training accuracy is under UNDERFIT_TRAIN_ACC and the training
  loss has no spikes (then ``unstable`` is the cause), whatever the gap:
  a model that does not fit its training data is fixed first (bias before variance; a run with an
  absurd L2-SP strength has both a low training accuracy and a gap);
- ``overfitting`` (below), since it is what to fix first even when the loss also spikes (then a
  warning names the spikes);
- ``unstable``: the training loss jumps up by more than UNSTABLE_JUMP (relative)
  and by more than UNSTABLE_ABS of its first value in at least UNSTABLE_COUNT epochs after the first
  (the absolute floor ignores noise once the loss is near zero); epochs of fewer than
  JUMP_EXAMPLES examples are read as the means of blocks of epochs that see that many. Change: a
  lower learning rate.
- ``overfitting``: the final train-validation accuracy gap is over OVERFIT_GAP and either the
  validation loss has risen more than VAL_RISE (relative) above its minimum while the training
  loss kept falling, or the best validation epoch is more than LATE_BEST of the stage before its end.
  Change: more regularization (L2-SP, augmentation, dropout), fewer unfrozen blocks, early stopping.
  Early stopping comes first only when the validation accuracy also fell below its best by more
  than its noise (ACC_FALL_SE binomial standard errors of the validation set, at least ACC_FALL): a
  validation loss that rises while the accuracy holds means growing confidence, and stopping at the
  loss minimum then cost test accuracy (benchmarks/results/diagnosis.md). A run without any
  augmentation gets flips first, then L2-SP.
- ``underfitting``: the final training accuracy is under UNDERFIT_TRAIN_ACC, or both losses plateau
  high (training loss over UNDERFIT_LOSS of its first value) with a small gap. Change: less
  regularization, a higher learning rate, more unfrozen blocks, more epochs.
- ``too short``: the validation loss still fell by more than STILL_IMPROVING (relative) over the
  last 2 epochs and its best epoch is the last. Change: more epochs.
- ``good fit`` otherwise.

Class collapse (a class never predicted, or macro-F1 far below accuracy) is reported as a warning
with any verdict; so is a fine-tuned model that does not beat the run's cheap baselines on the
validation split by more than its noise.

A gap over OVERFIT_GAP_ALONE is ``overfitting`` on its own (a text run at train accuracy 1.000 and
validation 0.560 was called a good fit when only the curves' shapes counted). A validation split of
fewer than MIN_VAL examples cannot tell a rise or a fall of its loss from noise: the verdict then
reads only the training curve and a gap too large for the split's noise (GAP_SE standard errors
beyond OVERFIT_GAP_ALONE), and a warning gives the split's standard error.

Recommendations are kept safe (checked by benchmarks/suite.py, which applies the first one of the
default recipe on every task): against overfitting, a run that kept its validation split out of
training is told first to refit on training + validation (the one remedy that lost no accuracy
there); a stage's new learning rate pins every later stage that would follow
it through ``lr_scale``; no higher learning rate after a loss that jumped or beyond LR_CAP_HEAD (a
head-only stage) or LR_CAP_BACKBONE (a stage that trains the backbone); and a stage that a later
stage continues (the head warm-up of a two-stage recipe) gets a verdict but no advice, since the
run is judged by its last stage.

Every problem type is read through its :class:`Score`, built from what its objective declares
(:func:`score_of`): the training metric the epoch rows hold beside the validation one (accuracy
for single-label classification, where the verdicts above were measured; subset accuracy for
multi-label, which measures the train-validation gap but, stricter than the primary mAP, judges no
underfitting: a training loss over UNDERFIT_PRIOR of the loss of predicting each label's training
frequency does), or, for an objective without one, 1 - the training loss (regression: the mean
squared error of standardised targets, so 1 - loss is the training R^2, the primary metric). The
early-stopping advice and the baseline check read the primary metric, and the evidence names it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from tunelab.metrics import SHOWN
from tunelab.objectives import better, objective_of
from tunelab.tasks import task_for

if TYPE_CHECKING:
    from tunelab.objectives import Objective

OVERFIT_GAP = 0.10
VAL_RISE = 0.10
LATE_BEST = 0.4
ACC_FALL = 0.02
ACC_FALL_SE = 2.0
UNDERFIT_TRAIN_ACC = 0.80
UNDERFIT_LOSS = 0.6
# multi-label: a final training loss over this share of the loss of predicting each label's
# training frequency is underfitting (a model that learnt little beyond the frequencies; not yet
# measured on the suite)
UNDERFIT_PRIOR = 0.8
UNSTABLE_JUMP = 0.25
UNSTABLE_COUNT = 2
UNSTABLE_ABS = 0.05
# one epoch's training loss is a mean over its examples: over a few dozen augmented images (an
# epoch of one batch) it rises by chance. textures-grey-5 with crops (32-40 images an epoch) was
# called unstable on 5 of 6 seeds, and the lower learning rate advised lost 1.6 points
JUMP_EXAMPLES = 128
STILL_IMPROVING = 0.03
COLLAPSE_F1_GAP = 0.15
BASELINE_SE = 1.0
OVERFIT_GAP_ALONE = 0.25
GAP_SE = 2.0
MIN_VAL = 30
LR_CAP_HEAD = 1e-2
LR_CAP_BACKBONE = 1e-3


@dataclass
class Diagnosis:
    verdict: str
    evidence: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)  # each a --set override or an instruction
    warnings: list[str] = field(default_factory=list)
    stage: int | None = None

    def render(self) -> str:
        where = f"stage {self.stage + 1}" if self.stage is not None else "run"
        lines = [f"diagnosis ({where}): {self.verdict}"]
        lines += [f"  - {e}" for e in self.evidence]
        lines += [f"  ! {w}" for w in self.warnings]
        if self.recommendations:
            lines.append("  try:")
            lines += [f"    {r}" for r in self.recommendations]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "evidence": self.evidence,
            "recommendations": self.recommendations,
            "warnings": self.warnings,
            "stage": self.stage,
        }


@dataclass(frozen=True)
class Score:
    """What the verdicts read of a problem type's epoch rows: ``name`` as the evidence writes it,
    the rows' keys of its training (``train``; None: 1 - the training loss, ``train_note`` says so)
    and validation (``val``) values, ``underfit`` the final training score under which a run is
    underfitting (None: this score judges no underfitting; the training loss above UNDERFIT_PRIOR of
    ``prior`` does, where known), and the primary metric (the rows' key, its name, 'max' or 'min')
    that the early-stopping advice, the baseline check and the evidence read."""

    name: str
    train: str | None
    val: str
    underfit: float | None
    primary: str = "val_accuracy"
    primary_name: str = "accuracy"
    direction: str = "max"
    train_note: str = ""
    prior: float | None = None  # the training loss of predicting only the targets' frequencies

    def train_of(self, row: dict[str, Any]) -> float | None:
        if self.train is None:
            loss = row.get("train_loss")
            return None if loss is None else 1.0 - loss
        return row.get(self.train)

    @property
    def names_primary(self) -> bool:
        """Whether messages must name the primary metric: the score read is not the primary itself."""
        return self.train != "train_" + self.primary.removeprefix("val_")


ACCURACY = Score("accuracy", "train_accuracy", "val_accuracy", UNDERFIT_TRAIN_ACC)


def score_of(objective: Objective, prior: float | None = None) -> Score:
    """The score of ``objective``'s epoch rows: its training metric beside the validation one (it
    judges underfitting only when it is the primary metric: subset accuracy is far stricter than
    mAP, and the training loss against ``prior``, :func:`prior_loss`, judges it instead), else
    1 - the training loss, the training R^2 of a mean squared error of standardised targets (with
    a Huber loss, an estimate that reads high where errors are large)."""
    primary, metric = objective.primary, objective.train_metric
    facts: dict[str, Any] = {
        "primary": f"val_{primary}",
        "primary_name": SHOWN.get(primary, primary),
        "direction": better(objective, primary),
        "prior": prior,
    }
    if metric is None:
        return Score(SHOWN.get(primary, primary), None, f"val_{primary}", UNDERFIT_TRAIN_ACC, train_note=" (1 - loss)", **facts)
    return Score(
        SHOWN.get(metric, metric), f"train_{metric}", f"val_{metric}", UNDERFIT_TRAIN_ACC if metric == primary else None, **facts
    )


def prior_loss(labels: Any, weights: Any = None) -> float | None:
    """The binary cross-entropy (each label's positives weighted by ``weights``, where given) of the
    best constant prediction of multi-hot ``labels`` [N, K], the one that knows only each label's
    training frequency; None for other targets. A multi-label model's training loss falls to it
    within the first epoch, whatever it learns from its inputs, so its first value is no reference."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or len(y) == 0:
        return None
    r = y.mean(0)
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    p = np.clip(w * r / (w * r + 1 - r), 1e-7, 1 - 1e-7)  # the constant that minimises the weighted loss
    return float(np.mean(-(w * r * np.log(p) + (1 - r) * np.log(1 - p))))


def _score(config: Any | None) -> Score:
    return score_of(objective_of(config)) if config is not None else ACCURACY


def diagnose(
    rows: list[dict[str, Any]],
    config: Any | None = None,
    stage: int | None = None,
    final: dict[str, Any] | None = None,
    score: Score | None = None,
) -> Diagnosis:
    """Diagnose one stage (``stage``) or the last stage of a run from its per-epoch ``rows``.

    ``config`` (a :class:`tunelab.Config`) makes the recommendations concrete ``--set`` overrides
    and names the problem type (``score`` overrides it; without either, single-label accuracy);
    ``final`` (the run's final metrics) adds the class-collapse and baseline checks.
    """
    score = score or _score(config)
    if stage is None and rows:
        stage = max(r["stage"] for r in rows)
    rows = [r for r in rows if stage is None or r["stage"] == stage]
    if rows and score.train_of(rows[-1]) is None:
        return Diagnosis("not diagnosed", [f"the epochs recorded no training {score.name}, which the diagnosis reads"])
    d = _verdict(rows, score)
    d.evidence += _primary_evidence(rows, score)
    d.stage = stage
    if config is not None and stage is not None and stage < len(config.stages):
        if stage < len(config.stages) - 1 and d.verdict != "unstable":
            d.evidence.append(f"stage {stage + 2} continues from here: the run is judged by its last stage")
        else:
            d.recommendations = recommend(d.verdict, config, stage, rows)
    if final is not None:
        d.warnings += _collapse(final) + _below_baselines(final, score)
        d.recommendations = _more_data_first(d, final) + _no_flips_if_mirrors_differ(d.recommendations, final)
    return d


def _primary_evidence(rows: list[dict[str, Any]], score: Score) -> list[str]:
    """The validation curve of the primary metric, where the verdict read another score."""
    found = [r.get(score.primary) for r in rows]
    if not score.names_primary or not found or any(v is None or not math.isfinite(v) for v in found):
        return []
    values = cast(list[float], found)
    pick = max if score.direction == "max" else min
    best = pick(range(len(values)), key=lambda i: values[i])
    return [
        f"validation {score.primary_name} {values[0]:.3f} -> {values[-1]:.3f} "
        f"(best {values[best]:.3f} at epoch {best + 1} of {len(values)})"
    ]


def _no_flips_if_mirrors_differ(recs: list[str], final: dict[str, Any]) -> list[str]:
    """Every augmentation preset flips: none of them is advice for a run whose ``augment: auto``
    found that mirror images lose their class's evidence (tunelab.pretrained_fit)."""
    check = (final.get("pretrained_fit") or {}).get("mirror")
    if check is None or check["keeps_labels"]:
        return recs
    return [r for r in recs if "regularization.augment=" not in r]


def _more_data_first(d: Diagnosis, final: dict[str, Any]) -> list[str]:
    """Against overfitting, a run that held out a validation split and kept the first fit is told
    first to train again on training + validation together: on the suite's four overfitting tasks
    (3 seeds each) that refit changed test accuracy by +0.3 points on average, within each task's
    seed noise, while head dropout 0.5 lost 3.0 and 3.3 points on two of them, L2-SP 0.1 and light
    augmentation 0.9 and 0.6 on average (benchmarks/results/suite_screen.md)."""
    if d.verdict != "overfitting" or not final.get("val") or "refit" in final:
        return []
    return [
        "--set data.refit=always  # train again on training + validation together: more data, the remedy "
        "that lost no accuracy on the benchmark suite's overfitting tasks"
    ]


TRIVIAL_BASELINES = ("majority", "mean")  # what a model that read nothing scores; compared with only when alone


def _below_baselines(final: dict[str, Any], score: Score = ACCURACY) -> list[str]:
    """A fine-tuned model that does not beat a cheap baseline on the validation split by more than
    the split's noise (BASELINE_SE standard errors of a proportion near the baseline's primary
    metric) is said so plainly."""
    key, sign = score.primary.removeprefix("val_"), 1.0 if score.direction == "max" else -1.0
    val, scores = final.get("val"), (final.get("baselines") or {}).get("val")
    if not val or not scores or not val.get("n") or not isinstance(val.get(key), (int, float)):
        return []
    scored = [(n, m[key]) for n, m in scores.items() if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
    useful = [t for t in scored if t[0] not in TRIVIAL_BASELINES] or scored
    if not useful:
        return []
    name, best = max(useful, key=lambda t: sign * t[1])
    p = min(max(best, 0.01), 0.99)
    margin = BASELINE_SE * math.sqrt(p * (1 - p) / val["n"])
    if sign * (val[key] - best) > margin:
        return []
    what = "did not beat" if sign * (val[key] - best) <= 0 else "was within the validation noise of"
    metric = f"{score.primary_name} " if score.names_primary else ""
    return [
        f"the fine-tuned model {what} the {name} baseline on the validation split ({metric}{val[key]:.3f} vs "
        f"{best:.3f}, n={val['n']}): the pretrained model may not suit this data, or the recipe "
        "needs changing (see the baselines in metrics.json)"
    ]


def _training_curve_verdict(rows: list[dict[str, Any]], n_val: int, score: Score) -> Diagnosis:
    """The verdict of a run whose validation split is too small to judge by: its curves are left out,
    except a final train-validation gap beyond OVERFIT_GAP_ALONE by more than GAP_SE standard
    errors of the split (a text run at train accuracy 1.000 and 7 validation passages at 0.286 was
    called a good fit when a small split hid every gap)."""
    va, ta = rows[-1].get(score.val), score.train_of(rows[-1])
    p = min(max(va if va is not None else 0.5, 0.05), 0.95)
    se = math.sqrt(p * (1 - p) / n_val)
    if va is not None and ta is not None and ta - va > OVERFIT_GAP_ALONE + GAP_SE * se:
        d = Diagnosis(
            "overfitting",
            [
                f"train {score.name}{score.train_note} {ta:.3f} vs validation {va:.3f} (gap {ta - va:.3f} > "
                f"{OVERFIT_GAP_ALONE} + {GAP_SE:g} standard errors of {n_val} examples)"
            ],
        )
    else:
        d = _verdict([{k: v for k, v in r.items() if not k.startswith("val_")} for r in rows], score)
    d.warnings.append(
        f"the validation split has {n_val} examples: its {score.name} is +- {se:.2f} "
        "(one standard error), too noisy to judge the curves by; the verdict reads the training "
        "curve and the final gap only (more data, or data.val_split, gives a larger one)"
    )
    return d


def _underfit(score: Score, value: float, loss: float) -> str | None:
    """Why the final training score (``value``) or loss says underfitting, or None: a score under
    its underfitting line or, for a score without one, a loss above UNDERFIT_PRIOR of the prior's."""
    if score.underfit is not None:
        return f"final training {score.name}{score.train_note} {value:.3f} < {score.underfit}" if value < score.underfit else None
    if score.prior is not None and loss > UNDERFIT_PRIOR * score.prior:
        return (
            f"final training loss {loss:.4f} is {loss / score.prior:.2f} of the loss of predicting the training "
            f"targets' frequencies ({score.prior:.4f}), over {UNDERFIT_PRIOR}"
        )
    return None


def _verdict(rows: list[dict[str, Any]], score: Score = ACCURACY) -> Diagnosis:
    if not rows:
        return Diagnosis("too short", ["no epochs were trained"])
    n_val = rows[-1].get("val_count")
    if n_val is not None and n_val < MIN_VAL:
        return _training_curve_verdict(rows, n_val, score)
    tl = [r["train_loss"] for r in rows]
    ta = cast(list[float], [score.train_of(r) for r in rows])  # the objective's rows always hold it
    has_val = all(r.get("val_loss") is not None and r.get(score.val) is not None for r in rows)
    # read only when has_val: then no entry is None
    vl = cast(list[float], [r.get("val_loss") for r in rows])
    va = cast(list[float], [r.get(score.val) for r in rows])
    low = _underfit(score, ta[-1], tl[-1])

    if any(not math.isfinite(x) for x in tl + ([v for v in vl if v is not None])):
        return Diagnosis("unstable", ["the loss became NaN or infinite"])
    spikes = _spikes(rows)
    if has_val and low and not spikes:  # bias before variance: fit the training data first
        return Diagnosis(
            "underfitting", [low, f"training loss {tl[0]:.4f} -> {tl[-1]:.4f}, validation loss {vl[0]:.4f} -> {vl[-1]:.4f}"]
        )
    over = _overfitting(tl, ta, vl, va, score) if has_val else None
    if over is not None:
        over.warnings += [spikes + ": consider a lower learning rate too"] if spikes else []
        return over
    if spikes:
        return Diagnosis("unstable", [spikes])
    if not has_val:
        if low:
            return Diagnosis("underfitting", [low])
        return Diagnosis("good fit", ["no validation set: only the training curve was checked"])

    return _fit_verdict(tl, ta, vl, va, score)


def _fit_verdict(tl: list[float], ta: list[float], vl: list[float], va: list[float], score: Score) -> Diagnosis:
    """Underfitting, too short or a good fit: the verdict of validated curves (training and
    validation loss and score per epoch) that neither overfit nor spike."""
    n = len(tl)
    gap = ta[-1] - va[-1]
    best = min(range(n), key=lambda i: vl[i])
    trained = f"{score.name}{score.train_note} {ta[-1]:.3f}"
    evidence_gap = f"train {trained} vs validation {va[-1]:.3f} (gap {gap:.3f})"
    # a score that judges no underfitting (subset accuracy) may read higher on validation than on
    # the augmented training batches of a model that fits nothing: only a gap that way rules it out
    small_gap = abs(gap) < OVERFIT_GAP / 2 if score.underfit is not None else gap < OVERFIT_GAP / 2
    plateau_high = n >= 3 and tl[-1] > UNDERFIT_LOSS * tl[0] and small_gap
    low = _underfit(score, ta[-1], tl[-1])
    if low or plateau_high:
        ev = [
            low or f"final training {trained}",
            f"training loss {tl[0]:.4f} -> {tl[-1]:.4f}, validation loss {vl[0]:.4f} -> {vl[-1]:.4f}",
        ]
        return Diagnosis("underfitting", ev)
    if n < 3 or (best == n - 1 and vl[-3 if n >= 3 else 0] > vl[-1] * (1 + STILL_IMPROVING)):
        return Diagnosis(
            "too short",
            [f"validation loss still falling at the last epoch ({vl[max(0, n - 3)]:.4f} -> {vl[-1]:.4f} over the last epochs)"],
        )
    return Diagnosis("good fit", [evidence_gap, f"best validation loss {vl[best]:.4f} at epoch {best + 1} of {n}"])


def _spikes(rows: list[dict[str, Any]]) -> str | None:
    """What the ``unstable`` verdict reads: UNSTABLE_COUNT jumps of the training loss or more, each
    over UNSTABLE_JUMP (relative) and UNSTABLE_ABS of its first value; None when fewer. Epochs of
    fewer than JUMP_EXAMPLES examples are read in blocks that see that many (the mean of each)."""
    tl = [r["train_loss"] for r in rows]
    seen = min(int(r.get("train_count") or JUMP_EXAMPLES) for r in rows)
    k = max(1, math.ceil(JUMP_EXAMPLES / max(seen, 1)))
    ends = list(range(k - 1, len(tl), k))  # the last epoch of each whole block
    curve = [sum(tl[e - k + 1 : e + 1]) / k for e in ends]
    jumps = [
        ends[i]
        for i in range(2 if k == 1 else 1, len(curve))
        if curve[i] > curve[i - 1] * (1 + UNSTABLE_JUMP) and curve[i] - curve[i - 1] > UNSTABLE_ABS * curve[0]
    ]
    if len(jumps) < UNSTABLE_COUNT:
        return None
    per = f" (means over {k} epochs of {seen} examples)" if k > 1 else ""
    return f"training loss jumped up by more than {UNSTABLE_JUMP:.0%}{per} at epochs {', '.join(str(i + 1) for i in jumps)}"


def _overfitting(tl: list[float], ta: list[float], vl: list[float], va: list[float], score: Score) -> Diagnosis | None:
    n = len(tl)
    gap = ta[-1] - va[-1]
    best = min(range(n), key=lambda i: vl[i])
    rise = vl[-1] / vl[best] - 1 if vl[best] > 0 else 0.0
    curves = (rise > VAL_RISE and tl[-1] < tl[best]) or (n >= 4 and best < n - 1 - LATE_BEST * n)
    if gap <= OVERFIT_GAP or not (curves or gap > OVERFIT_GAP_ALONE):
        return None
    ev = [
        f"train {score.name}{score.train_note} {ta[-1]:.3f} vs validation {va[-1]:.3f} (gap {gap:.3f}"
        + (f" > {OVERFIT_GAP_ALONE})" if not curves else ")")
    ]
    if curves and rise > VAL_RISE:
        ev.append(
            f"validation loss rose {rise:.0%} from its minimum {vl[best]:.4f} at epoch {best + 1} to "
            f"{vl[-1]:.4f} at epoch {n} while training loss fell to {tl[-1]:.4f}"
        )
    elif curves:
        ev.append(f"best validation loss at epoch {best + 1} of {n}")
    return Diagnosis("overfitting", ev)


# per split, the table of per-name scores and what it names, and the overall score that macro-F1 is
# compared with (a per-label table beside micro-F1: multi-label)
_PER_NAME = (("per_class", "classes", "class", "accuracy"), ("per_label", "labels", "label", "micro_f1"))


def _collapse(final: dict[str, Any]) -> list[str]:
    """Classes (labels) with examples that were never predicted, and a macro-F1 far below the
    overall score: a model that favours a few of them."""
    out = []
    for split, (table, what, one, overall) in itertools.product(("val", "test"), _PER_NAME):
        m = final.get(split)
        if not m or table not in m:
            continue
        dead = [c for c, v in m[table].items() if v["support"] > 0 and v["recall"] == 0.0]
        if dead:
            out.append(f"{split}: {what} never predicted correctly: {', '.join(dead)}")
        if m[overall] - m["macro_f1"] > COLLAPSE_F1_GAP:
            out.append(
                f"{split}: macro-F1 {m['macro_f1']:.3f} far below {SHOWN.get(overall, overall)} {m[overall]:.3f}: "
                f"the model favours a few {what} ({one} imbalance?)"
            )
    return out


# --- recommendations in config terms -------------------------------------------------------------

_AUGMENT_UP = {"none": "flip", "flip": "light", "light": "medium", "medium": "strong"}


def _last_blocks(train: list[Any]) -> int | None:
    for sel in train:
        if isinstance(sel, dict) and ("last_blocks" in sel or "last_layers" in sel):
            return int(next(iter(sel.values())))
    return None


def _l2sp_index(config: Any) -> int | None:
    return next((i for i, p in enumerate(config.regularization.penalties) if p.type == "l2sp"), None)


def _fall_threshold(va: list[float], rows: list[dict[str, Any]]) -> float:
    """How far the validation score must fall to count: ACC_FALL_SE binomial standard errors of the
    validation set (from ``val_count`` in the rows), at least ACC_FALL (a score that is no
    proportion, mAP or R^2, is given the noise of a proportion of its size)."""
    n = rows[-1].get("val_count") if rows else None
    if not n:
        return ACC_FALL
    p = min(max(va), 1.0)
    return max(ACC_FALL, ACC_FALL_SE * math.sqrt(max(p * (1 - p), 1e-4) / n))


def recommend(verdict: str, config: Any, stage: int, rows: list[dict[str, Any]] | None = None) -> list[str]:
    """Concrete changes, most promising first, as ``--set`` overrides where possible."""
    advice = {
        "overfitting": _against_overfitting,
        "underfitting": _against_underfitting,
        "unstable": _against_instability,
        "too short": _against_too_short,
    }.get(verdict)
    return advice(config, stage, rows or []) if advice is not None else []


def _early_stop_at_best(config: Any, stage: int, rows: list[dict[str, Any]]) -> list[str]:
    """Stopping where the validation loss was lowest helps only when the model got worse after
    that, not merely more confident: the primary metric (accuracy) must have fallen too, by more
    than the noise of the validation set (ACC_FALL_SE standard errors, at least ACC_FALL)."""
    score = _score(config)
    sign = 1.0 if score.direction == "max" else -1.0  # so that a fall is a change for the worse
    vl = [r.get("val_loss") for r in rows]
    va = [None if r.get(score.primary) is None else sign * r[score.primary] for r in rows]
    accs = [v for v in va if v is not None and math.isfinite(v)]
    losses = [v for v in vl if v is not None]
    acc_fell = bool(va) and len(accs) == len(va) and accs[-1] < max(accs) - _fall_threshold(accs, rows)
    if config.stages[stage].early_stopping is None and vl and len(losses) == len(vl) and acc_fell:
        best = min(range(len(losses)), key=lambda k: losses[k])
        if best < len(vl) - 1 - LATE_BEST * len(vl):  # the curve itself says where to stop
            return [
                f'--set "stages.{stage}.early_stopping={{patience: 3}}"  # validation loss was best at '
                f"epoch {best + 1} of {len(vl)}: stop there and keep those weights"
            ]
    return []


def _against_overfitting(config: Any, stage: int, rows: list[dict[str, Any]]) -> list[str]:
    st, reg = config.stages[stage], config.regularization
    lb, i = _last_blocks(st.train), _l2sp_index(config)
    text = not task_for(config).augment_presets  # a modality without augmentation (text) gets no augmentation advice
    out = _early_stop_at_best(config, stage, rows)
    # No augmentation at all: flips first. On the overfitting benchmark (whole backbone, 10 images
    # per class) they were the only change that raised test accuracy on every seed.
    aug = "flip" if reg.augment == "auto" else reg.augment  # auto unresolved (outside a run): its usual outcome
    if aug == "none" and not text:
        out.append("--set regularization.augment=flip  # the mildest augmentation; the run had none")
    # Head dropout before L2-SP: applied as the first advice to the default recipe on the suite's
    # overfitting tasks, L2-SP 1.0 lost 2.5 to 6.7 points (benchmarks/results/suite.md); dropout on
    # the pooled features is the mildest change that fights overfitting.
    if config.model.head.dropout < 0.5:
        out.append("--set model.head.dropout=0.5  # dropout on the pooled features, the mildest remedy")
    if i is None:
        out.append(
            '--set "regularization.penalties=[{type: l2sp, strength: 0.1, layers: all, params: all}]"'
            "  # pull toward the pretrained weights"
        )
    else:
        out.append(f"--set regularization.penalties.{i}.strength={reg.penalties[i].strength * 3:g}")
    if isinstance(aug, str) and aug in _AUGMENT_UP and aug != "none" and not text:
        out.append(f"--set regularization.augment={_AUGMENT_UP[aug]}")
    if lb is not None and lb > 1:
        out.append(f'--set "stages.{stage}.train=[head, {{last_blocks: {max(1, lb // 2)}}}]"  # unfreeze fewer blocks')
    elif "all" in st.train or "backbone" in st.train:
        out.append(f'--set "stages.{stage}.train=[head, {{last_blocks: 4}}]"  # unfreeze fewer blocks')
    if st.early_stopping is None and not any("early_stopping" in x for x in out):
        out.append(f'--set "stages.{stage}.early_stopping={{patience: 3}}"  # stop at the best epoch')
    return out


def _against_underfitting(config: Any, stage: int, rows: list[dict[str, Any]]) -> list[str]:
    st, reg = config.stages[stage], config.regularization
    lb, i = _last_blocks(st.train), _l2sp_index(config)
    out: list[str] = []
    if i is not None and reg.penalties[i].strength > 0:
        out.append(
            f"--set regularization.penalties.{i}.strength={reg.penalties[i].strength / 10:g}"
            "  # less pull toward the pretrained weights"
        )
    lr = config.stage_lrs()[stage]
    cap = LR_CAP_HEAD if st.train == ["head"] else LR_CAP_BACKBONE
    if lr * 3 <= cap * 1.0001 and not _loss_jumped(rows):
        out.append(_set_lr(config, stage, min(lr * 10, cap), "a higher learning rate"))
    if lb is not None:
        out.append(f'--set "stages.{stage}.train=[head, {{last_blocks: {lb + 2}}}]"  # unfreeze more blocks')
    elif st.train == ["head"]:
        out.append(f'--set "stages.{stage}.train=[head, {{last_blocks: 2}}]"  # unfreeze the top blocks')
    if config.model.head.dropout > 0.2:
        out.append(f"--set model.head.dropout={config.model.head.dropout / 2:g}")
    out.append(f"--set stages.{stage}.epochs={st.epochs * 2}")
    return out


def _against_instability(config: Any, stage: int, rows: list[dict[str, Any]]) -> list[str]:
    st = config.stages[stage]
    out = [_set_lr(config, stage, config.stage_lrs()[stage] / 3, "a lower learning rate")]
    if st.warmup_epochs == 0 and st.schedule == "cosine":
        out.append(f"--set stages.{stage}.warmup_epochs=1")
    return out


def _against_too_short(config: Any, stage: int, rows: list[dict[str, Any]]) -> list[str]:
    st = config.stages[stage]
    return [f"--set stages.{stage}.epochs={max(st.epochs * 2, 4)}"]


def _loss_jumped(rows: list[dict[str, Any]]) -> bool:
    """The training loss rose from one epoch to the next by more than UNSTABLE_JUMP somewhere, or
    ended above where it started: more learning rate would make it worse."""
    tl = [r["train_loss"] for r in rows]
    return bool(tl) and (tl[-1] > tl[0] or any(b > a * (1 + UNSTABLE_JUMP) for a, b in itertools.pairwise(tl)))


def _set_lr(config: Any, stage: int, lr: float, why: str) -> str:
    """``--set stages.S.lr=X``, plus the current learning rate of every later stage that follows
    stage S through ``lr_scale`` (so that only stage S changes)."""
    lrs = config.stage_lrs()
    sets = [f"--set stages.{stage}.lr={lr:.3g}"]
    for j in range(stage + 1, len(config.stages)):
        if config.stages[j].lr is not None:
            break
        sets.append(f"--set stages.{j}.lr={lrs[j]:.3g}")
    note = " (later stages keep theirs)" if len(sets) > 1 else ""
    return " ".join(sets) + f"  # {why}{note}"
