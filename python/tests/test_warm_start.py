"""Warm start through the SDK against a real coordinator: results told from elsewhere reach BO
(they are its observations from then on and take no part of the budget), queued configurations
run first, and a bad result is refused whole with the trial named."""

import grpc
import pytest

import tunefleet


def bowl(x):
    return (x - 0.3) ** 2


SPACE = [tunefleet.FloatParam("x", -1.0, 1.0)]


def test_told_results_steer_bo_and_do_not_use_the_budget(client):
    exp = client.create_experiment("told", metric="value", direction="minimize", params=SPACE,
                                   budget=4, parallelism=1, strategy="bo", initial_trials=3,
                                   seed=3)
    told = [-0.9, -0.6, -0.2, 0.0, 0.2, 0.25, 0.35, 0.4, 0.6, 0.9]
    ids = exp.tell_many([{"params": {"x": x}, "value": bowl(x), "epochs": [bowl(x) + 0.1, bowl(x)]}
                         for x in told])
    assert len(ids) == len(told)
    status = exp.status()
    assert status["trials_imported"] == len(told)
    assert status["best_value"] == pytest.approx(bowl(0.25))
    ran = []
    with exp:
        while (trial := exp.ask(timeout=30)) is not None:
            ran.append(trial.params["x"])
            trial.complete(bowl(trial.params["x"]))
    status = exp.status()
    assert status["state"] == "completed", status
    # The budget counts only the trials the experiment ran.
    assert len(ran) == 4 and status["trials_created"] == 4 + len(told), (ran, status)
    # The first trial may have been suggested before the results were told; every later one was
    # suggested by a GP that saw them (10 results are past the 3 initial trials), so BO searches
    # the bowl's floor instead of spreading a space-filling design over [-1, 1].
    later = ran[1:]
    assert min(abs(x - 0.3) for x in later) < 0.1, ran
    imported = [t for t in exp.trials_list(include_epochs=True) if t["imported"]]
    assert len(imported) == len(told)
    assert all(len(t["epochs"]) == 2 for t in imported)


def test_enqueued_configurations_run_first(client):
    exp = client.create_experiment("queued", metric="value", direction="minimize", params=SPACE,
                                   budget=3, parallelism=1, strategy="random", seed=5)
    # The answer is taken before any queued configuration becomes a trial.
    assert exp.enqueue({"x": 0.5}, {"x": -0.5}) == 2
    ran = []
    with exp:
        while (trial := exp.ask(timeout=30)) is not None:
            ran.append(trial.params["x"])
            trial.complete(bowl(trial.params["x"]))
    assert len(ran) == 3
    assert [x for x in ran if x in (0.5, -0.5)] == [0.5, -0.5], ran


def test_a_bad_result_is_refused_whole(client):
    exp = client.create_experiment("bad-tell", metric="value", direction="minimize",
                                   params=SPACE, budget=2, strategy="bo")
    with pytest.raises(grpc.RpcError) as refused:
        exp.tell_many([{"params": {"x": 0.1}, "value": 1.0},
                       {"params": {"x": 7.0}, "value": 1.0}])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trial 1" in refused.value.details() and "'x'" in refused.value.details()
    assert exp.status()["trials_imported"] == 0
    exp.stop()
