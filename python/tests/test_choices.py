"""Categorical choices given as numbers, booleans or None come back as those Python values (as
Optuna's `suggest_categorical` gives them), through every path: leased trials, the trial list,
the best trial, told results and queued configurations. Choices of plain text stay strings."""

from fractions import Fraction

import tunefleet
from tunefleet.params import Space, choice_values

SPACE = [
    tunefleet.Categorical("batch", [16, 32, 64]),
    tunefleet.Categorical("rate", [0.1, 0.5]),
    tunefleet.Categorical("shuffle", [True, False]),
    tunefleet.Categorical("clip", [None, 1.0]),
    tunefleet.Categorical("activation", ["relu", "tanh"]),
    tunefleet.Categorical("code", ["7", "x"]),
]


def test_only_choices_that_all_stand_for_distinct_values_are_typed():
    assert choice_values(["16", "32"]) == {"16": 16, "32": 32}
    assert choice_values(["0.1", "1e-05", "1e-5x"]) is None
    assert choice_values(["0.1", "1e-05", "2.0"]) == {"0.1": 0.1, "1e-05": 1e-05, "2.0": 2.0}
    # As a TOML spec's numbers and booleans arrive (Rust writes 1e-5 and true).
    assert choice_values(["1e-5", "true", "false"]) == {"1e-5": 1e-05, "true": True,
                                                        "false": False}
    assert choice_values(["True", "False", "None"]) == {"True": True, "False": False,
                                                        "None": None}
    # Any plain text keeps the whole parameter as strings, and only plain literals are read:
    # "007", " 1", "1_000", "nan", "inf" and "0x10" are not. Two texts of one value ("1.5",
    # "1.50") could not be told apart, so they stay strings too.
    for choices in (["relu", "1"], ["007", "8"], [" 1", "2"], ["1_000"], ["nan"], ["inf"],
                    ["0x10"], ["1.5", "1.50"], ["yes"]):
        assert choice_values(choices) is None, choices


def test_a_space_decodes_typed_choices_and_encodes_values_as_choice_texts():
    space = Space([tunefleet.params.param_spec(p) for p in SPACE])
    encoded = space.encode({"batch": 32, "rate": 0.5, "shuffle": False, "clip": None,
                            "activation": "tanh", "code": "7"})
    assert {k: v.categorical_value for k, v in encoded.items()} == {
        "batch": "32", "rate": "0.5", "shuffle": "False", "clip": "None", "activation": "tanh",
        "code": "7"}
    assert space.decode(encoded) == {"batch": 32, "rate": 0.5, "shuffle": False, "clip": None,
                                     "activation": "tanh", "code": "7"}
    # A spec written in TOML: the texts Rust wrote are kept exactly when values are sent back.
    toml = Space([tunefleet.params.param_spec(
        {"name": "wd", "type": "categorical", "choices": ["1e-5", "0.001", "true"]})])
    assert toml.decode(toml.encode({"wd": 1e-05})) == {"wd": 1e-05}
    assert toml.encode({"wd": 1e-05})["wd"].categorical_value == "1e-5"
    assert toml.encode({"wd": True})["wd"].categorical_value == "true"
    # A number no choice's value is (numpy's float64 prints 1e-05) goes as a number, which the
    # coordinator matches to the choice that reads as it; a string goes as it is.
    assert toml.encode({"wd": Fraction(1, 1000)})["wd"].float_value == 0.001
    assert toml.encode({"wd": 7})["wd"].int_value == 7
    assert toml.encode({"wd": "0.001"})["wd"].categorical_value == "0.001"


def assert_typed(params):
    assert type(params["batch"]) is int and params["batch"] in (16, 32, 64), params
    assert type(params["rate"]) is float and params["rate"] in (0.1, 0.5), params
    assert type(params["shuffle"]) is bool, params
    assert params["clip"] in (None, 1.0), params
    assert params["activation"] in ("relu", "tanh"), params
    assert params["code"] in ("7", "x"), params


def test_typed_choices_reach_workers_lists_and_warm_starts_as_values(client):
    exp = client.create_experiment("typed-choices", metric="value", direction="minimize",
                                   params=SPACE, budget=5, parallelism=1, strategy="random",
                                   seed=11)
    exp.tell({"batch": 64, "rate": 0.1, "shuffle": True, "clip": None, "activation": "relu",
              "code": "7"}, value=9.0)
    # A number for a choice of text ("7") is matched by the coordinator.
    exp.tell({"batch": 32, "rate": 0.5, "shuffle": False, "clip": 1.0, "activation": "tanh",
              "code": 7}, value=8.0)
    queued = {"batch": 16, "rate": 0.5, "shuffle": False, "clip": 1.0, "activation": "tanh",
              "code": "x"}
    assert exp.enqueue(queued) == 1
    seen = []
    for trial in exp.trials(timeout=30):
        assert_typed(trial.params)
        seen.append(trial.params)
        trial.complete(float(trial.params["batch"]) / 64.0)
    assert len(seen) == 5
    # The queued configuration ran (after the trial created with the experiment), with the
    # values it was queued with.
    assert queued in seen[:2], seen
    listed = exp.trials_list()
    assert len(listed) == 7
    for trial in listed:
        assert_typed(trial["params"])
    told = sorted((t for t in listed if t["imported"]), key=lambda t: t["value"])
    assert [t["params"]["batch"] for t in told] == [32, 64]
    assert told[0]["params"]["code"] == "7" and told[1]["params"]["shuffle"] is True
    best = exp.best()
    assert_typed(best["params"])
    assert best["value"] == min(p["batch"] for p in seen) / 64.0
