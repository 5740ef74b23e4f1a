"""STUDY_DIR/tune.html: the best trial and its config, every trial in a table (linked to its own
report), and Optuna's figures: optimization history, validation curves, parameter importances.

Importances come from PED-ANOVA, Optuna 5's default evaluator, which needs nothing beyond numpy
(fANOVA and mean decrease impurity need scikit-learn). It compares the values of the best trials
with those of all completed trials; with fewer than ``MIN_FOR_IMPORTANCE`` completed trials the
comparison would rest on one or two trials, so it is left out.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab import plots
from tunelab._html import Image, image, render
from tunelab.checkpoint import atomic_write_text
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


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state, in order of first appearance: complete, pruned, fail, running."""
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def _href(trial: FrozenTrial, study_dir: Path) -> str | None:
    """The trial's own report, relative to the study folder, when it wrote one."""
    d = trial.user_attrs.get("dir")
    if d and (Path(d) / "report.html").is_file():
        return os.path.relpath(Path(d) / "report.html", study_dir)
    return None


def _note(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:  # no error recorded: its worker stopped and its heartbeat with it
        return trial.user_attrs.get("error", "its worker stopped; the values are run again in a later trial")
    if trial.state == TrialState.PRUNED:
        return "pruned " + trial.user_attrs.get("pruned", "")
    if "failed_trial" in trial.system_attrs:
        return f"the values of trial {trial.system_attrs['failed_trial']} again"
    return ""


def _trial_row(t: FrozenTrial, keys: list[str], study_dir: Path, best: int | None) -> dict[str, Any]:
    values = dict(assigned_values(t))
    cells = [
        t.number,
        t.state.name.lower(),
        "" if t.value is None else f"{t.value:.4f}",
        max(t.intermediate_values) + 1 if t.intermediate_values else "",
        f"{t.duration.total_seconds():.1f}" if t.duration is not None else "",
    ]
    cells += [short(values[k]) if k in values else "" for k in keys]
    return {"cells": cells, "note": _note(t), "href": _href(t, study_dir), "best": t.number == best}


def _best(best: FrozenTrial | None, best_yaml: Path | None, study_dir: Path) -> dict[str, Any] | None:
    """The best trial, its searched values and, once written, the config that trains it."""
    if best is None:
        return None
    config = None
    if best_yaml is not None and best_yaml.is_file():
        config = {"path": str(best_yaml), "name": best_yaml.name, "text": best_yaml.read_text()}
    return {
        "number": best.number,
        "value": f"{best.value:.4f}",
        "href": _href(best, study_dir),
        "params": [[k, short(v)] for k, v in assigned_values(best)],
        "config": config,
    }


def _figures(study: optuna.Study, metric: str, out: Path, importance: bool, notes: list[str]) -> dict[str, Image | None]:
    """Optuna's figures of the study, each None when there is nothing to draw yet or it failed (with
    a line in ``notes`` saying why)."""
    from optuna.visualization import matplotlib as ovm

    trials = study.get_trials(deepcopy=False)
    n_done = sum(t.state == TrialState.COMPLETE for t in trials)
    figs: dict[str, Image | None] = {"history": None, "curves": None, "importance": None}

    def figure(name: str, draw: Callable[[], Any], alt: str) -> Image | None:
        path, why = _figure(draw, out / f"{name}.png")
        if why:
            notes.append(f"{alt}: not drawn ({why})")
        return image(path, alt)

    if n_done:
        figs["history"] = figure(
            "history", lambda: ovm.plot_optimization_history(study, target_name=metric), "optimization history"
        )
    if any(t.intermediate_values for t in trials):
        figs["curves"] = figure("curves", lambda: ovm.plot_intermediate_values(study), f"{metric} per epoch of every trial")
    if importance:
        evaluator = importance_evaluator(n_done)
        figs["importance"] = figure(
            "importance",
            lambda: ovm.plot_param_importances(study, evaluator=evaluator, target_name=metric),
            "parameter importances",
        )
    return figs


def write_study_report(study: optuna.Study, study_dir: Path, metric: str, best_yaml: Path | None, storage: str) -> Path:
    """Write STUDY_DIR/tune.html (figures in STUDY_DIR/plots) and return its path."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if done else None
    keys = list(dict.fromkeys(k for t in trials for k, _ in assigned_values(t)))
    importances = param_importances(study)
    notes: list[str] = []
    figs = _figures(study, metric, study_dir / "plots", importances is not None, notes)
    page = render(
        "tune.html.j2",
        title=f"tunelab search: {study.study_name}",
        sections=SECTIONS,
        metric=metric,
        n_trials=len(trials),
        counts=list(state_counts(trials).items()),
        direction=study.direction.name.lower(),
        seconds=f"{sum(t.duration.total_seconds() for t in trials if t.duration is not None):.0f}",
        storage=storage,
        notes=notes,
        best=_best(best, best_yaml, study_dir),
        keys=keys,
        trials=[_trial_row(t, keys, study_dir, best.number if best else None) for t in trials],
        figs=figs,
        n_done=len(done),
        min_for_importance=MIN_FOR_IMPORTANCE,
        importances=None if importances is None else [[k, f"{v:.3f}"] for k, v in importances.items()],
    )
    path = study_dir / "tune.html"
    atomic_write_text(path, page)
    return path
