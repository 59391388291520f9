"""tunefleet: a Python SDK for the tunefleet coordinator.

Create experiments and run their trials from Python, in an ask/report/complete loop::

    import tunefleet
    client = tunefleet.Client("http://127.0.0.1:50051")
    exp = client.create_experiment("quad", metric="value", direction="minimize",
                                   params=[tunefleet.FloatParam("x", -2.0, 2.0)],
                                   budget=8, strategy="random")
    for trial in exp.trials():
        trial.complete((trial.params["x"] - 0.5) ** 2)
    print(exp.best())
"""

__version__ = "0.1.0"

from .client import Client
from .experiment import Experiment
from .params import Categorical, FloatParam, IntParam
from .worker import Trial, Worker

__all__ = ["Client", "Experiment", "Trial", "Worker", "FloatParam", "IntParam", "Categorical"]
