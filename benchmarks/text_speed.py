"""Text speed benchmark: tunelab's text recipe against a plain Hugging Face ``Trainer`` fine-tune.

Rotten Tomatoes (fresh vs rotten), 1,000 training and 1,000 test snippets (the same texts for
both, picked by tunelab's seeded stratified split), the packaged all-MiniLM-L6-v2, batch 32, CPU.
Baseline: ``AutoModelForSequenceClassification`` + ``Trainer`` (lr 5e-5, linear decay, weight
decay 0.01, dynamic padding by ``DataCollatorWithPadding``), the whole network trained for as many
epochs as the tunelab recipe has in total. tunelab: ``examples/text_rotten_tomatoes.yaml`` through
``tunelab.fit`` (head on cached sentence embeddings, then the top layers on cached hidden states).
Each measurement runs in its own process; the two contenders alternate. Seconds are wall time
from the start of data loading to the test accuracy (tunelab's also include its validation
passes, checkpoints and the HTML report).

    .venv/bin/python benchmarks/text_speed.py                      # one pair, seed 0
    .venv/bin/python benchmarks/text_speed.py --repeats 2 --seeds 0 1
    .venv/bin/python benchmarks/text_speed.py --baseline-epochs 2  # baseline timed on 2 epochs, scaled

With ``--baseline-epochs`` below the recipe's total the baseline trains that many epochs and its
whole-recipe time is epoch 1 + (E - 1) x mean(later epochs) + its test pass, marked as estimated;
its accuracy is then after the shorter training. Results go to benchmarks/results/text_speed.jsonl
and the table to benchmarks/results/text_speed.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONFIG = HERE.parent / "examples" / "text_rotten_tomatoes.yaml"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _recipe_epochs() -> int:
    import tunelab

    return sum(st.epochs for st in tunelab.load_config(CONFIG).stages)


def _splits(seed: int):
    import tunelab
    from tunelab.text.data import load_text_data

    cfg = tunelab.load_config(CONFIG, [f"data.seed={seed}", "data.text.token_cache=null"])
    return cfg, load_text_data(cfg.data)


# --- the baseline: AutoModelForSequenceClassification + Trainer ----------------------------------


def baseline(seed: int, epochs: int, total_epochs: int) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from tunelab.text.backbone import resolve_encoder

    hf_logging.set_verbosity_error()
    t0 = time.perf_counter()
    cfg, splits = _splits(seed)
    folder, _ = resolve_encoder("minilm")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(splits.classes))

    def encode(s):
        enc = tok(s.texts, truncation=True, max_length=cfg.data.text.max_length)
        return [
            {"input_ids": ids, "attention_mask": m, "labels": int(y)}
            for ids, m, y in zip(enc["input_ids"], enc["attention_mask"], s.labels.tolist())
        ]

    train, test = encode(splits.train), encode(splits.test)
    marks: list[float] = []

    class EpochTimes(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            if not marks:
                marks.append(time.perf_counter())

        def on_epoch_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=epochs,
            per_device_train_batch_size=cfg.data.batch_size,
            per_device_eval_batch_size=cfg.data.eval_batch_size,
            learning_rate=5e-5,
            weight_decay=0.01,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            seed=seed,
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok), callbacks=[EpochTimes()]
        )
        trainer.train()
        t_pred = time.perf_counter()
        pred = trainer.predict(test)
        test_seconds = time.perf_counter() - t_pred
    total = time.perf_counter() - t0
    acc = float((np.argmax(pred.predictions, 1) == splits.test.labels.numpy()).mean())
    epoch_s = [b - a for a, b in itertools.pairwise(marks)]
    setup = total - sum(epoch_s) - test_seconds
    if epochs < total_epochs:  # scaled to the recipe's epochs
        whole = setup + epoch_s[0] + (total_epochs - 1) * statistics.mean(epoch_s[1:] or epoch_s) + test_seconds
    else:
        whole = total
    return {
        "seconds": whole,
        "measured_seconds": total,
        "estimated": epochs < total_epochs,
        "epoch_seconds": epoch_s,
        "test_seconds": test_seconds,
        "test_accuracy": acc,
        "epochs_trained": epochs,
        "threads": torch.get_num_threads(),
    }


# --- tunelab ---------------------------------------------------------------------------------------


def tunelab_run(seed: int, epochs: int, total_epochs: int) -> dict:
    import torch

    import tunelab

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = tunelab.fit(
            CONFIG,
            overrides=[
                f"run.dir={tmp}",
                "run.name=speed",
                "run.progress=false",
                f"run.seed={seed}",
                f"data.seed={seed}",
                "data.text.token_cache=null",
            ],
        )
        total = time.perf_counter() - t0
    stages = {}
    for row in run.history:
        stages.setdefault(row["stage_name"], []).append(row["seconds"] + row.get("cache_seconds", 0.0))
    return {
        "seconds": total,
        "estimated": False,
        "stage_seconds": stages,
        "test_accuracy": run.metrics["test"]["accuracy"],
        "epochs_trained": total_epochs,
        "threads": torch.get_num_threads(),
    }


# --- driver --------------------------------------------------------------------------------------


def one(kind: str, seed: int, epochs: int, total_epochs: int) -> None:
    load_before = os.getloadavg()[0]  # other processes on the machine slow both contenders alike
    r = (baseline if kind == "baseline" else tunelab_run)(seed, epochs, total_epochs)
    r.update(
        {
            "kind": kind,
            "seed": seed,
            "recipe_epochs": total_epochs,
            "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
    )
    print("RESULT " + json.dumps(r), flush=True)


def summarise(rows: list[dict]) -> str:
    lines = [
        "| seed | contender | epochs trained | seconds (whole recipe) | test accuracy | machine load (1-min avg, start / end) |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for seed in sorted({r["seed"] for r in rows}):
        by = {}
        for kind in ("baseline", "tunelab"):
            rs = [r for r in rows if r["seed"] == seed and r["kind"] == kind]
            if not rs:
                continue
            if any(not r["estimated"] for r in rs):  # a whole-recipe measurement beats a scaled one
                rs = [r for r in rs if not r["estimated"]]
            by[kind] = {
                "s": statistics.median(r["seconds"] for r in rs),
                "est": any(r["estimated"] for r in rs),
                "acc": statistics.median(r["test_accuracy"] for r in rs),
                "ep": rs[-1]["epochs_trained"],
                "load": ", ".join(" / ".join(f"{x:.1f}" for x in r.get("load_avg", [])) for r in rs),
            }
            v = by[kind]
            name = "HF Trainer, full fine-tune" if kind == "baseline" else "tunelab text recipe"
            lines.append(
                f"| {seed} | {name} ({len(rs)} run{'s' if len(rs) > 1 else ''}) | {v['ep']} | "
                f"{v['s']:.0f}{' (est.)' if v['est'] else ''} | {v['acc']:.4f} | {v['load']} |"
            )
        if len(by) == 2:
            ratios.append((seed, by["baseline"]["s"] / by["tunelab"]["s"], by["tunelab"]["acc"] - by["baseline"]["acc"]))
    if ratios:
        lines += ["", "| seed | speed-up (baseline s / tunelab s) | accuracy tunelab - baseline |", "|---|---|---|"]
        lines += [f"| {s} | {r:.1f}x | {d:+.4f} |" for s, r, d in ratios]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline-epochs", type=int, default=None, help="default: the recipe's total epochs")
    ap.add_argument("--only", choices=["baseline", "tunelab"], help="run one contender (e.g. more tunelab seeds)")
    ap.add_argument("--one", choices=["baseline", "tunelab"], help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS / "text_speed.jsonl")
    a = ap.parse_args()
    total = _recipe_epochs()
    if a.one:
        one(a.one, a.seeds[0], a.epochs or total, total)
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed in a.seeds:
        for rep in range(a.repeats):  # the two contenders alternate
            kinds = ("baseline", "tunelab") if rep % 2 == 0 else ("tunelab", "baseline")
            jobs += [(k, seed) for k in kinds if a.only in (None, k)]
    for kind, seed in jobs:
        epochs = (a.baseline_epochs or total) if kind == "baseline" else total
        cmd = [sys.executable, __file__, "--one", kind, "--seeds", str(seed), "--epochs", str(epochs)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{kind} seed {seed} failed:\n{out.stderr[-3000:]}")
        r = json.loads(line[7:])
        with open(a.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{kind:>8} seed {seed}: " + json.dumps(r), flush=True)
    rows = [json.loads(x) for x in a.out.read_text().splitlines() if x.strip()]
    md = summarise(rows)
    a.out.with_suffix(".md").write_text(__doc__.split("\n\n")[1] + "\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
