"""A user's text files: UTF-8 with or without a byte-order mark and UTF-16/32 with one are read; a
Latin-1 file is refused naming the file, line, byte and the conversion, in fit, evaluate --data and
predict, for texts and image manifests alike; a CSV field over the csv module's 128 KiB limit is read."""

import codecs
import json

import pytest
import yaml

import tunelab
from conftest import text_rows, write_text_csv
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.text.config import TextOptions
from tunelab.text.data import read_texts
from tunelab.textfile import MAX_FIELD, csv_rows, read_text

LATIN1 = "text,label\ngood fun,pos\nun film tr\u00e8s r\u00e9ussi,pos\ndull,neg\n".encode("latin-1")
OFFSET = LATIN1.index(b"\xe8")  # the first byte that is not UTF-8


@pytest.mark.parametrize(
    "encoding, bom",
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
    ],
)
def test_utf8_with_or_without_a_mark_and_utf16_or_32_with_one_are_read(tmp_path, encoding, bom):
    path = tmp_path / "t.csv"
    path.write_bytes(bom + "text,label\r\ncaf\u00e9 \u2028 ok,pos\r\n".encode(encoding))
    assert read_text(path) == "text,label\r\ncaf\u00e9 \u2028 ok,pos\r\n"
    header, rows = csv_rows(path, read_text(path))
    assert header == ["text", "label"] and list(rows) == [{"text": "caf\u00e9 \u2028 ok", "label": "pos"}]


def test_latin1_is_refused_with_the_line_byte_and_how_to_convert(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN1)
    with pytest.raises(DataError) as e:
        read_text(path)
    assert str(e.value) == (
        f"{path}, line 3 (byte offset {OFFSET}): the byte(s) b'\\xe8' after 'un film tr' are not UTF-8; tunelab reads "
        "UTF-8 text (with or without a byte-order mark) and UTF-16 with one, and does not guess other encodings. "
        f"Convert the file to UTF-8, e.g. from Latin-1: iconv -f latin1 -t utf-8 {path} > {tmp_path / 'latin-utf8.csv'} "
        "(from Windows-1252, as Excel saves 'CSV' on Windows: -f cp1252)"
    )


def test_utf16_without_a_mark_is_named(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("text,label\ngood,pos\n".encode("utf-16-le"))
    with pytest.raises(
        DataError,
        match=r"u16.csv: holds NUL bytes, as UTF-16 text without a byte-order mark does.*"
        r"iconv -f utf-16le -t utf-8",
    ):
        read_text(path)


def test_a_text_over_the_csv_modules_128k_field_limit_is_read(tmp_path):
    """Was: _csv.Error: field larger than field limit (131072), a traceback."""
    long = " ".join(["good"] * 40_000)  # 200 KB
    path = write_text_csv(tmp_path / "long.csv", [(long, "pos"), ("dull", "neg")])
    texts, _, labels, _ = read_texts(path, TextOptions(), field="train")
    assert texts == [long, "dull"] and labels == ["pos", "neg"]
    import csv

    assert csv.field_size_limit() == 131072  # the process-wide limit is left as it was
    huge = tmp_path / "huge.tsv"
    huge.write_text("text\tlabel\n" + "x" * (MAX_FIELD + 1) + "\tpos\n")
    with pytest.raises(
        DataError,
        match=r"huge.tsv, line 2: not readable as CSV \(field larger than field limit .*\); "
        r"a text may be at most 16 MiB characters",
    ):
        read_texts(huge, TextOptions(), field="train")


def test_long_texts_of_a_csv_train_as_windows(tiny_text_cfg, tmp_path):
    long = " ".join(["good", "film"] * 30_000)  # 300 KB: read as windows spread over the whole text
    rows = text_rows(10) + [(long, "pos"), (long.replace("good", "bad"), "neg")]
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["data"]["train"] = str(write_text_csv(tmp_path / "long.csv", rows))
    cfg["stages"] = cfg["stages"][:1]
    run = tunelab.fit(cfg)
    assert "longer than 16, read as 8-8 windows" in (run.dir / "log.txt").read_text()


def _cli_error(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_latin1_files_in_fit_evaluate_and_predict_are_refused_with_a_message(
    tiny_text_cfg, tiny_cfg, image_folder, tmp_path, capsys
):
    """Was: a UnicodeDecodeError traceback in fit, evaluate --data and predict."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes(LATIN1)
    cfg = tmp_path / "text.yaml"
    cfg.write_text(yaml.safe_dump({**tiny_text_cfg, "data": {**tiny_text_cfg["data"], "train": str(latin)}}))
    assert f"{latin}, line 3 (byte offset {OFFSET})" in _cli_error(["fit", str(cfg)], capsys)
    run = tunelab.fit({**tiny_text_cfg, "stages": tiny_text_cfg["stages"][:1]})
    assert "iconv -f latin1 -t utf-8" in _cli_error(["evaluate", str(run.dir), "--data", str(latin)], capsys)
    lines = tmp_path / "new.txt"
    lines.write_bytes("great\nun film r\u00e9ussi\n".encode("latin-1"))
    assert f"{lines}, line 2 (byte offset 15)" in _cli_error(["predict", str(run.dir), str(lines)], capsys)
    assert f"{latin}, line 3" in _cli_error(["predict", str(run.dir), str(latin)], capsys)
    manifest = tmp_path / "images.csv"  # an image manifest: a file name in Latin-1
    rows = [f"{p},{p.parent.name}" for p in sorted(image_folder.rglob("*.png"))]
    manifest.write_bytes(("path,label\n" + "\n".join(rows) + "\nd\u00e9j\u00e0.png,cat\n").encode("latin-1"))
    image_cfg = tmp_path / "image.yaml"
    image_cfg.write_text(yaml.safe_dump({**tiny_cfg, "data": {**tiny_cfg["data"], "train": str(manifest)}}))
    assert f"{manifest}, line {len(rows) + 2}" in _cli_error(["fit", str(image_cfg)], capsys)
