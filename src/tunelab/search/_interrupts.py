"""Ctrl-C in ``tunelab tune``, at any moment, leaves the study consistent.

Optuna books each trial around the objective: ``ask`` creates it RUNNING, ``tell`` records its end.
A KeyboardInterrupt inside the objective is recorded (the trial fails); one while ``tell`` writes
left the trial RUNNING for good and raised ``UnboundLocalError`` from Optuna's own clean-up. So a
Ctrl-C while a trial trains interrupts it at once, and one while Optuna books a trial waits until the
booking is done (the search then stops, with the write-up); a second Ctrl-C stops at once, and a
trial it leaves RUNNING is marked failed afterwards. An interrupted trial's values are queued, so
that the next ``tunelab tune`` of the study runs them first (as a killed worker's are).

    interrupts = Interrupts()
    with interrupts.deferred(study):            # SIGINT handler for the search
        study.optimize(objective_that_wraps_its_work_in(interrupts.trial(t)), ...)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

import optuna
from optuna.trial import TrialState

log = logging.getLogger("tunelab.search")

INTERRUPTED = "interrupted (Ctrl-C); its values run again first in the next `tunelab tune` of this study"


def is_interrupt(e: BaseException) -> bool:
    """A KeyboardInterrupt, or an error raised while handling one (Optuna's UnboundLocalError)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class Interrupts:
    """This worker's Ctrl-C state: whether a trial's own work runs (interrupt at once), whether a
    Ctrl-C came while Optuna booked a trial (stop once it is booked), and the trial it runs."""

    def __init__(self) -> None:
        self.working = False
        self.pending = False
        self.study: optuna.Study | None = None
        self.current: optuna.Trial | None = None
        self.cut = False  # the current trial was interrupted in its work (or left RUNNING)

    @contextmanager
    def deferred(self, study: optuna.Study) -> Iterator[None]:
        """Install the SIGINT handler for the search (only the main thread can; elsewhere Ctrl-C
        reaches it as before)."""
        self.study = study
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.working or self.pending:
            raise KeyboardInterrupt
        self.pending = True
        log.info("interrupted: the search stops once Optuna has recorded the current trial (Ctrl-C again: at once)")
        if self.study is not None:
            with suppress(RuntimeError):  # outside study.optimize (the write-up): nothing to stop
                self.study.stop()

    @contextmanager
    def trial(self, trial: optuna.Trial) -> Iterator[None]:
        """Around a trial's own work (suggest, fit): a Ctrl-C there fails the trial at once, with
        the reason recorded; one that came while the trial was booked stops it before it starts."""
        self.current, self.cut = trial, False
        if self.pending:
            self.cut = True
            trial.set_user_attr("error", "interrupted (Ctrl-C) before it started")
            raise KeyboardInterrupt
        self.working = True
        try:
            yield
        except KeyboardInterrupt:
            self.working, self.cut = False, True  # a Ctrl-C while the reason is written waits for it
            trial.set_user_attr("error", INTERRUPTED)
            raise
        finally:
            self.working = False

    def settle(self) -> None:
        """After the search was interrupted: the current trial failed if Optuna left it RUNNING, and
        the values of a trial interrupted in its work queued to run again."""
        if self.study is None or self.current is None:
            return
        study, number = self.study, self.current.number
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if frozen.state == TrialState.RUNNING:  # a second Ctrl-C while Optuna recorded it
            self.current.set_user_attr("error", INTERRUPTED)
            frozen = study.tell(self.current, state=TrialState.FAIL)
            self.cut = True
        if not self.cut:
            log.info("interrupted after trial %d was recorded (%s): nothing lost", number, frozen.state.name.lower())
            return
        if not frozen.params:
            log.info("trial %d interrupted (Ctrl-C) before it started", number)
            return
        first = frozen.system_attrs.get("failed_trial", number)  # a retry's retry names the first trial
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=frozen.params,
                distributions=frozen.distributions,
                system_attrs={"failed_trial": first, "retry_history": [*frozen.system_attrs.get("retry_history", []), number]},
            )
        )
        log.info("trial %d %s", number, INTERRUPTED)
