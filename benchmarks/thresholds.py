"""How a multi-label run's decision thresholds are best chosen: on finished runs, the validation
outputs choose thresholds by each rule and the test split scores them (micro-F1, macro-F1, subset
accuracy; mAP does not depend on thresholds).

    .venv/bin/python benchmarks/thresholds.py RUN_DIR [RUN_DIR ...] > benchmarks/results/thresholds.md

Rules: 0.5 for every label; each label's own best-F1 threshold; one shared best-F1 threshold over
all decisions (micro-F1); each label's own where the validation split has at least 10 of its
positives, else the shared one (what tunelab does, ``objectives.multi_label.choose_thresholds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from tunelab.api import load_run
from tunelab.engine.device import predict_logits
from tunelab.objectives.multi_label import MIN_POSITIVES, choose_thresholds
from tunelab.tasks import task_for

RULES = {
    "0.5": lambda p, y: np.full(p.shape[1], 0.5),
    "per label": lambda p, y: choose_thresholds(p, y, min_positives=1),
    "shared": lambda p, y: choose_thresholds(p, y, min_positives=len(y) + 1),
    f"per label at {MIN_POSITIVES}+ positives, else shared": lambda p, y: choose_thresholds(p, y),
}


def outputs(run_dir: Path) -> tuple[str, dict[str, tuple[torch.Tensor, torch.Tensor]], object, list[str]]:
    run = load_run(run_dir)
    splits = task_for(run.config).load_data(run.config.data)
    got = {}
    for name, split in (("val", splits.val), ("test", splits.test)):
        logits = predict_logits(run.model, split.inputs, run.config.data.eval_batch_size, torch.device("cpu"))
        got[name] = (logits, split.labels)
    return run_dir.name, got, run.objective, run.classes


def main(dirs: list[str]) -> None:
    print("| run | rule | test micro-F1 | test macro-F1 | test subset accuracy |")
    print("|---|---|---|---|---|")
    for d in dirs:
        name, got, objective, classes = outputs(Path(d))
        (vl, vy), (tl, ty) = got["val"], got["test"]
        p, y = torch.sigmoid(vl.float()).numpy(), vy.numpy() > 0.5
        for rule, choose in RULES.items():
            objective.thresholds = choose(p, y)
            m = objective.metrics(tl, ty, classes)
            print(f"| {name} | {rule} | {m['micro_f1']:.3f} | {m['macro_f1']:.3f} | {m['subset_accuracy']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
