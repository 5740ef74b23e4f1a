"""The text task's side of the training loop: batches of similar lengths, a few random windows of
each long text per step, and the freeze-boundary cache of :mod:`tunelab.text.cache`."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

import torch

from tunelab.engine.loop import LoopContext, StagePlan, ViewBatches
from tunelab.engine.store import STORE_DTYPES, tensor_digest
from tunelab.text.cache import (
    CachedStates,
    TextBoundary,
    cache_key,
    fill_prefix,
    find_text_boundary,
    run_tail,
    uncached_reason,
)
from tunelab.text.config import text_options
from tunelab.text.data import TextSet, Tokens
from tunelab.text.model import TextModel

log = logging.getLogger("tunelab")

BUCKET = 16  # batches per window sorted by length


class TextLoop:
    """One run's text side of the loop; ``run`` gives the config, model, data, store and ranks."""

    def __init__(self, run: LoopContext) -> None:
        self.t = run
        self.model = cast(TextModel, run.model)

    def epoch_order(self, order: torch.Tensor, si: int, epoch: int) -> torch.Tensor:
        """Sorted by text length within windows of BUCKET batches, then the full batches shuffled
        again: batches of similar lengths pad little (Hugging Face's group_by_length). Still a
        function of (seed, stage, epoch) only, so a resume repeats it."""
        run = self.t
        bs = run.cfg.data.batch_size
        lengths = cast(TextSet, run.splits.train).tokens.text_lengths
        windows = [w[torch.argsort(lengths[w], stable=True)] for w in order.split(bs * BUCKET)]
        batches = list(torch.cat(windows).split(bs))
        full, rest = [b for b in batches if len(b) == bs], [b for b in batches if len(b) < bs]
        g = torch.Generator().manual_seed(run.cfg.run.seed * 1_000_003 + si * 1009 + epoch + 1)
        return torch.cat([full[i] for i in torch.randperm(len(full), generator=g)] + rest)

    def train_inputs(self, idx: torch.Tensor) -> Tokens:
        """A training batch's tokens; a long text brings ``train_windows`` of its windows, drawn
        from a generator seeded by the batch (so that a resumed run draws the same)."""
        run = self.t
        cfg = run.cfg
        tokens = cast(TextSet, run.splits.train).tokens[idx]
        keep = text_options(cfg).train_windows
        if keep is not None and tokens.starts is not None:
            g = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + int((idx * (idx + 7)).sum()))
            tokens = tokens.sample_windows(keep, g)
        return tokens.to(run.device, non_blocking=True)

    def mix(self, x: Tokens, y: torch.Tensor) -> tuple[Tokens, torch.Tensor]:
        return x, y  # texts are not mixed (the config refuses regularization.mixup for them)

    def plan(self, si: int) -> StagePlan | None:
        """Cache what the frozen part of the encoder computes for this stage, when some of it is frozen."""
        t = self.t
        if not t.cfg.cache.enabled:
            return None
        boundary = find_text_boundary(self.model)
        if boundary is None:
            log.info("cache: off in this stage (%s)", uncached_reason(self.model))
            return None
        t0 = time.perf_counter()
        t.store.memory.clear()  # one stage's features at a time in memory
        train_tokens = cast(TextSet, t.splits.train).tokens
        train, hit = self.extract(boundary, train_tokens)
        val = None
        if t.splits.val is not None:
            val_tokens = cast(TextSet, t.splits.val).tokens
            val = CachedStates(self.extract(boundary, val_tokens)[0], val_tokens)
        dtype, mb = str(train.dtype).replace("torch.", ""), train.numel() * train.element_size() / 2**20
        msg = (
            f"cache: {boundary.describe(self.model.backbone.num_layers)}; {len(t.splits.train)} training texts, "
            f"{dtype}, {mb:.1f} MB ({'reused' if hit else 'computed'} in {time.perf_counter() - t0:.1f} s)"
        )
        log.info(msg)
        t.record_stage(si, cache=msg)
        return StagePlan(boundary, [CachedStates(train, train_tokens)], val)

    def extract(self, boundary: TextBoundary, tokens: Tokens) -> tuple[torch.Tensor, bool]:
        """Prefix outputs of every text, [N, H] or [N, L, H]; from the store when the key matches."""
        t, model, dtype = self.t, self.model, STORE_DTYPES[self.t.cfg.cache.dtype]
        key = cache_key(model, boundary, tokens, dtype, t.cfg.run.seed)
        width = tokens.ids.shape[1]
        h = model.backbone.num_features
        shape = (len(tokens), h) if boundary.pooled else (len(tokens.lengths), width, h)  # rows: windows
        was = model.training
        model.eval()
        try:

            def fill(out: torch.Tensor) -> None:
                with torch.inference_mode():
                    fill_prefix(model, boundary, tokens, out, t.cfg.data.eval_batch_size, t.device)

            with t.dist.main_first():  # rank 0 computes it; the other ranks then find it
                return t.store.get(key, shape, dtype, fill)
        finally:
            model.train(was)

    def forward(self, plan: StagePlan, batch: Any) -> torch.Tensor:
        h, tokens = batch
        h = h.to(self.t.device, non_blocking=True).float()
        if plan.boundary.pooled:
            self.t.step_values["pooled"] = h
        return run_tail(self.model, plan.boundary, h, tokens.to(self.t.device))

    def teacher_inputs(self, si: int, plan: StagePlan | None) -> ViewBatches | None:
        """A cached stage reads every window of each text: fixed inputs, one view. An uncached one
        draws ``train_windows`` of a long text at random each step: None."""
        if plan is None:
            return None
        tokens = cast(TextSet, self.t.splits.train).tokens
        h = hashlib.sha256()
        tensor_digest(h, tokens.tensors())
        return ViewBatches(h.hexdigest()[:24], 1, len(tokens), lambda: self._batches(tokens))

    def _batches(self, tokens: Tokens) -> Iterator[tuple[int, int, Tokens]]:
        bs = self.t.cfg.data.eval_batch_size
        for i in range(0, len(tokens), bs):
            yield 0, i, tokens[i : i + bs].to(self.t.device)
