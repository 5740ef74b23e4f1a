"""STUDY_DIR/tune.html: the best trial and its config, every trial in a table (linked to its own
report), and Optuna's figures: optimization history, validation curves, parameter importances.

Importances come from PED-ANOVA, Optuna 5's default evaluator, which needs nothing beyond numpy
(fANOVA and mean decrease impurity need scikit-learn). It compares the values of the best trials
with those of all completed trials; with fewer than ``MIN_FOR_IMPORTANCE`` completed trials the
comparison would rest on one or two trials, so it is left out.
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab import plots
from tunelab.checkpoint import atomic_write_text
from tunelab.report import _CSS, _img, _pre
from tunelab.search.space import assigned_values, short

MIN_FOR_IMPORTANCE = 5
SECTIONS = ["summary", "best", "trials", "history", "importance"]


def importance_evaluator(n_complete: int) -> optuna.importance.PedAnovaImportanceEvaluator:
    """PED-ANOVA judging what the top trials have in common: the top 10%, but never fewer than
    about 5 trials (its documentation's advice), and at most half."""
    return optuna.importance.PedAnovaImportanceEvaluator(target_quantile=min(0.5, max(0.1, 5 / max(1, n_complete))))


def param_importances(study: optuna.Study) -> dict[str, float] | None:
    """Each searched key's importance (summing to 1), or None with too few completed trials."""
    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < MIN_FOR_IMPORTANCE:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(study, evaluator=importance_evaluator(n))


def _figure(draw: Callable[[], Any], path: Path) -> tuple[Path | None, str]:
    """Draw an Optuna matplotlib figure into ``path``; (path, "") or (None, why not). Optuna's
    plots switch matplotlib to its ggplot style: kept inside this figure."""
    import matplotlib.pyplot as plt

    try:
        with plt.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            return plots._save(fig, path), ""
    except Exception as e:  # a figure is extra: the report is written without it
        plt.close("all")
        return None, f"{type(e).__name__}: {e}"


def _fmt(v: Any) -> str:
    return html.escape(short(v))


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state, in order of first appearance: complete, pruned, fail, running."""
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def _link(trial: FrozenTrial, study_dir: Path) -> str:
    d = trial.user_attrs.get("dir")
    if d and (Path(d) / "report.html").is_file():
        href = os.path.relpath(Path(d) / "report.html", study_dir)
        return f'<a href="{html.escape(href)}">report</a>'
    return ""


def _note(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:  # no error recorded: its worker stopped and its heartbeat with it
        return trial.user_attrs.get("error", "its worker stopped; the values are run again in a later trial")
    if trial.state == TrialState.PRUNED:
        return "pruned " + trial.user_attrs.get("pruned", "")
    if "failed_trial" in trial.system_attrs:
        return f"the values of trial {trial.system_attrs['failed_trial']} again"
    return ""


def _trials_table(trials: list[FrozenTrial], keys: list[str], study_dir: Path, best: int | None) -> str:
    head = "<tr><th>trial</th><th>state</th><th>value</th><th>epochs</th><th>seconds</th>" + \
        "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "<th>note</th><th>run</th></tr>"
    rows = []
    for t in trials:
        values = dict(assigned_values(t))
        epochs = max(t.intermediate_values) + 1 if t.intermediate_values else ""
        secs = f"{t.duration.total_seconds():.1f}" if t.duration is not None else ""
        mark = ' style="font-weight:600"' if t.number == best else ""
        rows.append(f"<tr{mark}><td>{t.number}</td><td>{t.state.name.lower()}</td>"
                    f"<td>{'' if t.value is None else f'{t.value:.4f}'}</td><td>{epochs}</td><td>{secs}</td>"
                    + "".join(f"<td>{_fmt(values[k]) if k in values else ''}</td>" for k in keys)
                    + f'<td style="text-align:left;white-space:nowrap">{html.escape(_note(t))}</td>'
                    + f'<td>{_link(t, study_dir)}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def write_study_report(study: optuna.Study, study_dir: Path, metric: str, best_yaml: Path | None,
                       storage: str) -> Path:
    """Write STUDY_DIR/tune.html (figures in STUDY_DIR/plots) and return its path."""
    from optuna.visualization import matplotlib as ovm

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if done else None
    keys = list(dict.fromkeys(k for t in trials for k, _ in assigned_values(t)))
    out = study_dir / "plots"
    notes: list[str] = []

    def figure(name: str, draw: Callable[[], Any], alt: str) -> str:
        path, why = _figure(draw, out / f"{name}.png")
        if why:
            notes.append(f"{alt}: not drawn ({why})")
        return _img(path, alt)

    history = figure("history", lambda: ovm.plot_optimization_history(study, target_name=metric),
                     "optimization history") if done else "<p>no completed trial yet</p>"
    if any(t.intermediate_values for t in trials):
        history += figure("curves", lambda: ovm.plot_intermediate_values(study), f"{metric} per epoch of every trial")
    importances = param_importances(study)
    if importances is None:
        importance = (f"<p>parameter importances need at least {MIN_FOR_IMPORTANCE} completed trials "
                      f"({len(done)} so far)</p>")
    else:
        evaluator = importance_evaluator(len(done))
        importance = figure("importance", lambda: ovm.plot_param_importances(study, evaluator=evaluator,
                                                                              target_name=metric), "parameter importances")
        importance += "<table><tr><th>key</th><th>importance</th></tr>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items()) + "</table>"
        importance += ("<p>PED-ANOVA (Optuna): how much the values of the best trials differ from those of all "
                       "completed trials, per key</p>")

    counts = state_counts(trials)
    seconds = sum(t.duration.total_seconds() for t in trials if t.duration is not None)
    direction = study.direction.name.lower()
    summary = (f"<p>{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
               f"; {metric} ({direction}d); {seconds:.0f} s of trials in all; storage {html.escape(storage)}</p>")
    if best is not None:
        tuned = dict(assigned_values(best))
        best_html = (f"<p>trial {best.number}: {metric} <b>{best.value:.4f}</b> {_link(best, study_dir)}</p>"
                     "<table class=\"kv\">" + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
                                                      for k, v in tuned.items()) + "</table>")
        if best_yaml is not None and best_yaml.is_file():
            best_html += (f"<p>train it, with the test set: <code>tunelab fit {html.escape(str(best_yaml))}</code></p>"
                          f"<details><summary>{html.escape(best_yaml.name)}</summary>{_pre(best_yaml.read_text())}"
                          "</details>")
    else:
        best_html = "<p>no completed trial yet</p>"
    body = {"summary": summary + "".join(f'<p class="warn">{html.escape(n)}</p>' for n in notes),
            "best": best_html, "trials": _trials_table(trials, keys, study_dir, best.number if best else None),
            "history": history, "importance": importance}
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{s}</h2>{body[s]}</section>' for s in SECTIONS)
    title = f"tunelab search: {html.escape(study.study_name)}"
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style>'
            f"</head><body><h1>{title}</h1><nav>{nav}</nav>{sections}</body></html>")
    path = study_dir / "tune.html"
    atomic_write_text(path, page)
    return path
