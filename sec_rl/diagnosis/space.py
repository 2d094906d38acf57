"""Search spaces written in YAML: what a sweep samples from.

A space is an ordered set of parameters. Each has a type (``choice``, ``loguniform``, ``uniform`` or
``int``) and, optionally, a ``when:`` condition on parameters listed before it, so that e.g.
``mu_target`` is only sampled for runs that turn the curriculum on. Inactive parameters are left out
of a run's config entirely: the diagnosis then studies them only over the runs where they exist.

    name: my_space
    fixed: {max_steps: 200}          # copied into every config
    parameters:
      curriculum: {type: choice, values: [true, false]}
      mu_target: {type: choice, values: [0.25, 0.5, 0.75], when: {curriculum: true}}
      learning_rate: {type: loguniform, low: 1.0e-7, high: 1.0e-5}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PARAM_TYPES = ("choice", "loguniform", "uniform", "int")
DEFAULT_SPACE = "web_agent_study"

# PyYAML follows YAML 1.1, where ``1e-6`` (no dot) is a string; numbers written that way are read back as floats.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class DiagnosisError(ValueError):
    """A problem with the user's space, runs or results; the message names the fix."""


class SpaceError(DiagnosisError):
    """The search-space file is malformed."""


def _number(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


@dataclass(frozen=True)
class Param:
    """One dimension of the space. ``when`` maps earlier parameters to the values that activate this one."""

    name: str
    type: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def is_active(self, config: Mapping[str, Any]) -> bool:
        """All conditions must hold; a condition on an inactive parameter is false."""
        return all(key in config and config[key] in allowed for key, allowed in self.when.items())

    def sample(self, rng: np.random.Generator) -> Any:
        """One value, as a plain Python type so that it round-trips through YAML."""
        if self.type == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.type == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.type == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        # int: inclusive bounds, optionally log-spaced (e.g. a batch size)
        if self.log:
            value = math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1))))
            return int(min(value, self.high))
        return int(rng.integers(int(self.low), int(self.high) + 1))

    @property
    def is_discrete(self) -> bool:
        """Whether runs share values exactly (a continuous parameter is binned before the bootstrap)."""
        return self.type in ("choice", "int")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "choice":
            out["values"] = list(self.values)
        else:
            out["low"], out["high"] = self.low, self.high
            if self.type == "int" and self.log:
                out["log"] = True
        if self.when:
            out["when"] = {k: (list(v) if len(v) > 1 else v[0]) for k, v in self.when.items()}
        return out


def _parse_param(name: str, spec: Any, earlier: Mapping[str, Param], source: str) -> Param:
    where = f"parameter {name!r} in {source}"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where} must be a mapping like {{type: choice, values: [...]}}, got {spec!r}.")
    unknown_keys = set(spec) - {"type", "values", "low", "high", "log", "when"}
    if unknown_keys:
        raise SpaceError(f"{where} has unknown keys {sorted(unknown_keys)}: use type, values, low, high, log, when.")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise SpaceError(f"{where} has unknown type {kind!r}: use one of {list(PARAM_TYPES)}.")

    when: dict[str, tuple[Any, ...]] = {}
    for key, allowed in (spec.get("when") or {}).items():
        if key not in earlier:
            raise SpaceError(
                f"{where} has a condition on {key!r}, which is not defined before it: "
                f"list {key!r} above {name!r} (defined so far: {list(earlier)})."
            )
        allowed = tuple(_number(v) for v in (allowed if isinstance(allowed, list) else [allowed]))
        parent = earlier[key]
        if parent.type == "choice" and not set(allowed) <= set(parent.values):
            raise SpaceError(
                f"{where}: condition {key} in {list(allowed)} can never hold, {key} takes {list(parent.values)}."
            )
        when[key] = allowed

    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where} is a choice and needs a non-empty list `values: [...]`.")
        values = [_number(v) for v in values]
        if len({repr(v) for v in values}) != len(values):
            raise SpaceError(f"{where} lists a value twice: {values}.")
        return Param(name, kind, values=tuple(values), when=when)

    try:
        low, high = float(_number(spec["low"])), float(_number(spec["high"]))
    except (KeyError, TypeError, ValueError) as err:
        raise SpaceError(f"{where} is {kind} and needs numeric `low:` and `high:` ({err}).") from None
    if not low < high or not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError(f"{where} needs finite low < high, got low={low}, high={high}.")
    log = bool(spec.get("log", False))
    if (kind == "loguniform" or log) and low <= 0:
        raise SpaceError(f"{where} is log-scaled and needs low > 0, got {low}.")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise SpaceError(f"{where} is int and needs whole-number bounds, got {low}, {high}.")
    return Param(name, kind, low=low, high=high, log=log or kind == "loguniform", when=when)


@dataclass
class SearchSpace:
    """Parameters in sampling order, plus ``fixed`` settings copied into every config."""

    name: str
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SearchSpace:
        if not isinstance(data, Mapping) or not isinstance(data.get("parameters"), Mapping):
            raise SpaceError(f"{source} must hold a mapping with a `parameters:` section (see docs/diagnosis.md).")
        params: dict[str, Param] = {}
        for name, spec in data["parameters"].items():
            params[str(name)] = _parse_param(str(name), spec, params, source)
        fixed = dict(data.get("fixed") or {})
        clash = sorted(set(fixed) & set(params))
        if clash:
            raise SpaceError(f"{source}: {clash} are both fixed and sampled; keep each in one section.")
        return cls(str(data.get("name", Path(source).stem)), params, fixed, str(data.get("description", "")))

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        if not path.is_file():
            raise SpaceError(f"search-space file {path} does not exist.")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SpaceError(f"{path} is not valid YAML: {err}") from None
        return cls.from_dict(data, source=str(path))

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration: fixed settings, then each active parameter in order."""
        config: dict[str, Any] = dict(self.fixed)
        for param in self.params.values():
            if param.is_active(config):
                config[param.name] = param.sample(rng)
        return config

    def sample_many(self, n: int, seed: int = 0, start: int = 0) -> list[dict[str, Any]]:
        """Configs ``start .. start + n - 1``. Config ``i`` depends only on ``(seed, i)``: a sweep can be extended."""
        if n < 1 or seed < 0 or start < 0:
            raise DiagnosisError(f"got n={n}, seed={seed}, start={start}: pass n >= 1, seed >= 0 and start >= 0.")
        return [self.sample(np.random.default_rng([seed, i])) for i in range(start, start + n)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        out["parameters"] = {name: p.to_dict() for name, p in self.params.items()}
        return out


def builtin_spaces() -> list[str]:
    """Names of the spaces shipped in ``sec_rl/diagnosis/spaces``."""
    folder = resources.files("sec_rl.diagnosis") / "spaces"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_space(space: str | Path | Mapping[str, Any] | SearchSpace | None = None) -> SearchSpace:
    """A space from a file path, a built-in name, a dict, or ``None`` for the web-agent study's space."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    name = DEFAULT_SPACE if space is None else str(space)
    if Path(name).is_file():
        return SearchSpace.from_yaml(name)
    builtin = resources.files("sec_rl.diagnosis") / "spaces" / f"{name}.yaml"
    if builtin.is_file():
        return SearchSpace.from_dict(yaml.safe_load(builtin.read_text()), source=f"{name}.yaml")
    raise SpaceError(f"no space file {name!r}: pass a path to a YAML file or a built-in name {builtin_spaces()}.")
