"""Search-space helpers and conversions between Python values and `ParameterValue`."""

from .v1 import tunefleet_pb2 as pb


def FloatParam(name, low, high, log=False, default=None):
    """A real parameter in [low, high] (log scale requires low > 0)."""
    spec = {"name": name, "type": "float", "low": float(low), "high": float(high), "log": log}
    if default is not None:
        spec["default"] = float(default)
    return spec


def IntParam(name, low, high, log=False, default=None):
    """An integer parameter in [low, high] (log scale requires low >= 1)."""
    spec = {"name": name, "type": "int", "low": int(low), "high": int(high), "log": log}
    if default is not None:
        spec["default"] = int(default)
    return spec


def Categorical(name, choices, default=None):
    """A parameter that takes one of `choices` (strings)."""
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
    elif kind == "int":
        message.int.CopyFrom(pb.IntParam(low=int(spec["low"]), high=int(spec["high"]),
                                         log=bool(spec.get("log", False))))
        if default is not None:
            message.int.default_value = int(default)
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
