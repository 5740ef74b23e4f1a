"""``augment: auto`` for images, decided by the linear probe on the pretrained features
(:mod:`tunelab.pretrained_fit`).

The probe decides ``augment: auto`` (the image default): fitted on the originals, it scores
held-out examples and their mirror images (:func:`mirror_check`). Where mirror images lose their
class's evidence (digits, letters: a mirrored "3" is not a "3" the way a mirrored shoe is a shoe)
flips would teach the model wrong examples, and the run trains without them; otherwise with flips.
On the suite, flips off gained 3.4 points on digits and 1.0 on glyphs and lost 0.3 to 4.8 on five
other image tasks (benchmarks/results/suite_mirror.md); the check turned them off on 4 of 6 digits
seeds and 3 of 3 glyphs seeds and on no seed of the other eight tasks. Where flips stay, random
resized crops join them (the ``light`` preset) for source images of at least ``CROP_MIN_SIDE`` px:
on the suite crops gained on three of the four tasks of 48-64 px (emoji +2.7, old-photo-crops +1.9,
textures +1.3, photo-crops -0.9) and lost on all six of 8-32 px (-0.7 to -4.0;
benchmarks/results/suite_crops.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tunelab.config import Config
from tunelab.engine.model import FineTuneModel
from tunelab.engine.probe import pooled_features

# ``augment: auto`` drops flips when mirror images lose at least this much of their class's probability
# under the probe (on average over held-out examples), and significantly (t of the mean at least MIRROR_T)
MIRROR_LOSS = 0.04
MIRROR_T = 2.0
# ``augment: auto`` adds random resized crops (the ``light`` preset) to the flips when the source
# images' shorter side is at least this many pixels (see the module docstring)
CROP_MIN_SIDE = 48


def mirror_wanted(cfg: Config) -> bool:
    return cfg.regularization.augment == "auto" and cfg.model.pretrained


def mirror_check(x: np.ndarray, mirrored: np.ndarray, y: np.ndarray, c: float, seed: int) -> dict[str, Any]:
    """Whether mirror images keep their labels, as far as the pretrained features tell: a probe
    (balanced logistic regression at ``c``) fitted on the originals of the other folds scores each
    held-out example and its mirror image. ``loss``: the mean probability of the true class the
    mirror images lose; flips change labels when it is at least MIRROR_LOSS with t >= MIRROR_T."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y)[np.bincount(y) > 0].min()))
    lost, right = np.zeros(len(y)), np.zeros((2, len(y)), dtype=bool)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=300))
        m.fit(x[tr], y[tr])
        col = np.searchsorted(m.classes_, y[te])
        p, pm = m.predict_proba(x[te]), m.predict_proba(mirrored[te])
        lost[te] = p[np.arange(len(te)), col] - pm[np.arange(len(te)), col]
        right[0, te], right[1, te] = p.argmax(1) == col, pm.argmax(1) == col
    sd = float(lost.std(ddof=1)) if len(lost) > 1 else 0.0
    t = float(lost.mean() / (sd / np.sqrt(len(lost)))) if sd > 0 else 0.0
    return {
        "loss": float(lost.mean()),
        "t": t,
        "accuracy": float(right[0].mean()),
        "accuracy_mirrored": float(right[1].mean()),
        "keeps_labels": not (lost.mean() >= MIRROR_LOSS and t >= MIRROR_T),
    }


def mirror_fit(
    model: FineTuneModel,
    images: torch.Tensor,
    x: np.ndarray,
    y: np.ndarray,
    c: float,
    batch_size: int,
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """:func:`mirror_check` of ``images`` (whose pooled features are ``x``) against their mirror images."""
    flipped = pooled_features(model, images.flip(-1), batch_size, device)
    return mirror_check(x, flipped, y, c, seed)


def resolve_augment(cfg: Config, fit: dict[str, Any] | None, native_side: int | None) -> tuple[Config, str]:
    """``augment: auto`` -> none where mirror images lose their labels' evidence; otherwise light
    (crops and flips) for source images of at least CROP_MIN_SIDE pixels, flip for smaller ones."""
    check = (fit or {}).get("mirror")
    flips = check is None or check["keeps_labels"]
    crops = flips and native_side is not None and native_side >= CROP_MIN_SIDE
    preset = "light" if crops else "flip" if flips else "none"
    reg = cfg.regularization.model_copy(update={"augment": preset})
    why = (
        "no probe"
        if check is None
        else f"mirror images lose {check['loss']:.3f} of their class's probability, t {check['t']:.1f}"
    )
    if flips:
        side = "unknown" if native_side is None else f"{native_side} px"
        why += f"; source images' shorter side {side}, crops from {CROP_MIN_SIDE} px"
    verdict = {
        "light": "light: random resized crops and flips",
        "flip": "flip",
        "none": "none: flips change what the classes look like",
    }[preset]
    return cfg.model_copy(update={"regularization": reg}), f"{verdict} ({why})"


def probe_outcome(metrics: dict[str, Any], cfg: Config) -> dict[str, str]:
    """The report summary's words on what the mirror check of ``augment: auto`` decided."""
    mirror = (metrics.get("pretrained_fit") or {}).get("mirror")
    if mirror is None:
        return {}
    outcome = f"; mirror images kept {mirror['accuracy_mirrored']:.3f} of its {mirror['accuracy']:.3f} accuracy, " + (
        "so training flipped images"
        if mirror["keeps_labels"]
        else "losing their class's evidence, so training did not flip images"
    )
    if cfg.regularization.augment == "light":
        outcome += f" and cropped them (source images of {CROP_MIN_SIDE} px or more)"
    return {"probe": outcome}


class AugmentByProbe:
    """``augment: auto`` as the probe's choice for images (:class:`tunelab.engine.task.ProbeChoice`)."""

    def wanted(self, cfg: Config) -> bool:
        return mirror_wanted(cfg)

    def measure(
        self,
        model: FineTuneModel,
        inputs: Any,
        features: np.ndarray,
        labels: np.ndarray,
        c: float,
        batch_size: int,
        device: torch.device,
        seed: int,
    ) -> dict[str, Any]:
        return {"mirror": mirror_fit(model, inputs, features, labels, c, batch_size, device, seed)}

    def resolve(self, cfg: Config, fit: dict[str, Any] | None, train: Any) -> tuple[Config, dict[str, str]]:
        """The preset of ``augment: auto`` (from the training images' shorter side before resizing)."""
        if cfg.regularization.augment != "auto":
            return cfg, {}
        cfg, why = resolve_augment(cfg, fit, getattr(train, "native_side", None))
        return cfg, {"regularization.augment": why}
