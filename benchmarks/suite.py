"""The benchmark suite: every recipe, a full fine-tune, a linear probe, training from scratch and the
scikit-learn baselines, side by side on varied image and text tasks, several seeds each.

    .venv/bin/python benchmarks/suite.py                           # everything (hours on 2 cores)
    .venv/bin/python benchmarks/suite.py --tasks digits-20 --methods default full --seeds 0
    .venv/bin/python benchmarks/suite.py --table                   # only rewrite the table

The data sets are built offline by benchmarks/suite_data.py under ~/.cache/tunelab-suite (never in
the repository, never in the tests' fixtures). For every (task, seed) the training set is a fresh
draw of N examples per class from the task's training pool, written as the CSV a user would give
`tunelab fit`: the run holds its own validation split out of those N, exactly as for a user. Test
sets are the task's own (at most about 1,000 items).

Each run is one `tunelab.fit` in a fresh process with `run.threads: 1`; `--workers` run side by side.
Results are appended to benchmarks/results/suite.jsonl as they finish (an interrupted suite keeps
what it measured and skips it next time); the table of mean +- std goes to benchmarks/results/suite.md.

Methods (`METHODS`): the recipes (`default`, `fast`, `full`: the plain full fine-tune, `probe`: the
head alone on frozen features), `auto` (`regularization: auto`), `scratch` (the default recipe from
random weights), `sklearn` (balanced logistic regression on raw pixels / TF-IDF, C by
cross-validation, fitted on all N examples per class) and `advice` (the default, then the first
recommendation of its diagnosis applied as printed: the check that advice does not lose accuracy).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))


@dataclass(frozen=True)
class Instance:
    """One row of the suite: a task at a number of training examples per class."""

    task: str
    shots: int  # examples per class drawn from the pool (fewer where a class has fewer: imbalance stays)
    image_size: int = 0  # 0: the task's own

    @property
    def name(self) -> str:
        return f"{self.task}-{self.shots}"


# tasks and shot counts: see suite_data.py for what each task is. Shots vary from 5 to 200 per
# class; where a class of the pool has fewer, it keeps what it has (fashion-tops-imbalanced 200/60/20,
# convention-speeches-party 74/39: the imbalance a user would bring).
INSTANCES: list[Instance] = [
    Instance("fashion-mnist", 20),
    Instance("fashion-mnist", 5),
    Instance("fashion-tops-imbalanced", 200),
    Instance("digits-8x8", 20),
    Instance("lfw-face-vs-nonface", 20),
    Instance("glyphs-a-j", 20),
    Instance("emoji-category", 20),
    Instance("textures-grey", 5),
    Instance("photo-crops", 20),
    Instance("old-photo-crops", 20),
    Instance("rt-fresh-rotten", 20),
    Instance("sotu-era", 8),
    Instance("spam-assassin", 32),
    Instance("convention-speeches-party", 100),
    Instance("debates-2016-party", 32),
]

IMAGE_METHODS = [
    "default",
    "fast",
    "full",
    "probe",
    "auto",
    "scratch",
    "sklearn",
    "advice",
    "refit",
    "balanced",
    "noaug",
    "lpconv",
    "s2e20",
    "ld90",
    "lr1e4",
    "lr1e3",
    "lr5e5",
    "lr3e4",
    "lpft20",
    "hs1e20",
    "px64",
    "full_px64",
    "hs1",
    "nohead",
    "dropout",
    "l2sp01",
    "auglight",
    "augmedium",
    "augstrong",
    "full_light",
]
TEXT_METHODS = [
    "default",
    "fast",
    "full",
    "probe",
    "scratch",
    "sklearn",
    "advice",
    "refit",
    "balanced",
    "dropout",
    "t_lr2e5",
    "t_lr1e4",
    "t_ms120",
]

# config overrides of each method (the recipe names are the config's `recipe:`)
METHODS: dict[str, list[str]] = {
    "default": [],
    "fast": ["recipe=fast"],
    "full": ["recipe=full"],
    "probe": ["recipe=probe"],
    "auto": ["regularization.auto=true"],
    "scratch": ["model.pretrained=false"],
    # variants of the default, each changing one thing: candidates for what the default should do
    "refit": ["data.refit=always"],
    "balanced": ["regularization.class_weight=balanced"],
    "noaug": ["regularization.augment=none"],
    # the default's own knobs, screened on the image tasks (benchmarks/results/suite_screen.md)
    "lpconv": ["stages.0.epochs=30", "stages.0.min_steps=150"],  # the head fitted to convergence first
    "s2e20": ["stages.1.epochs=20"],  # more all-layers epochs
    "ld90": ["stages.1.layer_decay=0.9"],  # lower learning rates toward the input
    "lr1e4": ["stages.1.lr=1e-4"],  # a lower all-layers learning rate
    "lr1e3": ["stages.1.lr=1e-3"],  # a higher one
    "lr5e5": ["stages.1.lr=5e-5"],  # lower still
    "hs1": ["stages.0.epochs=1", "stages.0.min_steps=5"],  # a head warm-up of a few steps only
    "nohead": ["stages.0.epochs=0", "stages.0.min_steps=null"],  # no head stage: the default's stage 2 alone
    "px64": ["data.image_size=64"],  # the default at tunelab's default resolution (the suite uses the task's)
    "full_px64": ["recipe=full", "data.image_size=64"],
    "lr3e4": ["stages.1.lr=3e-4"],
    # the full fine-tune's budget after the head stage, and with a head warm-up of a few steps only:
    # what separates the default from `full` on old-photo-crops (results/suite_old_photo.md)
    "lpft20": ["stages.1.epochs=20", "stages.1.lr=3e-4"],
    "hs1e20": ["stages.0.epochs=1", "stages.0.min_steps=5", "stages.1.epochs=20", "stages.1.lr=3e-4"],
    # the text default's all-layers stage (lr 5e-5, at least 60 steps), screened on rt-fresh-rotten
    "t_lr2e5": ["stages.1.lr=2e-5"],
    "t_lr1e4": ["stages.1.lr=1e-4"],
    "t_ms120": ["stages.1.min_steps=120"],  # the all-layers rate whatever the probe says (the default until lr_if_features_fit)
    # the overfitting advice's candidates, on the tasks where the default overfits
    "dropout": ["model.head.dropout=0.5"],
    "l2sp01": ["regularization.penalties=[{type: l2sp, strength: 0.1, layers: all, params: all}]"],
    "auglight": ["regularization.augment=light"],
    # stronger presets, screened on old-photo-crops, whose test crops come from other regions of the photos
    "augmedium": ["regularization.augment=medium"],
    "augstrong": ["regularization.augment=strong"],
    "full_light": ["recipe=full", "regularization.augment=light"],
}


# SetFit's recipe as tunelab stages (benchmarks/results/text_variants.md): a contrastive stage on
# the encoder, then the head on its cached features; t_chr refits that on all examples
_CONTRASTIVE_HEAD = (
    "stages=[{objective: contrastive, train: [all], epochs: 1, lr: 2.0e-5, schedule: cosine, "
    "warmup_epochs: 0.1, min_steps: 50}, {train: [head], epochs: 10, lr: 3.0e-3, schedule: cosine, "
    "min_steps: 50}]"
)
METHODS["t_chr"] = [_CONTRASTIVE_HEAD, "data.refit=always"]
TEXT_METHODS.append("t_chr")

# a refit variant's run also scores its first fit: the method that first fit is
FIRST_FIT_OF = {"refit": "default", "t_chr": "t_ch"}

# not candidates for "best": measured to decide defaults
VARIANTS = {
    "advice",
    "refit",
    "balanced",
    "noaug",
    "lpconv",
    "s2e20",
    "ld90",
    "lr1e4",
    "lr1e3",
    "lr5e5",
    "lr3e4",
    "px64",
    "lpft20",
    "hs1e20",
    "full_px64",
    "hs1",
    "nohead",
    "dropout",
    "l2sp01",
    "auglight",
    "augmedium",
    "augstrong",
    "full_light",
    "t_lr2e5",
    "t_lr1e4",
    "t_ms120",
    "t_ch",
    "t_chr",
}


def task_info(task: str) -> dict[str, Any]:
    """The task's metadata (suite_data's meta.json) with the paths of its train and test files."""
    import suite_data

    folder = suite_data.default_root() / task
    info = json.loads((folder / "meta.json").read_text())
    return {**info, "train": str(folder / "train.csv"), "test": str(folder / "test.csv")}


def draw_train(inst: Instance, seed: int, work: Path) -> Path:
    """``shots`` random examples per class of the task's training pool, as a CSV with absolute paths."""
    info = task_info(inst.task)
    src = Path(info["train"])
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rng = np.random.default_rng(1000 + seed)
    by_class: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_class.setdefault(r["label"], []).append(r)
    keep: list[dict[str, str]] = []
    for label in sorted(by_class):
        items = by_class[label]
        keep += [items[i] for i in rng.permutation(len(items))[: inst.shots]]
    if "path" in fields:
        for r in keep:
            p = Path(r["path"])
            r["path"] = str(p if p.is_absolute() else (src.parent / p).resolve())
    out = work / "data" / f"{inst.name}-seed{seed}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    return out


def _test_csv(info: dict[str, Any]) -> str:
    src = Path(info["test"])
    if info["modality"] == "text":
        return str(src)
    out = Path(tempfile.gettempdir()) / "tunelab-suite-tests" / f"{src.parent.name}-test.csv"
    if not out.is_file():  # absolute paths, so that the copy can live anywhere
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            p = Path(r["path"])
            r["path"] = str(p if p.is_absolute() else (src.parent / p).resolve())
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        tmp.replace(out)
    return str(out)


def base_overrides(inst: Instance, seed: int, train_csv: Path, work: Path, name: str) -> list[str]:
    info = task_info(inst.task)
    ov = [
        f"data.train={train_csv}",
        f"data.test={_test_csv(info)}",
        f"run.dir={work / 'runs'}",
        f"run.name={name}",
        "run.progress=false",
        "run.threads=1",
        f"run.seed={seed}",
        f"data.seed={seed}",
    ]
    if info["modality"] == "text":
        ov += ["data.text={column: text, label_column: label, token_cache: null}"]
        if info.get("max_length"):
            ov.append(f"data.text.max_length={info['max_length']}")
    else:
        ov.append(f"data.image_size={inst.image_size or info['image_size']}")
    return ov


def parse_recommendation(rec: str) -> list[str]:
    """``--set a=b  # why`` (maybe quoted) -> ["a=b"]; an instruction without --set -> []."""
    rec = rec.split("  #")[0].strip()
    if not rec.startswith("--set "):
        return []
    parts = shlex.split(rec)
    return [parts[i + 1] for i, p in enumerate(parts) if p == "--set" and i + 1 < len(parts)]


def run_fit(inst: Instance, method: str, seed: int, work: Path, extra: list[str] | None = None) -> dict[str, Any]:
    import tunelab

    train_csv = draw_train(inst, seed, work)
    name = f"{inst.name}-{method}-{seed}"
    ov = base_overrides(inst, seed, train_csv, work, name) + METHODS.get(method, []) + (extra or [])
    t0 = time.perf_counter()
    run = tunelab.fit(None, overrides=ov)
    m = run.metrics
    diag = m.get("diagnosis", {})
    row = {
        "test_accuracy": m["test"]["accuracy"],
        "test_macro_f1": m["test"]["macro_f1"],
        "val_accuracy": m.get("val", {}).get("accuracy"),
        "n_train": m["n_train"],
        "seconds": time.perf_counter() - t0,
        "verdict": diag.get("verdict"),
        "recommendations": diag.get("recommendations", []),
        "overrides": extra or [],
    }
    if m.get("lexical"):  # the text run's lexical blend: its weight, and the scores at every weight
        row["lexical"] = m["lexical"]
    if m.get("pretrained_fit"):  # the linear probe that chose the all-layers learning rate
        row["pretrained_fit"] = m["pretrained_fit"]
    if "baselines" in m:  # the run's own baselines, fitted on its training split
        row["baselines_val"], row["baselines_test"] = m["baselines"].get("val"), m["baselines"].get("test")
    first = m.get("refit", {}).get("first_fit_test")
    if first is not None:  # a refit run also scored its first fit (the same run without the refit)
        refit_stages = run.dir / "refit" / "stages.json"
        refit_s = (
            sum(v.get("seconds", 0.0) for v in json.loads(refit_stages.read_text()).values()) if refit_stages.is_file() else 0.0
        )
        row["first_fit"] = {
            "test_accuracy": first["accuracy"],
            "test_macro_f1": first["macro_f1"],
            "seconds": row["seconds"] - refit_s,
            "verdict": row["verdict"],
            "recommendations": row["recommendations"],
        }
    shutil.rmtree(run.dir, ignore_errors=True)  # keep the disk small; the row has what the table needs
    return row


def run_sklearn(inst: Instance, seed: int, work: Path) -> dict[str, Any]:
    """Balanced logistic regression (C by CV) on all N examples per class, scored on the test set."""
    from tunelab import baselines
    from tunelab.objectives import data_objective
    from tunelab.text.baselines import TfidfInputs
    from tunelab.text.config import TextDataConfig, TextOptions
    from tunelab.vision.baselines import PixelInputs
    from tunelab.vision.config import ImageDataConfig

    info = task_info(inst.task)
    train_csv = draw_train(inst, seed, work)
    t0 = time.perf_counter()
    text = info["modality"] == "text"
    common: dict[str, Any] = {"train": str(train_csv), "test": _test_csv(info), "val_split": 0.0, "seed": seed}
    if text:
        cfg: Any = TextDataConfig(**common, text=TextOptions(token_cache=None, max_length=8, tokenizer="minilm"))
    else:
        cfg = ImageDataConfig(**common, image_size=inst.image_size or info.get("image_size") or 64)
    raw = TfidfInputs() if text else PixelInputs()
    from tunelab.text.data import load_text_data
    from tunelab.vision.baselines import pixel_features
    from tunelab.vision.data import load_data

    s = load_text_data(cfg) if text else load_data(cfg)
    assert s.test is not None
    if text:
        tx, ex = s.train.texts, s.test.texts  # type: ignore[attr-defined]
    else:
        tx, ex = pixel_features(s.train.images), pixel_features(s.test.images)
    objective = data_objective(cfg)
    scores = baselines.score_baselines(
        tx,
        s.train.labels.numpy(),
        {"test": (ex, s.test.labels.numpy())},
        raw=raw,
        objective=objective,
        names=list(s.classes),
        seed=seed,
        solver={},
    )  # the full L-BFGS budget its rows were measured at
    best = scores["test"][baselines.name_of(objective, raw)]
    return {
        "test_accuracy": best["accuracy"],
        "test_macro_f1": best["macro_f1"],
        "n_train": len(s.train),
        "seconds": time.perf_counter() - t0,
        "majority_accuracy": scores["test"]["majority"]["accuracy"],
    }


def run_job(job: tuple[Instance, str, int, str, list[str]]) -> dict[str, Any]:
    inst, method, seed, work, extra = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    base = {"instance": inst.name, "task": inst.task, "shots": inst.shots, "method": method, "seed": seed}
    try:
        if method == "sklearn":
            row = run_sklearn(inst, seed, Path(work))
        else:
            row = run_fit(inst, "default" if method == "advice" else method, seed, Path(work), extra)
    except Exception as e:  # a failed run is a result too: it is reported, not hidden
        row = {"error": f"{type(e).__name__}: {e}"[:500]}
    return {**base, **row}


def rows_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A result row, and for a refit run also the row of its first fit: the default itself (the
    refit variant is the default plus ``data.refit=always``), with the seconds the first fit took."""
    first = row.pop("first_fit", None)
    if first is None or row["method"] not in FIRST_FIT_OF:
        return [row]
    return [
        row,
        {
            **{k: v for k, v in row.items() if k not in ("baselines_val", "baselines_test")},
            **first,
            "method": FIRST_FIT_OF[row["method"]],
            "overrides": [],
            "note": "the first fit of the refit run",
        },
    ]


def advice_overrides(done: list[dict[str, Any]], inst: Instance, seed: int) -> list[str] | None:
    """The first recommendation of the default run's final diagnosis, as overrides; None when the
    default has not run yet, [] when it recommended nothing."""
    base = [r for r in done if r["instance"] == inst.name and r["method"] == "default" and r["seed"] == seed and "error" not in r]
    if not base:
        return None
    recs = base[-1].get("recommendations") or []
    return parse_recommendation(recs[0]) if recs else []


# --- the table -------------------------------------------------------------------------------------


def _ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} +- {statistics.stdev(xs):.3f}"


def table(done: list[dict[str, Any]]) -> str:
    ok = [r for r in done if "error" not in r]
    insts = list(dict.fromkeys(r["instance"] for r in ok))
    methods = [
        m
        for m in ["default", "fast", "full", "probe", "auto", "scratch", "sklearn", "setfit", *METHODS, "balanced", "noaug"]
        if any(r["method"] == m for r in ok)
    ]
    methods = list(dict.fromkeys(methods))
    acc = {(i, m): [r["test_accuracy"] for r in ok if r["instance"] == i and r["method"] == m] for i in insts for m in methods}
    secs = {(i, m): [r["seconds"] for r in ok if r["instance"] == i and r["method"] == m] for i in insts for m in methods}
    lines = ["| task | " + " | ".join(methods) + " | default - best |", "|---|" + "---|" * (len(methods) + 1)]
    gaps = []
    for i in insts:
        means = {m: statistics.mean(acc[(i, m)]) for m in methods if acc[(i, m)] and m not in VARIANTS}
        best = max(means.values()) if means else float("nan")
        cells = []
        for m in methods:
            a = acc[(i, m)]
            mark = "**" if a and m in means and means[m] == best else ""
            cells.append(f"{mark}{_ms(a)}{mark}" if a else "-")
        gap = means.get("default", float("nan")) - best
        gaps.append(gap)
        lines.append(f"| {i} | " + " | ".join(cells) + f" | {gap:+.3f} |")
    mean_row = []
    for m in methods:
        per = [statistics.mean(acc[(i, m)]) for i in insts if acc[(i, m)]]
        mean_row.append(f"{statistics.mean(per):.3f} ({len(per)} tasks)" if per else "-")
    lines.append("| **mean over tasks** | " + " | ".join(mean_row) + " | |")
    diff_row = []
    for m in methods:
        d = [
            statistics.mean(acc[(i, m)]) - statistics.mean(acc[(i, "default")])
            for i in insts
            if acc[(i, m)] and acc.get((i, "default"))
        ]
        diff_row.append(f"{statistics.mean(d):+.3f} (at most {max(d):+.3f})" if d and m != "default" else "-")
    lines.append("| **minus default, same tasks: mean (at most)** | " + " | ".join(diff_row) + " | |")
    time_row = []
    for m in methods:
        per = [statistics.mean(secs[(i, m)]) for i in insts if secs[(i, m)]]
        time_row.append(f"{statistics.mean(per):.0f} s" if per else "-")
    lines.append("| mean seconds per run | " + " | ".join(time_row) + " | |")
    errors = [r for r in done if "error" in r]
    if errors:
        lines.append("")
        lines += [f"- failed: {r['instance']} {r['method']} seed {r['seed']}: {r['error']}" for r in errors]
    return "\n".join(lines)


def advice_table(done: list[dict[str, Any]], method: str = "advice") -> str:
    """Per task: the default's verdicts, its first recommendation, accuracy before and after."""
    ok = [r for r in done if "error" not in r]
    lines = ["| task | verdicts (seeds) | first recommendation | default | after it | change |", "|---|---|---|---|---|---|"]
    changes: list[float] = []
    for i in dict.fromkeys(r["instance"] for r in ok if r["method"] == method):
        before = {r["seed"]: r for r in ok if r["instance"] == i and r["method"] == "default"}
        after = {r["seed"]: r for r in ok if r["instance"] == i and r["method"] == method}
        seeds = sorted(set(before) & set(after))
        if not seeds:
            continue
        b = [before[s]["test_accuracy"] for s in seeds]
        a = [after[s]["test_accuracy"] for s in seeds]
        verdicts = ", ".join(str(before[s].get("verdict")) for s in seeds)
        mean_d = statistics.mean(y - x for x, y in zip(b, a))
        changes.append(mean_d)
        rec = " ".join(after[seeds[0]].get("overrides") or []) or "(none)"
        d = [y - x for x, y in zip(b, a)]
        lines.append(f"| {i} | {verdicts} | `{rec}` | {_ms(b)} | {_ms(a)} | {statistics.mean(d):+.3f} |")
    if changes:
        lines.append(f"| **mean over tasks** | | | | | {statistics.mean(changes):+.3f} (worst {min(changes):+.3f}) |")
    return "\n".join(lines)


def _by_seed(ok: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, float]]:
    """Test accuracy of each (instance, method), by seed."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in ok:
        out.setdefault((r["instance"], r["method"]), {})[r["seed"]] = r["test_accuracy"]
    return out


def paired_table(done: list[dict[str, Any]]) -> str:
    """Each method minus the default on the same task and seed (the same training draw), mean +- std
    over the seeds: the paired differences that decide a default, with far less noise than the
    difference of two means."""
    ok = [r for r in done if "error" not in r]
    acc = _by_seed(ok)
    insts = list(dict.fromkeys(r["instance"] for r in ok))
    methods = [m for m in dict.fromkeys(r["method"] for r in ok) if m != "default"]
    lines = ["| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    per: dict[str, list[float]] = {m: [] for m in methods}
    for i in insts:
        cells = []
        base = acc.get((i, "default"), {})
        for m in methods:
            d = [a - base[s] for s, a in acc.get((i, m), {}).items() if s in base]
            if d:
                per[m].append(statistics.mean(d))
            cells.append(
                "-" if not d else f"{statistics.mean(d):+.3f}" + (f" +- {statistics.stdev(d):.3f}" if len(d) > 1 else "")
            )
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean (worst task)** | "
        + " | ".join(f"{statistics.mean(v):+.3f} ({min(v):+.3f})" if v else "-" for v in per.values())
        + " |"
    )
    return "\n".join(lines)


def summary_table(
    done: list[dict[str, Any]], contenders: tuple[str, ...] = ("default", "full", "fast", "probe", "sklearn", "setfit")
) -> str:
    """Per method, over the tasks where it ran: mean test accuracy, mean and worst gap to the best
    contender on each task, and on how many tasks it is within 1 point of that best."""
    ok = [r for r in done if "error" not in r and r["method"] in contenders]
    means = {key: statistics.mean(by.values()) for key, by in _by_seed(ok).items()}
    insts = list(dict.fromkeys(r["instance"] for r in ok))
    best = {i: max(v for (j, _), v in means.items() if j == i) for i in insts}
    lines = [
        "| method | tasks | mean | mean gap to the best | worst gap | within 1 point of the best |",
        "|---|---|---|---|---|---|",
    ]
    for m in contenders:
        own = [(i, means[(i, m)]) for i in insts if (i, m) in means]
        if not own:
            continue
        gaps = [(v - best[i], i) for i, v in own]
        worst = min(gaps)
        lines.append(
            f"| `{m}` | {len(own)} | {statistics.mean(v for _, v in own):.3f} | "
            f"{statistics.mean(g for g, _ in gaps):+.3f} | {worst[0]:+.3f} ({worst[1]}) | "
            f"{sum(g >= -0.01 for g, _ in gaps)} of {len(own)} |"
        )
    return "\n".join(lines)


def probe_table(done: list[dict[str, Any]]) -> str:
    """Per task: the default's linear probe on the pretrained features (its chance-corrected
    cross-validated accuracy, kappa) and on how many seeds it chose the lower all-layers rate."""
    from tunelab.pretrained_fit import features_fit

    lines = ["| task | probe kappa (min - max over seeds) | seeds at the lower rate |", "|---|---|---|"]
    for inst in dict.fromkeys(r["instance"] for r in done):
        fits = [
            r["pretrained_fit"] for r in done if r["instance"] == inst and r["method"] == "default" and r.get("pretrained_fit")
        ]
        if fits:
            k = [f["kappa"] for f in fits]
            low = sum(features_fit(f) for f in fits)
            lines.append(f"| {inst} | {min(k):.2f} - {max(k):.2f} | {low} of {len(fits)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def lexical_table(done: list[dict[str, Any]]) -> str:
    """Per text task and method: test accuracy of the network alone, of the blend at the scales the
    validation split chose, and of the word counts alone; the word counts' shares (``model.lexical``)."""
    lines = [
        "| task | method | network alone | blended | word counts alone | blend - network | shares chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for inst, method in dict.fromkeys((r["instance"], r["method"]) for r in done if r.get("lexical") and r["method"] != "advice"):
        recs = [r["lexical"] for r in done if r["instance"] == inst and r["method"] == method and r.get("lexical")]
        recs = [x for x in recs if isinstance(x.get("test"), dict) and "blend" in x["test"]]
        if not recs:
            continue
        net, mixed, words = ([x["test"][k]["accuracy"] for x in recs] for k in ("network", "blend", "words"))
        gain = [m - n for m, n in zip(mixed, net)]
        lines.append(
            f"| {inst} | {method} | {_ms(net)} | {_ms(mixed)} | {_ms(words)} | {_ms(gain)} | "
            f"{', '.join(str(x['share']) for x in recs)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def write_table(done: list[dict[str, Any]], out: Path) -> str:
    md = table(done)
    text = (
        "Test accuracy, mean +- std over seeds (each seed draws other training examples and initialises "
        "and orders training differently); bold: the best mean of the row. Produced by "
        "`benchmarks/suite.py` on the 2-core CPU machine, one thread per run.\n\n" + md + "\n\n"
        "The first recommendation of the default's final diagnosis, applied as printed (the rules as they "
        "are now):\n\n" + advice_table(done) + "\n"
    )
    text += (
        "\nPer method, against the best of default, full, fast, probe, sklearn and setfit on each task (means "
        "over seeds):\n\n" + summary_table(done) + "\n"
    )
    text += (
        "\nEach method minus the default on the same task and seed (paired: the same training draw), "
        "mean +- std over seeds:\n\n" + paired_table(done) + "\n"
    )
    probes = probe_table(done)
    if probes:
        text += (
            "\nThe default's linear probe on the pretrained features, which chooses its all-layers learning "
            "rate (1e-4 at kappa 0.9 or more, else 3e-4; `lr_if_features_fit`):\n\n" + probes + "\n"
        )
    lexical = lexical_table(done)
    if lexical:
        text += (
            "\nText runs' lexical blend (`model.lexical: auto`): test accuracy of the network alone, of the "
            "blend at the scales the validation split chose (lowest log-loss) and of the word-piece TF-IDF "
            "regression alone (fitted on every labelled text), from the same runs; the word counts' share "
            "b / (a + b) of each seed (0: the network alone):\n\n" + lexical + "\n"
        )
    if any(r["method"] == "advice_dropout" for r in done):
        text += (
            "\nThe same check under the earlier overfitting rule (head dropout 0.5 first; all seeds where it "
            "was measured), which led to the change:\n\n" + advice_table(done, "advice_dropout") + "\n"
        )
    out.with_suffix(".md").write_text(text)
    return md


def read_done(path: Path) -> list[dict[str, Any]]:
    """The rows of the results file, less those a later change of tunelab superseded (kept in the
    file, with a ``superseded`` note saying by what), one per (instance, method, seed): the last
    (a refit run also writes its first fit as a default row, which the default run may have too)."""
    last = {(r["instance"], r["method"], r["seed"]): r for r in _read_all(path) if "superseded" not in r}
    return list(last.values())


def _read_all(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", help="instances (task-shots) to run; default: all")
    ap.add_argument("--methods", nargs="+", help="methods to run; default: all that apply")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "suite.jsonl")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tunelab-suite-work")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the results file")
    a = ap.parse_args()
    done = read_done(a.out)
    if not a.table:
        run_all(a, done)
    print(write_table(read_done(a.out), a.out))


def run_all(a: argparse.Namespace, done: list[dict[str, Any]]) -> None:
    import suite_data

    insts = [i for i in INSTANCES if not a.tasks or i.name in a.tasks or i.task in a.tasks]
    suite_data.build_suite(only=list(dict.fromkeys(i.task for i in insts)))
    have = {(r["instance"], r["method"], r["seed"]) for r in done if "error" not in r}
    jobs, later = [], []
    # the methods in the order they are needed for choosing the default: all seeds of those first
    order = list(dict.fromkeys((a.methods or []) + IMAGE_METHODS + TEXT_METHODS))
    for m in order:
        for seed in a.seeds:
            for inst in insts:
                methods = TEXT_METHODS if task_info(inst.task)["modality"] == "text" else IMAGE_METHODS
                if m not in methods or (a.methods and m not in a.methods) or (inst.name, m, seed) in have:
                    continue
                (later if m == "advice" else jobs).append((inst, m, seed, str(a.work), []))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    _pool(jobs, a, done)
    adv = []
    for inst, m, seed, work, _ in later:
        extra = advice_overrides(done, inst, seed)
        if extra is None:
            continue
        if not extra:  # nothing recommended: the default's result stands, no need to train again
            base = next(
                r
                for r in reversed(done)
                if r["instance"] == inst.name and r["method"] == "default" and r["seed"] == seed and "error" not in r
            )
            row = {**base, "method": "advice", "overrides": [], "note": "no recommendation"}
            done.append(row)
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            continue
        adv.append((inst, m, seed, work, extra))
    _pool(adv, a, done)


def _pool(jobs: list[Any], a: argparse.Namespace, done: list[dict[str, Any]]) -> None:
    if not jobs:
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.workers, maxtasksperchild=1) as pool:
        for result in pool.imap_unordered(run_job, jobs):
            for row in rows_of(result):
                done.append(row)
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                status = row.get("error") or f"test accuracy {row['test_accuracy']:.4f} ({row['seconds']:.0f} s)"
                print(f"{row['instance']:>22} {row['method']:>8} seed {row['seed']}: {status}", flush=True)


if __name__ == "__main__":
    main()
