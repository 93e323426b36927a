"""An offline sweep as people read and steer it: its trials, its state, the report's figures."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from kmnist.backends import Plot, SweepInfo, TrialRecord
from kmnist.backends.optuna.liveness import Liveness
from kmnist.backends.optuna.samplers import retry_of
from kmnist.backends.optuna.stored import answers, load_sweep, scored_value
from kmnist.errors import UserError

STATES = ("running", "paused", "stopped")
_RECORD_STATE = {
    TrialState.RUNNING: "running",
    TrialState.COMPLETE: "completed",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "waiting",
}


class OptunaSweepControl:
    """The control face of an offline sweep: trials, info, plots, set_state."""

    def __init__(self, sweep_id: str, url: str | None = None) -> None:
        self.stored = load_sweep(sweep_id, url)
        self.sweep_id, self.url = sweep_id, self.stored.url
        self.liveness = Liveness(self.stored)

    @answers
    def trials(self) -> list[TrialRecord]:
        return [
            record(t)
            for t in self.stored.study.get_trials(deepcopy=False)
            if "discarded" not in t.user_attrs and "seeded_from" not in t.user_attrs
        ]

    @answers
    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise UserError(f"unknown sweep state {state!r}: expected one of {', '.join(STATES)}")
        self.stored.study.set_user_attr("state", state)

    @answers
    def info(self) -> SweepInfo:
        running = [r.number for r in self.trials() if r.state == "running"]
        dead = self.liveness.dead_trials()
        spec = self.stored.spec
        return SweepInfo(
            sweep_id=self.sweep_id,
            method=spec.method,
            metric=self.stored.metric_name,
            goal=spec.goal,
            state=self.stored.state,
            run_cap=spec.run_cap,
            agents_alive=sum(n not in dead for n in running),
            dead=dead,
            objectives=spec.objectives,
        )

    @answers
    def plots(self) -> list[Plot]:
        from kmnist.backends.optuna.plots import plots

        names = [name for name, _ in self.stored.spec.objectives]
        return plots(self.stored.study, self.stored.metric_name, names)


def record(t: FrozenTrial) -> TrialRecord:
    duration = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None
    )
    return TrialRecord(
        number=t.number,
        state=_RECORD_STATE.get(t.state, t.state.name.lower()),
        config=t.user_attrs.get("config", dict(t.params)),
        value=scored_value(t),
        summary=t.user_attrs.get("summary", {}),
        epochs=len(t.intermediate_values) or len(t.user_attrs.get("history", [])),
        duration=duration,
        reason=t.user_attrs.get("failure_reason", ""),
        retry_of=retry_of(t),
        values=list(t.values) if t.values and len(t.values) > 1 else None,
    )
