"""The trainer for text runs: the same loop as for images (:class:`tunelab.train.Trainer`), with the
freeze-boundary cache of :mod:`tunelab.text.cache` in place of the image one."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import torch

from tunelab.cache import STORE_DTYPES
from tunelab.text.cache import CachedStates, TextBoundary, cache_key, fill_prefix, find_text_boundary, run_tail
from tunelab.text.data import TextSet, Tokens
from tunelab.text.model import TextModel
from tunelab.train import StagePlan, Trainer

log = logging.getLogger("tunelab")

class TextTrainer(Trainer):
    BUCKET = 16  # batches per window sorted by length

    @property
    def text_model(self) -> TextModel:
        return cast(TextModel, self.model)

    @property
    def train_tokens(self) -> Tokens:
        return cast(TextSet, self.splits.train).tokens

    def epoch_order(self, si: int, epoch: int) -> torch.Tensor:
        """The shuffled order, then sorted by text length within windows of BUCKET batches, and the
        full batches shuffled again: batches of similar lengths pad little (Hugging Face's
        group_by_length). Still a function of (seed, stage, epoch) only, so a resume repeats it."""
        order, bs = super().epoch_order(si, epoch), self.cfg.data.batch_size
        lengths = self.train_tokens.text_lengths
        windows = [w[torch.argsort(lengths[w], stable=True)] for w in order.split(bs * self.BUCKET)]
        batches = list(torch.cat(windows).split(bs))
        full, rest = [b for b in batches if len(b) == bs], [b for b in batches if len(b) < bs]
        g = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + si * 1009 + epoch + 1)
        return torch.cat([full[i] for i in torch.randperm(len(full), generator=g)] + rest)

    def _images(self, idx: torch.Tensor) -> Any:
        """A training batch's tokens; a long text brings ``train_windows`` of its windows, drawn
        from a generator seeded by the batch (so that a resumed run draws the same)."""
        tokens = self.train_tokens[idx]
        keep = self.cfg.data.text.train_windows if self.cfg.data.text is not None else None
        if keep is not None and tokens.starts is not None:
            g = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + int((idx * (idx + 7)).sum()))
            tokens = tokens.sample_windows(keep, g)
        return tokens.to(self.device, non_blocking=True)

    def build_plan(self, si: int) -> StagePlan | None:
        """Cache what the frozen part of the encoder computes for this stage, when some of it is frozen."""
        if not self.cfg.cache.enabled:
            return None
        boundary = find_text_boundary(self.text_model)
        if boundary is None:
            log.info("cache: off in this stage (the embeddings train, or the encoder cannot be split)")
            return None
        t0 = time.perf_counter()
        self.store.memory.clear()  # one stage's features at a time in memory
        train, hit = self.extract_text(boundary, self.train_tokens)
        val = None
        if self.splits.val is not None:
            val_tokens = cast(TextSet, self.splits.val).tokens
            val = CachedStates(self.extract_text(boundary, val_tokens)[0], val_tokens)
        dtype, mb = str(train.dtype).replace("torch.", ""), train.numel() * train.element_size() / 2**20
        msg = (f"cache: {boundary.describe(self.text_model.backbone.num_layers)}; {len(self.splits.train)} training texts, "
               f"{dtype}, {mb:.1f} MB ({'reused' if hit else 'computed'} in {time.perf_counter() - t0:.1f} s)")
        log.info(msg)
        self.record_stage(si, cache=msg)
        return StagePlan(boundary, [CachedStates(train, self.train_tokens)], val)  # type: ignore[arg-type]

    def extract_text(self, boundary: TextBoundary, tokens: Tokens) -> tuple[torch.Tensor, bool]:
        """Prefix outputs of every text, [N, H] or [N, L, H]; from the store when the key matches."""
        model, dtype = self.text_model, STORE_DTYPES[self.cfg.cache.dtype]
        key = cache_key(model, boundary, tokens, dtype, self.cfg.run.seed)
        width = tokens.ids.shape[1]
        h = model.backbone.num_features
        shape = (len(tokens), h) if boundary.pooled else (len(tokens.lengths), width, h)  # rows: windows
        was = model.training
        model.eval()
        try:
            def fill(out: torch.Tensor) -> None:
                with torch.inference_mode():
                    fill_prefix(model, boundary, tokens, out, self.cfg.data.eval_batch_size, self.device)

            with self.dist.main_first():  # rank 0 computes it; the other ranks then find it
                return self.store.get(key, shape, dtype, fill)
        finally:
            model.train(was)

    def forward_cached(self, batch: Any) -> torch.Tensor:
        assert self.plan is not None
        h, tokens = batch
        h = h.to(self.device, non_blocking=True).float()
        if self.plan.boundary.pooled:
            self.ctx["pooled"] = h
        return run_tail(self.text_model, self.plan.boundary, h, tokens.to(self.device))  # type: ignore[arg-type]
