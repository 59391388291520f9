"""A worker that leases one trial of an experiment, reports an epoch, says so on stdout and then
hangs (heartbeating) until it is killed."""

import sys
import threading

import tunefleet

url, experiment_id = sys.argv[1], sys.argv[2]
experiment = tunefleet.Client(url).experiment(experiment_id)
trial = experiment.ask(timeout=20)
if trial is None:
    sys.exit("no trial leased")
trial.report(1, 0.0)
print(f"LEASED {trial.id}", flush=True)
threading.Event().wait()
