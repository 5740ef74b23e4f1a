"""Images decode as a viewer shows them; each case on a real file of its kind, written by PIL."""

import numpy as np
import pytest
from PIL import Image

from tunelab.vision.config import ImageDataConfig
from tunelab.vision.data import _store as store
from tunelab.vision.data import decode_file, load_data
from tunelab.vision.data._sources import folder_source


def _pixels(path, size):
    return decode_file(path, size).permute(1, 2, 0).numpy().astype(int)  # [H, W, 3]


def test_16_bit_png_gradient_decodes_to_an_8_bit_gradient(tmp_path):
    """Was: 98.8 % pure white (convert('RGB') clips 16-bit values at 255)."""
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (256, 1))).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    px = _pixels(tmp_path / "g.png", 256)
    assert np.abs(px[128, :, 0] - np.linspace(0, 255, 256)).max() <= 1
    assert (px[..., 0] == px[..., 2]).all() and (px == 255).mean() < 0.01


def test_16_bit_tiff_and_float_tiff_scale_to_8_bits(tmp_path):
    Image.fromarray(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))).save(tmp_path / "g16.tif")
    Image.fromarray(np.tile(np.linspace(0, 1, 64).astype(np.float32), (64, 1))).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    for name in ("g16.tif", "f.tif"):
        px = _pixels(tmp_path / name, 64)
        assert np.abs(px[32, :, 1] - np.linspace(0, 255, 64)).max() <= 1, name


def test_exif_orientation_is_applied(tmp_path):
    """Was: decoded as stored. Stored 64 wide x 32 high, red left and blue right, with orientation 6
    (turn 90 degrees clockwise to show): shown 32 x 64, red on top and blue below."""
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:, :32, 0] = 255
    arr[:, 32:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    px = _pixels(tmp_path / "turned.jpg", 32)  # the shown 32 x 64, centre-cropped: top half red, bottom blue
    assert px[2, 16, 0] > 200 and px[2, 16, 2] < 60
    assert px[29, 16, 2] > 200 and px[29, 16, 0] < 60


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_show_on_white(tmp_path, mode):
    """Was: the colour stored under a transparent pixel (black here)."""
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)  # left half: transparent black
    rgba[:, 16:] = (0, 160, 0, 255)  # right half: opaque green (mid grey in LA)
    im = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        im = im.convert("LA")
    elif mode == "P":
        im = im.convert("RGB").quantize(4)
        im.info["transparency"] = im.getpixel((0, 0))  # the palette entry of the left half
    im.save(tmp_path / "t.png")
    assert Image.open(tmp_path / "t.png").mode == mode
    px = _pixels(tmp_path / "t.png", 32)
    assert (px[:, :14] == 255).all()  # the background
    assert px[:, 18:, 1].min() > 80 and px[:, 18:, 0].max() < 160


def test_decoder_version_is_part_of_the_decode_cache_key(image_folder, monkeypatch):
    src = folder_source(image_folder)
    idx = np.arange(4)
    before = store.decode_key(src, idx, 16, "error")
    monkeypatch.setattr(store, "DECODER_VERSION", store.DECODER_VERSION + 1)
    assert store.decode_key(src, idx, 16, "error") != before


def test_decode_cache_gives_the_same_pixels_as_decoding(tmp_path):
    d = tmp_path / "imgs"
    for c in ("a", "b"):
        (d / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 30000 * i + 100, dtype=np.uint16)).save(d / c / f"{i}.png")
    plain = load_data(ImageDataConfig(train=str(d), image_size=8, val_split=0))
    cached = load_data(ImageDataConfig(train=str(d), image_size=8, val_split=0, decode_cache=str(tmp_path / "cache")))
    assert (plain.train.images == cached.train.images).all()
    assert plain.train.images.float().mean() > 0 and plain.train.images.max() < 255
