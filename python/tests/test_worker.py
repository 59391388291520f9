"""The SDK against a real coordinator: the ask/report/complete loop, stops, heartbeats, and a
worker killed mid-trial."""

import signal
import subprocess
import threading
import time
from pathlib import Path

import tunefleet
from conftest import PYTHON

HERE = Path(__file__).resolve().parent


def quadratic(params):
    return (params["x"] - 0.3) ** 2 + (params["n"] - 2) ** 2 * 0.01 + (
        0.0 if params["kind"] == "a" else 0.05)


SPACE = [
    tunefleet.FloatParam("x", -1.0, 1.0),
    tunefleet.IntParam("n", 1, 4),
    tunefleet.Categorical("kind", ["a", "b"]),
]


def test_a_random_experiment_runs_to_completion(client):
    exp = client.create_experiment("quad-random", metric="value", direction="minimize",
                                   params=SPACE, budget=6, parallelism=2, strategy="random")
    seen = []
    for trial in exp.trials(timeout=30):
        assert set(trial.params) == {"x", "n", "kind"}
        assert isinstance(trial.params["n"], int) and isinstance(trial.params["x"], float)
        value = quadratic(trial.params)
        for epoch in (1, 2):
            assert trial.report(epoch, value + (2 - epoch) * 0.1) is False
        trial.complete(value)
        seen.append(value)
    status = exp.status()
    assert status["state"] == "completed", status
    assert status["trials_succeeded"] == 6
    assert len(seen) == 6
    assert exp.best()["value"] == min(seen)
    rows = exp.trials_frame()
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert sorted(r["state"] for r in rows) == ["succeeded"] * 6
    assert all("param_x" in r for r in rows)


def test_a_bo_experiment_runs_to_completion_with_the_default_metric(client):
    exp = client.create_experiment("quad-bo", metric="", direction="minimize",
                                   params=[{"name": "x", "low": -1.0, "high": 1.0}], budget=5,
                                   strategy="bo", initial_trials=3, seed=7)
    assert exp.status()["metric"] == "value"
    with exp:
        while (trial := exp.ask(timeout=30)) is not None:
            trial.report(1, (trial.params["x"] - 0.3) ** 2)
            trial.complete()
    status = exp.status()
    assert status["state"] == "completed" and status["trials_succeeded"] == 5, status


def test_a_stop_reaches_the_worker_through_report(client):
    exp = client.create_experiment("stopped", metric="value", direction="maximize",
                                   params=SPACE, budget=4, strategy="random")
    trial = exp.ask(timeout=20)
    assert trial.report(1, 0.5) is False
    exp.stop()
    assert trial.report(2, 0.6) is True
    trial.complete()
    exp.close()
    (row,) = [t for t in exp.trials_list() if t["id"] == trial.id]
    # STOPPED in a stopped experiment ends the trial CANCELLED.
    assert row["state"] == "cancelled", row
    assert exp.status()["state"] == "stopped"
    assert exp.ask(timeout=5) is None


def test_heartbeats_keep_a_lease_past_the_lease_timeout(client, coordinator):
    exp = client.create_experiment("slow", metric="value", direction="maximize",
                                   params=SPACE, budget=1, strategy="random")
    with exp:
        trial = exp.ask(timeout=20)
        assert trial.report(1, 0.1) is False
        # A slow epoch: 5 s, over twice the 2 s lease timeout; only heartbeats keep the lease.
        time.sleep(5.0)
        assert not trial.abandoned
        assert trial.report(2, 0.2) is False
        trial.complete()
    (row,) = exp.trials_list()
    assert row["state"] == "succeeded" and row["attempts"] == 1, row
    assert row["value"] == 0.2


def test_a_killed_worker_s_trial_is_retried_by_another(client, coordinator):
    exp = client.create_experiment("killed", metric="value", direction="maximize",
                                   params=SPACE, budget=1, strategy="random", max_attempts=3)
    dying = subprocess.Popen([PYTHON, str(HERE / "dying_worker.py"), coordinator.url, exp.id],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = _read_line_within(dying, 30)
        assert line.startswith("LEASED "), line
        killed_trial = line.split()[1]
        dying.send_signal(signal.SIGKILL)
        dying.wait(timeout=10)
        done = []
        for trial in exp.trials(timeout=30):
            assert trial.id == killed_trial
            assert trial.attempt == 2
            trial.report(1, 0.9)
            trial.complete()
            done.append(trial.id)
        assert done == [killed_trial]
        (row,) = exp.trials_list()
        assert row["state"] == "succeeded" and row["attempts"] == 2, row
        assert exp.status()["state"] == "completed"
    finally:
        if dying.poll() is None:
            dying.kill()
        dying.wait()


def _read_line_within(process, timeout):
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"no line from the worker within {timeout} s"
    return lines[0].strip()


def test_a_forgotten_worker_is_refused_with_a_wrong_secret(client):
    exp = client.create_experiment("identity", metric="value", direction="maximize",
                                   params=SPACE, budget=1, strategy="random")
    worker = exp.worker()
    import grpc
    from tunefleet.v1 import tunefleet_pb2 as pb
    try:
        client.call(client.agents_stub.RegisterAgent, pb.RegisterAgentRequest(
            agent_id=worker.agent_id, agent_secret="wrong"))
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    else:
        raise AssertionError("re-registering with a wrong secret was accepted")
    exp.stop()
    exp.close()


def test_a_worker_runs_only_its_own_experiment_s_trials(client):
    other = client.create_experiment("other", metric="value", direction="maximize",
                                     params=SPACE, budget=2, parallelism=2, strategy="random")
    mine = client.create_experiment("mine", metric="value", direction="maximize",
                                    params=SPACE, budget=3, parallelism=1, strategy="random")
    outcomes = []
    for trial in mine.trials(timeout=30):
        assert trial.experiment_id == mine.id
        if not outcomes:
            trial.fail("bad parameters")
            outcomes.append("failed")
            continue
        with trial:  # leaving the block completes it with the last reported value
            trial.report(1, trial.params["x"])
        outcomes.append("succeeded")
    states = sorted(t["state"] for t in mine.trials_list())
    assert states == ["failed", "succeeded", "succeeded"], states
    (failed,) = [t for t in mine.trials_list() if t["state"] == "failed"]
    assert failed["failure_reason"] == "bad parameters"
    assert {t["state"] for t in other.trials_list()} <= {"pending"}
    assert all(t["epochs_run"] == 0 for t in other.trials_list())
    other.stop()


def test_a_non_finite_completion_is_refused_and_the_trial_stays_open(client):
    exp = client.create_experiment("nan-complete", metric="value", direction="minimize",
                                   params=SPACE, budget=1, strategy="random")
    with exp:
        trial = exp.ask(timeout=20)
        for bad in (float("nan"), float("inf")):
            try:
                trial.complete(bad)
            except ValueError as error:
                assert "non-finite" in str(error), error
            else:
                raise AssertionError(f"complete({bad}) was accepted")
            assert not trial.finished
        # The trial is still open: a finite value completes it.
        trial.complete(0.25)
    (row,) = exp.trials_list()
    assert row["state"] == "succeeded" and row["value"] == 0.25, row


def test_an_unknown_direction_or_strategy_is_a_value_error_naming_it(client):
    for kwargs, needle in (({"direction": "upwards"}, "direction must be one of"),
                           ({"strategy": "magic"}, "strategy must be one of"),
                           ({"batch_strategy": "cl-best"}, "batch_strategy must be one of")):
        try:
            client.create_experiment("bad-enum", metric="value", params=SPACE, **kwargs)
        except ValueError as error:
            assert needle in str(error) and repr(next(iter(kwargs.values()))) in str(error), error
        else:
            raise AssertionError(f"{kwargs} was accepted")
    # Names are taken in any case, with - or _.
    exp = client.create_experiment("ok-enum", metric="value", direction="Minimize",
                                   params=SPACE, strategy="BO", batch_strategy="cl-min")
    assert exp.status()["direction"] == "minimize"
