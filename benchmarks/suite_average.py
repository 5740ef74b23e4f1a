"""Weight averaging of the default recipe's two ends, measured on the suite's image tasks.

The default recipe (LP-FT) ends its head stage with the pretrained backbone and a fitted head (a
linear probe, "LP") and its all-layers stage with a fine-tuned network ("FT"). WiSE-FT (Wortsman et
al., 2022) takes the weights ``(1 - a) * LP + a * FT``. One default run per task and seed gives
every ``a`` at once: the LP weights are kept when the all-layers stage starts, and after the run
the test (and validation) accuracy is read at each ``a``, plus the ensemble of the two ends'
probabilities. a = 1 is the default itself, a = 0 the probe it starts from.

    .venv/bin/python benchmarks/suite_average.py --seeds 0 1 2       # the 9 image tasks
    .venv/bin/python benchmarks/suite_average.py --table

Rows go to benchmarks/results/suite_average.jsonl, the table to suite_average.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _mix(lp: dict[str, Any], ft: dict[str, Any], a: float) -> dict[str, Any]:
    """(1 - a) * lp + a * ft for floating tensors (weights and BN statistics); counters stay FT's."""
    import torch

    return {k: torch.lerp(lp[k], v, a) if v.is_floating_point() else v for k, v in ft.items()}


def run_one(job: tuple[str, int, str]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    import torch

    import suite
    import tunelab
    from tunelab.metrics import classification_metrics

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    name, seed, work = job
    inst = next(i for i in suite.INSTANCES if i.name == name)
    held: dict[str, Any] = {}

    def on_stage_start(trainer: Any, stage: int) -> None:
        held["trainer"] = trainer
        if stage == 1:
            held["lp"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    train_csv = suite.draw_train(inst, seed, Path(work))
    ov = suite.base_overrides(inst, seed, train_csv, Path(work), f"{name}-avg-{seed}")
    t0 = time.perf_counter()
    run = tunelab.fit(None, overrides=ov, hooks={"on_stage_start": on_stage_start})
    seconds = time.perf_counter() - t0
    tr, splits = held["trainer"], held["trainer"].splits
    ft = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    row: dict[str, Any] = {"instance": name, "seed": seed, "seconds": seconds, "default_test": run.metrics["test"]["accuracy"]}
    probs: dict[float, dict[str, torch.Tensor]] = {}
    for a in ALPHAS:
        tr.model.load_state_dict(_mix(held["lp"], ft, a))
        tr.model.eval()
        for part in ("val", "test"):
            split = getattr(splits, part)
            if split is None:
                continue
            logits = tr.predict(split.inputs)
            probs.setdefault(a, {})[part] = logits.softmax(1)
            row[f"{part}_{a}"] = classification_metrics(logits, split.labels, splits.classes)["accuracy"]
            row[f"{part}_loss_{a}"] = float(torch.nn.functional.cross_entropy(logits.float(), split.labels))
    for part in ("val", "test"):
        if part in probs[1.0]:
            ens = (probs[0.0][part] + probs[1.0][part]).log()
            row[f"{part}_ensemble"] = classification_metrics(ens, getattr(splits, part).labels, splits.classes)["accuracy"]
    shutil.rmtree(run.dir, ignore_errors=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = [f"test_{a}" for a in ALPHAS] + ["test_ensemble"]
    head = "| task | " + " | ".join(c.replace("test_", "a = ") if c != "test_ensemble" else "ensemble" for c in cols)
    out = [head + " |", "|---" * (len(cols) + 1) + "|"]
    names = list(dict.fromkeys(r["instance"] for r in rows))
    means: dict[str, list[float]] = {c: [] for c in cols}
    for n in names:
        rs = [r for r in rows if r["instance"] == n]
        cells = []
        for c in cols:
            xs = [r[c] for r in rs]
            m = statistics.mean(xs)
            means[c].append(m)
            cells.append(f"{m:.3f} +- {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{m:.3f}")
        out.append(f"| {n} ({len(rs)} seeds) | " + " | ".join(cells) + " |")
    out.append("| **mean** | " + " | ".join(f"{statistics.mean(v):.3f}" for v in means.values()) + " |")
    return "\n".join(out)


def main() -> None:
    import suite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "suite_average.jsonl")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    done = [json.loads(x) for x in a.out.read_text().splitlines()] if a.out.is_file() else []
    if not a.table:
        have = {(r["instance"], r["seed"]) for r in done}
        images = [i.name for i in suite.INSTANCES if suite.task_info(i.task)["modality"] == "image"]
        names = [n for n in images if not a.tasks or n in a.tasks]
        work = str(Path(tempfile.gettempdir()) / "tunelab-suite-avg")
        jobs = [(n, s, work) for s in a.seeds for n in names if (n, s) not in have]
        with mp.get_context("spawn").Pool(a.workers, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_one, jobs):
                done.append(row)
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if "loss" not in k}),
                    flush=True,
                )
    md = table(done)
    a.out.with_suffix(".md").write_text(__doc__.split("\n\n")[0] + "\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
