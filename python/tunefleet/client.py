"""The client side of the SDK: a connection to the coordinator and experiments on it."""

from urllib.parse import urlparse

import grpc

from . import params as _params
from ._retry import call_with_retry
from .v1 import tunefleet_pb2 as pb
from .v1 import tunefleet_pb2_grpc as pb_grpc

_DIRECTIONS = {"maximize": pb.DIRECTION_MAXIMIZE, "minimize": pb.DIRECTION_MINIMIZE}
_STRATEGIES = {"bo": pb.STRATEGY_BO, "random": pb.STRATEGY_RANDOM, "grid": pb.STRATEGY_GRID}
_BATCH_STRATEGIES = {
    "cl_min": pb.BATCH_STRATEGY_CL_MIN,
    "cl_mean": pb.BATCH_STRATEGY_CL_MEAN,
    "cl_max": pb.BATCH_STRATEGY_CL_MAX,
    "mc_qei": pb.BATCH_STRATEGY_MC_QEI,
}


def _enum_name(enum, number, prefix):
    """`EXPERIMENT_STATE_RUNNING` -> `running`."""
    return enum.Name(number)[len(prefix):].lower()


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _channel(target, ca_file, cert_file, key_file, options):
    parsed = urlparse(target if "://" in target else f"http://{target}")
    address = parsed.netloc or parsed.path
    if parsed.scheme == "https":
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file) if ca_file else None,
            private_key=_read(key_file) if key_file else None,
            certificate_chain=_read(cert_file) if cert_file else None,
        )
        if ":" not in address:
            address += ":443"
        return grpc.secure_channel(address, credentials, options=options)
    if parsed.scheme != "http":
        raise ValueError(f"unsupported scheme in {target!r} (use http:// or https://)")
    return grpc.insecure_channel(address, options=options)


class Client:
    """A connection to a coordinator.

    `target` is `http://host:port` or `https://host:port` (TLS, checked against `ca_file` or the
    system roots; `cert_file` and `key_file` give a client certificate when the coordinator asks
    for one, mutual TLS). `token` (or the first line of `token_file`) is sent as
    `authorization: Bearer <token>` on every call. Transient failures (UNAVAILABLE,
    DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with jittered backoff for up to
    `retry_seconds`; each attempt has a deadline of `timeout` seconds.
    """

    def __init__(self, target="http://127.0.0.1:50051", token=None, token_file=None, ca_file=None,
                 cert_file=None, key_file=None, timeout=30.0, retry_seconds=60.0):
        if token is None and token_file:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        self.target = target
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = _channel(target, ca_file, cert_file, key_file, options=[("grpc.enable_retries", 0)])
        self.experiments_stub = pb_grpc.ExperimentServiceStub(self._channel)
        self.agents_stub = pb_grpc.AgentServiceStub(self._channel)

    def call(self, method, request, timeout=None, retry_seconds=None, stop_event=None):
        """Calls one RPC (a stub method) with the token, a deadline and retries."""
        return call_with_retry(
            method, request, metadata=self.metadata,
            timeout=self.timeout if timeout is None else timeout,
            deadline_seconds=self.retry_seconds if retry_seconds is None else retry_seconds,
            stop_event=stop_event,
        )

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def create_experiment(self, name, metric="", direction="maximize", params=(), budget=10,
                          parallelism=1, strategy="bo", workload="external", early_stopping=None,
                          **extra):
        """Creates an experiment and returns it.

        `params` are dicts (`FloatParam(...)`, `IntParam(...)`, `Categorical(...)` build them) or
        `ParameterSpec` messages. `metric` may be empty: the workload's default (`value` for the
        `external` and `function` workloads). `workload` is a kind, a dict of `Workload` fields or
        a `Workload`; the default, `"external"`, means your own workers (this SDK) run the trials:
        no agent takes them, even one that trains every kind. Use `"command"` (with `command=`)
        for a command the agents declare. `early_stopping` is `"median"`, `"asha"`, `{"median": {...}}`,
        `{"asha": {...}}` or an `EarlyStopping`. `extra` sets other `ExperimentSpec` fields
        (`seed`, `initial_trials`, `max_attempts`, `study`, `budget_dollars`, `grid_levels`,
        `batch_strategy`, `deterministic`, `max_model_points`).
        """
        spec = pb.ExperimentSpec(
            name=name, metric=metric, direction=_choice("direction", direction, _DIRECTIONS),
            strategy=_choice("strategy", strategy, _STRATEGIES), budget_trials=budget,
            parallelism=parallelism, parameters=[_params.param_spec(p) for p in params],
        )
        spec.workload.CopyFrom(_workload(workload))
        if early_stopping is not None:
            spec.early_stopping.CopyFrom(_early_stopping(early_stopping))
        for field, value in extra.items():
            if field == "batch_strategy" and isinstance(value, str):
                value = _choice("batch_strategy", value, _BATCH_STRATEGIES)
            setattr(spec, field, value)
        response = self.call(self.experiments_stub.CreateExperiment,
                             pb.CreateExperimentRequest(spec=spec))
        from .experiment import Experiment
        return Experiment(self, response.experiment.id)

    def experiment(self, experiment_id):
        """The experiment with this id (not checked until used)."""
        from .experiment import Experiment
        return Experiment(self, experiment_id)

    def list_experiments(self, study="", page_size=0):
        """Every experiment (of `study`, when given), as `Experiment` messages, page by page."""
        token = ""
        experiments = []
        while True:
            response = self.call(self.experiments_stub.ListExperiments, pb.ListExperimentsRequest(
                study=study, page_size=page_size, page_token=token))
            experiments.extend(response.experiments)
            token = response.next_page_token
            if not token:
                return experiments


def _choice(field, value, table):
    """The enum number of `value` (a name, any case) for `field`, or a ValueError naming both."""
    key = value.lower().replace("-", "_") if isinstance(value, str) else value
    if key not in table:
        known = ", ".join(repr(name) for name in table)
        raise ValueError(f"{field} must be one of {known}, got {value!r}")
    return table[key]


def _workload(workload):
    if isinstance(workload, pb.Workload):
        return workload
    if isinstance(workload, str):
        return pb.Workload(kind=workload)
    fields = dict(workload)
    fixed = fields.pop("fixed_params", {}) or {}
    message = pb.Workload(**fields)
    for name, value in fixed.items():
        message.fixed_params[name].CopyFrom(_params.to_proto(value))
    return message


def _early_stopping(rule):
    if isinstance(rule, pb.EarlyStopping):
        return rule
    if isinstance(rule, str):
        rule = {rule: {}}
    ((kind, settings),) = dict(rule).items()
    if kind == "median":
        return pb.EarlyStopping(median=pb.MedianStopping(**settings))
    if kind == "asha":
        return pb.EarlyStopping(asha=pb.SuccessiveHalving(**settings))
    raise ValueError(f"unknown early-stopping rule {kind!r} (median or asha)")
