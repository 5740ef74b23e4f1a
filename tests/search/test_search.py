"""tunelab tune: studies on the tiny config (trials of a second or two), the epoch hook, the space
checks, the command line and the study report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

import tunelab
from tunelab.cli import main
from tunelab.config import ParamSpec, build_config, load_config
from tunelab.errors import ConfigError
from tunelab.search import _trial_hooks
from tunelab.search._report import MIN_FOR_IMPORTANCE, write_study_report
from tunelab.search.space import Param, assignment, default_space

# a cheap space: the head's learning rate only (every trial shares the frozen prefix)
LR_SPACE = {"stages.0.lr": {"low": 1e-3, "high": 3e-2, "log": True}}


def _cfg(tiny_cfg: dict, **tune: object) -> dict:
    cfg = copy.deepcopy(tiny_cfg)
    cfg["tune"] = tune
    return cfg


def _trials(study: optuna.Study, state: optuna.trial.TrialState) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(state,))


def test_study_writes_db_best_config_and_report(tiny_cfg, tmp_path):
    result = tunelab.tune(_cfg(tiny_cfg, pruner="none"), trials=3)
    study_dir = tmp_path / "runs" / "tiny-tune"
    assert result.dir == study_dir and (study_dir / "study.db").is_file()
    assert result.storage == f"sqlite:///{study_dir / 'study.db'}"
    assert len(_trials(result.study, optuna.trial.TrialState.COMPLETE)) == 3
    done = result.study.best_trial
    assert result.best_trial == done.number and result.best_value == done.value
    # the default space: the recipe's learning rates, blocks, epochs, dropout, augmentation, L2-SP
    assert set(result.best_params) == {
        "stages.0.lr",
        "stages.1.lr",
        "stages.1.train.1.last_blocks",
        "stages.1.epochs",
        "model.head.dropout",
        "regularization.augment",
        "regularization.penalties.0.strength",
    }

    for t in result.study.trials:  # each trial: an ordinary run folder, validation only, no resume state
        run_dir = Path(t.user_attrs["dir"])
        assert run_dir == study_dir / "trials" / str(t.number)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert "val" in metrics and "test" not in metrics and "refit" not in metrics
        assert metrics["val"]["accuracy"] == pytest.approx(t.value)
        assert (run_dir / "report.html").is_file() and not (run_dir / "checkpoints").exists()

    best = load_config(result.best_config)  # the best trial's config, as fit should run it
    assert best.tune is None and best.data.evaluate_test and best.cache.folder is None and best.data.refit == "auto"
    assert best.run.name == "tiny-tune-best" and best.run.dir == tiny_cfg["run"]["dir"]
    assert best.stages[0].lr == result.best_params["stages.0.lr"]
    assert best.stages[1].train == ["head", {"last_blocks": result.best_params["stages.1.train.1.last_blocks"]}]
    assert best.regularization.augment == result.best_params["regularization.augment"]
    assert best.regularization.penalties[0].type == "l2sp"
    assert best.regularization.penalties[0].strength == result.best_params["regularization.penalties.0.strength"]
    run = tunelab.fit(result.best_config)  # accepted unchanged, and the test set is back
    assert run.dir == tmp_path / "runs" / "tiny-tune-best" and "test" in run.metrics
    assert run.metrics["val"]["accuracy"] == pytest.approx(result.best_value)  # the same run as the trial

    page = (study_dir / "tune.html").read_text()
    assert page.count('href="trials/') == 3 + 1 and "<th>regularization.augment</th>" in page  # each trial, and the best again
    assert f"tunelab fit {result.best_config}" in page and (study_dir / "plots" / "history.png").is_file()
    assert f"need at least {MIN_FOR_IMPORTANCE} completed trials" in page


def test_second_call_adds_trials_to_the_same_study(tiny_cfg, tmp_path):
    cfg = _cfg(tiny_cfg, space=LR_SPACE)
    first = tunelab.tune(cfg, trials=2)
    second = tunelab.tune(cfg, trials=1)
    assert second.study.study_name == first.study.study_name == "tiny-tune"
    assert [t.number for t in second.study.trials] == [0, 1, 2]
    assert (first.dir / "trials" / "2" / "report.html").is_file()
    (first.dir / "best.yaml").unlink()
    again = tunelab.tune(cfg, trials=0)  # no new trial: best.yaml and tune.html from the study as it is
    assert len(again.study.trials) == 3 and again.best_trial == second.best_trial and again.best_config.is_file()
    other = tunelab.tune(cfg, trials=1, study_name="other", storage=first.storage)  # one database, two studies
    assert len(other.study.trials) == 1 and other.dir == tmp_path / "runs" / "other"
    names = {s.study_name for s in optuna.get_all_study_summaries(first.storage)}
    assert names == {"tiny-tune", "other"}
    changed = _cfg(tiny_cfg, space={"stages.0.lr": {"low": 1e-3, "high": 3e-2}})  # no longer on a log scale
    with pytest.raises(ConfigError, match=r"tune.space: stages.0.lr: study 'tiny-tune' already searched it as"):
        tunelab.tune(changed, trials=1)
    assert len(optuna.load_study(study_name="tiny-tune", storage=first.storage).trials) == 3


def test_hopeless_trial_is_pruned_after_its_early_epochs(tiny_cfg, tmp_path):
    cfg = _cfg(
        tiny_cfg,
        metric="val_loss",
        pruner="median",
        startup_trials=1,
        warmup_epochs=1,
        space={"stages.0.lr": {"low": 1e-3, "high": 1e4, "log": True}},
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="prune", direction="minimize")
    study.enqueue_trial({"stages.0.lr": 3e-3})
    study.enqueue_trial({"stages.0.lr": 5e3})  # an absurd learning rate: the loss explodes
    result = tunelab.tune(cfg, trials=2, storage=storage, study_name="prune")
    good, bad = result.study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE
    assert bad.state == optuna.trial.TrialState.PRUNED and bad.user_attrs["pruned"].startswith("after epoch 2 ")
    assert sorted(bad.intermediate_values) == [0, 1]  # never pruned during its warmup epoch
    assert not (Path(bad.user_attrs["dir"]) / "report.html").exists()
    assert result.best_trial == good.number
    assert "pruned after epoch 2" in (result.dir / "tune.html").read_text()


def test_epoch_hook_reports_across_stages_and_prunes():
    class Always(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return trial.last_step is not None and trial.last_step >= 4

    study = optuna.create_study(direction="maximize", pruner=Always())
    trial = study.ask()
    closed = []
    trainer = SimpleNamespace(
        cfg=build_config({"recipe": "fast"}), dir=Path("run"), tb=SimpleNamespace(close=lambda: closed.append(1))
    )
    hooks = _trial_hooks(trial, "val_accuracy")
    hooks["on_stage_start"](trainer=trainer, stage=0)
    hooks["on_epoch_end"](trainer=trainer, stage=0, epoch=3, metrics={"val_accuracy": 0.5})
    hooks["on_epoch_end"](trainer=trainer, stage=0, epoch=1, metrics={"val_loss": 0.5})  # no such metric: ignored
    with pytest.raises(optuna.TrialPruned, match=r"after epoch 10 \(val_accuracy 0.6000\)"):
        # stage 2, epoch 2: the default recipe's stage 1 has 8 epochs, so this is step 9
        hooks["on_epoch_end"](trainer=trainer, stage=1, epoch=1, metrics={"val_accuracy": 0.6})
    assert study.trials[0].intermediate_values == {3: 0.5, 9: 0.6} and closed == [1]
    assert study.trials[0].user_attrs["dir"] == str(Path("run").resolve())


@pytest.mark.parametrize(
    "space, message",
    [
        (
            {"model.head.dropoutt": {"low": 0.0, "high": 0.5}},
            r"tune.space: model.head.dropoutt: 0.0 does not give a valid config:[\s\S]*unknown key 'dropoutt' "
            r"\(did you mean 'dropout'\?\)",
        ),
        (
            {"model.head.dropout": {"low": 0.0, "high": 1.5}},
            r"tune.space: model.head.dropout: 1.5 does not give a valid config:[\s\S]*less than 1",
        ),
        (
            {"stages.3.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
            r"tune.space: stages.3.lr: [\s\S]*'3' is not an index of a list with 2 items",
        ),
        (
            {"stages.1.train.1.last_blocks": {"low": 1, "high": 50}},
            r"tune.space: stages.1.train.1.last_blocks: 50 .*[\s\S]*use at most",
        ),
        (
            {"regularization.augment": {"choices": ["flip", "sideways"]}},
            r"tune.space: regularization.augment: sideways does not give a valid config",
        ),
        (
            {"model.head.dropout": {"low": 0.5, "high": 0.1}},
            r"tune.space.model.head.dropout: Value error, low \(0.5\) is above high \(0.1\)",
        ),
        (
            {"stages.0.lr": {"low": 0.0, "high": 0.1, "log": True}},
            r"tune.space.stages.0.lr: Value error, a log range needs low > 0",
        ),
        ({"stages.0.lr": {"low": 0.001}}, r"tune.space.stages.0.lr: Value error, a range needs low and high"),
        ({"tune.trials": {"choices": [1, 2]}}, r"tune.space: tune.trials: the search cannot change its own settings"),
    ],
)
def test_bad_space_stops_before_any_trial_naming_the_key(tiny_cfg, tmp_path, space, message):
    with pytest.raises(ConfigError, match=message):
        tunelab.tune(_cfg(tiny_cfg, space=space), trials=1)
    assert not (tmp_path / "runs").exists()


def test_search_needs_a_validation_set(tiny_cfg):
    tiny_cfg["data"]["val_split"] = 0
    with pytest.raises(ConfigError, match="judges trials on the validation set"):
        tunelab.tune(tiny_cfg, trials=1)


def test_failed_trial_is_recorded_and_the_search_goes_on(tiny_cfg, tmp_path):
    # a value that makes a valid config whose data cannot be read: the trial fails at run time
    cfg = _cfg(tiny_cfg, space={"data.train": {"choices": [tiny_cfg["data"]["train"], str(tmp_path / "missing")]}})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="fails", direction="maximize")
    study.enqueue_trial({"data.train": str(tmp_path / "missing")})
    study.enqueue_trial({"data.train": tiny_cfg["data"]["train"]})
    result = tunelab.tune(cfg, trials=2, storage=storage, study_name="fails")
    failed, done = result.study.trials
    assert failed.state == optuna.trial.TrialState.FAIL and done.state == optuna.trial.TrialState.COMPLETE
    assert failed.user_attrs["error"].startswith(f"data.train: '{tmp_path / 'missing'}' does not exist")
    assert result.best_trial == 1 and "does not exist" in (result.dir / "tune.html").read_text()


def test_cli_tune_prints_best_and_fit_command(tiny_cfg, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(_cfg(tiny_cfg, space=LR_SPACE)))
    assert main(["tune", str(p), "--trials", "2", "--study", "cli", "--set", "stages.1.epochs=1"]) == 0
    out = capsys.readouterr().out
    best = tmp_path / "runs" / "cli" / "best.yaml"
    assert "study 'cli': 2 complete" in out and f"tunelab fit {best}" in out and "stages.0.lr = " in out
    lines = out.splitlines()
    assert sum(x.startswith("trial 0: val_accuracy") for x in lines) == 1 and "stage 1 epoch" not in out  # one line a trial
    assert load_config(best).stages[1].epochs == 1  # --set applies to every trial and to the best config
    assert "trial 1: val_accuracy" in (tmp_path / "runs" / "cli" / "tune.log").read_text()
    assert main(["tune", str(p), "--trials", "1", "--set", "tune.pruner=sometimes"]) == 2
    assert "tune.pruner: Input should be 'median', 'hyperband' or 'none'" in capsys.readouterr().err


def test_trials_share_the_freeze_boundary_cache(tiny_cfg, tmp_path):
    result = tunelab.tune(_cfg(tiny_cfg, space=LR_SPACE, pruner="none"), trials=2)
    logs = [(result.dir / "trials" / str(i) / "log.txt").read_text() for i in (0, 1)]
    assert "computed in" in logs[0]
    # the second trial's frozen prefix (weights, boundary, images, augmentation) is the first's
    assert logs[1].count("(reused in") == 2 and "computed in" not in logs[1]
    saved = load_config(result.dir / "trials" / "1" / "config.yaml")
    assert saved.cache.folder == str(result.dir / "cache") and saved.cache.max_memory_gb == 0
    # pooled features and stage 2's boundary, of the training and of the validation images
    assert len(list((result.dir / "cache").glob("*.done"))) == 4
    assert saved.data.decode_cache == str(result.dir / "decoded") and not saved.data.evaluate_test


def test_default_space_follows_the_recipe_and_adds_l2sp():
    cfg = build_config({"recipe": "fast"})
    fixed, space = default_space(cfg, blocks=16)
    assert space["stages.0.lr"] == ParamSpec(low=3e-4, high=3e-2, log=True)
    assert space["stages.1.lr"] == ParamSpec(low=3e-5, high=3e-3, log=True)
    assert space["stages.1.train.1.last_blocks"] == ParamSpec(low=1, high=6)
    assert space["stages.1.epochs"] == ParamSpec(low=4, high=20)
    assert space["regularization.augment"].choices == ["none", "flip", "light"]
    assert fixed == [
        assignment("regularization.penalties", [{"type": "l2sp", "strength": 1e-3, "layers": "all", "params": "all"}])
    ]
    with_fixed = build_config({}, fixed + ["regularization.penalties.0.strength=0.3"])
    assert with_fixed.regularization.penalties[0].type == "l2sp"
    assert with_fixed.regularization.penalties[0].strength == 0.3
    # an l2sp penalty already there is searched in place; a one-stage recipe gets the head's keys
    own = build_config(
        {
            "stages": [{"lr": 1e-2}],
            "regularization": {"penalties": [{"type": "l1", "strength": 1e-6}, {"type": "l2sp", "strength": 0.1}]},
        }
    )
    fixed, space = default_space(own, blocks=16)
    assert fixed == [] and "regularization.penalties.1.strength" in space
    assert not any(k.startswith("stages.1") for k in space) and space["stages.0.lr"].high == 0.1


def test_choices_of_any_yaml_value_round_trip():
    choices = [["head"], ["head", {"last_blocks": 2}], "all"]
    p = Param("stages.1.train", ParamSpec(choices=choices))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(6):
        trial = study.ask()
        value = p.suggest(trial)
        seen.append(value)
        cfg = build_config({}, [assignment(p.key, value)])
        assert cfg.stages[1].train == (value if isinstance(value, list) else [value])
        study.tell(trial, 0.0)
    assert all(v in choices for v in seen) and len({json.dumps(v) for v in seen}) > 1


def test_report_shows_importances_once_enough_trials_completed(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    params = [
        Param("stages.0.lr", ParamSpec(low=1e-4, high=1e-1, log=True)),
        Param("regularization.augment", ParamSpec(choices=["none", "flip"])),
    ]
    for i in range(8):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        trial.set_user_attr("overrides", [assignment(k, v) for k, v in values.items()])
        if i == 7:
            trial.set_user_attr("error", "stages.0.train: selects no parameters")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, -abs(values["stages.0.lr"] - 0.01))
    path = write_study_report(study, tmp_path, "val_accuracy", None, "sqlite:///x.db")
    page = path.read_text()
    assert (tmp_path / "plots" / "importance.png").is_file() and "<td>stages.0.lr</td>" in page
    assert page.count("<tr") == 1 + 8 + 2 + 1 + 2  # trials table (header, 8), best (2), importances (header, 2)
    assert "stages.0.train: selects no parameters" in page and "7 complete, 1 fail" in page


def test_repeats_judge_a_trial_by_the_mean_over_seeds(tiny_cfg, tmp_path):
    """tune.repeats: each trial trains with run.seed, run.seed + 1, ... on the same data; its value is
    the mean of their validation metrics, and best.yaml keeps the first seed."""
    result = tunelab.tune(_cfg(tiny_cfg, space=LR_SPACE, pruner="none", repeats=2), trials=2)
    for t in result.study.trials:
        runs = [result.dir / "trials" / f"{t.number}-seed{s}" for s in (0, 1)]
        vals = [json.loads((d / "metrics.json").read_text())["val"]["accuracy"] for d in runs]
        assert t.user_attrs["values"] == vals and t.value == pytest.approx(sum(vals) / 2)
        assert json.loads((runs[0] / "data.json").read_text()) == json.loads((runs[1] / "data.json").read_text())
        assert all(not (d / "checkpoints").exists() for d in runs)
        assert Path(t.user_attrs["dir"]) == runs[0]
    assert load_config(result.best_config).run.seed == 0


def test_tune_under_a_distributed_launcher_says_to_start_workers(tiny_cfg, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="start several workers instead"):
        tunelab.tune(_cfg(tiny_cfg, space=LR_SPACE), trials=1)


def test_study_report_renders_in_chromium(tiny_cfg, tmp_path):
    """tune.html in a real browser: every section, every figure decoded (importances included once
    enough trials completed), working links to the trials' own reports, no console errors."""
    from playwright.sync_api import sync_playwright

    from conftest import CHROMIUM, CHROMIUM_FLAGS
    from tunelab.search._report import SECTIONS

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: sudo apt-get install chromium (scripts/setup.sh does this as root)")
    cfg = _cfg(tiny_cfg, pruner="none", space={**LR_SPACE, "model.head.dropout": {"low": 0.0, "high": 0.5}})
    cfg["stages"] = cfg["stages"][:1]  # the head alone: 5 trials in seconds
    result = tunelab.tune(cfg, trials=MIN_FOR_IMPORTANCE)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(result.report.as_uri())
        for s in SECTIONS:
            assert page.locator(f"section#{s} h2").inner_text() == s
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 3 and all(w > 0 for w in widths), widths  # history, curves, importances
        assert "model.head.dropout" in page.locator("section#importance").inner_text()
        links = page.eval_on_selector_all("section#trials a", "as => as.map(a => a.href)")
        assert len(links) == MIN_FOR_IMPORTANCE
        page.goto(links[0])  # a trial's own report opens
        assert page.locator("section#summary h2").count() == 1
        browser.close()
    assert errors == []


def test_text_run_searches_its_own_default_space(tiny_text_cfg):
    """A text config gets the default space of its recipe: no image augmentation, its layers, and
    trials that share the tokenized data and the encoder cache."""
    cfg = copy.deepcopy(tiny_text_cfg)
    cfg["tune"] = {"pruner": "none"}
    result = tunelab.tune(cfg, trials=2)
    assert result.counts() == {"complete": 2}
    assert "regularization.augment" not in result.best_params and "stages.0.lr" in result.best_params
    assert any(k.startswith("stages.1.train") for k in result.best_params), result.best_params
    run = tunelab.fit(result.best_config)
    assert run.metrics["val"]["accuracy"] == pytest.approx(result.best_value)


def test_killed_worker_trial_is_failed_and_run_again(tiny_cfg, tmp_path, monkeypatch):
    """kill -9 of a worker in the middle of a trial: the next worker marks the trial (no heartbeat
    any more) failed and runs its values again, so a search that is killed loses no trial."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import tunelab.search as search

    cfg = _cfg(tiny_cfg, space=LR_SPACE, pruner="none")
    cfg["stages"][1]["epochs"] = 40  # a trial long enough to be killed in
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "tune", str(path), "--trials", "2"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trial1 = tmp_path / "runs" / "tiny-tune" / "trials" / "1" / "metrics.jsonl"
    deadline = time.time() + 120
    # a few epochs into trial 1: its worker has written a heartbeat by then
    while time.time() < deadline and proc.poll() is None and not (trial1.is_file() and len(trial1.read_text().splitlines()) >= 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert trial1.is_file(), "the worker ended before trial 1 started"

    monkeypatch.setattr(search, "GRACE_S", 1)  # the killed worker's last heartbeat is older than this
    time.sleep(1.5)
    cfg["stages"][1]["epochs"] = 3
    result = tunelab.tune(cfg, trials=1)
    states = [t.state for t in result.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    killed, retry = result.study.trials[1:]
    assert retry.params == killed.params and retry.system_attrs["failed_trial"] == 1
    page = (result.dir / "tune.html").read_text()
    assert "its worker stopped" in page and "the values of trial 1 again" in page


def test_trials_never_refit_and_the_best_config_keeps_the_users_refit(tmp_path):
    """A trial is judged on its validation split: a refit (data.refit: auto at <= 10 examples a
    class) would double every trial for a model nobody scores; the best config gets refit back."""
    from tunelab.config import build_config
    from tunelab.search import _for_fit, _plumbing

    base = build_config({"data": {"refit": "always"}})
    assert "data.refit=never" in _plumbing(base, tmp_path)
    trial = build_config({"data": {"refit": "never"}})
    assert _for_fit(trial, base, "x").data.refit == "always"


# --- Ctrl-C at any moment leaves the study consistent ------------------------------------------------


def _when_optuna_records_the_first_trial(monkeypatch, act) -> None:
    """Run ``act`` as Optuna starts to record (``tell``) the first trial's end: the moment "just
    after a trial ends" when Ctrl-C gave UnboundLocalError and left the trial RUNNING."""
    import optuna.study._optimize as optimize

    tell, done = optimize._tell_with_warning, []

    def interrupted_tell(*args, **kwargs):
        if not done:
            done.append(True)
            act()
        return tell(*args, **kwargs)

    monkeypatch.setattr(optimize, "_tell_with_warning", interrupted_tell)


def test_ctrl_c_just_after_a_trial_ends_waits_until_it_is_recorded(tiny_cfg, tmp_path, monkeypatch):
    import os
    import signal

    cfg = _cfg(tiny_cfg, space=LR_SPACE, pruner="none")
    _when_optuna_records_the_first_trial(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        tunelab.tune(cfg, trials=3)
    study_dir = tmp_path / "runs" / "tiny-tune"
    study = optuna.load_study(study_name="tiny-tune", storage=f"sqlite:///{study_dir / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]  # recorded, and no trial after it
    assert (study_dir / "best.yaml").is_file() and "interrupted after trial 0 was recorded (complete): nothing lost" in (
        study_dir / "tune.log"
    ).read_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the search's handler is gone
    result = tunelab.tune(cfg, trials=1)  # the same command continues the study
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_a_second_ctrl_c_while_optuna_records_fails_the_trial_and_queues_its_values(tiny_cfg, tmp_path, monkeypatch):
    def second_ctrl_c() -> None:  # what the handler lets through once a first Ctrl-C is waiting
        raise KeyboardInterrupt

    cfg = _cfg(tiny_cfg, space=LR_SPACE, pruner="none")
    _when_optuna_records_the_first_trial(monkeypatch, second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # not Optuna's UnboundLocalError
        tunelab.tune(cfg, trials=3)
    monkeypatch.undo()
    result = tunelab.tune(cfg, trials=1)
    cut, again = result.study.trials
    assert cut.state == optuna.trial.TrialState.FAIL and cut.user_attrs["error"].startswith("interrupted (Ctrl-C)")
    assert again.state == optuna.trial.TrialState.COMPLETE and again.params == cut.params
    assert again.system_attrs["failed_trial"] == 0 and Path(again.user_attrs["dir"]).name == "1"
    page = (result.dir / "tune.html").read_text()
    assert "interrupted (Ctrl-C); its values run again first" in page and "the values of trial 0 again" in page


def test_cli_ctrl_c_during_a_trial_exits_130_and_the_next_call_runs_its_values_first(tiny_cfg, tmp_path, monkeypatch, capsys):
    import os
    import signal

    import tunelab.search as search

    hooks = search._trial_hooks

    def ctrl_c_in_trial_1(trial, metric):
        h = hooks(trial, metric)

        def on_epoch_end(**kw):
            h["on_epoch_end"](**kw)
            if trial.number == 1:
                os.kill(os.getpid(), signal.SIGINT)

        return {**h, "on_epoch_end": on_epoch_end}

    monkeypatch.setattr(search, "_trial_hooks", ctrl_c_in_trial_1)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(_cfg(tiny_cfg, space=LR_SPACE, pruner="none")))
    assert main(["tune", str(p), "--trials", "3", "--set", "stages.1.epochs=1"]) == 130
    out, err = capsys.readouterr()
    assert "trial 1 interrupted (Ctrl-C); its values run again first in the next `tunelab tune` of this study" in out
    assert "run the same command again" in err and "Traceback" not in err + out
    study = optuna.load_study(study_name="tiny-tune", storage=f"sqlite:///{tmp_path / 'runs' / 'tiny-tune' / 'study.db'}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert study.trials[2].params == study.trials[1].params and study.trials[2].system_attrs["failed_trial"] == 1


def _open_in_a_worker(url: str, barrier, results) -> None:
    from tunelab.config import TuneConfig
    from tunelab.search import _open_study

    barrier.wait()  # every worker creates the storage at the same moment
    try:
        _open_study(url, "together", TuneConfig(), 0, shared=False, direction="max")
        results.put("ok")
    except BaseException as e:
        results.put(f"{type(e).__name__}: {e}")


def test_workers_started_together_on_a_new_sqlite_store_all_open_it(tmp_path):
    """Two `tune` workers started together on a new SQLite file: one died with `UNIQUE constraint
    failed: alembic_version.version_num` (or `table ... already exists`) from creating its tables."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the test process has imported everything already
    for attempt in range(3):  # the race was lost about every other time
        url = f"sqlite:///{tmp_path / f'store{attempt}' / 'study.db'}"
        (tmp_path / f"store{attempt}").mkdir()
        barrier, results = ctx.Barrier(4), ctx.Queue()
        workers = [ctx.Process(target=_open_in_a_worker, args=(url, barrier, results)) for _ in range(4)]
        for w in workers:
            w.start()
        outcome = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert outcome == ["ok"] * 4
        assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["together"]


def test_a_study_log_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(tmp_path):
    """tune.log is written like a run's log.txt: never through a link put in the study folder."""
    from tunelab.errors import RunError
    from tunelab.search import _study_logging

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "tune.log").symlink_to(target)
    with pytest.raises(RunError, match=r"tune.log is a symbolic link \(to .*elsewhere.txt\)"), _study_logging(tmp_path / "study"):
        pass
    assert target.read_text() == "keep\n"
