"""The time budget: one value that owns a time limit and hands seconds to the phases of a
command (loading, the range test, candidates, trials, the retrain, the final evaluation and
report). Every share of a limit that scaletrain keeps for something is named here."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

EVAL_RESERVE = 0.03       # of a limit, kept for the final evaluation at least (a 10-minute run overran by 9.5 s without it)
REPORT_SECONDS = 5.0      # writing the run directory and report.html (Fashion-MNIST: ~4 s)
LR_FIND_SHARE = 0.05      # of a limit, at most, for the learning-rate range test
PROBE_SHARE = 0.12        # of a limit, at most, for the scaling probe that sizes a conv net (size_probe.py)
TRAINING_SHARE = 0.8      # of the time left when sizing a model: the rest goes to probes, range test, evaluation
RETRAIN_SHARE = 0.4       # of a search's limit, kept for the best's final training when runs end on time
MIN_TRIAL_SECONDS = 10.0  # a trial's least time: shorter runs rank configurations by noise
FINISH_SECONDS = 5.0      # evaluating and writing DIR/best after a search's retrain
EXPECTED_TRIALS = 8       # a search budget without a trial count is shared as if among this many
SPENT = 1e-3              # seconds given to a run when nothing is left: a limit of 0 would read as no limit


@dataclass
class Budget:
    """A time limit in seconds (None: no limit) counted from `started` (a perf_counter
    reading), `spent_before` seconds already used by what came before; `phases` holds the
    seconds each named phase took, in order (a run's metrics.json `seconds`, its report)."""

    limit: float | None
    started: float = field(default_factory=time.perf_counter)
    spent_before: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def limited(self) -> bool:
        return self.limit is not None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started + self.spent_before

    def left(self) -> float | None:
        return None if not self.limited else max(0.0, self.limit - self.elapsed())

    def rest(self, runs: int) -> "Budget":
        """The budget of the next of `runs` runs still to go, starting now: what is left shared
        equally, so a run that ends early (a linear model solved in seconds, an early stop)
        leaves its time to the ones after it (zero-config's candidates)."""
        return Budget(max(self.left(), SPENT) / runs if self.limited else None)

    def from_now(self) -> "Budget":
        """The same limit counted from now, what was spent so far carried over."""
        return Budget(self.limit, spent_before=self.elapsed())

    @contextmanager
    def phase(self, name: str):
        """Time what runs within as the phase `name` (a phase entered again adds up)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - began, 3)

    # ------------------------------------------------------------ one training run
    def lr_find_seconds(self) -> float:
        return LR_FIND_SHARE * self.limit

    def sizing_seconds(self) -> float:
        """Seconds a model is sized to train in: a share of what is left."""
        return self.left() * TRAINING_SHARE

    def training_limit(self) -> float | None:
        """Where training must end before anything is measured: the flat reserve taken off."""
        return self.limit * (1 - EVAL_RESERVE) if self.limited else None

    def after_training(self, measured_seconds: float, report_seconds: float = REPORT_SECONDS) -> float:
        """Seconds to keep after training: the final evaluation as measured, plus the report,
        never below the flat reserve."""
        return max(measured_seconds + report_seconds, EVAL_RESERVE * self.limit)

    # ------------------------------------------------------------ a search
    def search_plan(self, trials: int | None, ends_on_time: bool) -> tuple[float, float | None]:
        """Return (seconds kept for the best's final training, each trial's time limit).

        Runs that end on time (images) make trials short low-fidelity runs that rank the
        configurations, and the best then trains for RETRAIN_SHARE of the limit (the
        multi-fidelity idea of successive halving). Runs that end by early stopping (tables)
        need about what one trial took to retrain: the default, the trials and the retrain
        share the budget equally. A limit without room for one trial is refused by the caller
        (`least_search_seconds`).
        """
        if not self.limited:
            return 0.0, None
        reserve = RETRAIN_SHARE * self.limit if ends_on_time else 0.0
        runs = (trials or EXPECTED_TRIALS) + (1 if ends_on_time else 2)  # + the default (+ the retrain)
        return reserve, max((self.limit - reserve) / runs, MIN_TRIAL_SECONDS)

    @staticmethod
    def least_search_seconds(ends_on_time: bool) -> float:
        """The shortest limit that fits the default, one trial and the retrain."""
        return MIN_TRIAL_SECONDS * (2 / (1 - RETRAIN_SHARE) if ends_on_time else 3)

    def until_last_trial(self, retrain_seconds: float) -> float:
        """Seconds from now after which no trial starts: what is left then is the retrain's
        and the writing of the results."""
        return self.left() - retrain_seconds - FINISH_SECONDS

    def retrain_limit(self) -> float:
        """The time limit of a search's final retrain: what is left, less the writing."""
        return max(1.0, self.left() - FINISH_SECONDS)
