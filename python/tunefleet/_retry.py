"""Retries of transient gRPC failures with jittered exponential backoff."""

import random
import time

import grpc

#: Status codes that mean "try again later": the coordinator is down, draining, overloaded or slow.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class Backoff:
    """Delays that double from `initial` to `maximum`, each drawn uniformly in [base/2, base]."""

    def __init__(self, initial=0.1, maximum=5.0, rng=None):
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.current = initial
        self.rng = rng or random.Random()

    def next_delay(self):
        base = self.current
        self.current = min(self.current * 2, self.maximum)
        return base * (0.5 + 0.5 * self.rng.random())

    def reset(self):
        self.current = self.initial


def call_with_retry(call, request, *, metadata, timeout, deadline_seconds, stop_event=None):
    """Calls `call(request)`, retrying transient failures until `deadline_seconds` have passed.

    Raises the last `grpc.RpcError` once the deadline passed or the failure is not transient.
    `stop_event`, when set, ends the retries early (the last error is raised).
    """
    backoff = Backoff()
    give_up_at = time.monotonic() + deadline_seconds
    while True:
        try:
            return call(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            if error.code() not in TRANSIENT_CODES:
                raise
            delay = backoff.next_delay()
            if time.monotonic() + delay > give_up_at:
                raise
            if stop_event is not None:
                if stop_event.wait(delay):
                    raise
            else:
                time.sleep(delay)
