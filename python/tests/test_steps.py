"""Stepped parameters through the SDK against a real coordinator, as Optuna's
`suggest_int(..., step=32)` and `suggest_float(..., step=0.1)`: every trial of BO and of the grid
is on the steps (0.3, not 0.30000000000000004), told results are checked against them, and a bad
step is refused naming the parameter."""

import grpc
import pytest

import tunefleet

SPACE = [
    tunefleet.IntParam("units", 32, 256, step=32),
    tunefleet.FloatParam("dropout", 0.0, 0.5, step=0.1),
]
TENTHS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def loss(params):
    return ((params["units"] - 128) / 64) ** 2 + ((params["dropout"] - 0.3) * 5) ** 2


@pytest.mark.parametrize("strategy", ["bo", "grid"])
def test_every_trial_is_on_the_steps(client, strategy):
    exp = client.create_experiment(f"steps-{strategy}", metric="value", direction="minimize",
                                   params=SPACE, budget=10, parallelism=2, strategy=strategy,
                                   initial_trials=4, seed=5, grid_levels=8)
    seen = []
    for trial in exp.trials(timeout=30):
        units, dropout = trial.params["units"], trial.params["dropout"]
        assert isinstance(units, int) and units % 32 == 0 and 32 <= units <= 256, trial.params
        assert dropout in TENTHS, trial.params
        seen.append((units, dropout))
        trial.complete(loss(trial.params))
    assert len(seen) == 10 and len(set(seen)) == 10, seen
    assert exp.status()["state"] == "completed"


def test_told_results_must_be_on_the_steps_and_bad_steps_are_refused(client):
    exp = client.create_experiment("steps-told", metric="value", direction="minimize",
                                   params=SPACE, budget=2, strategy="random")
    exp.tell({"units": 96, "dropout": 0.2}, value=1.0)
    with pytest.raises(grpc.RpcError) as refused:
        exp.tell({"units": 100, "dropout": 0.2}, value=1.0)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'units'" in refused.value.details() and "steps of 32" in refused.value.details()
    exp.close()
    for params, needle in (
        ([tunefleet.FloatParam("x", 0.0, 1.0, step=2.0)], "wider than the range"),
        ([tunefleet.FloatParam("x", 1e-3, 1.0, log=True, step=0.1)], "cannot be log-scaled"),
    ):
        with pytest.raises(grpc.RpcError) as bad:
            client.create_experiment("bad-step", metric="value", params=params, budget=2)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'x'" in bad.value.details() and needle in bad.value.details(), bad.value.details()
