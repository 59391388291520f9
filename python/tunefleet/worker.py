"""The worker side: an agent identity at the coordinator, leased trials and their heartbeats.

The protocol is the one `docs/agent-protocol.md` describes (and the Rust agent speaks): register
for an id and a secret, long-poll `LeaseTrial`, heartbeat every lease, report epochs, complete.
"""

import logging
import math
import os
import socket
import threading
import time

import grpc

from .params import Space, params_dict
from .v1 import tunefleet_pb2 as pb

log = logging.getLogger("tunefleet")

_STALE_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


class Worker:
    """A registered agent. Thread-safe: trials heartbeat from their own threads."""

    def __init__(self, client, workloads, slots=1):
        self.client = client
        self.capabilities = pb.AgentCapabilities(
            backend=pb.BACKEND_CPU, device_name="python", device_ordinal=-1, slots=slots,
            hostname=socket.gethostname(), workloads=list(workloads),
            version=f"tunefleet-python/{_version()}",
        )
        self._lock = threading.Lock()
        self.agent_id = ""
        self.secret = ""
        self.heartbeat_interval = 10.0
        self.lease_timeout = 60.0
        self.trials = {}
        self._spaces = {}
        self._register()

    def _register(self, agent_id="", secret=""):
        request = pb.RegisterAgentRequest(capabilities=self.capabilities, agent_id=agent_id,
                                          agent_secret=secret)
        response = self.client.call(self.client.agents_stub.RegisterAgent, request)
        with self._lock:
            self.agent_id = response.agent_id
            self.secret = response.agent_secret
            if response.heartbeat_interval_seconds > 0:
                self.heartbeat_interval = response.heartbeat_interval_seconds
            if response.lease_timeout_seconds > 0:
                self.lease_timeout = response.lease_timeout_seconds
        log.info("registered as agent %s", response.agent_id)

    def reregister(self, seen_id):
        """Registers again under the same id (the coordinator forgot it); as a new agent if the
        coordinator refuses the id. Does nothing if another thread already did since `seen_id`."""
        with self._lock:
            if self.agent_id != seen_id:
                return
            secret = self.secret
        try:
            self._register(seen_id, secret)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            log.warning("coordinator refused agent id %s, registering as a new agent", seen_id)
            self._register()

    def agent_call(self, method, make_request, **kwargs):
        """An agent-scoped call (lease, heartbeat), registering again once on NOT_FOUND."""
        agent_id, secret = self.agent_id, self.secret
        try:
            return self.client.call(method, make_request(agent_id, secret), **kwargs)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        self.reregister(agent_id)
        return self.client.call(method, make_request(self.agent_id, self.secret), **kwargs)

    def space(self, experiment_id):
        """The `Space` of an experiment's parameters (fetched once per experiment)."""
        with self._lock:
            space = self._spaces.get(experiment_id)
        if space is None:
            experiment = self.client.call(
                self.client.experiments_stub.GetExperiment,
                pb.GetExperimentRequest(experiment_id=experiment_id)).experiment
            space = Space(experiment.spec.parameters)
            with self._lock:
                self._spaces[experiment_id] = space
        return space

    def lease(self, experiment_id, wait_seconds):
        """A `Trial` of `experiment_id`, or None when none was ready within `wait_seconds`.

        The request names the experiment, so the coordinator leases only its trials. A lease of
        another experiment (from a coordinator older than `LeaseTrialRequest.experiment_id`) is
        handed back (INTERRUPTED, which costs the trial no attempt) and None is returned.
        """
        stub = self.client.agents_stub
        # Before the lease: a failure here leaves no lease to expire.
        space = self.space(experiment_id)
        response = self.agent_call(
            stub.LeaseTrial,
            lambda agent_id, secret: pb.LeaseTrialRequest(
                agent_id=agent_id, agent_secret=secret, wait_seconds=max(0.0, wait_seconds),
                experiment_id=experiment_id),
            timeout=self.client.timeout + wait_seconds,
        )
        if response.WhichOneof("outcome") != "lease":
            time.sleep(min(response.retry_after_seconds, max(wait_seconds, 0.0)))
            return None
        other = response.lease.experiment_id != experiment_id
        trial = Trial(self, response.lease, Space() if other else space)
        if other:
            log.info("handing back trial %s of another experiment", response.lease.trial_id)
            trial.interrupt()
            time.sleep(0.5)
            return None
        return trial

    def close(self):
        """Interrupts unfinished trials and unregisters (best effort)."""
        for trial in list(self.trials.values()):
            if not trial.finished:
                trial.interrupt()
        if not self.agent_id:
            return
        try:
            self.client.call(self.client.agents_stub.UnregisterAgent,
                             pb.UnregisterAgentRequest(agent_id=self.agent_id,
                                                       agent_secret=self.secret),
                             timeout=2.0, retry_seconds=0.0)
        except grpc.RpcError as error:
            log.warning("failed to unregister agent %s: %s", self.agent_id, error.code())
        self.agent_id = ""


class Trial:
    """A leased trial: `params`, `report(...)`, `complete(...)`, `fail(...)`.

    A background thread heartbeats the lease every `heartbeat_interval_seconds` until the trial
    is finished; it records a STOP (returned by the next `report`) or an ABANDON (the lease went
    to someone else: later calls do nothing).
    """

    def __init__(self, worker, lease, space=None):
        self.worker = worker
        self.lease = lease
        self.id = lease.trial_id
        self.lease_id = lease.lease_id
        self.experiment_id = lease.experiment_id
        self.attempt = lease.attempt
        self.metric = lease.metric
        self.direction = pb.Direction.Name(lease.direction)
        # The workload's fixed parameters, overridden by the trial's own (as agents merge them).
        self.fixed_params = params_dict(lease.workload.fixed_params)
        # A typed categorical's choice as the value it was written from (see `Space`).
        self.params = {**self.fixed_params, **(space or Space()).decode(lease.params)}
        self.epochs = []
        self.finished = False
        self.stop_requested = False
        self.abandoned = False
        self._started = time.monotonic()
        self._last_report = self._started
        self._done = threading.Event()
        self._heartbeats = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                            name=f"tunefleet-heartbeat-{self.id}")
        worker.trials[self.lease_id] = self
        self._heartbeats.start()

    def __repr__(self):
        return f"Trial({self.id!r}, params={self.params!r})"

    @property
    def should_stop(self):
        """Whether the coordinator asked to stop, or the lease was lost."""
        return self.stop_requested or self.abandoned

    def _heartbeat_loop(self):
        stub = self.worker.client.agents_stub
        while not self._done.wait(self.worker.heartbeat_interval):
            try:
                response = self.worker.agent_call(
                    stub.Heartbeat,
                    lambda agent_id, secret: pb.HeartbeatRequest(
                        agent_id=agent_id, agent_secret=secret, lease_ids=[self.lease_id]),
                    retry_seconds=0.0,
                )
            except grpc.RpcError as error:
                log.warning("heartbeat of trial %s failed: %s", self.id, error.code())
                continue
            for status in response.leases:
                if status.lease_id != self.lease_id:
                    continue
                if status.action == pb.LEASE_ACTION_STOP:
                    self.stop_requested = True
                elif status.action == pb.LEASE_ACTION_ABANDON:
                    log.warning("lease of trial %s was lost, abandoning it", self.id)
                    self._abandon()

    def _abandon(self):
        self.abandoned = True
        self._finish()

    def _finish(self):
        self.finished = True
        self._done.set()
        self.worker.trials.pop(self.lease_id, None)

    def _send(self, method, request):
        """Sends a report; a stale lease (FAILED_PRECONDITION, NOT_FOUND) abandons the trial."""
        try:
            return self.worker.client.call(method, request, stop_event=self._done,
                                           retry_seconds=max(60.0, self.worker.lease_timeout))
        except grpc.RpcError as error:
            if error.code() in _STALE_CODES:
                log.warning("trial %s: lease is stale (%s), dropping the trial", self.id,
                            error.code())
                self._abandon()
                return None
            raise

    def report(self, epoch, value, train_loss=0.0, train_accuracy=0.0, epoch_seconds=None,
               **metrics):
        """Reports the objective after `epoch` (from 1). Returns True when the trial should stop
        (the coordinator asked: complete it now, it ends STOPPED) or was lost. Other keyword
        metrics are kept in `epochs` locally; the protocol has no field for them."""
        if not math.isfinite(value):
            raise ValueError(f"trial {self.id}: the value of epoch {epoch} is {value} (fail the "
                             "trial instead: the coordinator refuses non-finite values)")
        if self.finished:
            return True
        now = time.monotonic()
        if epoch_seconds is None:
            epoch_seconds = now - self._last_report
        self._last_report = now
        report = pb.EpochReport(epoch=epoch, value=float(value), train_loss=float(train_loss),
                                train_accuracy=float(train_accuracy),
                                epoch_seconds=float(epoch_seconds))
        self.epochs.append({"epoch": epoch, "value": float(value), **metrics})
        response = self._send(self.worker.client.agents_stub.ReportEpoch, pb.ReportEpochRequest(
            lease_id=self.lease_id, report=report, agent_secret=self.worker.secret))
        if response is not None and response.action in (pb.LEASE_ACTION_STOP,
                                                         pb.LEASE_ACTION_ABANDON):
            self.stop_requested = True
        return self.should_stop

    def _best_epoch(self):
        if not self.epochs:
            return 0
        pick = min if self.direction == "DIRECTION_MINIMIZE" else max
        return pick(self.epochs, key=lambda e: e["value"])["epoch"]

    def _complete(self, outcome, value=None, reason=""):
        if self.finished:
            return
        request = pb.CompleteTrialRequest(
            lease_id=self.lease_id, outcome=outcome, agent_secret=self.worker.secret,
            epochs_run=self.epochs[-1]["epoch"] if self.epochs else 0,
            best_epoch=self._best_epoch(), wall_seconds=time.monotonic() - self._started,
            failure_reason=reason,
        )
        if value is not None:
            request.value = float(value)
        try:
            self._send(self.worker.client.agents_stub.CompleteTrial, request)
        finally:
            self._finish()

    def complete(self, value=None):
        """Finishes the trial with `value` (default: the last reported value): SUCCEEDED, or
        STOPPED when the coordinator had asked to stop. Without any value it fails."""
        if value is None and self.epochs:
            value = self.epochs[-1]["value"]
        if value is None:
            self.fail("the worker completed the trial without a value")
            return
        value = float(value)
        if not math.isfinite(value):
            # Refused here, before the trial is finished: it stays open for `fail` or a finite value.
            raise ValueError(f"trial {self.id}: the value is {value} (fail the trial instead: the "
                             "coordinator refuses non-finite values)")
        outcome = pb.TRIAL_OUTCOME_STOPPED if self.stop_requested else pb.TRIAL_OUTCOME_SUCCEEDED
        self._complete(outcome, value)

    def fail(self, reason):
        """Finishes the trial as FAILED (not retried)."""
        self._complete(pb.TRIAL_OUTCOME_FAILED, reason=str(reason))

    def interrupt(self):
        """Hands the trial back (INTERRUPTED): it returns to the queue without using an attempt."""
        self._complete(pb.TRIAL_OUTCOME_INTERRUPTED)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, Exception):
            self.fail(f"{exc_type.__name__}: {exc}")
        else:
            self.interrupt()


def _version():
    from . import __version__
    return __version__
