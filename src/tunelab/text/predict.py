"""What a trained text model is asked to classify: texts given on the command line, or read from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.config import Config
from tunelab.errors import DataError
from tunelab.text._encoders import load_tokenizer
from tunelab.text.config import TEXT_DATASETS, text_options
from tunelab.text.data import read_texts, tokenize
from tunelab.textfile import read_text

_TABLES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def texts_from_file(path: Path, cfg: Config) -> tuple[list[str], list[str] | None, list[str]]:
    """(texts, pairs, items) of a CSV/TSV/JSON lines file (the run's text columns; no label needed),
    or of any other file, one text per non-empty line."""
    if not path.is_file():
        raise DataError(f"{path} does not exist (expected a CSV/TSV/JSON lines file, or a file with one text per line)")
    if path.suffix.lower() in _TABLES:
        texts, pairs, _, items = read_texts(path, text_options(cfg), field="predict", labels=False)
        return texts, pairs, items
    lines = [(i, line.strip()) for i, line in enumerate(read_text(path).splitlines(), start=1)]
    lines = [(i, t) for i, t in lines if t]
    if not lines:
        raise DataError(f"{path}: no text (expected one text per line)")
    return [t for _, t in lines], None, [f"{path}:{i}" for i, _ in lines]


def text_inputs(cfg: Config, files: list[str], texts: list[str]) -> tuple[list[str], list[str | None], Any]:
    """(items, texts, tokens) of everything to classify, in order: ``texts`` first, then the files'."""
    tcfg = text_options(cfg)
    needs_pairs = (
        f"this model reads text pairs ('{tcfg.column}', '{tcfg.pair_column}'); give them as a CSV or "
        "JSON lines file with both columns"
    )
    if tcfg.pair_column and texts:
        raise DataError(f"--text gives single texts, but {needs_pairs}")
    items = [f"--text {i + 1}" for i in range(len(texts))]
    all_texts: list[str] = list(texts)
    pairs: list[str] | None = [] if tcfg.pair_column else None
    for f in files:
        t, p, it = texts_from_file(Path(f), cfg)
        if pairs is not None:
            if p is None:
                raise DataError(f"{f}: {needs_pairs}")
            pairs += p
        all_texts += t
        items += it
    if not all_texts:
        raise DataError("no text to classify: give --text TEXT or text files")
    tokens, _ = tokenize(load_tokenizer(str(tcfg.tokenizer)), all_texts, pairs, tcfg.max_length, max_windows=tcfg.max_windows)
    shown: list[str | None] = list(all_texts)
    return items, shown, tokens


def labelled(spec: str) -> bool:
    """Whether ``spec`` names labelled texts (``tunelab extract`` reads their classes too): a built-in
    set or a table (a table without the label column is read as unlabelled texts)."""
    return spec in TEXT_DATASETS or Path(spec).suffix.lower() in _TABLES
