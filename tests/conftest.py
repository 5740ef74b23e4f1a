"""Shared fixtures: a tiny timm model (no download) on synthetic images, and a tiny BERT on synthetic
texts. None of the benchmark suite's data sets is used here, so that no default is tuned to a test."""

from __future__ import annotations

import contextlib
import copy
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

# Debian's Chromium, driven by Playwright, renders the HTML pages in the report tests
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def synthetic_images(classes: int = 10, per_class: int = 24, size: int = 16) -> Path:
    """A folder of ``classes`` x ``per_class`` small PNGs (written once per machine, atomically):
    each class a colour and a stripe direction of its own, under noise, so that it is learnable."""
    import os
    import tempfile

    root = Path(tempfile.gettempdir()) / f"tunelab-test-shapes-{classes}-{per_class}-{size}"
    if root.is_dir():
        return root
    tmp = root.with_name(f"{root.name}.{os.getpid()}.tmp")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        d = tmp / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 97) % 256, (c * 53 + 80) % 256, (c * 151 + 40) % 256], dtype=np.float64)
        stripes = ((xx if c % 2 else yy) // 2 % 2)[..., None]
        for i in range(per_class):
            arr = colour * (0.6 + 0.4 * stripes) + rng.normal(0, 25, (size, size, 3))
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(d / f"img{i}.png")
    try:
        tmp.rename(root)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


TINY: dict[str, Any] = {
    "run": {"name": "tiny", "progress": False, "seed": 0},
    "data": {
        "train": str(synthetic_images()),
        "image_size": 32,
        "samples_per_class": 8,
        "val_samples_per_class": 4,
        "test_split": 0.2,
        "test_samples_per_class": 6,
        "batch_size": 16,
    },
    "model": {"backbone": "test_efficientnet", "pretrained": False},
    "stages": [
        {"name": "head", "train": "head", "epochs": 2, "lr": 3e-3},
        {"name": "top", "train": ["head", {"last_blocks": 2}], "epochs": 3, "lr_scale": 0.1},
    ],
}


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> dict[str, Any]:
    """A config dict for a run of a few seconds; its run folder lives under tmp_path."""
    cfg = copy.deepcopy(TINY)
    cfg["run"]["dir"] = str(tmp_path / "runs")
    return cfg


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-stage run on the tiny model (no baselines), shared by a test module's tests."""
    import tunelab

    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp_path_factory.mktemp("runs")), baselines=False)
    cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    return tunelab.fit(cfg).dir


@pytest.fixture
def digits_run(tiny_cfg: dict[str, Any]) -> Path:
    """A finished run on the built-in digits, which has no official test split: the run holds one
    out (``data.test_split``)."""
    import tunelab

    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["data"] = {
        "train": "digits",
        "image_size": 32,
        "samples_per_class": 10,
        "val_samples_per_class": 2,
        "test_split": 0.2,
        "test_samples_per_class": 3,
        "refit": "never",
    }
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    return tunelab.fit(tiny_cfg).dir


def write_images(root: Path, classes: dict[str, int], size: int = 20) -> list[Path]:
    """Write ``n`` small RGB PNGs per class into root/<class>/; returns the files."""
    rng = np.random.default_rng(0)
    files = []
    for ci, (name, n) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            arr[:, :, ci % 3] += 150  # a class-dependent colour so the task is learnable
            f = d / f"img{i}.png"
            Image.fromarray(arr).save(f)
            files.append(f)
    return files


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_images(root, {"cat": 6, "dog": 6, "fox": 6})
    return root


# --- text: a tiny randomly initialised BERT with a local WordPiece vocabulary (no download) -------

TEXT_WORDS = {
    "pos": ["good", "great", "fun", "brilliant", "moving", "superb", "lovely", "charming"],
    "neg": ["bad", "awful", "boring", "dull", "terrible", "poor", "tedious", "bland"],
}
FILLER = ["the", "a", "movie", "film", "plot", "was", "is", "and", "but", "very", "quite", "cast"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that AutoModel/AutoTokenizer load: BERT, 3 layers, hidden 32, random weights."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + FILLER + TEXT_WORDS["pos"] + TEXT_WORDS["neg"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def text_rows(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """Short texts whose label follows from their sentiment words (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("neg", "pos"):
        for _ in range(n_per_class):
            words = list(rng.choice(FILLER, size=rng.integers(2, 9))) + list(rng.choice(TEXT_WORDS[label], size=2))
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    return rows


def write_text_csv(path: Path, rows: list[tuple[str, str]], columns: tuple[str, str] = ("text", "label")) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return path


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    return write_text_csv(tmp_path / "reviews.csv", text_rows(30))


@pytest.fixture
def tiny_text_cfg(tmp_path: Path, tiny_encoder: Path, text_csv: Path) -> dict[str, Any]:
    """A text run of a few seconds on the tiny encoder."""
    return {
        "run": {"name": "tiny-text", "progress": False, "seed": 0, "dir": str(tmp_path / "runs")},
        "data": {
            "train": str(text_csv),
            "test_split": 0.2,
            "val_split": 0.2,
            "batch_size": 8,
            "refit": "never",
            "text": {"max_length": 16, "token_cache": str(tmp_path / "tokens")},
        },
        "model": {"backbone": str(tiny_encoder)},
        "stages": [
            {"name": "head", "train": "head", "epochs": 2, "lr": 1e-2},
            {"name": "top", "train": ["head", {"last_layers": 1}], "epochs": 2, "lr": 1e-3, "layer_decay": 0.5},
        ],
    }


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with TimeoutError, rather than hang the test run, when the block runs over ``seconds``
    (SIGALRM also interrupts a blocking open of a FIFO)."""

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def problem_label(problem: str, c: int) -> str:
    """The label cell of class ``c`` of the synthetic images (or sentiment texts) as a multi-label or
    regression target: learnable, since it follows from the class."""
    if problem == "multi_label":
        return "|".join(["even" if c % 2 == 0 else "odd"] + (["low"] if c < 5 else []) + (["three"] if c % 3 == 0 else []))
    if problem == "regression":
        return str(c * 1.5 + 10)
    return f"class{c}"


def problem_manifest(folder: Path, problem: str) -> Path:
    """A CSV manifest (path,label) of the synthetic images with ``problem``'s label cells."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    root = synthetic_images()
    path = folder / f"{problem}.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for d in sorted(root.iterdir(), key=lambda d: int(d.name[5:])):
            w.writerows((str(p), problem_label(problem, int(d.name[5:]))) for p in sorted(d.iterdir()))
    return path


def problem_texts(path: Path, problem: str, n_per_class: int = 30) -> Path:
    """The sentiment texts of :func:`text_rows` with multi-label (sentiment plus 'long' for texts of
    six words or more) or regression (+1 / -1 plus a tenth a word) targets."""
    rows = []
    for text, label in text_rows(n_per_class):
        words = len(text.split())
        if problem == "multi_label":
            rows.append((text, label + ("|long" if words >= 6 else "")))
        else:
            rows.append((text, f"{(1.0 if label == 'pos' else -1.0) + words / 10:.2f}"))
    return write_text_csv(path, rows)
