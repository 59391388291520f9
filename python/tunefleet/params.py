"""Search-space helpers and conversions between Python values and `ParameterValue`.

A categorical's choices travel as strings. `Categorical("batch", [16, 32, 64])` writes them as
`str(value)`, and a `Space` (built from the experiment's spec) reads them back: a categorical
whose every choice is the plain text of a distinct int, float, boolean or None gives those
Python values in `trial.params`, as Optuna's `suggest_categorical` does; one with any other
text gives strings. Values sent back are written as the choice's own text.
"""

import math
import numbers
import re

from .v1 import tunefleet_pb2 as pb


def FloatParam(name, low, high, log=False, default=None, step=None):
    """A real parameter in [low, high] (log scale requires low > 0). With `step`, only
    low, low + step, ... up to high (as Optuna's `suggest_float(..., step=)`; not with log)."""
    spec = {"name": name, "type": "float", "low": float(low), "high": float(high), "log": log}
    if default is not None:
        spec["default"] = float(default)
    if step is not None:
        spec["step"] = float(step)
    return spec


def IntParam(name, low, high, log=False, default=None, step=None):
    """An integer parameter in [low, high] (log scale requires low >= 1). With `step`, only
    low, low + step, ... up to high (as Optuna's `suggest_int(..., step=)`; not with log)."""
    spec = {"name": name, "type": "int", "low": int(low), "high": int(high), "log": log}
    if default is not None:
        spec["default"] = int(default)
    if step is not None:
        spec["step"] = int(step)
    return spec


def Categorical(name, choices, default=None):
    """A parameter that takes one of `choices`: strings, or ints, floats, booleans and None,
    which trials give back as the same Python values."""
    spec = {"name": name, "type": "categorical", "choices": [str(c) for c in choices]}
    if default is not None:
        spec["default"] = str(default)
    return spec


def param_spec(spec):
    """A `ParameterSpec` from a dict (as the helpers above build) or a `ParameterSpec`."""
    if isinstance(spec, pb.ParameterSpec):
        return spec
    kind = spec.get("type")
    if kind is None:
        kind = "categorical" if "choices" in spec else (
            "int" if isinstance(spec.get("low"), int) and isinstance(spec.get("high"), int) else "float")
    default = spec.get("default")
    message = pb.ParameterSpec(name=spec["name"])
    if kind == "float":
        message.float.CopyFrom(pb.FloatParam(low=float(spec["low"]), high=float(spec["high"]),
                                             log=bool(spec.get("log", False))))
        if default is not None:
            message.float.default_value = float(default)
        if spec.get("step") is not None:
            message.float.step = float(spec["step"])
    elif kind == "int":
        message.int.CopyFrom(pb.IntParam(low=int(spec["low"]), high=int(spec["high"]),
                                         log=bool(spec.get("log", False))))
        if default is not None:
            message.int.default_value = int(default)
        if spec.get("step") is not None:
            message.int.step = int(spec["step"])
    elif kind == "categorical":
        message.categorical.CopyFrom(pb.CategoricalParam(choices=[str(c) for c in spec["choices"]]))
        if default is not None:
            message.categorical.default_value = str(default)
    else:
        raise ValueError(f"unknown parameter type {kind!r} of {spec['name']!r}")
    return message


def to_python(value):
    """The plain Python value of a `ParameterValue`."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    return getattr(value, kind)


def to_proto(value):
    """A `ParameterValue` from an int, float or str."""
    if isinstance(value, bool):
        raise TypeError("booleans are not parameter values (use a categorical)")
    if isinstance(value, int):
        return pb.ParameterValue(int_value=value)
    if isinstance(value, float):
        return pb.ParameterValue(float_value=value)
    return pb.ParameterValue(categorical_value=str(value))


def params_dict(params_map):
    """A plain dict from a protobuf map of `ParameterValue`s."""
    return {name: to_python(value) for name, value in params_map.items()}


_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS = {"True": True, "False": False, "true": True, "false": False, "None": None}


def _choice_value(text):
    """The Python value a choice's text stands for, or `text` when it stands for none: an int
    (`"32"`, no leading zeros), a finite float (`"0.5"`, `"1e-05"`, `"1e-5"`: as Python's
    `str()` or a TOML spec writes it), a boolean (`"True"`, `"true"`) or None (`"None"`)."""
    if text in _WORDS:
        return _WORDS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    return text


def _key(value):
    """A dict key that tells `True` from `1` and `1` from `1.0`."""
    return (type(value), value)


def choice_values(choices):
    """`{text: value}` for choices that all stand for distinct non-string values (see
    `_choice_value`), else None: a categorical with any plain text keeps strings."""
    values = {text: _choice_value(text) for text in choices}
    if any(isinstance(value, str) for value in values.values()):
        return None
    if len({_key(value) for value in values.values()}) < len(values):
        return None
    return values


class Space:
    """The parameters of an experiment's spec, to read a trial's values as Python values and
    to write values for them."""

    def __init__(self, parameters=()):
        self._categorical = set()
        self._typed = {}
        self._texts = {}
        for param in parameters:
            if param.WhichOneof("kind") != "categorical":
                continue
            self._categorical.add(param.name)
            values = choice_values(param.categorical.choices)
            if values is not None:
                self._typed[param.name] = values
                self._texts[param.name] = {_key(v): text for text, v in values.items()}

    def decode(self, params_map):
        """A plain dict from a protobuf map of `ParameterValue`s, a typed categorical's choice
        as the value it stands for."""
        decoded = {}
        for name, message in params_map.items():
            value = to_python(message)
            values = self._typed.get(name)
            if values is not None and isinstance(value, str) and value in values:
                value = values[value]
            decoded[name] = value
        return decoded

    def encode(self, params):
        """`ParameterValue`s for a dict of Python values: a categorical's as its choice's own
        text when the value is one the choices stand for, a number the coordinator matches to
        the choice that reads as it (numpy's included), else the value's `str()`."""
        encoded = {}
        for name, value in params.items():
            if name in self._categorical:
                encoded[name] = self._choice(name, value)
            else:
                encoded[name] = to_proto(value)
        return encoded

    def _choice(self, name, value):
        try:
            text = self._texts.get(name, {}).get(_key(value))
        except TypeError:  # unhashable: no choice stands for it
            text = None
        if text is not None:
            return pb.ParameterValue(categorical_value=text)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return pb.ParameterValue(int_value=int(value))
        if isinstance(value, numbers.Real):
            return pb.ParameterValue(float_value=float(value))
        return pb.ParameterValue(categorical_value=str(value))
