"""A self-contained HTML report of a run (images embedded, no network), and a side-by-side
comparison of several runs.

    tunelab report runs/demo          # writes runs/demo/report.html
    tunelab compare runs/a runs/b     # writes compare.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tunelab import plots
from tunelab._html import image, render
from tunelab.checkpoint import atomic_write_text
from tunelab.diagnosis import diagnose, score_of
from tunelab.metrics import SHOWN
from tunelab.objectives import Objective, counted, objective_of
from tunelab.pretrained_fit import features_fit
from tunelab.run_folder import RunFolder
from tunelab.runs import read_run_folder
from tunelab.tasks import task_for

SECTIONS = ["summary", "diagnosis", "curves", "metrics", "data", "model", "regularization", "config"]

# the figures of make_plots and the alt text each has in the page
FIGURES = {
    "curves": "loss and accuracy curves",
    "lr": "learning rate",
    "penalties": "penalties",
    "confusion": "confusion matrix",
    "per_class": "per-class",
    "wrong": "most confidently wrong",
    "pr": "precision-recall curves per label",
    "regression": "predicted against true values and residuals",
}
# the figures drawn from the validation predictions, which only a fit has: a rewrite keeps them
FROM_PREDICTIONS = {"wrong": "wrong.png", "pr": "pr_curves.png", "regression": "regression.png"}


def _name(metric: str) -> str:
    return SHOWN.get(metric, metric)


def make_plots(
    run_dir: Path,
    r: dict[str, Any],
    gallery: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    objective: Objective | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Path | None]:
    """All figures into RUN_DIR/plots; the gallery needs (images, labels, probabilities) of the
    validation set, the figures of other problem types (targets, decoded outputs) of it, else the
    existing ones are kept."""
    out = run_dir / "plots"
    primary = objective.primary if objective is not None else "accuracy"
    figs: dict[str, Path | None] = {}
    if r["history"]:
        figs["curves"] = plots.curves(r["history"], out / "curves.png", primary, _name(primary))
        figs["lr"] = plots.learning_rate(r["history"], out / "lr.png")
        figs["penalties"] = plots.penalties(r["history"], out / "penalties.png")
    split = _main_split(r["metrics"])
    m = r["metrics"][split] if split is not None else {}
    if "confusion_matrix" in m:
        figs["confusion"] = plots.confusion(
            m, r["classes"], out / "confusion.png", f"{split}: confusion matrix (rows normalised)"
        )
    if "per_class" in m:
        figs["per_class"] = plots.per_class(m, out / "per_class.png", f"{split}: precision and recall per class")
    if gallery is not None:
        figs["wrong"] = plots.wrong_gallery(*gallery, r["classes"], out / "wrong.png")
    if val is not None:
        figs |= _validation_figures(r, val, out)
    for name, file in FROM_PREDICTIONS.items():
        if name not in figs and (out / file).is_file():
            figs[name] = out / file
    return figs


def _validation_figures(r: dict[str, Any], val: tuple[np.ndarray, np.ndarray], out: Path) -> dict[str, Path | None]:
    """The figures of the validation predictions of a multi-label run (multi-hot targets: a
    precision-recall curve per label) or a regression (one target: predicted against true)."""
    targets, decoded = val
    names = r["classes"]
    if targets.ndim == 2:
        per_label = (r["metrics"].get("val") or {}).get("per_label") or {}
        thresholds = [per_label[n]["threshold"] for n in names] if set(names) <= set(per_label) else None
        return {"pr": plots.precision_recall(targets, decoded, names, thresholds, out / "pr_curves.png", "validation")}
    if np.issubdtype(targets.dtype, np.floating):
        return {
            "regression": plots.regression(decoded, targets, names[0] if names else "value", out / "regression.png", "validation")
        }
    return {}


def _main_split(metrics: dict[str, Any]) -> str | None:
    return "test" if "test" in metrics else "val" if "val" in metrics else None


def _cell(m: dict[str, Any] | None, key: str) -> str:
    value = (m or {}).get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _metric_rows(metrics: dict[str, Any], reported: tuple[str, ...]) -> list[list[Any]]:
    """Per split, the problem type's metrics (``reported``, the primary first), the loss and the count."""
    return [
        [split, *(_cell(m, k) for k in reported), f"{m['loss']:.4f}", m.get("n", "")]
        for split in ("val", "test")
        if (m := metrics.get(split))
    ]


def _baselines(metrics: dict[str, Any], reported: tuple[str, ...] = ("accuracy", "macro_f1")) -> dict[str, Any] | None:
    """The fine-tuned model beside the cheap baselines, on each split they were scored on."""
    scores = metrics.get("baselines") or {}
    splits = [s for s in ("val", "test") if s in scores and s in metrics]
    if not splits:
        return None
    names = list(dict.fromkeys(n for s in splits for n in scores[s]))

    def row(label: str, get: Any) -> list[str]:
        return [label] + [_cell(get(s), k) for s in splits for k in reported]

    rows = [row("fine-tuned model", lambda s: metrics[s])] + [row(n, lambda s, n=n: scores[s].get(n)) for n in names]
    return {"head": ["model"] + [f"{s} {_name(k)}" for s in splits for k in reported], "rows": rows}


def _per_class_rows(m: dict[str, Any]) -> list[list[Any]]:
    return [
        [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
        for c, v in m.get("per_class", {}).items()
    ]


def _per_label(m: dict[str, Any]) -> dict[str, Any] | None:
    """A multi-label split's table: each label's precision, recall and F1 at its decision threshold
    (chosen on validation), its average precision and its positive examples."""
    if "per_label" not in m:
        return None
    return {
        "head": ["label", "precision", "recall", "F1", "AP", "threshold", "support"],
        "rows": [
            [n, *(f"{v[k]:.3f}" for k in ("precision", "recall", "f1", "ap", "threshold")), v["support"]]
            for n, v in m["per_label"].items()
        ],
    }


def _target(metrics: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A regression's table: per split, the target's distribution and the errors, in its units."""
    splits = [s for s in ("val", "test") if "target" in (metrics.get(s) or {})]
    if not splits:
        return None
    rows = []
    for s in splits:
        m, t = metrics[s], metrics[s]["target"]
        rows.append(
            [s, m.get("n", ""), *(f"{t[k]:.4g}" for k in ("mean", "std", "min", "max")), _cell(m, "mae"), _cell(m, "rmse")]
        )
    return {"name": name, "head": ["split", "examples", "mean", "std", "min", "max", "MAE", "RMSE"], "rows": rows}


def _data(d: dict[str, Any], objective: Objective) -> dict[str, Any] | None:
    """Images per class (label) and split, or the mean target per split; the imbalance ratio when
    it is worth a warning, skipped files."""
    if not d:
        return None
    head, imbalance = objective.data_head, objective.imbalance
    splits = list(d["counts"])
    train = d["counts"].get("train", [])
    ratio = max(train) / min(train) if imbalance and train and min(train) > 0 else 0
    return {
        "head": [head, *splits],
        "imbalance": imbalance.format(ratio=f"{ratio:.1f}") if imbalance and ratio > 1.5 else None,
        "rows": [[c, *(d["counts"][s][i] for s in splits)] for i, c in enumerate(d["classes"])],
        "skipped": d.get("skipped") or [],
    }


def _headline(r: dict[str, Any], cfg: Any, objective: Objective) -> dict[str, Any] | None:
    """The summary's first line: the main split's scores (the primary metric first) and what was
    trained on what."""
    m = r["metrics"]
    split = _main_split(m)
    if split is None:
        return None
    primary, *others = objective.reported
    return {
        "split": split,
        "primary_name": _name(primary),
        "primary": _cell(m[split], primary),
        "others": [(_name(k), _cell(m[split], k)) for k in others[:3]],
        "n_train": m.get("n_train", "?"),
        "unit": task_for(cfg).name,  # images, texts
        "names": counted(objective, len(r["classes"])),
        "backbone": cfg.model.backbone,
        "seconds": f"{m.get('seconds', 0):.0f}",
    }


def _pretrained_fit(m: dict[str, Any], more: str = "") -> dict[str, str] | None:
    """The probe that chose the stages' ``lr_if_features_fit`` rates, formatted for the summary;
    ``more``: what else it decided, in the modality's words (images: ``augment: auto``)."""
    fit = m.get("pretrained_fit")
    if not fit:
        return None
    fits = features_fit(fit)
    outcome = (
        (f"they already fit the data (kappa {fit['threshold']} or more) and stages with lr_if_features_fit trained at that rate")
        if fits
        else f"they do not fit it yet (kappa under {fit['threshold']}) and every stage kept its lr"
    )
    outcome += more
    return {
        "cv_accuracy": f"{fit['cv_accuracy']:.3f}",
        "majority": f"{fit['majority']:.3f}",
        "kappa": f"{fit['kappa']:.2f}",
        "examples": str(fit["examples"]),
        "outcome": outcome,
    }


def _stages(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage (from stages.json): its name, trainable layers, cache and regularization audit."""
    return [
        {
            "n": int(k) + 1,
            "name": str(v.get("name")),
            "layers": v.get("layers", ""),
            "cache": v.get("cache"),
            "audit": v.get("audit", ""),
        }
        for k, v in sorted(r["stages"].items())
    ]


def _alts(objective: Objective) -> dict[str, str]:
    """The figures' alt texts, the curves' naming the primary metric."""
    return FIGURES | {"curves": f"loss and {_name(objective.primary)} curves"}


def _report_context(d: Path, r: dict[str, Any], cfg: Any, figs: dict[str, Path | None]) -> dict[str, Any]:
    """Everything report.html.j2 shows, as plain data: texts, rows of formatted cells, embedded images."""
    m, objective = r["metrics"], objective_of(cfg)
    split, score = _main_split(m), score_of(objective, m.get("prior_loss"))
    lines = task_for(cfg).summary_lines(m, cfg)  # the modality's words on what it decided
    return {
        "title": f"tunelab report: {d.name}",
        "sections": SECTIONS,
        "main": _headline(r, cfg, objective),
        "metric_head": ["split", *(_name(k) for k in objective.reported), "loss", "images"],
        "metric_rows": _metric_rows(m, objective.reported),
        "baselines": _baselines(m, objective.reported),
        "pretrained_fit": _pretrained_fit(m, lines.get("probe", "")),
        "post_fit": lines.get("post_fit"),
        "per_class": _per_class_rows(m[split]) if split else [],
        "per_label": _per_label(m[split]) if split else None,
        "target": _target(m, r["classes"][0] if r["classes"] else "value"),
        "diagnosis": m.get("diagnosis"),
        "stage_diagnoses": [
            (s + 1, diagnose(r["history"], cfg, stage=s, score=score).render())
            for s in sorted({row["stage"] for row in r["history"]})
        ],
        "figs": {name: image(figs.get(name), alt) for name, alt in _alts(objective).items()},
        "wrong_texts": _wrong_texts(d),
        "data": _data(r["data"], objective),
        "stages": _stages(r),
        "config_text": r["config_text"],
    }


def write_report(
    run_dir: str | Path,
    *,
    gallery: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write RUN_DIR/report.html and return its path. ``gallery``: (images, labels, probabilities)
    of the validation set, for the most confidently wrong images; ``val``: (targets, decoded
    outputs) of the validation set, for the precision-recall curves or the predicted-against-true
    figure (without them, the figures a fit drew are kept)."""
    from tunelab.config import load_config

    d = Path(run_dir)
    r = read_run_folder(d)
    cfg = load_config(d / RunFolder.CONFIG)
    figs = make_plots(d, r, gallery, objective_of(cfg), val)
    path = d / RunFolder.REPORT
    atomic_write_text(path, render("report.html.j2", **_report_context(d, r, cfg, figs)))
    return path


def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(x, list) and x and all(isinstance(v, dict) for v in x):
        out = {}
        for i, v in enumerate(x):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): x}


def _compare_metrics(runs: list[tuple[Path, dict[str, Any]]], reported: list[str]) -> list[list[str]]:
    """Per split, each metric any of the runs reports (``reported``) and the loss, run by run."""
    rows = []
    for split in ("val", "test"):
        for key in [*reported, "loss"]:
            vals = [r["metrics"].get(split, {}).get(key) for _, r in runs]
            if any(v is not None for v in vals):
                rows.append([f"{split} {key}"] + [f"{v:.4f}" if v is not None else "" for v in vals])
    return rows


def _compare_curves(runs: list[tuple[Path, dict[str, Any]]], png: Path, primary: str = "accuracy") -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for p, r in runs:
        x = np.arange(1, len(r["history"]) + 1)
        for ax, key in zip(axes, ("val_loss", f"val_{primary}")):
            ax.plot(x, [h.get(key) for h in r["history"]], "o-", ms=3, label=p.name)
            ax.set_title(key.replace("_", " "))
            ax.set_xlabel("epoch (all stages)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    return plots._save(fig, png)


def compare(run_dirs: list[str | Path], out: str | Path = "compare.html") -> Path:
    """Runs side by side: the config keys that differ, final metrics, overlaid validation curves."""
    runs = [(Path(p), read_run_folder(Path(p))) for p in run_dirs]
    from tunelab.config import load_config, read_raw

    flat = [_flatten(read_raw(p / RunFolder.CONFIG)) for p, _ in runs]  # with the limits of any config file
    keys = sorted(k for k in set().union(*flat) if not k.startswith("run.") and len({repr(f.get(k)) for f in flat}) > 1)
    objectives = [objective_of(load_config(p / RunFolder.CONFIG)) for p, _ in runs]
    reported = list(dict.fromkeys(k for o in objectives for k in o.reported))
    out = Path(out)
    png = _compare_curves(runs, out.with_suffix(".png"), objectives[0].primary if objectives else "accuracy")
    page = render(
        "compare.html.j2",
        title="tunelab comparison",
        names=[p.name for p, _ in runs],
        config_rows=[[k] + [str(f.get(k, "")) for f in flat] for k in keys] or [["none"]],
        metric_rows=_compare_metrics(runs, reported),
        curves=image(png, "validation curves"),
    )
    atomic_write_text(out, page)
    return out


def _wrong_texts(run_dir: Path, max_chars: int = 300) -> list[dict[str, str]] | None:
    """The rows of RUN_DIR/wrong_texts.json, long texts cut; None when the run has no such file."""
    path = run_dir / RunFolder.WRONG_TEXTS
    if not path.is_file():
        return None
    return [
        {
            "text": r["text"][:max_chars] + ("..." if len(r["text"]) > max_chars else ""),
            "label": r["true"],
            "predicted": r["predicted"],
            "probability": f"{r['probability']:.3f}",
        }
        for r in json.loads(path.read_text())
    ]


def wrong_texts_html(run_dir: Path, max_chars: int = 300) -> str:
    """An HTML table of RUN_DIR/wrong_texts.json, or '' when the run has none."""
    return render("_wrong_texts.html.j2", wrong_texts=_wrong_texts(run_dir, max_chars))
