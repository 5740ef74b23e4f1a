"""The search space: dotted config keys (the keys of ``--set``) and the values a trial may give them.

A trial's values become ``--set`` overrides of the config, so anything ``--set`` can change can be
searched, and a bad key fails before the first trial with the message ``--set`` would give.

The default space, used when ``tune.space`` is absent, is built around the config's own two-stage
recipe (for the default recipe the values in brackets):

| key | range |
|---|---|
| ``stages.0.lr`` (head) | a decade either side of the config's value, log scale [3e-4, 3e-2] |
| ``stages.L.lr`` (last stage) | a decade either side of its learning rate, log [3e-5, 3e-3] |
| ``stages.L.train.I.last_blocks`` | N - 2 to N + 3, within the backbone's blocks [1, 6] |
| ``stages.L.epochs`` | a third to five thirds of its epochs [4, 20] |
| ``model.head.dropout`` | 0 to 0.5 in steps of 0.1 |
| ``regularization.augment`` | none, flip, light (image runs) |
| ``regularization.penalties.K.strength`` | L2-SP strength, log [1e-3, 3] |

L is the last stage when there are two or more; the last-blocks key is there when that stage trains
``{last_blocks: N}`` (or ``{last_layers: N}``). Without an l2sp penalty in the config, every trial
gets one (``{type: l2sp, layers: all, params: all}``) whose strength is searched; at 1e-3 it is as
good as off, so the search can still choose none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tunelab.config import Config, ParamSpec, build_config
from tunelab.errors import ConfigError
from tunelab.freezing import block_count, select

L2SP_RANGE = (1e-3, 3.0)


def assignment(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it back to the same value (JSON is YAML flow syntax)."""
    return f"{key}={json.dumps(value)}"


def assigned_values(trial: optuna.trial.FrozenTrial) -> list[tuple[str, Any]]:
    """(key, value) of the overrides a trial ran with (its user attribute ``overrides``)."""
    out = []
    for s in trial.user_attrs.get("overrides", []):
        key, _, value = s.partition("=")
        out.append((key, json.loads(value)))
    return out


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def short(value: Any) -> str:
    """A searched value as the log and the study report show it (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else _label(value)


def _sig(x: float) -> float:
    """Six significant digits: configs stay readable, and no search needs finer values."""
    return float(f"{x:.6g}")


@dataclass(frozen=True)
class Param:
    """One searched key. Choices go to Optuna as string labels (any YAML value can be a choice) and
    are mapped back to the values."""

    key: str
    spec: ParamSpec

    @property
    def labels(self) -> list[str]:
        return [_label(c) for c in self.spec.choices or []]

    def distribution(self) -> BaseDistribution:
        s = self.spec
        if s.choices is not None:
            return CategoricalDistribution(self.labels)
        if s.is_int:
            return IntDistribution(int(s.low), int(s.high), log=s.log, step=int(s.step or 1))  # type: ignore[arg-type]
        return FloatDistribution(float(s.low), float(s.high), log=s.log, step=s.step)  # type: ignore[arg-type]

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value for this key (a choice itself, not its label)."""
        s = self.spec
        if s.choices is not None:
            return s.choices[self.labels.index(trial.suggest_categorical(self.key, self.labels))]
        if s.is_int:
            return trial.suggest_int(self.key, int(s.low), int(s.high), step=int(s.step or 1), log=s.log)  # type: ignore[arg-type]
        v = trial.suggest_float(self.key, float(s.low), float(s.high), step=s.step, log=s.log)  # type: ignore[arg-type]
        return min(max(_sig(v), float(s.low)), float(s.high))  # type: ignore[arg-type]

    def extremes(self) -> list[Any]:
        """The values that must all give a valid config: both ends of a range, or every choice."""
        s = self.spec
        return list(s.choices) if s.choices is not None else [s.low, s.high]


def parse_space(space: dict[str, ParamSpec]) -> list[Param]:
    params = []
    for key, spec in space.items():
        if key.split(".")[0] == "tune":
            raise ConfigError(
                f"tune.space: {key}: the search cannot change its own settings; search config keys "
                "such as stages.0.lr, model.head.dropout or regularization.augment"
            )
        param = Param(key, spec)
        if len(set(param.labels)) != len(param.labels):
            raise ConfigError(f"tune.space: {key}: choices {spec.choices} repeat a value")
        params.append(param)
    return params


# --- the default space ---------------------------------------------------------------------------


def default_space(cfg: Config, blocks: int) -> tuple[list[str], dict[str, ParamSpec]]:
    """The default space for ``cfg`` (see the module docstring) and the overrides every trial needs
    for it (an l2sp penalty when the config has none). ``blocks``: what ``last_blocks`` can reach."""
    lrs = cfg.stage_lrs()
    space = {"stages.0.lr": _decade(lrs[0])}
    last = len(cfg.stages) - 1
    if last >= 1:
        stage = cfg.stages[last]
        space[f"stages.{last}.lr"] = _decade(lrs[last])
        for i, sel in enumerate(stage.train):
            if isinstance(sel, dict) and ("last_blocks" in sel or "last_layers" in sel):
                key, n = next(iter(sel.items()))
                low, high = max(1, int(n) - 2), min(int(n) + 3, blocks)
                if high > low:
                    space[f"stages.{last}.train.{i}.{key}"] = ParamSpec(low=low, high=high)
                break
        if stage.epochs > 1:
            space[f"stages.{last}.epochs"] = ParamSpec(low=max(1, round(stage.epochs / 3)), high=round(stage.epochs * 5 / 3))
    space["model.head.dropout"] = ParamSpec(low=0.0, high=0.5, step=0.1)
    from tunelab.tasks import task_for  # the models' libraries load only when a search starts

    presets = task_for(cfg).augment_presets
    if presets:
        space["regularization.augment"] = ParamSpec(choices=list(presets))
    penalties = cfg.regularization.penalties
    index = next((i for i, p in enumerate(penalties) if p.type == "l2sp"), None)
    fixed = []
    if index is None:
        index = len(penalties)
        with_l2sp = [p.model_dump(mode="json") for p in penalties] + [
            {"type": "l2sp", "strength": L2SP_RANGE[0], "layers": "all", "params": "all"}
        ]
        fixed.append(assignment("regularization.penalties", with_l2sp))
    space[f"regularization.penalties.{index}.strength"] = ParamSpec(low=L2SP_RANGE[0], high=L2SP_RANGE[1], log=True)
    return fixed, space


def _decade(lr: float) -> ParamSpec:
    return ParamSpec(low=_sig(lr / 10), high=_sig(lr * 10), log=True)


# --- checks before the first trial ---------------------------------------------------------------


def check_space(
    raw: dict[str, Any], fixed: list[str], params: list[Param], source: str, trainable: Callable[[Config], None]
) -> None:
    """Every searched key at both ends of its range (or at each choice) gives a valid config whose
    stages select parameters (``trainable`` raises otherwise), so a bad key or value stops the
    search before any trial runs, with the key named."""
    for p in params:
        for value in p.extremes():
            where = f"tune.space: {p.key}: {_label(value)}"
            try:
                cfg = build_config(raw, fixed + [assignment(p.key, value)], source)
                trainable(cfg)
            except ConfigError as e:
                raise ConfigError(f"{where} does not give a valid config:\n{e}") from None


class Skeletons:
    """Models with random weights, one per distinct model section: enough to count a backbone's
    blocks and to check that every stage's and penalty's selectors fit it."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    def get(self, cfg: Config) -> Any:
        from tunelab.tasks import build_model, random_weights

        key = cfg.model.model_dump_json() + f" {cfg.data.hparams()}"
        if key not in self.models:
            self.models[key] = build_model(random_weights(cfg), 2)
        return self.models[key]

    def blocks(self, cfg: Config) -> int:
        return block_count(self.get(cfg))

    def check(self, cfg: Config) -> None:
        model = self.get(cfg)
        for i, stage in enumerate(cfg.stages):
            select(model, stage.train, where=f"stages.{i}.train")
        for i, pen in enumerate(cfg.regularization.penalties):
            select(model, pen.layers, where=f"regularization.penalties.{i}.layers")


def check_compatible(study: optuna.Study, params: list[Param]) -> None:
    """A study keeps each parameter's kind (and a categorical parameter's choices) for good; a
    changed space needs a new study name."""
    new = {p.key: p.distribution() for p in params}
    seen: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        seen.update(t.distributions)
    for key, old in seen.items():
        d = new.get(key)
        if d is None:
            continue
        same = (
            type(old) is type(d)
            and getattr(old, "log", None) == getattr(d, "log", None)
            and (not isinstance(d, CategoricalDistribution) or list(old.choices) == list(d.choices))  # type: ignore[attr-defined]
        )
        if not same:
            raise ConfigError(
                f"tune.space: {key}: study '{study.study_name}' already searched it as {old}, now "
                f"{d}; Optuna keeps a parameter's kind (and choices) for the whole study. Give this "
                "space a new study name (--study NAME), or restore the old range"
            )
