"""Labelled text data: CSV / JSON lines sources, stratified splits, tokenize-once, dynamic padding.

    splits = load_text_data(TextDataConfig(train="reviews.csv", text={"column": "review", "label_column": "stars"}))
    splits.train.inputs          # Tokens: ids [N, L] padded to the longest text of the set
    splits.train.inputs[idx]     # a batch, padded only to its own longest text

Every text of a set is tokenized once (with a fast tokenizer, all in one call) and the ids are
kept on disk under ``data.text.token_cache``, keyed by the tokenizer, max_length and the texts, so
a second run on the same data does not tokenize again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.engine.data import Splits
from tunelab.objectives import Objective, data_objective
from tunelab.splitting import per_class, split_indices
from tunelab.text._checks import drop_duplicates, drop_overlap
from tunelab.text._encoders import load_tokenizer
from tunelab.text._sources import BUILTIN_TEXT, TextSource, open_text_source, read_texts, rotten_tomatoes
from tunelab.text.config import TextDataConfig, TextOptions

__all__ = [
    "TextSet",
    "TextSource",
    "Tokens",
    "load_text_data",
    "load_text_eval_set",
    "open_text_source",
    "read_texts",
    "rotten_tomatoes",
    "text_classes",
    "tokenize",
]

log = logging.getLogger("tunelab")


@dataclass
class Tokens:
    """Token ids of several texts, right-padded to the longest. Selecting texts (a slice or an index
    tensor) pads only to the longest selected one: dynamic padding per batch.

    A text longer than ``max_length`` may be read as several overlapping windows (``starts``: the
    first row of each text's windows, [N + 1]; None: one row per text). Rows are windows, the length
    and the selections are texts, and the backbone averages a text's window features."""

    ids: torch.Tensor  # int64 [rows, L]
    lengths: torch.Tensor  # int64 [rows], tokens per row including special tokens
    type_ids: torch.Tensor | None = None  # int64 [rows, L] segment ids of text pairs
    starts: torch.Tensor | None = None  # int64 [N + 1]: text i is rows starts[i]:starts[i + 1]

    def __len__(self) -> int:
        return len(self.lengths) if self.starts is None else len(self.starts) - 1

    def take(self, idx: slice | torch.Tensor) -> tuple[Tokens, slice | torch.Tensor]:
        """The texts ``idx`` (padded to their longest row) and the rows they came from."""
        if self.starts is None:
            return self._from_rows(idx, None), idx
        rows, starts = self._rows_and_starts(idx)
        return self._from_rows(rows, starts), rows

    def __getitem__(self, idx: slice | torch.Tensor) -> Tokens:
        return self.take(idx)[0]

    def _rows_and_starts(self, idx: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.starts is not None
        doc = torch.arange(len(self))[idx] if isinstance(idx, slice) else torch.as_tensor(idx).flatten()
        counts = self.starts[doc + 1] - self.starts[doc]
        first = torch.repeat_interleave(self.starts[doc], counts)
        ends = torch.cumsum(counts, 0)
        offset = torch.arange(int(ends[-1]) if len(ends) else 0) - torch.repeat_interleave(ends - counts, counts)
        return first + offset, torch.cat([torch.zeros(1, dtype=torch.int64), ends])

    def _from_rows(self, rows: slice | torch.Tensor, starts: torch.Tensor | None) -> Tokens:
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(lengths) else 0
        return Tokens(
            self.ids[rows][:, :width], lengths, None if self.type_ids is None else self.type_ids[rows][:, :width], starts
        )

    @property
    def counts(self) -> torch.Tensor:
        """Windows per text [N] (all 1 without windows)."""
        starts = self.row_starts()
        return starts[1:] - starts[:-1]

    @property
    def mask(self) -> torch.Tensor:
        """Attention mask [rows, L]: 1 on tokens, 0 on padding."""
        pos = torch.arange(self.ids.shape[1], device=self.ids.device)
        return (pos[None, :] < self.lengths[:, None].to(self.ids.device)).long()

    @property
    def text_lengths(self) -> torch.Tensor:
        """Tokens per text [N], all its windows together: the cost of a text."""
        if self.starts is None:
            return self.lengths
        owner = torch.repeat_interleave(torch.arange(len(self)), self.counts)
        return torch.zeros(len(self), dtype=torch.int64).index_add_(0, owner, self.lengths.cpu())

    def pool_windows(self, feats: torch.Tensor) -> torch.Tensor:
        """Row features [rows, H] -> text features [N, H], the mean over each text's windows."""
        if self.starts is None:
            return feats
        counts = self.counts.to(feats.device)
        owner = torch.repeat_interleave(torch.arange(len(counts), device=feats.device), counts)
        total = torch.zeros(len(counts), feats.shape[1], dtype=feats.dtype, device=feats.device).index_add(0, owner, feats)
        return total / counts.clamp_min(1).unsqueeze(1).to(feats.dtype)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Tokens:
        return Tokens(
            self.ids.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            None if self.type_ids is None else self.type_ids.to(device, non_blocking=non_blocking),
            self.starts,
        )  # offsets stay on the CPU: they index, they are not computed on

    def eval_order(self) -> torch.Tensor:
        """Shortest texts first: inference batches of similar lengths pad little."""
        return torch.argsort(self.text_lengths, stable=True)

    def row_starts(self) -> torch.Tensor:
        """``starts``, or one row per text when there are no windows."""
        return self.starts if self.starts is not None else torch.arange(len(self.lengths) + 1)

    def sample_windows(self, keep: int, generator: torch.Generator) -> Tokens:
        """At most ``keep`` windows of each text, chosen at random (in text order): a training step
        on long texts costs ``keep`` windows a text, and over the epochs every window is seen."""
        if self.starts is None:
            return self
        counts = self.counts
        if int(counts.max()) <= keep:
            return self
        rows = torch.cat(
            [
                first + (torch.arange(n) if n <= keep else torch.randperm(n, generator=generator)[:keep].sort().values)
                for first, n in zip(self.starts[:-1].tolist(), counts.tolist())
            ]
        )
        return self._from_rows(rows, torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts.clamp_max(keep), 0)]))

    @staticmethod
    def concat(a: Tokens, b: Tokens) -> Tokens:
        """The texts of ``a`` then those of ``b``, padded to the wider."""
        width = max(a.ids.shape[1], b.ids.shape[1])

        def cat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            pad = torch.nn.functional.pad
            return torch.cat([pad(x, (0, width - x.shape[1])), pad(y, (0, width - y.shape[1]))])

        type_ids = None if a.type_ids is None or b.type_ids is None else cat(a.type_ids, b.type_ids)
        starts = None
        if a.starts is not None or b.starts is not None:
            sa, sb = a.row_starts(), b.row_starts()
            starts = torch.cat([sa, sb[1:] + sa[-1]])
        return Tokens(cat(a.ids, b.ids), torch.cat([a.lengths, b.lengths]), type_ids, starts)

    def tensors(self) -> list[torch.Tensor]:
        return (
            [self.ids, self.lengths]
            + ([self.type_ids] if self.type_ids is not None else [])
            + ([self.starts] if self.starts is not None else [])
        )


@dataclass
class TextSet:
    """A labelled split: token ids for the model, the texts themselves for reports and errors."""

    tokens: Tokens
    labels: torch.Tensor  # int64 [N]
    texts: list[str]
    pairs: list[str] | None
    items: list[str]  # "file:line" of each text

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> Tokens:
        """What the model takes (the trainer's name for images and tokens alike)."""
        return self.tokens

    def concat(self, other: TextSet) -> TextSet:
        pairs = None if self.pairs is None or other.pairs is None else self.pairs + other.pairs
        return TextSet(
            Tokens.concat(self.tokens, other.tokens),
            torch.cat([self.labels, other.labels]),
            self.texts + other.texts,
            pairs,
            self.items + other.items,
        )


# ---------------------------------------------------------------------------------------------
# tokenization, once


def _tokenizer_digest(tokenizer: Any) -> str:
    """What decides the ids: vocabulary, normalizer, pre-tokenizer, special tokens; not the
    truncation and padding state, which every call sets anew."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        ident = json.dumps(spec, sort_keys=True)
    else:
        ident = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256((type(tokenizer).__name__ + ident).encode()).hexdigest()


def _texts_digest(texts: list[str], pairs: list[str] | None) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode() + b"\x00")
    if pairs is not None:
        h.update(b"\x01pairs")
        for t in pairs:
            h.update(t.encode() + b"\x00")
    return h.hexdigest()


def tokenize(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    cache_dir: str | Path | None = None,
    max_windows: int = 1,
) -> tuple[Tokens, torch.Tensor]:
    """(Tokens, untruncated length of every text), read from the disk cache when the same tokenizer,
    max_length, windows and texts were tokenized before. A single text longer than ``max_length``
    becomes up to ``max_windows`` windows (half-overlapping, spread over the whole text); text pairs
    and ``max_windows=1`` are truncated to ``max_length``."""
    windows = max_windows if pairs is None else 1
    path = None
    if cache_dir is not None:
        spec = f"{_tokenizer_digest(tokenizer)}|{max_length}|{_texts_digest(texts, pairs)}"
        key = hashlib.sha256((spec + (f"|windows{windows}" if windows > 1 else "")).encode())
        path = Path(cache_dir).expanduser() / f"{key.hexdigest()[:24]}.pt"
        if path.is_file():
            try:
                d = torch.load(path, weights_only=True)
                return Tokens(d["ids"], d["lengths"], d.get("type_ids"), d.get("starts")), d["full_lengths"]
            except Exception:  # a torn or foreign file: tokenize again and overwrite it
                log.warning("token cache %s is unreadable; tokenizing again", path)
    tokens, full = (
        _tokenize(tokenizer, texts, pairs, max_length)
        if windows == 1
        else _tokenize_windows(tokenizer, texts, max_length, windows)
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(tokens)}")
        d = {"ids": tokens.ids, "lengths": tokens.lengths, "full_lengths": full}
        for k in ("type_ids", "starts"):
            if getattr(tokens, k) is not None:
                d[k] = getattr(tokens, k)
        torch.save(d, tmp)
        tmp.replace(path)  # atomic: a reader never sees half a file
    return tokens, full


def _padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    ids = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad, dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return ids, lengths


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _tokenize(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[Tokens, torch.Tensor]:
    args: tuple[Any, ...] = (texts,) if pairs is None else (texts, pairs)
    full = tokenizer(*args, truncation=False, return_attention_mask=False, return_token_type_ids=False, verbose=False)[
        "input_ids"
    ]
    enc = tokenizer(
        *args, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=pairs is not None
    )
    ids, lengths = _padded(enc["input_ids"], _pad_id(tokenizer))
    type_ids = None
    if pairs is not None:
        type_ids, _ = _padded(enc["token_type_ids"], 0)
    return Tokens(ids, lengths, type_ids), torch.tensor([len(s) for s in full], dtype=torch.int64)


def spread(count: int, keep: int) -> list[int]:
    """``keep`` of ``count`` windows, evenly spread from the first to the last (all when count <= keep):
    every part of a long text has its say, and the cost stays bounded."""
    if count <= keep:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, keep)})


def _tokenize_windows(tokenizer: Any, texts: list[str], max_length: int, max_windows: int) -> tuple[Tokens, torch.Tensor]:
    """The tokenizer's own overflowing windows (half of a window overlaps the next), at most
    ``max_windows`` a text. One tokenizer pass: a text's full length follows from its windows, each
    of which starts ``body - stride`` tokens after the one before."""
    special = tokenizer.num_special_tokens_to_add(pair=False)
    body = max_length - special
    stride = body // 2
    enc = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    by_text: list[list[list[int]]] = [[] for _ in texts]
    for ids, i in zip(enc["input_ids"], enc["overflow_to_sample_mapping"]):
        by_text[i].append(ids)
    seqs: list[list[int]] = []
    starts = [0]
    for windows in by_text:
        seqs += [windows[k] for k in spread(len(windows), max_windows)]
        starts.append(len(seqs))
    ids_t, lengths = _padded(seqs, _pad_id(tokenizer))
    full = torch.tensor([(len(w) - 1) * (body - stride) + len(w[-1]) for w in by_text], dtype=torch.int64)
    # no text needed a second window: exactly what truncation gives, without the window bookkeeping
    offsets = None if len(seqs) == len(texts) else torch.tensor(starts, dtype=torch.int64)
    return Tokens(ids_t, lengths, None, offsets), full


def length_summary(name: str, full: torch.Tensor, max_length: int, tokens: Tokens | None = None) -> str:
    """'train: 1000 texts, tokens median 31, 95th percentile 61, max 138; 3 (0.3%) truncated to 128'
    (or '... 3 (0.3%) longer than 128, read as 2-8 windows')."""
    f = full.double()
    long = int((full > max_length).sum())
    head = (
        f"{name}: {len(full)} texts, tokens median {f.median():.0f}, 95th percentile {f.quantile(0.95):.0f}, "
        f"max {int(full.max())}; {long} ({100 * long / max(1, len(full)):.1f}%) "
    )
    if tokens is None or tokens.starts is None or not long:
        return head + f"truncated to {max_length}"
    counts = tokens.starts[1:] - tokens.starts[:-1]
    many = counts[counts > 1]
    return head + f"longer than {max_length}, read as {int(many.min())}-{int(many.max())} windows of {max_length} tokens"


# ---------------------------------------------------------------------------------------------
# splits


def _make_set(src: TextSource, idx: np.ndarray, labels: np.ndarray, tokenizer: Any, cfg: TextOptions, name: str) -> TextSet:
    texts = [src.texts[i] for i in idx]
    pairs = [src.pairs[i] for i in idx] if src.pairs is not None else None
    tokens, full = tokenize(tokenizer, texts, pairs, cfg.max_length, cfg.token_cache, cfg.max_windows)
    log.info("%s", length_summary(name, full, cfg.max_length, tokens))
    return TextSet(tokens, torch.from_numpy(labels[idx]), texts, pairs, [src.items[i] for i in idx])


def _remap(src: TextSource, classes: list[str], field: str, objective: Objective) -> np.ndarray:
    return objective.remap(src.labels, src.classes, classes, f"data.{field} ({src.name})")


def _tokenizer_for(cfg: TextDataConfig) -> Any:
    assert cfg.text.tokenizer is not None  # the text defaults set it to the backbone's
    return load_tokenizer(cfg.text.tokenizer)


def load_text_data(cfg: TextDataConfig, tokenizer: Any | None = None) -> Splits[TextSet]:
    """Open the text sources named in ``cfg``, split and sub-sample like image data, tokenize what is used."""
    tcfg = cfg.text
    tokenizer = tokenizer if tokenizer is not None else _tokenizer_for(cfg)
    objective = data_objective(cfg)
    src = open_text_source(cfg.train, tcfg, "train", field="train", objective=objective)
    if cfg.train not in BUILTIN_TEXT:  # a user's file (the built-in set's splits stay as they were)
        src = drop_duplicates(src, "train")
    classes, labels = list(src.classes), src.labels
    objective.check(labels, classes, f"{src.name}, column '{tcfg.label_column}'")
    separate_test = cfg.test not in (None, "auto")
    test_src = None
    if separate_test and cfg.evaluate_test:  # evaluate_test: false holds it out but never reads it
        test_src = open_text_source(str(cfg.test), tcfg, "test", field="test", objective=objective, names=classes)
        if str(cfg.test) not in BUILTIN_TEXT:
            test_src = drop_overlap(drop_duplicates(test_src, "test"), src)
    train_idx, val_idx, test_idx, rng = split_indices(labels, classes, src.name, cfg, separate_test)

    train = _make_set(src, train_idx, labels, tokenizer, tcfg, "train")
    val = _make_set(src, val_idx, labels, tokenizer, tcfg, "val") if len(val_idx) else None
    test = None
    if test_src is not None:
        t_labels = _remap(test_src, classes, "test", objective)
        t_idx = per_class(np.arange(len(t_labels)), objective.strata(t_labels), cfg.test_samples_per_class, rng)
        test = _make_set(test_src, t_idx, t_labels, tokenizer, tcfg, "test")
    elif test_idx is not None and cfg.evaluate_test:
        test_idx = per_class(test_idx, objective.strata(labels), cfg.test_samples_per_class, rng)
        test = _make_set(src, test_idx, labels, tokenizer, tcfg, "test")
    return Splits(classes, train, val, test)


def load_text_eval_set(spec: str, classes: list[str], cfg: TextDataConfig) -> TextSet:
    """A labelled CSV/JSON lines file (or built-in name) to evaluate a trained text model on."""
    objective = data_objective(cfg)
    src = open_text_source(spec, cfg.text, "train", field="test", objective=objective)
    labels = _remap(src, classes, "test", objective)
    idx = per_class(np.arange(len(labels)), objective.strata(labels), cfg.test_samples_per_class, np.random.default_rng(cfg.seed))
    return _make_set(src, idx, labels, _tokenizer_for(cfg), cfg.text, "eval")


def text_classes(cfg: TextDataConfig) -> list[str]:
    """Class names of the training source, without tokenizing."""
    return list(open_text_source(cfg.train, cfg.text, "train", field="train", objective=data_objective(cfg)).classes)
