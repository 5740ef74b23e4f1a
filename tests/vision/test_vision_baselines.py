"""The raw-pixel features the image baseline reads."""

import torch

from tunelab.vision.baselines import pixel_features


def test_pixel_features_keep_one_channel_of_grey_images_and_shrink_large_ones():
    x = torch.zeros(6, 3, 16, 16, dtype=torch.uint8)  # grey: three equal channels
    assert pixel_features(x).shape == (6, 256)
    big = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    big[:, 0] = 255  # colour: all three channels kept, area-resized to 32 px
    assert pixel_features(big).shape == (2, 3 * 32 * 32)
