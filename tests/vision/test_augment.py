import pytest
import torch
import torch.nn.functional as F

from tunelab.config import MixupConfig
from tunelab.errors import ConfigError
from tunelab.objectives.single_label import soft_cross_entropy
from tunelab.vision.augment import PRESETS, MixTargets, build_augment


def batch(n=16, size=24):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


@pytest.mark.parametrize("preset", ["flip", "light", "medium", "strong"])
def test_presets_keep_dtype_and_shape(preset):
    x = batch()
    y = build_augment(preset, 24)(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert not torch.equal(x, y)


def test_none_is_a_no_op_and_presets_are_listed():
    assert build_augment("none", 24) is None
    assert set(PRESETS) >= {"none", "flip", "light", "medium", "strong"}


def test_each_image_gets_its_own_random_parameters():
    x = batch(64)
    y = build_augment("flip", 24)(x)
    flipped = [torch.equal(a.flip(-1), b) for a, b in zip(x, y)]
    assert 0 < sum(flipped) < 64


def test_list_form_and_its_errors():
    f = build_augment([{"name": "RandomRotation", "degrees": 10}, {"name": "RandomHorizontalFlip", "p": 1.0}], 24)
    assert f(batch()).shape == (16, 3, 24, 24)
    with pytest.raises(ConfigError, match=r"augment.0: 'RandomWobble' is not a torchvision.transforms.v2 transform"):
        build_augment([{"name": "RandomWobble"}], 24)
    with pytest.raises(ConfigError, match=r"augment.0 \(RandomRotation\): .*degree"):
        build_augment([{"name": "RandomRotation", "degree": 10}], 24)


def test_mixup_targets_sum_to_one_and_match_the_mixing_coefficient():
    torch.manual_seed(1)
    x = batch(8).float()
    y = torch.arange(8) % 4
    mixed, target = MixTargets(MixupConfig(mixup_alpha=0.4), 4, 0.0)(x.clone(), y)
    torch.testing.assert_close(target.sum(1), torch.ones(8))
    # x_mixed = lam * x + (1 - lam) * x.flip(0): recover lam from the pixels
    d = x - x.flip(0)
    lam = float(((mixed - x.flip(0)) * d).sum() / (d * d).sum())
    expected = lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y.flip(0), 4)
    torch.testing.assert_close(target, expected.float(), atol=1e-4, rtol=0)


def test_cutmix_target_weight_is_the_pasted_area():
    torch.manual_seed(2)
    x = batch(8).float()
    y = torch.arange(8) % 4
    mixed, target = MixTargets(MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0), 4, 0.0)(x.clone(), y)
    kept = (mixed[0] == x[0]).all(0).float().mean()  # share of image 0 that is still image 0
    assert target[0, y[0]] == pytest.approx(float(kept), abs=1e-3) or y[0] == y[-1]
    torch.testing.assert_close(target.sum(1), torch.ones(8))


def test_label_smoothing_matches_torch():
    torch.manual_seed(3)
    logits, y = torch.randn(7, 5), torch.randint(0, 5, (7,))
    _, soft = MixTargets(MixupConfig(), 5, 0.1)(torch.zeros(7, 3, 4, 4), y)  # odd batch: no mixing
    torch.testing.assert_close(soft_cross_entropy(logits, soft), F.cross_entropy(logits, y, label_smoothing=0.1))


def test_mixup_label_smoothing_combined_still_sums_to_one():
    _, soft = MixTargets(MixupConfig(mixup_alpha=1.0), 5, 0.1)(batch(6).float(), torch.arange(6) % 5)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    assert soft.min() > 0
