"""Decode images once, at the working resolution, into uint8 CHW tensors, as an image viewer shows
them: turned by their EXIF orientation, 16-bit and float pixels scaled to 8 bits, transparent
pixels on a white background."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BACKGROUND = (255, 255, 255)  # what transparent pixels are shown on: white, as browsers and viewers show them
DECODER_VERSION = 2  # part of the decode cache's key: a change of what decoding gives must not reuse old files


class BadImage(Exception):
    """An image file that cannot be decoded; the message names the file."""


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_regular(path: str | Path) -> str | None:
    """What ``path`` (its symlinks followed) is when it exists but is no regular file: a FIFO blocks
    whoever opens it and /dev/zero never ends, so neither is read. None for a regular or missing file."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing or unreadable: opening it reports that
        return None
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def decode_file(path: str | Path, size: int) -> torch.Tensor:
    """Open an image file, resize its shorter side to ``size``, centre-crop; uint8 [3, size, size].

    JPEGs are decoded in draft mode (DCT scaling) when much larger than ``size``: several times
    faster for camera photos, with no visible loss after the downscale.
    """
    kind = not_regular(path)
    if kind is not None:
        raise BadImage(f"cannot decode image {path}: it is {kind}, not a regular file; only image files are read")
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            im = to_rgb(ImageOps.exif_transpose(im))
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(f"cannot decode image {path}: {e}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB of any PIL image. ``convert("RGB")`` alone clips 16-bit and float pixels (a 16-bit
    gradient comes out almost all white) and drops the alpha channel (transparent pixels show the
    colour stored under them, often black)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = Image.fromarray(_to_8bit(np.asarray(im)))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """Grey pixels of a 16-bit (0-65535), 32-bit integer or float (0-1) image as uint8 0-255. Integers
    above 65535 and floats above 1 are scaled by the image's maximum (255 when it is at most 255)."""
    x = arr.astype(np.float64)
    top = float(x.max()) if x.size else 0.0
    if arr.dtype.kind == "f":
        full = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else top
    else:
        full = 65535.0 if top <= 65535 else top
    return np.clip(np.rint(x * (255.0 / full)), 0, 255).astype(np.uint8)


def resize_array(images: np.ndarray, size: int) -> torch.Tensor:
    """[N, H, W] (grey) or [N, H, W, 3] uint8/float array in 0-255 -> uint8 [N, 3, size, size].

    Chunk by chunk into one preallocated tensor: peak memory is the result plus one chunk."""
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for start in range(0, len(images), 2048):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + 2048])).float()
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + len(x)] = x.round().clamp(0, 255).to(torch.uint8)  # grey broadcasts to 3 channels
    return out
