"""An experiment: its status and results, and the worker loop that runs its trials."""

import time

from google.protobuf.json_format import MessageToDict

from .client import _enum_name
from .params import Space
from .v1 import tunefleet_pb2 as pb
from .worker import Worker

#: Experiment states after which no trial is handed out.
FINISHED_STATES = frozenset({"completed", "stopped", "failed"})


def trial_dict(trial, space=None):
    """A plain dict of a `Trial` message (params as Python values, read through `space`, the
    experiment's `Space`; state as a lowercase name)."""
    return {
        "id": trial.id,
        "number": trial.number,
        "state": _enum_name(pb.TrialState, trial.state, "TRIAL_STATE_"),
        "value": trial.value if trial.HasField("value") else None,
        "params": (space or Space()).decode(trial.params),
        "attempts": trial.attempts,
        "agent_id": trial.agent_id,
        "epochs_run": trial.epochs_run,
        "best_epoch": trial.best_epoch,
        "wall_seconds": trial.wall_seconds,
        "failure_reason": trial.failure_reason,
        "imported": trial.imported,
        "epochs": [MessageToDict(e, preserving_proto_field_name=True) for e in trial.epochs],
    }


class Experiment:
    """One experiment on a coordinator; also a worker for it once `ask()` or `trials()` is used.

    Use it as a context manager, or call `close()`, so the worker unregisters (its leases go back
    to the queue at once instead of expiring).
    """

    def __init__(self, client, experiment_id):
        self.client = client
        self.id = experiment_id
        self._worker = None
        self._space = None

    def __repr__(self):
        return f"Experiment({self.id!r})"

    # ---- status and results -----------------------------------------------------------------

    def proto(self):
        """The `Experiment` message."""
        stub = self.client.experiments_stub
        return self.client.call(stub.GetExperiment,
                                pb.GetExperimentRequest(experiment_id=self.id)).experiment

    def space(self):
        """The experiment's `Space` (its spec's parameters, fetched once)."""
        if self._space is None:
            self._space = Space(self.proto().spec.parameters)
        return self._space

    def status(self):
        """A dict: state (`running`, `completed`, `stopped`, `failed`), counts, best value..."""
        experiment = self.proto()
        return {
            "id": experiment.id,
            "name": experiment.spec.name,
            "state": _enum_name(pb.ExperimentState, experiment.state, "EXPERIMENT_STATE_"),
            "failure_reason": experiment.failure_reason,
            "metric": experiment.spec.metric,
            "direction": _enum_name(pb.Direction, experiment.spec.direction, "DIRECTION_"),
            "budget": experiment.spec.budget_trials,
            "trials_created": experiment.trials_created,
            "trials_succeeded": experiment.trials_succeeded,
            "trials_failed": experiment.trials_failed,
            "trials_running": experiment.trials_running,
            "trials_early_stopped": experiment.trials_early_stopped,
            "best_value": experiment.best_value if experiment.HasField("best_value") else None,
            "best_trial_id": experiment.best_trial_id if experiment.HasField("best_trial_id") else None,
            "epochs_reported": experiment.epochs_reported,
            "trials_imported": experiment.trials_imported,
            "trials_queued": experiment.trials_queued,
        }

    def tell(self, params, value=None, epochs=None, **metrics):
        """Adds a result obtained elsewhere (warm start): `params` (a value for every parameter
        of the space) and its objective `value` (None records a configuration that failed).
        `epochs` is an optional learning curve, a list of values for epochs 1, 2, ... or of dicts
        with `epoch` and `value`; keyword arguments are extra metrics. BO uses the result like
        one of its own, and it does not count towards the budget. Returns the new trial's id."""
        return self.tell_many([{"params": params, "value": value, "epochs": epochs,
                                "metrics": metrics}])[0]

    def tell_many(self, results):
        """Adds several results at once, all or none: dicts with `params`, `value` and
        optionally `epochs` and `metrics` (see `tell`). Returns the new trials' ids in order."""
        trials = []
        space = self.space()
        for result in results:
            trial = pb.ImportedTrial(params=space.encode(result["params"]))
            if result.get("value") is not None:
                trial.value = float(result["value"])
            for number, epoch in enumerate(result.get("epochs") or [], start=1):
                if isinstance(epoch, dict):
                    trial.epochs.add(epoch=int(epoch.get("epoch", number)),
                                     value=float(epoch["value"]))
                else:
                    trial.epochs.add(epoch=number, value=float(epoch))
            for name, metric in (result.get("metrics") or {}).items():
                trial.metrics[name] = float(metric)
            trials.append(trial)
        stub = self.client.experiments_stub
        # Not retried: a request that reached the coordinator before a transient error would
        # add its trials twice.
        response = self.client.call(stub.AddTrials,
                                    pb.AddTrialsRequest(experiment_id=self.id, trials=trials),
                                    retry_seconds=0)
        return list(response.trial_ids)

    def enqueue(self, *configurations):
        """Queues configurations (dicts of parameter values) to run before any suggestion, in
        order; they count towards the budget. Returns how many are queued now."""
        stub = self.client.experiments_stub
        space = self.space()
        request = pb.EnqueueTrialsRequest(experiment_id=self.id, configurations=[
            pb.Configuration(params=space.encode(c)) for c in configurations])
        # Not retried, like `tell_many`.
        return self.client.call(stub.EnqueueTrials, request, retry_seconds=0).experiment.trials_queued

    def stop(self):
        """Stops the experiment: pending trials are cancelled, running ones told to stop."""
        stub = self.client.experiments_stub
        self.client.call(stub.StopExperiment, pb.StopExperimentRequest(experiment_id=self.id))

    def best(self):
        """The best trial as a dict, or None before the first result."""
        stub = self.client.experiments_stub
        response = self.client.call(stub.GetBestTrial, pb.GetBestTrialRequest(experiment_id=self.id))
        return trial_dict(response.trial, self.space()) if response.HasField("trial") else None

    def trials_list(self, include_epochs=False, page_size=0):
        """Every trial as a dict, fetched page by page."""
        stub = self.client.experiments_stub
        token = ""
        trials = []
        space = self.space()
        while True:
            response = self.client.call(stub.ListTrials, pb.ListTrialsRequest(
                experiment_id=self.id, include_epochs=include_epochs, page_size=page_size,
                page_token=token))
            trials.extend(trial_dict(t, space) for t in response.trials)
            token = response.next_page_token
            if not token:
                return trials

    def trials_frame(self, include_epochs=False):
        """The trials as a pandas DataFrame (one column per parameter, `param_<name>`), or as a
        list of flat dicts when pandas is not installed."""
        rows = []
        for trial in self.trials_list(include_epochs=include_epochs):
            row = {k: v for k, v in trial.items() if k not in ("params", "epochs")}
            row.update({f"param_{name}": value for name, value in trial["params"].items()})
            if include_epochs:
                row["epochs"] = trial["epochs"]
            rows.append(row)
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    # ---- the worker ---------------------------------------------------------------------------

    def worker(self):
        """The worker of this experiment (registers on first use)."""
        if self._worker is None:
            kind = self.proto().spec.workload.kind or "function"
            self._worker = Worker(self.client, workloads=[kind])
        return self._worker

    def ask(self, timeout=None):
        """Leases the next trial of this experiment; None once the experiment is finished (or
        after `timeout` seconds without a trial)."""
        give_up_at = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.status()["state"] in FINISHED_STATES:
                return None
            wait = 5.0
            if give_up_at is not None:
                wait = min(wait, give_up_at - time.monotonic())
                if wait <= 0:
                    return None
            trial = self.worker().lease(self.id, wait)
            if trial is not None:
                return trial

    def trials(self, timeout=None):
        """Yields leased trials until the experiment is finished; unregisters the worker at the
        end. A trial the loop body left unfinished is completed with its last reported value (or
        failed when it reported none); one left by an exception or a `break` is interrupted, so
        it goes back to the queue."""
        trial = None
        try:
            while True:
                trial = self.ask(timeout=timeout)
                if trial is None:
                    return
                yield trial
                if not trial.finished:
                    trial.complete()
        except BaseException:
            if trial is not None and not trial.finished:
                trial.interrupt()
            raise
        finally:
            self.close()

    def close(self):
        """Unregisters the worker (if any); its unfinished trials go back to the queue."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
