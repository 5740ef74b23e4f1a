"""A user's text file (CSV manifest, CSV / TSV / JSON lines texts, one text a line), decoded as
UTF-8 with or without a byte-order mark, or as UTF-16 / UTF-32 with one. Any other encoding is
refused with the byte that is not UTF-8, its line and how to convert the file: guessing a legacy
encoding (Latin-1, Windows-1252, ...) would silently change texts and labels when the guess is wrong.

    path = Path("reviews.csv")
    header, rows = csv_rows(path, read_text(path))    # csv.DictReader: long fields, errors as DataError
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path

from tunelab.errors import DataError

# the byte-order marks that say the encoding (UTF-32 first: its little-endian mark starts as UTF-16's)
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# the csv module's default field limit is 128 KiB, less than a long document; above this bound a
# field is more likely a missing closing quote than a text
MAX_FIELD = 16 * 2**20


def read_text(path: Path) -> str:
    """The text of ``path`` (its byte-order mark removed); a DataError naming the first byte that
    does not decode, its line, and the conversion, for anything else."""
    data = path.read_bytes()
    encoding = next((enc for bom, enc in BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(_not_decodable(path, data, encoding, e)) from None
    if encoding == "utf-8" and "\x00" in text[:4096]:
        raise DataError(
            f"{path}: holds NUL bytes, as UTF-16 text without a byte-order mark does; tunelab reads UTF-8 "
            f"(with or without a byte-order mark) and UTF-16 with one. Convert it, e.g. "
            f"iconv -f utf-16le -t utf-8 {path} > {_converted(path)}"
        )
    if "\x00" in text:  # past the start: no text encoding, a binary file (csv would fail on it later)
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{path}, line {line}: a NUL byte; this is a binary file, not a text file")
    return text


def _converted(path: Path) -> Path:
    return path.with_name(f"{path.stem}-utf8{path.suffix}")


def _not_decodable(path: Path, data: bytes, encoding: str, e: UnicodeDecodeError) -> str:
    line = data[: e.start].decode(encoding, errors="replace").count("\n") + 1
    name = {"utf-8-sig": "UTF-8"}.get(encoding, encoding.upper())
    before = data[max(0, e.start - 20) : e.start].decode(encoding, errors="replace").rsplit("\n", 1)[-1]
    return (
        f"{path}, line {line} (byte offset {e.start}): the byte(s) {data[e.start : e.end]!r} after {before!r} are "
        f"not {name}; tunelab reads UTF-8 text (with or without a byte-order mark) and UTF-16 with one, and does "
        f"not guess other encodings. Convert the file to UTF-8, e.g. from Latin-1: iconv -f latin1 -t utf-8 {path} "
        f"> {_converted(path)} (from Windows-1252, as Excel saves 'CSV' on Windows: -f cp1252)"
    )


@contextlib.contextmanager
def _csv_errors(path: Path, reader: csv.DictReader[str]) -> Iterator[None]:
    """Fields up to :data:`MAX_FIELD` characters; the csv module's errors as a DataError."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, MAX_FIELD))
    try:
        yield
    except csv.Error as e:
        hint = (
            f"; a text may be at most {MAX_FIELD // 2**20} MiB characters (or is a quote never closed?)"
            if "field larger than field limit" in str(e)
            else ""
        )
        raise DataError(f"{path}, line {reader.reader.line_num}: not readable as CSV ({e}){hint}") from None
    finally:
        csv.field_size_limit(old)


def csv_rows(path: Path, text: str, delimiter: str = ",") -> tuple[list[str], Iterator[dict[str, str]]]:
    """The header and the rows (as dicts) of the CSV/TSV ``text`` read from ``path``; fields up to
    :data:`MAX_FIELD` characters, the csv module's errors a DataError naming the file and line."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    with _csv_errors(path, reader):
        fields = list(reader.fieldnames or [])
    return fields, _rows(path, reader)


def _rows(path: Path, reader: csv.DictReader[str]) -> Iterator[dict[str, str]]:
    while True:
        with _csv_errors(path, reader):
            row = next(reader, None)
        if row is None:
            return
        yield row
