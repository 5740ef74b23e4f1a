"""What ``tunelab predict`` classifies for an image run: image files, and the images in folders."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch

from tunelab.config import Config
from tunelab.errors import DataError
from tunelab.vision.config import image_data
from tunelab.vision.data._decode import IMAGE_EXTENSIONS, BadImage, decode_file, not_regular
from tunelab.vision.data._sources import BUILTIN, NOT_REGULAR, image_files

log = logging.getLogger("tunelab")


def image_inputs(cfg: Config, inputs: list[str], texts: list[str]) -> tuple[list[str], list[str | None], torch.Tensor]:
    """(items, texts shown (none), decoded images) of every image file in ``inputs``, in order."""
    if texts:
        raise DataError(f"--text needs a text model; this run's backbone {cfg.model.backbone} takes images")
    files = _expand_inputs(inputs)
    try:
        images = torch.stack([decode_file(f, image_data(cfg).image_size) for f in files])
    except BadImage as e:
        raise DataError(str(e)) from None
    return [str(f) for f in files], [None for _ in files], images


def _expand_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    passed: dict[str, list[Path]] = defaultdict(list)
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += image_files(p, passed)
        elif p.is_file():
            files.append(p)
        elif not_regular(p):
            raise DataError(f"{p} is {not_regular(p)}, not a regular file; give image files or folders of images")
        else:
            raise DataError(f"{p} does not exist (expected an image file or a folder of images)")
    if passed.get(NOT_REGULAR):
        log.warning("skipped %d %s: %s", len(passed[NOT_REGULAR]), NOT_REGULAR, ", ".join(map(str, passed[NOT_REGULAR])))
    if not files:
        raise DataError(f"no image files in {', '.join(inputs)} ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def labelled(spec: str) -> bool:
    """Whether ``spec`` names labelled images (``tunelab extract`` reads their classes too): a
    built-in set, a CSV manifest or a folder of class folders."""
    p = Path(spec)
    return spec in BUILTIN or p.suffix.lower() == ".csv" or (p.is_dir() and any(c.is_dir() for c in p.iterdir()))
