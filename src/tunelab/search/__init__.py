"""Hyperparameter search on Optuna: ``tunelab tune CONFIG --trials N``.

    result = tunelab.tune("examples/tune_fashion_mnist.yaml", trials=20)
    result.best_value, result.best_config      # runs/demo-tune/best.yaml, which `tunelab fit` takes

Each trial is one ordinary :func:`tunelab.fit` of the config with the trial's values set as
``--set`` overrides (:mod:`tunelab.search.space`), in STUDY_DIR/trials/<number>. After every epoch
the validation metric goes to the trial (the step is the epoch counted across stages) and the pruner
may stop the trial there. A trial that fails, say a value that makes the config invalid, is recorded
with its error and the search goes on. Trials hold the test set out exactly as the config does but
never score it: the choice is made on the validation set alone.

The study lives in ``sqlite:///STUDY_DIR/study.db`` unless ``storage`` names another database that
Optuna accepts (``postgresql://user:password@host/db``): workers on many machines that run the same
command with the same storage share one study, and every later call adds trials to it.

Trials share the freeze-boundary cache: their ``cache.folder`` is STUDY_DIR/cache, with every entry
in a file under a key of what it was computed from (frozen weights, boundary, images, augmentation),
so a trial whose frozen prefix matches an earlier trial's reads the features instead of running the
backbone. A search over head settings costs one extraction pass and then only the head's epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
import torch
from optuna.trial import TrialState

from tunelab import checkpoint as ckpt
from tunelab.config import Config, TuneConfig, build_config, dump_config, read_raw
from tunelab.errors import ConfigError, TunelabError
from tunelab.objectives import better, metric_of, objective_of
from tunelab.run_folder import RunFolder
from tunelab.runs import LogFile
from tunelab.search._interrupts import Interrupts, is_interrupt
from tunelab.search.space import (
    Param,
    Skeletons,
    assigned_values,
    assignment,
    check_compatible,
    check_space,
    default_space,
    parse_space,
    short,
)

__all__ = ["TuneResult", "tune"]

log = logging.getLogger("tunelab.search")

# a trial that raises one of these is recorded as failed and the search goes on; anything else is
# a bug and stops it
TRIAL_ERRORS = (TunelabError, torch.cuda.OutOfMemoryError)


@dataclass
class TuneResult:
    """What a search left behind: the study, its folder, the best trial's value, values and config."""

    study: optuna.Study
    dir: Path
    storage: str  # the database URL, password hidden
    metric: str
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any] = field(default_factory=dict)  # tuned key -> value
    best_config: Path | None = None  # STUDY_DIR/best.yaml
    report: Path | None = None  # STUDY_DIR/tune.html

    def counts(self) -> dict[str, int]:
        """Trials of the whole study by state: complete, pruned, fail, running."""
        from tunelab.search._report import state_counts

        return state_counts(self.study.get_trials(deepcopy=False))


def tune(
    config: Config | str | Path | dict[str, Any] | None = None,
    *,
    overrides: list[str] | None = None,
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
) -> TuneResult:
    """Search the config's ``tune.space`` (or the default space) with Optuna: ``trials`` more
    trials (default ``tune.trials``), each a fit() judged by ``tune.metric`` on the validation set,
    then write STUDY_DIR/best.yaml and STUDY_DIR/tune.html from the whole study (``trials=0``: only
    that, e.g. once other workers have finished).

    ``storage``: an Optuna database URL (default ``sqlite:///STUDY_DIR/study.db``); ``study_name``:
    default ``<run.name>-tune``, also the folder under ``run.dir``; ``timeout``: seconds after which
    no new trial starts.

        result = tunelab.tune("examples/tune_fashion_mnist.yaml", overrides=["tune.trials=5"])
        tunelab.fit(result.best_config)
    """
    _check_one_process()
    plan = _plan(config, overrides, study_name)
    plan.dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(plan.dir / 'study.db').resolve()}"
    n_trials = plan.settings.trials if trials is None else trials  # 0: only write up the study as it is
    with _study_logging(plan.dir):
        direction = better(objective_of(plan.base), plan.settings.metric)
        study = _open_study(url, plan.name, plan.settings, plan.base.run.seed, shared=storage is not None, direction=direction)
        check_compatible(study, plan.params)
        _log_start(study, plan, url, n_trials, timeout)
        objective = _Objective(plan.raw, plan.fixed, plan.params, plan.settings.metric, plan.source, plan.base, plan.name)
        result = _search(study, objective, n_trials, timeout, lambda: _finish(study, plan.dir, url, plan.settings.metric))
    if result.best_trial is None:
        raise TunelabError(f"no trial of study '{plan.name}' has completed; the errors are in {result.report}")
    return result


@dataclass(frozen=True)
class _Plan:
    """A search as the config and the call define it, checked before anything runs."""

    raw: dict[str, Any]  # the config as given, without its tune section
    source: str  # where the config came from, for messages
    base: Config  # the config with the call's overrides
    settings: TuneConfig
    name: str  # the study's name, also its folder under run.dir
    dir: Path
    fixed: list[str]  # the overrides every trial gets
    params: list[Param]


def _check_one_process() -> None:
    """Refuse a launch under torchrun / accelerate: trials are spread over workers, not processes of one run."""
    from tunelab.distributed import launched_world_size

    if launched_world_size() > 1:
        raise ConfigError(
            "tunelab tune runs each trial in one process; start several workers instead (the same "
            "command with the same --storage URL, on as many machines or GPUs as you like), not "
            "torchrun / accelerate launch"
        )


def _plan(config: Config | str | Path | dict[str, Any] | None, overrides: list[str] | None, study_name: str | None) -> _Plan:
    """The search the call asks for: its config checked, its study's name and folder, its space."""
    raw, source = _raw(config)
    overrides = list(overrides or [])
    base = build_config(raw, overrides, source)  # every section checked before anything runs
    # "auto" resolved once: every trial, the study's direction and its report name the same metric
    settings = (base.tune or TuneConfig()).model_copy(update={"metric": metric_of(base)})
    if base.data.val_split <= 0:
        raise ConfigError("tunelab tune judges trials on the validation set: set data.val_split > 0")
    name = study_name or f"{base.run.name or (Path(config).stem if isinstance(config, (str, Path)) else 'study')}-tune"
    study_dir = Path(base.run.dir) / name
    raw = {k: v for k, v in raw.items() if k != "tune"}
    fixed, params = _space(raw, base, settings, overrides + _plumbing(base, study_dir), source)
    return _Plan(raw, source, base, settings, name, study_dir, fixed, params)


def _log_start(study: optuna.Study, plan: _Plan, url: str, n_trials: int, timeout: float | None) -> None:
    """The study's first log line: where it lives, how far it is, what this call adds and searches."""
    log.info(
        "study '%s' in %s: %d trials so far, %d more now%s (%s sampler, %s pruner), searching\n%s",
        plan.name,
        _hide_password(url),
        len(study.trials),
        n_trials,
        f" or for {timeout:g} s" if timeout else "",
        plan.settings.sampler,
        plan.settings.pruner,
        "\n".join(f"  {p.key}: {_describe(p)}" for p in plan.params),
    )


def _search(
    study: optuna.Study, objective: _Objective, n_trials: int, timeout: float | None, finish: Callable[[], TuneResult]
) -> TuneResult:
    """``study.optimize``, then the write-up (``finish``), after a Ctrl-C too; a Ctrl-C at any moment
    leaves the study consistent (:mod:`tunelab.search._interrupts`) and ends in KeyboardInterrupt."""
    interrupts = objective.interrupts
    with interrupts.deferred(study):
        try:
            # gc after each trial: a pruned or failed trial's model lives on in reference cycles otherwise
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=TRIAL_ERRORS, gc_after_trial=True)
        except BaseException as e:
            if not is_interrupt(e):
                finish()
                raise
            interrupts.pending = True
        if interrupts.pending:
            interrupts.settle()
        result = finish()
    if interrupts.pending:
        raise KeyboardInterrupt
    return result


def _space(
    raw: dict[str, Any], base: Config, settings: TuneConfig, fixed: list[str], source: str
) -> tuple[list[str], list[Param]]:
    """The searched keys, checked at both ends of every range (or each choice), and the overrides
    every trial gets (``fixed`` plus what the default space needs)."""
    skeletons = Skeletons()
    if settings.space is None:
        extra, space = default_space(base, skeletons.blocks(base))
        fixed = fixed + extra
    else:
        space = settings.space
    params = parse_space(space)
    check_space(raw, fixed, params, source, skeletons.check)
    return fixed, params


# --- one trial -----------------------------------------------------------------------------------


class _Objective:
    """Runs a trial: the config with the trial's values, fit() with the epoch hook, the final
    validation metric."""

    def __init__(
        self, raw: dict[str, Any], fixed: list[str], params: list[Param], metric: str, source: str, base: Config, name: str
    ) -> None:
        self.raw, self.fixed, self.params, self.metric, self.source = raw, fixed, params, metric, source
        self.base, self.name = base, name
        self.repeats = base.tune.repeats if base.tune else 1
        self.interrupts = Interrupts()

    def __call__(self, trial: optuna.Trial) -> float:
        with self.interrupts.trial(trial):
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float:
        from tunelab.pipeline import fit

        values = {p.key: p.suggest(trial) for p in self.params}
        sets = [assignment(k, v) for k, v in values.items()]
        trial.set_user_attr("overrides", sets)
        t0 = time.perf_counter()
        try:
            values_per_run = []
            for r in range(self.repeats):  # the first run reports to the pruner; its config is the trial's
                name = str(trial.number) if self.repeats == 1 else f"{trial.number}-seed{self.base.run.seed + r}"
                cfg = build_config(
                    self.raw,
                    self.fixed + sets + [assignment("run.name", name), f"run.seed={self.base.run.seed + r}"],
                    self.source,
                )
                run_r = fit(cfg, hooks=_trial_hooks(trial, self.metric) if r == 0 else None)
                if "val" not in run_r.metrics:
                    raise ConfigError("the run has no validation set to judge it by; set data.val_split > 0")
                values_per_run.append(float(run_r.metrics["val"][self.metric.removeprefix("val_")]))
                if r == 0:
                    run = run_r
                else:
                    shutil.rmtree(run_r.dir / RunFolder.CHECKPOINTS, ignore_errors=True)
        except optuna.TrialPruned as e:
            trial.set_user_attr("pruned", str(e))
            log.info("trial %d pruned %s in %.1f s", trial.number, e, time.perf_counter() - t0)
            raise
        except Exception as e:
            msg = str(e) if isinstance(e, TunelabError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr("error", msg)
            log.info("trial %d failed: %s", trial.number, msg)
            raise
        finally:
            _drop_checkpoints(trial)
        value = sum(values_per_run) / len(values_per_run)
        trial.set_user_attr("config", dump_config(_for_fit(run.config, self.base, self.name)))
        if self.repeats > 1:
            trial.set_user_attr("values", values_per_run)
        log.info(
            "trial %d: %s %.4f%s in %.1f s | %s",
            trial.number,
            self.metric,
            value,
            f" (mean of {', '.join(f'{v:.4f}' for v in values_per_run)})" if self.repeats > 1 else "",
            time.perf_counter() - t0,
            ", ".join(f"{k}={short(v)}" for k, v in values.items()),
        )
        return value


def _trial_hooks(trial: optuna.Trial, metric: str) -> dict[str, Any]:
    """fit() hooks that record the trial's run folder and report the validation metric after every
    epoch, raising optuna.TrialPruned when the pruner says so."""

    def on_stage_start(trainer: Any, stage: int) -> None:
        if "dir" not in trial.user_attrs:
            trial.set_user_attr("dir", str(Path(trainer.dir).resolve()))

    def on_epoch_end(trainer: Any, stage: int, epoch: int, metrics: dict[str, Any]) -> None:
        if metric not in metrics:
            return
        step = sum(s.epochs for s in trainer.cfg.stages[:stage]) + epoch
        value = float(metrics[metric])
        trial.report(value, step)
        if trial.should_prune():
            if trainer.tb is not None:  # the run stops here: release its TensorBoard writer
                trainer.tb.close()
            raise optuna.TrialPruned(f"after epoch {step + 1} ({metric} {value:.4f})")

    return {"on_stage_start": on_stage_start, "on_epoch_end": on_epoch_end}


def _drop_checkpoints(trial: optuna.Trial) -> None:
    """A trial is never resumed, so its resume state (tens of MB per trial) is deleted; the final
    weights stay in model.safetensors."""
    run_dir = trial.user_attrs.get("dir")
    if run_dir:
        shutil.rmtree(Path(run_dir) / RunFolder.CHECKPOINTS, ignore_errors=True)


def _plumbing(base: Config, study_dir: Path) -> list[str]:
    """Overrides every trial gets: its own folder under the study's, no progress bars, the test set
    held out but not scored, no refit (a trial is judged on its validation split, before any refit),
    and caches shared through files in the study folder."""
    from tunelab.tasks import decode_folder, task_for  # the models' libraries load only when a search starts

    out = [
        assignment("run.dir", str(study_dir / "trials")),
        "run.progress=false",
        "data.evaluate_test=false",
        "data.refit=never",
        "cache.max_memory_gb=0",
    ]
    if base.cache.folder is None:
        out.append(assignment("cache.folder", str(study_dir / "cache")))
    key = task_for(base).decode_key
    if key is not None and decode_folder(base, task_for(base)) is None:
        out.append(assignment(f"data.{key}", str(study_dir / "decoded")))
    return out


def _for_fit(trial_cfg: Config, base: Config, name: str) -> Config:
    """A trial's resolved config as `tunelab fit` should run it: the trial plumbing undone (test set
    scored, its own run folder and caches as configured), no tune section."""
    cfg = trial_cfg.model_copy(deep=True)
    cfg.run.dir, cfg.run.name, cfg.run.progress = base.run.dir, f"{name}-best", base.run.progress
    cfg.data.evaluate_test = base.data.evaluate_test
    cfg.data.refit = base.data.refit
    cfg.cache.folder, cfg.cache.max_memory_gb = base.cache.folder, base.cache.max_memory_gb
    cfg.tune = None
    from tunelab.tasks import decode_folder, task_for, with_decode_folder

    return with_decode_folder(cfg, task_for(cfg), decode_folder(base, task_for(base)))


# --- the study -----------------------------------------------------------------------------------


def _open_study(url: str, name: str, settings: TuneConfig, seed: int, *, shared: bool, direction: str) -> optuna.Study:
    """The study ``name`` at ``url`` (created, or joined), optimizing ``direction`` ('min' or 'max')."""
    goal: Literal["minimize", "maximize"] = "minimize" if direction == "min" else "maximize"
    try:
        with _creation_lock(url):
            study = _create_study(url, name, goal, settings)
    except Exception as e:  # a bad URL, a missing database driver, an unreachable server
        raise ConfigError(f"storage {_hide_password(url)}: {type(e).__name__}: {e}") from None
    if study.direction.name.lower() != goal:
        raise ConfigError(
            f"study '{name}' in {_hide_password(url)} was created to {study.direction.name.lower()} "
            f"its value, but tune.metric {settings.metric} needs {goal}; use another --study name"
        )
    # One worker on the default storage is reproducible: the seed follows run.seed and the trials
    # already done. Workers on a shared database also mix in their host and process, so that
    # workers started together do not propose the same trials.
    n = len(study.trials)
    if shared:
        digest = hashlib.sha256(f"{seed}:{n}:{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
        sampler_seed = int(digest[:8], 16)
    else:
        sampler_seed = seed + n
    study.sampler = (
        optuna.samplers.RandomSampler(seed=sampler_seed)
        if settings.sampler == "random"
        else optuna.samplers.TPESampler(seed=sampler_seed)
    )
    return study


def _create_study(url: str, name: str, direction: Literal["minimize", "maximize"], settings: TuneConfig) -> optuna.Study:
    """The study, created or loaded. Workers started together on a new database each create its
    tables; the loser of that race (`UNIQUE constraint failed: alembic_version.version_num`, `table
    ... already exists`) finds them made when it tries again."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(3):
        try:
            return optuna.create_study(
                storage=_storage(url), study_name=name, direction=direction, load_if_exists=True, pruner=_pruner(settings)
            )
        except (IntegrityError, OperationalError):
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Local workers on one SQLite file create (or load) the study one at a time: an OS lock on
    STUDY.db.lock beside it, released when the process ends however it ends. Other databases rely
    on the retries of :func:`_create_study`."""
    import fcntl

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # reported by the storage itself
        parsed = None
    db = (
        Path(parsed.database)
        if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        else None
    )
    if db is None or not db.parent.is_dir():
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# A running trial's worker writes a heartbeat; a trial whose heartbeat stopped (its worker was killed)
# is marked failed by the next worker that starts a trial, and run again with the same values once.
HEARTBEAT_S, GRACE_S = 30, 120


def _storage(url: str) -> optuna.storages.RDBStorage:
    # SQLite: wait for a lock instead of failing when several local workers write at once
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    retry: dict[str, Any]
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna 4.9 renamed it
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    else:
        retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **retry)


def _pruner(settings: TuneConfig) -> optuna.pruners.BasePruner:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.warmup_epochs))
    return optuna.pruners.NopPruner()


def _finish(study: optuna.Study, study_dir: Path, url: str, metric: str) -> TuneResult:
    """best.yaml (when a trial completed), tune.html, and the result."""
    from tunelab.search._report import write_study_report

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if done else None
    values = dict(assigned_values(best)) if best is not None else {}
    best_path = None
    if best is not None and "config" in best.user_attrs:
        best_path = study_dir / "best.yaml"
        header = [
            f"# The best of {len(done)} completed trials of study '{study.study_name}': trial {best.number}, "
            f"{metric} {best.value:.4f}, with",
            *(f"#   {k}: {json.dumps(v)}" for k, v in values.items()),
            f"# Train it, test set included: tunelab fit {best_path}",
        ]
        ckpt.atomic_write_text(best_path, "\n".join(header) + "\n" + best.user_attrs["config"])
    report = write_study_report(study, study_dir, metric, best_path, _hide_password(url))
    if best is not None:
        log.info("best: trial %d, %s %.4f -> %s", best.number, metric, best.value, best_path)
    return TuneResult(
        study,
        study_dir,
        _hide_password(url),
        metric,
        best.value if best else None,
        best.number if best else None,
        values,
        best_path,
        report,
    )


# --- small helpers -------------------------------------------------------------------------------


def _raw(config: Config | str | Path | dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    if config is None:
        return {}, "defaults"
    if isinstance(config, Config):
        return config.model_dump(mode="json", exclude_unset=True), "config"
    if isinstance(config, dict):
        return dict(config), "config"
    return read_raw(config), str(config)


def _describe(p: Param) -> str:
    s = p.spec
    if s.choices is not None:
        return "one of " + ", ".join(p.labels)
    kind = "integer" if s.is_int else "float"
    return f"{kind} {s.low:g} to {s.high:g}" + (", log scale" if s.log else "") + (f", step {s.step:g}" if s.step else "")


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@contextmanager
def _study_logging(study_dir: Path) -> Iterator[None]:
    """The search's own lines (one per trial) on the console and in STUDY_DIR/tune.log; each
    trial's full log stays in its run folder. Optuna's own lines would repeat ours (with tracebacks of
    failed trials): off meanwhile."""
    root = logging.getLogger("tunelab")
    root.setLevel(logging.INFO)
    root.propagate = False

    def ours(record: logging.LogRecord) -> bool:
        return record.name == log.name or record.levelno >= logging.WARNING

    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console._tunelab_console = True  # type: ignore[attr-defined]  # fit() adds no console of its own
    file = LogFile(study_dir / "tune.log")
    file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for h in (console, file):
        h.addFilter(ours)
        root.addHandler(h)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        for h in (console, file):
            root.removeHandler(h)
        file.close()
