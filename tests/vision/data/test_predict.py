"""What ``tunelab predict`` reads of an image run's inputs: image files, and the images of folders."""

import os

import pytest

from conftest import TINY, deadline
from tunelab.config import build_config
from tunelab.errors import DataError
from tunelab.vision.data.predict import image_inputs


def test_a_fifo_or_a_device_given_to_predict_is_refused_and_one_in_a_folder_is_skipped(image_folder, tmp_path, caplog):
    """Was: a FIFO blocked in decoding, with no output and no timeout."""
    cfg = build_config(TINY)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    os.mkfifo(image_folder / "cat" / "pipe.png")
    with deadline(30):
        with pytest.raises(DataError, match=rf"{fifo} is a FIFO \(named pipe\), not a regular file; give image files"):
            image_inputs(cfg, [str(fifo)], [])
        with pytest.raises(DataError, match=r"/dev/zero is a character device, not a regular file"):
            image_inputs(cfg, ["/dev/zero"], [])
        items, _, images = image_inputs(cfg, [str(image_folder)], [])
    assert len(items) == 18 and images.shape[0] == 18
    assert f"skipped 1 non-regular file(s) (FIFO, device or socket): {image_folder / 'cat' / 'pipe.png'}" in caplog.text
