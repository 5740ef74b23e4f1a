"""The new problem types (multi-label, regression) against the plain alternatives: tunelab's
default recipe, the plain full fine-tune (`recipe: full`) and a scikit-learn baseline, on the
suite's four real multi-label and regression tasks, several seeds each.

The scikit-learn baseline is what a careful user tries first: one-vs-rest logistic regression
(class-balanced, threshold 0.5) for multi-label, ridge (alpha by leave-one-out) for regression,
on 32 x 32 pixels (as `tunelab.baselines.pixel_features`) or TF-IDF word 1-2-grams (as tunelab's
text baseline), scored by the same objective code as the fine-tunes
(`tunelab.objectives.objective_for(problem).metrics`).

    python benchmarks/suite_data.py --only emoji-tags debian-debtags elpv-defect-probability vader-tweets-valence
    python benchmarks/problems.py                        # every task, method and seed (resumable)
    python benchmarks/problems.py --tasks vader-tweets-valence --methods default --seeds 0
    python benchmarks/problems.py --table                # rewrite benchmarks/results/problems.md

One run at a time, `run.threads: 1`: the seconds are comparable within the table only. `--cap N`
trains every method on a draw of at most N training examples (per seed, every label kept, see
`draw_train`), to fit the grid into the time at hand; the table says so in its header.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path.home() / ".cache" / "tunelab-suite"
RESULTS = Path(__file__).resolve().parent / "results"
# cheapest first, so that an interrupted grid has every task of the seeds it finished
TASKS = ("vader-tweets-valence", "elpv-defect-probability", "emoji-tags", "debian-debtags")
METHODS = ("sklearn", "default", "full")
METRICS = {"multi_label": ("map", "macro_f1", "micro_f1"), "regression": ("r2", "mae", "spearman")}
LOWER = {"mae"}  # lower is better
RECIPE = {"default": {}, "full": {"recipe": "full"}}
NOTES = "<!-- notes: kept when the table is rewritten -->"


def task_info(root: Path, task: str) -> dict[str, Any]:
    info = json.loads((root / task / "meta.json").read_text())
    info["dir"] = root / task
    return info


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(rows: list[dict[str, str]], out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)


def _absolute(rows: list[dict[str, str]], base: Path) -> list[dict[str, str]]:
    """Image paths made absolute, so that a CSV written elsewhere finds the task's images."""
    return [{**r, "path": str(base / r["path"])} if "path" in r else r for r in rows]


def _pick(rows: list[dict[str, str]], info: dict[str, Any], cap: int, seed: int) -> list[int]:
    """``cap`` row indices: for multi-label, first up to ``cap // (2 K)`` positives of every label
    (rarest first, so no label vanishes from the draw), then random rows; otherwise random rows."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    chosen: list[int] = []
    taken: set[int] = set()
    if info["problem"] == "multi_label":
        labels = sorted(info["labels"], key=lambda n: info["train_positives"][n])
        per = max(3, cap // (2 * len(labels)))
        for name in labels:
            have = sum(name in rows[i]["label"].split("|") for i in chosen)
            for i in order:
                if have >= per:
                    break
                if i not in taken and name in rows[i]["label"].split("|"):
                    chosen.append(int(i))
                    taken.add(int(i))
                    have += 1
    chosen += [int(i) for i in order if int(i) not in taken][: max(0, cap - len(chosen))]
    if info["problem"] == "multi_label":
        chosen = _no_single_strata(rows, chosen, [int(i) for i in order])
    return sorted(chosen)


def _no_single_strata(rows: list[dict[str, str]], chosen: list[int], order: list[int]) -> list[int]:
    """The draw with every stratum of tunelab's multi-label split (an example's rarest label) held by
    two examples or more: a stratum of one cannot give the stratified validation split, and tunelab
    stops with a DataError. Singletons are swapped for the next rows of ``order`` until none is left."""
    from tunelab.objectives import objective_for

    objective = objective_for("multi_label")
    spare = [i for i in order if i not in set(chosen)]
    for _ in range(50):
        y, _names = objective.encode([rows[i]["label"] for i in chosen], str)
        strata = objective.strata(y)
        single = {i for i, s in zip(chosen, strata) if np.sum(strata == s) < 2}
        if not single:
            return chosen
        chosen = [i for i in chosen if i not in single] + spare[: len(single)]
        spare = spare[len(single) :]
    raise RuntimeError("could not draw a training subset with every stratum held twice")


def draw_train(info: dict[str, Any], seed: int, cap: int | None, work: Path) -> Path:
    """The task's training CSV, or at most ``cap`` of its rows drawn with ``seed``."""
    src = info["dir"] / "train.csv"
    rows = _read_rows(src)
    if cap is None or len(rows) <= cap:
        return src
    out = work / f"{info['name']}-cap{cap}-{seed}.csv"
    if not out.is_file():
        work.mkdir(parents=True, exist_ok=True)
        _write_rows(_absolute([rows[i] for i in _pick(rows, info, cap, seed)], info["dir"]), out)
    return out


def config_of(info: dict[str, Any], method: str, seed: int, train: Path, work: Path) -> dict[str, Any]:
    """The run's config: the data, the problem and the image size, nothing else (zero-config)."""
    data: dict[str, Any] = {
        "train": str(train),
        "test": str(info["dir"] / "test.csv"),
        "problem": info["problem"],
        "seed": seed,
    }
    model: dict[str, Any] = {}
    if info["modality"] == "text":
        data["text"] = {"column": "text", "label_column": "label", "token_cache": None}
        model = {"family": "transformers", "backbone": "minilm"}
    else:
        data["image_size"] = info.get("image_size") or 64
    run = {"dir": str(work / "runs"), "name": f"{info['name']}-{method}-{seed}", "seed": seed}
    run |= {"threads": 1, "progress": False, "baselines": False}
    cfg: dict[str, Any] = {"run": run, "data": data, **RECIPE[method]}
    if model:
        cfg["model"] = model
    return cfg


def run_fit(info: dict[str, Any], method: str, seed: int, train: Path, work: Path) -> dict[str, Any]:
    import tunelab

    t0 = time.perf_counter()
    run = tunelab.fit(config_of(info, method, seed, train, work))
    m = run.metrics
    row = {
        "test": {k: m["test"][k] for k in METRICS[info["problem"]]},
        "val": {k: m.get("val", {}).get(k) for k in METRICS[info["problem"]]},
        "n_train": m.get("n_train"),
        "seconds": time.perf_counter() - t0,
    }
    if m.get("refit"):
        row["refit"] = {k: v for k, v in m["refit"].items() if k != "first_fit_test"}
    if info["problem"] == "multi_label":
        row["test_at_half"] = _at_half(run.dir, METRICS[info["problem"]])
    shutil.rmtree(run.dir, ignore_errors=True)  # keep the disk small; the row has what the table needs
    return row


def _at_half(run_dir: Path, metrics: tuple[str, ...]) -> dict[str, float]:
    """The run's test metrics with every label's threshold at 0.5 instead of the ones it chose on
    its validation split: what the threshold choice itself gains or costs (the sklearn rows use 0.5)."""
    from tunelab.api import evaluate
    from tunelab.run_folder import RunFolder

    path = Path(run_dir) / RunFolder.OBJECTIVE
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"thresholds": None}))
    try:
        m = evaluate(run_dir)
    except Exception as e:  # a diagnostic: its failure must not cost the run's row
        logging.exception("evaluate at 0.5 failed")
        return {"error": f"{type(e).__name__}: {e}"[:300]}  # type: ignore[dict-item]
    return {k: m[k] for k in metrics}


def _features(info: dict[str, Any], train: Path) -> tuple[Any, Any, np.ndarray, np.ndarray, list[str]]:
    """(train inputs, test inputs, train targets, test targets, names) as tunelab reads them."""
    from tunelab.objectives import objective_for

    objective = objective_for(info["problem"])
    tr, te = _read_rows(train), _read_rows(info["dir"] / "test.csv")
    ytr, names = objective.encode([r["label"] for r in tr], lambda i: f"{train} row {i + 2}")
    yte, _ = objective.encode([r["label"] for r in te], lambda i: f"test row {i + 2}", names)
    if info["modality"] == "text":
        return [r["text"] for r in tr], [r["text"] for r in te], ytr, yte, names
    return _pixels(_absolute(tr, info["dir"])), _pixels(_absolute(te, info["dir"])), ytr, yte, names


def _pixels(rows: list[dict[str, str]]) -> np.ndarray:
    """Images read as tunelab's baselines read them: RGB, area-resized to at most 32 x 32."""
    import torch
    from PIL import Image

    from tunelab.baselines import PIXEL_SIZE, pixel_features

    def one(path: str) -> np.ndarray:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((PIXEL_SIZE, PIXEL_SIZE), Image.Resampling.BOX)
        return np.asarray(rgb).transpose(2, 0, 1)

    return pixel_features(torch.from_numpy(np.stack([one(r["path"]) for r in rows])))


def _baseline_multi_label(xtr: Any, xte: Any, ytr: np.ndarray, text: bool, seed: int) -> np.ndarray:
    """Test probabilities of one-vs-rest balanced logistic regression (C = 1, scikit-learn's own)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    features = _vectoriser(text)
    ztr, zte = features.fit_transform(xtr), features.transform(xte)
    model = OneVsRestClassifier(LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed))
    model.fit(ztr, ytr.astype(np.int64))
    return np.asarray(model.predict_proba(zte))


def _baseline_regression(xtr: Any, xte: Any, ytr: np.ndarray, text: bool) -> np.ndarray:
    """Test predictions of ridge regression, alpha by efficient leave-one-out (RidgeCV)."""
    from sklearn.linear_model import RidgeCV

    features = _vectoriser(text)
    ztr, zte = features.fit_transform(xtr), features.transform(xte)
    model = RidgeCV(alphas=np.logspace(-3, 5, 17))
    model.fit(ztr, ytr)
    return np.asarray(model.predict(zte)).reshape(-1, 1)


def _vectoriser(text: bool) -> Any:
    if text:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=100_000)
    from sklearn.preprocessing import StandardScaler

    return StandardScaler()


def run_sklearn(info: dict[str, Any], seed: int, train: Path) -> dict[str, Any]:
    import torch

    from tunelab.objectives import objective_for

    t0 = time.perf_counter()
    xtr, xte, ytr, yte, names = _features(info, train)
    text = info["modality"] == "text"
    objective = objective_for(info["problem"])
    if info["problem"] == "multi_label":
        p = np.clip(_baseline_multi_label(xtr, xte, ytr, text, seed), 1e-7, 1 - 1e-7)
        outputs = torch.from_numpy(np.log(p / (1 - p))).float()  # logits: sigmoid gives p back, threshold 0.5
    else:
        outputs = torch.from_numpy(_baseline_regression(xtr, xte, ytr, text)).float()
    m = objective.metrics(outputs, torch.from_numpy(yte), names)
    return {
        "test": {k: m[k] for k in METRICS[info["problem"]]},
        "n_train": len(ytr),
        "seconds": time.perf_counter() - t0,
    }


def read_done(path: Path) -> list[dict[str, Any]]:
    """The finished rows, the last one of each (task, method, seed, cap) where a run was repeated."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list({(r["task"], r["method"], r["seed"], r.get("cap")): r for r in rows}.values())


def _ms(xs: list[float], digits: int = 3) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:  # one seed: no spread to show
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} +- {statistics.stdev(xs):.{digits}f}"


def table(done: list[dict[str, Any]], header: str) -> str:
    """One row per task and method, each metric mean +- std over the seeds; the best mean bold."""
    ok = [r for r in done if "error" not in r]
    lines = [header, ""]
    for problem, metrics in METRICS.items():
        tasks = [t for t in TASKS if any(r["task"] == t and r["problem"] == problem for r in ok)]
        if not tasks:
            continue
        lines += [f"### {problem.replace('_', '-')}", ""]
        lines += ["| task | method | seeds | n train | " + " | ".join(f"test {m}" for m in metrics) + " | seconds |"]
        lines += ["|---" * (len(metrics) + 5) + "|"]
        for task in tasks:
            lines += _task_rows(task, metrics, [r for r in ok if r["task"] == task])
        lines.append("")
    failed = [r for r in done if "error" in r]
    if failed:
        lines += ["Failed runs:", ""] + [f"- {r['task']} {r['method']} seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _at_half_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A multi-label fine-tune scored again with every threshold at 0.5, as rows of their own."""
    return [
        r | {"method": f"{r['method']} @0.5", "test": r["test_at_half"]}
        for r in rows
        if "error" not in r.get("test_at_half", {"error": "none"})
    ]


def _task_rows(task: str, metrics: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    means = {
        (meth, m): statistics.mean([r["test"][m] for r in rows if r["method"] == meth])
        for meth in METHODS
        for m in metrics
        if any(r["method"] == meth for r in rows)
    }
    rows = rows + _at_half_rows(rows)
    out = []
    for meth in ("sklearn", "default", "default @0.5", "full", "full @0.5"):
        mine = sorted((r for r in rows if r["method"] == meth), key=lambda r: r["seed"])
        if not mine:
            continue
        cells = []
        for m in metrics:
            pick = min if m in LOWER else max
            best = pick(v for (mm, k), v in means.items() if k == m)
            cell = _ms([r["test"][m] for r in mine])
            cells.append(f"**{cell}**" if (meth, m) in means and math.isclose(means[(meth, m)], best) else cell)
        n = mine[0].get("n_train", "-")
        secs = _ms([r["seconds"] for r in mine], 0)
        out.append(f"| {task} | {meth} | {len(mine)} | {n} | " + " | ".join(cells) + f" | {secs} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--cap", type=int, default=None, help="at most this many training examples a run (drawn per seed)")
    p.add_argument("--root", type=Path, default=ROOT, help="where benchmarks/suite_data.py built the tasks")
    p.add_argument("--work", type=Path, default=ROOT / "_problems", help="capped CSVs and run folders")
    p.add_argument("--out", type=Path, default=RESULTS / "problems.jsonl")
    p.add_argument("--table", action="store_true", help="only rewrite the table from --out")
    p.add_argument("--header", default=None, help="the table's header (what was run, any cap)")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING)
    if not a.table:
        run_all(a)
    write_table(a)


def run_all(a: argparse.Namespace) -> None:
    done = {(r["task"], r["method"], r["seed"], r.get("cap")) for r in read_done(a.out) if "error" not in r}
    for seed in a.seeds:
        for task in a.tasks:
            info = task_info(a.root, task)
            for method in a.methods:
                if (task, method, seed, a.cap) in done:
                    continue
                _one(a, info, method, seed)


def _one(a: argparse.Namespace, info: dict[str, Any], method: str, seed: int) -> None:
    train = draw_train(info, seed, a.cap, a.work)
    head = {"task": info["name"], "problem": info["problem"], "method": method, "seed": seed, "cap": a.cap}
    print(f"{time.strftime('%H:%M:%S')} {info['name']} {method} seed {seed} ...", flush=True)
    try:
        body = run_sklearn(info, seed, train) if method == "sklearn" else run_fit(info, method, seed, train, a.work)
    except Exception as e:  # a failed run is a row of the table, not the end of the grid
        logging.exception("%s %s seed %d failed", info["name"], method, seed)
        body = {"error": f"{type(e).__name__}: {e}"[:500]}
    row = head | body
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{time.strftime('%H:%M:%S')}   {json.dumps(body)}", flush=True)
    write_table(a)


def write_table(a: argparse.Namespace) -> None:
    header = a.header or (
        "# Multi-label and regression: the default recipe against a full fine-tune and scikit-learn\n\n"
        "Written by `benchmarks/problems.py` from `problems.jsonl`; test metrics, mean +- std over the seeds; "
        "best mean of each task in bold (among sklearn, default, full). `n train`: what the fine-tunes train on "
        "after holding out their validation split (`data.refit: auto` then trains again on all of it where it "
        "refits: the multi-label runs did); sklearn fits all of it. Multi-label fine-tunes use the per-label "
        "thresholds they chose on validation; `@0.5` rows score the same runs with every threshold at 0.5, as "
        "sklearn's rows are. One run at a time, `run.threads: 1`, on 2 CPU cores shared with other jobs: seconds "
        "are rough."
    )
    done = read_done(a.out)
    caps = sorted({r["cap"] for r in done if r.get("cap")})
    if caps:  # the time at hand did not allow whole training sets: say so first
        header += (
            f"\n\n**Training sets capped at {', '.join(map(str, caps))} examples a run** (`--cap`): each seed draws "
            "its own subset of the task's training set (multi-label: every label's positives first, see `draw_train`), "
            "the same subset for every method of that seed; the fine-tunes hold their validation split out of it "
            "(`val_split: 0.2`). The test sets are whole. Recipes unchanged."
        )
    out = a.out.with_suffix(".md")
    # what is written by hand below the marker (the reading of the numbers) survives a rewrite
    notes = out.read_text().partition(NOTES)[2] if out.is_file() and NOTES in out.read_text() else ""
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(table(done, header) + (f"\n{NOTES}{notes}" if notes else ""))
    tmp.replace(out)


if __name__ == "__main__":
    main()
