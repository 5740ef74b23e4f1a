"""Hostile files as every kind of input: random bytes, files cut short and files of the wrong type
(a PNG as a CSV, a CSV as a JPEG, YAML that is a list, a number or binary, empty files), used as
images (in a class folder and a manifest row), as CSV manifests, as text tables and text files,
and as YAML configs, through the library's loaders and the command line. The property: never a
traceback and never a hang; every failure is a TunelabError, which the CLI prints as one message.

Fixed seed, a few dozen cases, each under a deadline: nothing is trained past one tiny epoch."""

from __future__ import annotations

import copy
import io
import itertools
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY, deadline, write_images
from tunelab.cli import main
from tunelab.config import build_config, load_config
from tunelab.errors import TunelabError
from tunelab.text.config import TextDataConfig, TextOptions
from tunelab.text.data import text_classes
from tunelab.text.predict import texts_from_file
from tunelab.vision.config import ImageDataConfig
from tunelab.vision.data import load_data, load_eval_set

SECONDS = 20  # a case that runs longer hangs


def _image(fmt: str) -> bytes:
    arr = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header (with a valid checksum) claims ``width`` x ``height`` pixels."""
    png = _image("PNG")
    ihdr = png[12:16] + struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(27)
    png, jpeg, gif = _image("PNG"), _image("JPEG"), _image("GIF")
    return {
        "empty": b"",
        "random 1 byte": rng.bytes(1),
        "random 300 bytes": rng.bytes(300),
        "random 5000 bytes": rng.bytes(5000),
        "png cut short": png[: int(rng.integers(40, len(png) - 10))],
        "png signature only": png[:8],
        "png claiming 100000x100000": _png_claiming(100_000, 100_000),
        "jpeg cut short": jpeg[: int(rng.integers(200, len(jpeg) - 10))],
        "gif cut short": gif[: len(gif) // 2],
        "a whole png": png,  # the wrong type wherever a CSV or YAML is read
        "csv text": b"path,label\nmissing.png,cat\nother.png,dog\n",
        "yaml list": b"- 1\n- 2\n",
        "yaml scalar": b"42\n",
        "yaml not closed": b"data: [1, 2\nmodel: {backbone\n",
        "nul bytes": b"path,label\n\x00\x00,\x00\ntext,label\n\x00,\x00\n",
        "utf-16 with a bom": "path,label,text\na.png,cat,good film\n".encode("utf-16"),
        "latin-1 text": "text,label\ncaf\u00e9 cr\u00e8me,chat\nna\u00efve,dog\n".encode("latin-1"),
        "a 200 KB field": b"path,label,text\n" + b"a" * 200_000 + b",cat,x\n",
    }


PAYLOADS = _payloads()


def holds(call: Callable[[], object]) -> None:
    """``call`` ends in time, and fails (if it fails) with a TunelabError that says something."""
    with deadline(SECONDS):
        try:
            call()
        except TunelabError as e:
            assert str(e).strip(), f"{type(e).__name__} without a message"


# --- where a hostile file is read ----------------------------------------------------------------


def _as_image_in_a_class_folder(tmp: Path, data: bytes) -> None:
    write_images(tmp / "images", {"cat": 3, "dog": 3})
    (tmp / "images" / "dog" / "hostile.jpg").write_bytes(data)
    holds(lambda: load_data(ImageDataConfig(train=str(tmp / "images"), image_size=16, val_split=0.0, test=None)))


def _as_image_in_a_manifest(tmp: Path, data: bytes) -> None:
    files = write_images(tmp / "images", {"cat": 3, "dog": 3})
    (tmp / "hostile.png").write_bytes(data)
    man = tmp / "train.csv"
    man.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files) + f"{tmp / 'hostile.png'},dog\n")
    holds(lambda: load_data(ImageDataConfig(train=str(man), image_size=16, val_split=0.0, test=None, on_bad_image="skip")))
    holds(lambda: load_eval_set(str(man), ["cat", "dog"], ImageDataConfig(train=str(man), image_size=16)))


def _as_manifest(tmp: Path, data: bytes) -> None:
    man = tmp / "train.csv"
    man.write_bytes(data)
    holds(lambda: load_data(ImageDataConfig(train=str(man), image_size=16, val_split=0.0, test=None)))


def _as_text_table(tmp: Path, data: bytes) -> None:
    table = tmp / "texts.csv"
    table.write_bytes(data)
    holds(lambda: text_classes(TextDataConfig(train=str(table), text=TextOptions())))
    jsonl = tmp / "texts.jsonl"
    jsonl.write_bytes(data)
    holds(lambda: text_classes(TextDataConfig(train=str(jsonl), text=TextOptions())))


def _as_text_file(tmp: Path, data: bytes) -> None:
    """One text per line, as ``predict`` reads a text run's input files."""
    lines = tmp / "texts.txt"
    lines.write_bytes(data)
    cfg = build_config({"model": {"family": "transformers", "backbone": "bert-base-uncased"}})
    holds(lambda: texts_from_file(lines, cfg))


def _as_yaml_config(tmp: Path, data: bytes) -> None:
    path = tmp / "config.yaml"
    path.write_bytes(data)
    holds(lambda: load_config(path))


SLOTS: dict[str, Callable[[Path, bytes], None]] = {
    "image in a class folder": _as_image_in_a_class_folder,
    "image in a manifest": _as_image_in_a_manifest,
    "csv manifest": _as_manifest,
    "text table": _as_text_table,
    "text file": _as_text_file,
    "yaml config": _as_yaml_config,
}

# which payloads each slot gets: images get what could pass for an image, tables and configs get all
_IMAGE_LIKE = [
    "empty",
    "random 1 byte",
    "random 300 bytes",
    "random 5000 bytes",
    "png cut short",
    "png signature only",
    "png claiming 100000x100000",
    "jpeg cut short",
    "gif cut short",
    "csv text",
    "yaml list",
]
_TEXT_LIKE = [
    "empty",
    "random 300 bytes",
    "a whole png",
    "csv text",
    "yaml list",
    "nul bytes",
    "utf-16 with a bom",
    "latin-1 text",
    "a 200 KB field",
]
_CONFIG_LIKE = [
    "empty",
    "random 300 bytes",
    "a whole png",
    "csv text",
    "yaml list",
    "yaml scalar",
    "yaml not closed",
    "nul bytes",
    "utf-16 with a bom",
]
PLAN = {
    "image in a class folder": _IMAGE_LIKE,
    "image in a manifest": _IMAGE_LIKE,
    "csv manifest": _TEXT_LIKE,
    "text table": _TEXT_LIKE,
    "text file": _TEXT_LIKE,
    "yaml config": _CONFIG_LIKE,
}


def _cases() -> list[object]:
    return [pytest.param(slot, name, id=f"{slot}: {name}") for slot, names in PLAN.items() for name in names]


@pytest.mark.parametrize("slot,payload", _cases())
def test_a_hostile_file_is_a_clear_error_or_is_read_never_a_traceback_or_a_hang(tmp_path, slot, payload):
    SLOTS[slot](tmp_path, PAYLOADS[payload])


# --- the same through the command line ---------------------------------------------------------


def _tiny_config(tmp: Path, **data: object) -> Path:
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp / "runs"), baselines=False)
    cfg["data"].update(image_size=16, **data)
    cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The command ends in time with 0, or with 2 and one message (no traceback, no blank line)."""
    with deadline(SECONDS * 3):
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err, err
    if rc == 2:
        message = err[err.index("error: ") :].strip()
        assert "\n\n" not in message, message


CLI_PAYLOADS = ["random 300 bytes", "png cut short", "a whole png", "yaml list", "nul bytes", "utf-16 with a bom"]


@pytest.mark.parametrize("payload", CLI_PAYLOADS)
def test_fit_evaluate_extract_and_predict_given_hostile_files_exit_with_a_message(image_run, tmp_path, capsys, payload):
    data = PAYLOADS[payload]
    write_images(tmp_path / "two", {"a": 3, "b": 3})
    (tmp_path / "hostile.yaml").write_bytes(data)
    tiny = [
        f"run.dir={tmp_path / 'runs'}",
        "run.baselines=false",
        f"data.train={tmp_path / 'two'}",
        "data.image_size=16",
        "model.backbone=test_efficientnet",
        "model.pretrained=false",
        "recipe=probe",
    ]  # should it parse after all
    _cli(["fit", str(tmp_path / "hostile.yaml"), *itertools.chain(*(("--set", t) for t in tiny))], capsys)
    (tmp_path / "hostile.csv").write_bytes(data)
    _cli(["fit", str(_tiny_config(tmp_path, train=str(tmp_path / "hostile.csv"))), "--set", "run.name=m"], capsys)
    _cli(["evaluate", str(image_run), "--data", str(tmp_path / "hostile.csv")], capsys)
    _cli(["extract", str(image_run), str(tmp_path / "hostile.csv"), "--out", str(tmp_path / "features")], capsys)
    (tmp_path / "hostile.png").write_bytes(data)
    _cli(["predict", str(image_run), str(tmp_path / "hostile.png")], capsys)
    (tmp_path / "two" / "b" / "hostile.png").write_bytes(data)
    _cli(
        [
            "fit",
            str(
                _tiny_config(tmp_path, train=str(tmp_path / "two"), test_split=0.0, val_samples_per_class=1, samples_per_class=2)
            ),
            "--set",
            "run.name=f",
        ],
        capsys,
    )


def test_every_payload_is_used():
    used = set(itertools.chain(*PLAN.values(), CLI_PAYLOADS))
    assert used == set(PAYLOADS)
