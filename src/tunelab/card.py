"""The model card: RUN_DIR/README.md in Hugging Face's model-card conventions (a YAML front matter
with library_name, tags, metrics and a model-index, then the model, its data, its training stages,
its metrics beside the run's baselines, intended use, limitations and the config).

    write_model_card("runs/demo")           # runs/demo/README.md, written at the end of every fit
    model_card("runs/demo", library_name="timm", usage=...)   # the card an export embeds

Everything comes from the files of the run folder, so a card can be written again for any run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from tunelab._html import render
from tunelab.checkpoint import atomic_write_text
from tunelab.config import Config, load_config
from tunelab.metrics import SHOWN
from tunelab.objectives import Objective, objective_of
from tunelab.run_folder import RunFolder, read_json
from tunelab.runs import read_run_folder
from tunelab.tasks import Task, task_for

CARD = RunFolder.CARD
# each metric as the Hub's model-index names it: its type and arguments
HUB_METRICS: dict[str, tuple[str, dict[str, str] | None]] = {
    "accuracy": ("accuracy", None),
    "macro_f1": ("f1", {"average": "macro"}),
    "micro_f1": ("f1", {"average": "micro"}),
    "map": ("mean_average_precision", None),
    "subset_accuracy": ("exact_match", None),
    "r2": ("r_squared", None),
    "mae": ("mae", None),
    "rmse": ("rmse", None),
    "spearman": ("spearmanr", None),
}


def _results(metrics: dict[str, Any], reported: tuple[str, ...]) -> list[dict[str, Any]]:
    """The model-index scores: every reported metric of the test and validation splits."""
    results = []
    for split in ("test", "val"):
        for key in reported if split in metrics else ():
            value = metrics[split].get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            kind, args = HUB_METRICS.get(key, (key, None))
            results.append({"type": kind, "value": round(float(value), 4), "name": f"{split} {SHOWN.get(key, key)}"})
            if args:
                results[-1]["args"] = dict(args)  # a copy each: YAML would write a shared one as an anchor
    return results


def _front_matter(
    cfg: Config, modality: Task, name: str, metrics: dict[str, Any], library_name: str, objective: Objective
) -> str:
    """The card's metadata: what the Hub indexes (library, task, tags, base model, scores)."""
    task = modality.card_facts(cfg)["pipeline_tag"]
    problem = objective.hub_tag
    meta: dict[str, Any] = {
        "library_name": library_name,
        "pipeline_tag": task,
        "tags": ["tunelab", "fine-tuned", modality.library, task] + ([problem] if problem else []),
    }
    if cfg.model.pretrained:
        meta["base_model"] = cfg.model.backbone
    meta["metrics"] = list(dict.fromkeys(HUB_METRICS.get(k, (k, None))[0] for k in objective.reported))
    results = _results(metrics, objective.reported)
    if results:
        dataset = {"name": cfg.data.train, "type": Path(cfg.data.train).name or cfg.data.train}
        meta["model-index"] = [{"name": name, "results": [{"task": {"type": task}, "dataset": dataset, "metrics": results}]}]
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()


def _stage_rows(cfg: Config, history: list[dict[str, Any]], stages: dict[str, Any]) -> list[list[str]]:
    """One row per stage: what it trained, for how long (configured and run), how."""
    rows = []
    for i, (st, lr) in enumerate(zip(cfg.stages, cfg.stage_lrs())):
        ran = sum(1 for r in history if r.get("stage") == i)
        seconds = stages.get(str(i), {}).get("seconds")
        rows.append(
            [
                str(i + 1),
                st.name or str(i),
                st.objective,
                json.dumps(st.model_dump(mode="json")["train"]),
                f"{ran} of {st.epochs}",
                st.optimizer,
                f"{lr:.2e}",
                st.schedule,
                "-" if seconds is None else f"{seconds:.0f}",
            ]
        )
    return rows


def _cells(m: dict[str, Any], reported: tuple[str, ...]) -> list[str]:
    return [f"{m[k]:.4f}" if isinstance(m.get(k), (int, float)) else "-" for k in reported]


def _metric_rows(metrics: dict[str, Any], reported: tuple[str, ...] = ("accuracy", "macro_f1")) -> list[list[str]]:
    """The fine-tuned model, then each baseline scored on the same split."""
    rows = []
    for split in ("val", "test"):
        if split not in metrics:
            continue
        m = metrics[split]
        rows.append([split, "fine-tuned model", *_cells(m, reported), str(m.get("n", ""))])
        for name, b in (metrics.get("baselines") or {}).get(split, {}).items():
            rows.append([split, name, *_cells(b, reported), str(m.get("n", ""))])
    return rows


def _data_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    splits = list(data.get("counts", {}))
    rows = [[c, *(str(data["counts"][s][i]) for s in splits)] for i, c in enumerate(data.get("classes", []))]
    return splits, rows


def _weak_classes(metrics: dict[str, Any], limit: int = 3) -> list[str]:
    """The classes (labels) with the lowest F1 on the main split, for the limitations."""
    split = "test" if "test" in metrics else "val" if "val" in metrics else None
    table = metrics[split].get("per_class") or metrics[split].get("per_label") if split is not None else None
    if not table:
        return []
    per = sorted(table.items(), key=lambda kv: kv[1]["f1"])
    return [f"{c} (F1 {v['f1']:.2f})" for c, v in per[:limit]]


def _names(word: str) -> str:
    return word + ("es" if word.endswith("s") else "s")


def _sentence(names: list[str]) -> str:
    """'Accuracy and macro-F1': metric names as a sentence starts with them (mAP and R^2 kept)."""
    first = names[0][0].upper() + names[0][1:] if names[0][1:].islower() else names[0]
    return first if len(names) == 1 else f"{', '.join([first, *names[1:-1]])} and {names[-1]}"


def _problem(run_dir: Path, objective: Objective, metrics: dict[str, Any]) -> dict[str, Any]:
    """What the card says of the problem type: what the names are, the metrics (the primary first),
    the baselines, and what the run decided (each label's threshold; the target's scale)."""
    shown = [SHOWN.get(k, k) for k in objective.reported]
    state = read_json(run_dir / RunFolder.OBJECTIVE, dict, {})
    split = "test" if "test" in metrics else "val" if "val" in metrics else None
    return {
        "examples": objective.examples,
        "names": _names(objective.examples),
        "metrics": shown,
        "metrics_sentence": _sentence(shown),
        "primary": shown[0],
        "baselines": objective.baseline_summary,
        "thresholds": state.get("thresholds"),
        "mean": state.get("mean"),
        "std": state.get("std"),
        "target": (metrics.get(split) or {}).get("target") if split else None,
    }


def card_context(run_dir: Path, library_name: str = "tunelab", usage: str | None = None) -> dict[str, Any]:
    """Everything model_card.md.j2 shows, as plain data."""
    r = read_run_folder(run_dir)
    cfg = load_config(run_dir / RunFolder.CONFIG)
    metrics, classes = r["metrics"], r["classes"]
    data_head, data_rows = _data_rows(r["data"])
    name = run_dir.resolve().name
    reg = cfg.regularization
    task, objective = task_for(cfg), objective_of(cfg)
    return {
        "front_matter": _front_matter(cfg, task, name, metrics, library_name, objective),
        "problem": _problem(run_dir, objective, metrics),
        "name": name,
        "cfg": cfg,
        "task": task,
        "facts": task.card_facts(cfg),
        "unit": task.name,
        "classes": classes,
        "n_train": metrics.get("n_train"),
        "data_head": data_head,
        "data_rows": data_rows,
        "stage_rows": _stage_rows(cfg, r["history"], r["stages"]),
        "regularization": {
            "augment": json.dumps(reg.model_dump(mode="json")["augment"]),
            "penalties": ", ".join(f"{p.type} {p.strength:g}" for p in reg.penalties) or "none",
            "label_smoothing": reg.label_smoothing,
            "mixup": reg.mixup is not None,
        },
        "distill": cfg.distill,
        "n_unlabeled": metrics.get("n_unlabeled"),
        "metric_rows": _metric_rows(metrics, objective.reported),
        "refit": metrics.get("refit"),
        "diagnosis": metrics.get("diagnosis"),
        "weak": _weak_classes(metrics),
        "skipped": len(metrics.get("skipped_images") or []),
        "usage": usage,
        "config_text": r["config_text"].rstrip(),
    }


def model_card(run_dir: str | Path, *, library_name: str = "tunelab", usage: str | None = None) -> str:
    """The model card of a run folder as Markdown; ``usage`` replaces the how-to-use section (an
    export says how to load itself)."""
    return render("model_card.md.j2", **card_context(Path(run_dir), library_name, usage))


def write_model_card(run_dir: str | Path) -> Path:
    """Write RUN_DIR/README.md (atomically) and return its path."""
    path = Path(run_dir) / CARD
    atomic_write_text(path, model_card(run_dir))
    return path
