"""Data sources: labels are known without decoding, so splitting and sub-sampling happen first and
only the images that are used get decoded."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tunelab.errors import DataError
from tunelab.objectives import Objective, objective_for
from tunelab.textfile import csv_rows, read_text
from tunelab.vision.data._decode import IMAGE_EXTENSIONS, BadImage, decode_file, not_regular, resize_array

log = logging.getLogger("tunelab")


class Source(Protocol):
    name: str
    classes: list[str]
    labels: np.ndarray  # the targets (tunelab.objectives): int64 class index per item, multi-hot rows or values

    def describe(self, i: int) -> str: ...  # a file path or "name[i]"

    def load_many(self, indices: np.ndarray, size: int, on_bad: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        """uint8 images of ``indices`` at ``size``, the indices kept, and the files skipped."""
        ...


def native_side(src: ArraySource | FileSource, indices: np.ndarray, sample: int = 64) -> int | None:
    """The median shorter side, in pixels, of the source images of ``indices`` before any resizing
    (at most ``sample`` of them, evenly spaced; file headers only); None when none can be read."""
    if not len(indices):
        return None
    if isinstance(src, ArraySource):
        return int(min(src.images.shape[1:3]))
    from PIL import Image

    sides = []
    for i in indices[np.linspace(0, len(indices) - 1, min(sample, len(indices))).astype(int)]:
        if not_regular(src.paths[i]):  # a FIFO would block here: load_many reports it
            continue
        try:
            with Image.open(src.paths[i]) as im:
                sides.append(min(im.size))
        except (OSError, ValueError, Image.DecompressionBombError):  # an unreadable file: load_many reports it
            continue
    return int(np.median(sides)) if sides else None


class ArraySource:
    """In-memory arrays (built-in data sets): decoding cannot fail."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
        self.name, self.images, self.labels, self.classes = name, images, labels.astype(np.int64), classes

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def load_many(self, indices: np.ndarray, size: int, on_bad: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        return resize_array(self.images[indices], size), indices, []


class FileSource:
    """Image files with labels (a class-folder tree or a CSV manifest)."""

    def __init__(self, name: str, paths: list[Path], labels: np.ndarray, classes: list[str]) -> None:
        self.name, self.paths, self.labels, self.classes = name, paths, labels, classes

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def load_many(self, indices: np.ndarray, size: int, on_bad: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        images, kept, skipped = [], [], []
        for i in indices:
            try:
                images.append(decode_file(self.paths[i], size))
                kept.append(i)
            except BadImage as e:
                if on_bad == "error":
                    raise DataError(f"{e}. Fix or remove the file, or set data.on_bad_image: skip") from None
                log.warning("skipping %s", e)
                skipped.append(str(self.paths[i]))
        x = torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8)
        return x, np.asarray(kept, dtype=np.int64), skipped


# ---------------------------------------------------------------------------------------------
# built-in data sets

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def fashion_mnist(split: str) -> ArraySource:
    """Debian's dataset-fashion-mnist files, else torchvision's download into ~/.cache/tunelab."""
    prefix = "train" if split == "train" else "t10k"
    for d in FASHION_MNIST_DIRS:
        img, lab = d / f"{prefix}-images-idx3-ubyte.gz", d / f"{prefix}-labels-idx1-ubyte.gz"
        if img.is_file() and lab.is_file():
            images = _read_idx(img, 16).reshape(-1, 28, 28)
            labels = _read_idx(lab, 8)
            return ArraySource(f"fashion-mnist:{split}", images, labels, FASHION_MNIST_CLASSES)
    try:
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(Path.home() / ".cache" / "tunelab"), train=split == "train", download=True)
    except Exception as e:
        raise DataError(
            "fashion-mnist: the files are not in /usr/share/datasets/fashion-mnist and the download failed "
            f"({e}). Install them with: sudo apt-get install dataset-fashion-mnist"
        ) from None
    return ArraySource(f"fashion-mnist:{split}", ds.data.numpy(), ds.targets.numpy(), FASHION_MNIST_CLASSES)


def digits(split: str) -> ArraySource:
    """scikit-learn's bundled 8x8 digits (1797 images, no download); it has no official test split."""
    from sklearn.datasets import load_digits

    if split != "train":
        raise DataError("digits has no official test split; set data.test_split: 0.2 (or similar) instead")
    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return ArraySource("digits", images, d.target, [str(i) for i in range(10)])


BUILTIN: dict[str, Callable[[str], ArraySource]] = {"fashion-mnist": fashion_mnist, "digits": digits}
BUILTIN_TEST_SPLIT = {"fashion-mnist"}


# ---------------------------------------------------------------------------------------------
# folders and manifests


def folder_source(root: Path) -> FileSource:
    """``root/<class>/<image>``: one subfolder per class, class names sorted."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class subfolders; expected {root}/<class name>/<image files>")
    paths, labels = [], []
    passed: dict[str, list[Path]] = {"macOS metadata file(s) (._*)": [], "symlink(s) pointing nowhere": []}
    for ci, d in enumerate(class_dirs):
        files = image_files(d, passed)
        if not files:
            raise DataError(
                f"class folder {d} has no image files ({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
        paths += files
        labels += [ci] * len(files)
    if any(passed.values()):
        log.warning("%s: skipped %s", root, ", ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in passed.items() if v))
    return FileSource(str(root), paths, np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs])


NOT_REGULAR = "non-regular file(s) (FIFO, device or socket)"


def image_files(folder: Path, passed: dict[str, list[Path]]) -> list[Path]:
    """The image files under ``folder``, sorted. macOS's AppleDouble files (``._name.jpg``: metadata a
    copy to a non-Mac disk leaves beside each image), symlinks to nothing and what is no regular
    file (a FIFO would block the run, a device never end) are not images: they are added to
    ``passed`` under those keys, for the log."""
    files = []
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if f.name.startswith("._"):
            passed["macOS metadata file(s) (._*)"].append(f)
        elif f.is_symlink() and not f.exists():
            passed["symlink(s) pointing nowhere"].append(f)
        elif f.is_file():
            files.append(f)
        elif not f.is_dir():  # a FIFO, device or socket (or a link to one) under an image's name
            passed.setdefault(NOT_REGULAR, []).append(f)
    return files


def manifest_source(csv_path: Path, objective: Objective, classes: list[str] | None = None) -> FileSource:
    """A CSV with a header and columns ``path,label``; relative paths are relative to the CSV. The
    label cells are read by the run's objective (a class, labels joined by a separator, a number)."""
    rows = _manifest_rows(csv_path, objective.columns("label"))
    paths, names, lines = [], [], []
    for lineno, row in rows:
        label, path = objective.cell(row, "label", f"{csv_path}, line {lineno}"), (row.get("path") or "").strip()
        if not path:
            raise DataError(f"{csv_path}, line {lineno}: the path is empty")
        if not label and objective.exclusive:  # a multi-label row may have no label that applies
            raise DataError(f"{csv_path}, line {lineno}: no label for {path}; every row needs path,label")
        p = Path(path)
        paths.append(p if p.is_absolute() else csv_path.parent / p)
        names.append(label)
        lines.append(lineno)
    labels, class_list = objective.encode(names, lambda i: f"{csv_path}, line {lines[i]}, column 'label'", classes)
    return FileSource(str(csv_path), paths, labels, class_list)


def _manifest_rows(csv_path: Path, label_columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a manifest, read as UTF-8 (Excel's byte-order mark is no column name;
    its "Unicode text" is UTF-16 with a mark). Another encoding, a binary file or a field longer
    than the csv module allows is an error naming the file and line."""
    text = read_text(csv_path)
    fields, reader = csv_rows(csv_path, text)
    needed = ["path", *label_columns]
    if any(c not in fields for c in needed):
        raise DataError(
            f"{csv_path}: the header must name columns {' and '.join(repr(c) for c in needed)} (found: "
            f"{', '.join(f[:40] for f in fields[:10]) or 'none'})"
        )
    rows = list(enumerate(reader, start=2))
    if not rows:
        raise DataError(f"{csv_path}: the manifest has no rows")
    return rows


def open_source(
    spec: str, split: str, *, field: str, objective: Objective | None = None, names: list[str] | None = None
) -> ArraySource | FileSource:
    """A built-in name, a class folder or a CSV manifest (labels read by ``objective``; default:
    single-label); ``names``: the training classes (labels) a test manifest's rows must use."""
    objective = objective if objective is not None else objective_for("single_label")
    p = Path(spec).expanduser()
    if not objective.exclusive and (spec in BUILTIN or p.is_dir()):  # one class per image
        raise DataError(
            f"data.{field}: {spec} has one class per image (a built-in set, or a folder of class folders); "
            f"data.problem {objective.name} reads a CSV manifest with columns path,label (docs/problems.md)"
        )
    if spec in BUILTIN:
        return BUILTIN[spec](split)
    if p.is_dir():
        return folder_source(p)
    if p.is_file() and p.suffix.lower() == ".csv":
        return manifest_source(p, objective, names)
    if p.exists():
        kind = f" (it is {not_regular(p)})" if not_regular(p) else ""
        raise DataError(f"data.{field}: {p} is neither a folder nor a .csv manifest{kind}")
    raise DataError(
        f"data.{field}: '{spec}' does not exist; valid: a folder with one subfolder per class, "
        f"a CSV manifest (path,label), or a built-in data set ({', '.join(BUILTIN)})"
    )
