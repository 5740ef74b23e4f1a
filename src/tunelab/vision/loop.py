"""The image task's side of the training loop: augmented (and mixed) training batches, and the freeze-boundary
cache of :mod:`tunelab.vision.cache` (the frozen prefix's outputs computed once a stage, K augmented
views with ``cache.views``, the next stage's boundary filled by the same pass)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import cast

import torch

from tunelab.engine.device import to_memory_format
from tunelab.engine.loop import LoopContext, StagePlan, ViewBatches
from tunelab.engine.store import STORE_DTYPES, bf16_supported, tensor_digest
from tunelab.freezing import select
from tunelab.vision.augment import MixTargets, build_augment
from tunelab.vision.cache import Boundary, cache_keys, find_boundary, run_prefixes, run_tail, split_backbone, why_no_boundary
from tunelab.vision.config import image_data
from tunelab.vision.model import TuneModel

log = logging.getLogger("tunelab")


class ImageLoop:
    """One run's image side of the loop: augmentation and Mixup/CutMix of training batches, and the
    freeze-boundary cache of its stages; ``run`` gives the config, model, data, store and ranks."""

    def __init__(self, run: LoopContext) -> None:
        self.t = run
        cfg = run.cfg
        reg = cfg.regularization
        self.model = cast(TuneModel, run.model)
        self.augment = build_augment(reg.augment, image_data(cfg).image_size)
        self.mixer = MixTargets(reg.mixup, self.model.head.fc.out_features, reg.label_smoothing) if reg.mixup else None
        self.seq, self.split_note = split_backbone(self.model.backbone) if cfg.cache.enabled else (None, "")
        self.next_keys: set[str] = set()  # cache entries the next stage got from this stage's pass

    def epoch_order(self, order: torch.Tensor, si: int, epoch: int) -> torch.Tensor:
        return order

    def train_inputs(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.t.splits.train.inputs[idx]
        if self.augment is not None:
            x = self.augment(x)
        return to_memory_format(x.to(self.t.device, non_blocking=True))

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixer is None:
            return x, y
        mixed, soft = self.mixer(x, y)
        return to_memory_format(mixed), soft

    def plan(self, si: int) -> StagePlan | None:
        """Cache the frozen prefix's outputs for this stage, when there is a frozen prefix to cache.
        The same pass also fills the next stage's cache when that stage's frozen prefix is frozen
        here too (head first, then the top blocks: one extraction for both stages)."""
        t, c = self.t, self.t.cfg.cache
        t.store.keep_only(self.next_keys)  # drop the previous stage's features first
        self.next_keys = set()
        boundary = find_boundary(self.model, self.seq) if c.enabled else None
        if boundary is None:
            if c.enabled:
                log.info("cache: off in this stage (%s)", why_no_boundary(self.model, self.seq, self.split_note))
            return None
        if self.mixer is not None:
            log.info("cache: off in this stage (mixup mixes whole images)")
            return None
        if self.augment is not None and c.augment == "full_network":
            log.info("cache: off in this stage (cache.augment: full_network and the stage augments)")
            return None
        views = c.views if self.augment is not None else 1
        t0 = time.perf_counter()
        ahead = self.next_boundary(si, boundary)
        bounds = [boundary] + ([ahead] if ahead is not None else [])
        trains, hit = self.extract(bounds, t.splits.train.images, views, self.augment)
        vals = self.extract(bounds, t.splits.val.images, 1, None)[0] if t.splits.val is not None else None
        train = trains[0]
        dtype, mb = str(train.dtype).replace("torch.", ""), train.numel() * train.element_size() / 2**20
        msg = (
            f"cache: {boundary.describe(self.seq or [])}; {views} view(s) of {len(t.splits.train)} training images, "
            f"{dtype}, {mb:.1f} MB ({'reused' if hit else 'computed'} in {time.perf_counter() - t0:.1f} s)"
        )
        if ahead is not None and not hit:
            msg += (
                f"; the same pass cached stage {si + 2}'s boundary ({ahead.describe(self.seq or [])}), "
                f"+{trains[1].numel() * trains[1].element_size() / 2**20:.1f} MB"
            )
        log.info(msg)
        t.record_stage(si, cache=msg)
        return StagePlan(boundary, train, vals[0][0] if vals is not None else None)

    def next_boundary(self, si: int, boundary: Boundary) -> Boundary | None:
        """The next stage's boundary when its frozen prefix is frozen in this stage too (so this
        stage leaves it unchanged and one pass can compute both), else None."""
        stages = self.t.cfg.stages
        if si + 1 >= len(stages) or self.seq is None:
            return None
        nxt = find_boundary(self.model, self.seq, select(self.model, stages[si + 1].train, where=f"stages.{si + 1}.train"))
        if nxt is None or nxt == boundary:
            return None
        limit = len(self.seq) if boundary.pooled else boundary.start
        deepest = len(self.seq) if nxt.pooled else nxt.start
        return nxt if deepest <= limit else None

    def extract(
        self, boundaries: list[Boundary], images: torch.Tensor, views: int, augment: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> tuple[list[torch.Tensor], bool]:
        """[views, N, ...] prefix outputs of ``images`` at each boundary (one pass for all), and
        whether the first was already cached. With several views, view 0 is the image as it is (what
        the model sees at test time) and view v > 0 an augmented pass with its own fixed seed."""
        t, c = self.t, self.t.cfg.cache
        dtype = STORE_DTYPES[c.dtype]
        aug_name = repr(t.cfg.regularization.augment) if augment is not None else "none"
        use_bf16 = c.autocast == "auto" and bf16_supported(t.device)
        keys = cache_keys(self.model, self.seq, boundaries, images, aug_name, views, dtype, t.cfg.run.seed, use_bf16)
        self.next_keys.update(keys[1:])
        found = [t.store.lookup(k, dtype) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if t.dist.enabled:  # rank 0 decides: a job sharing cache.folder may commit an entry meanwhile
            missing = t.dist.broadcast(missing)
            found = [
                t.store.lookup(k, dtype) if f is None and i not in missing else f for i, (k, f) in enumerate(zip(keys, found))
            ]
        if not missing:
            return [f for f in found if f is not None], True
        was = self.model.training
        self.model.eval()
        try:
            for i, out in zip(
                missing,
                self._fill([boundaries[i] for i in missing], [keys[i] for i in missing], images, views, augment, dtype, use_bf16),
            ):
                found[i] = out
        finally:
            self.model.train(was)
        return [f for f in found if f is not None], 0 not in missing

    def _fill(
        self,
        todo: list[Boundary],
        keys: list[str],
        images: torch.Tensor,
        views: int,
        augment: Callable[[torch.Tensor], torch.Tensor] | None,
        dtype: torch.dtype,
        use_bf16: bool,
    ) -> list[torch.Tensor]:
        """Compute the entries ``keys`` (boundaries ``todo``) into the store: every rank its share of
        whole batches into the file rank 0 created, then rank 0 commits and every rank maps it."""
        t, dist, bs = self.t, self.t.dist, self.t.cfg.data.eval_batch_size
        rows = dist.shard(len(images), bs)  # whole batches per rank: the same batches as one process
        with torch.inference_mode():
            probe = run_prefixes(self.model, self.seq, todo, to_memory_format(images[:1].to(t.device)))
        shapes = [(views, len(images), *h.shape[1:]) for h in probe]
        if dist.main:
            outs = [t.store.create(k, shape, dtype, shared=dist.enabled) for k, shape in zip(keys, shapes)]
        dist.barrier()
        if not dist.main:  # the other ranks write their rows into the file rank 0 created
            outs = [t.store.open_partial(k, dtype) for k in keys]
        with torch.inference_mode(), torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for v, i, x in self.views(images, views, augment, rows.start, rows.stop):
                hs = run_prefixes(self.model, self.seq, todo, x)
                for out, h in zip(outs, hs):
                    out[v, i : i + len(x)] = h.to(dtype).cpu()
        if not dist.main:
            for k in keys:
                t.store.flush(k)
        dist.barrier()
        if dist.main:
            for k in keys:
                t.store.commit(k)
        dist.barrier()
        if dist.enabled:  # every rank maps the finished file (one copy in the page cache)
            outs = [self._mapped(k, dtype) for k in keys]
        return outs

    def views(
        self, images: torch.Tensor, views: int, augment: Callable[[torch.Tensor], torch.Tensor] | None, start: int, stop: int
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(view, first row, images on the device) in batches over rows start:stop of every view.
        A seed per view and batch: the same views whoever asks (the cache, a teacher) and however
        the rows are shared out between ranks."""
        bs = self.t.cfg.data.eval_batch_size
        with torch.random.fork_rng(devices=[]):
            for v in range(views):
                for i in range(start, stop, bs):
                    torch.manual_seed(self.t.cfg.run.seed * 7919 + v * 1_000_003 + i)
                    x = images[i : min(i + bs, stop)]
                    if augment is not None and (v > 0 or views == 1):  # view 0 is the clean image
                        x = augment(x)
                    yield v, i, to_memory_format(x.to(self.t.device))

    def teacher_inputs(self, si: int, plan: StagePlan | None) -> ViewBatches | None:
        """The stage's training images as fixed views: the views its cache was made from (made again
        batch by batch, identical), or the clean images of a stage that neither augments nor
        mixes; None when each batch is augmented or mixed afresh."""
        if plan is None and (self.augment is not None or self.mixer is not None):
            return None
        views, augment = (len(plan.train), self.augment) if plan is not None else (1, None)
        images = self.t.splits.train.images
        h = hashlib.sha256()
        tensor_digest(h, [images])
        aug_name = repr(self.t.cfg.regularization.augment) if augment is not None else "none"
        h.update(repr((aug_name, views, self.t.cfg.run.seed, self.t.cfg.data.eval_batch_size)).encode())
        return ViewBatches(h.hexdigest()[:24], views, len(images), lambda: self.views(images, views, augment, 0, len(images)))

    def _mapped(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        out = self.t.store.lookup(key, dtype)
        assert out is not None, f"cache entry {key} was committed by rank 0 but is missing"
        return out

    def forward(self, plan: StagePlan, h: torch.Tensor) -> torch.Tensor:
        h = to_memory_format(h.to(self.t.device, non_blocking=True).float())
        if plan.boundary.pooled:
            self.t.step_values["pooled"] = h
        return run_tail(self.model, self.seq, plan.boundary, h)
