"""``augment: auto``: whether mirror images keep their labels, as the pretrained features tell."""

import numpy as np

from tunelab.vision.auto_augment import mirror_check


def test_mirror_check_tells_mirror_invariant_features_from_mirror_sensitive_ones():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = rng.normal(0, 1, (80, 6))
    x[:, 0] += np.where(y == 1, 2.0, -2.0)  # the class sits in feature 0
    same = x + rng.normal(0, 0.05, x.shape)  # mirror images look like their originals
    swapped = x.copy()
    swapped[:, 0] *= -1  # mirror images look like the other class (left / right arrows)
    keep, change = mirror_check(x, same, y, 1.0, 0), mirror_check(x, swapped, y, 1.0, 0)
    assert keep["keeps_labels"] and abs(keep["loss"]) < 0.02
    assert not change["keeps_labels"] and change["loss"] > 0.5 and change["accuracy_mirrored"] < 0.2
