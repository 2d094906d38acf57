"""Compute-performance frontier: the best score each strategy reaches for a given amount of compute.

A point is (compute, score): a finished run, or one evaluation along a run's learning curve. A strategy's
Pareto frontier keeps the points that no other point beats with less or equal compute; read as a step
function it is "the best score reachable with at most C FLOPs". :func:`compute_to_match` answers the
study's question, e.g. "SFT+RL matches pure SFT's peak with 55% of its compute": the smallest compute at
which strategy A's frontier reaches strategy B's peak score, divided by the compute B spent to get there.
Only observed points count (no interpolation between them), so the answer is what was actually achieved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sec_rl.diagnosis.collect import RunResult
from sec_rl.diagnosis.space import DiagnosisError


@dataclass
class Frontier:
    """Pareto points of one strategy, compute increasing and score strictly improving."""

    strategy: str
    compute: np.ndarray
    score: np.ndarray
    higher_is_better: bool = True

    def _better(self, a: float, b: float) -> bool:
        # equal up to float rounding counts as reached: a mean of three 0.7s is 0.6999999999999998
        if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            return True
        return a > b if self.higher_is_better else a < b

    @property
    def peak_score(self) -> float:
        return float(self.score[-1])

    @property
    def peak_compute(self) -> float:
        """Compute at which the peak was first reached."""
        return float(self.compute[-1])

    def score_at(self, compute: float) -> float:
        """Best score reachable with at most ``compute`` (NaN below the cheapest point)."""
        i = np.searchsorted(self.compute, compute, side="right") - 1
        return float(self.score[i]) if i >= 0 else math.nan

    def compute_to_reach(self, score: float) -> float:
        """Smallest compute at which the frontier reaches ``score`` (inf if it never does)."""
        for c, s in zip(self.compute, self.score):
            if self._better(s, score):
                return float(c)
        return math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "compute": self.compute.tolist(), "score": self.score.tolist()}


def pareto_frontier(
    compute: Sequence[float], score: Sequence[float], higher_is_better: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Points not dominated by a point with less-or-equal compute and a better-or-equal score."""
    c, s = np.asarray(compute, dtype=float), np.asarray(score, dtype=float)
    ok = np.isfinite(c) & np.isfinite(s)
    c, s = c[ok], (s[ok] if higher_is_better else -s[ok])
    order = np.lexsort((-s, c))  # compute ascending; at equal compute the best score first
    c, s = c[order], s[order]
    keep = s > np.concatenate([[-np.inf], np.maximum.accumulate(s)[:-1]])  # strictly beats everything cheaper
    return c[keep], (s[keep] if higher_is_better else -s[keep])


def frontier_points(runs: Sequence[RunResult], use_curves: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(compute, score) of finished runs; with ``use_curves`` every evaluation along each run counts."""
    points: list[tuple[float, float]] = []
    for run in runs:
        if not run.ok:
            continue
        if use_curves and run.curve:
            points.extend(run.curve)
        elif math.isfinite(run.compute) and math.isfinite(run.score):
            points.append((run.compute, run.score))
    arr = np.array(points, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def frontiers(
    runs: Sequence[RunResult], strategy_key: str, *, use_curves: bool = True, higher_is_better: bool = True
) -> dict[str, Frontier]:
    """One frontier per value of the config key ``strategy_key`` (e.g. ``pipeline: sft`` / ``sft+rl``)."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        if run.ok and strategy_key in run.params:
            groups.setdefault(str(run.params[strategy_key]), []).append(run)
    if not groups:
        keys = sorted({k for r in runs for k in r.params})
        raise DiagnosisError(f"no finished run has the strategy key {strategy_key!r}; config keys are {keys}.")
    out = {}
    for name, group in groups.items():
        c, s = frontier_points(group, use_curves)
        if len(c) == 0:
            raise DiagnosisError(
                f"strategy {name!r} has no run with both a score and a compute value: "
                "check --compute-key (the runs' FLOPs key)."
            )
        fc, fs = pareto_frontier(c, s, higher_is_better)
        out[name] = Frontier(name, fc, fs, higher_is_better)
    return out


Points = Frontier | Sequence[RunResult] | np.ndarray | Sequence[Sequence[float]]


def _as_frontier(x: Points, name: str, higher_is_better: bool) -> Frontier:
    if isinstance(x, Frontier):
        return x
    if len(x) and isinstance(x[0], RunResult):
        c, s = frontier_points(x)  # type: ignore[arg-type]
    else:
        arr = np.asarray(x, dtype=float).reshape(-1, 2)
        c, s = arr[:, 0], arr[:, 1]
    if len(c) == 0:
        raise DiagnosisError(f"strategy {name} has no (compute, score) points.")
    return Frontier(name, *pareto_frontier(c, s, higher_is_better), higher_is_better)


def _direction(runs_a: Points, runs_b: Points, higher_is_better: bool | None) -> bool:
    """The metric's mode: given, or the Frontiers' own; raw points without it would be a guess, so they raise."""
    modes = {f.higher_is_better for f in (runs_a, runs_b) if isinstance(f, Frontier)}
    if len(modes) > 1:
        raise DiagnosisError("the two frontiers disagree on higher_is_better: build both with the metric's mode.")
    if higher_is_better is not None and modes and modes != {higher_is_better}:
        raise DiagnosisError(
            f"higher_is_better={higher_is_better} contradicts the frontiers' own mode ({modes.pop()}): drop the "
            "argument or rebuild the frontiers with the same mode."
        )
    if higher_is_better is None and not modes:
        raise DiagnosisError(
            "compute_to_match on runs or (compute, score) points needs the metric's direction: pass "
            "higher_is_better=True for a success rate or reward, False for a loss."
        )
    return modes.pop() if modes else bool(higher_is_better)


@dataclass
class Match:
    """How much compute strategy ``a`` needs to match strategy ``b``'s peak score."""

    a: str
    b: str
    target_score: float  # b's peak
    compute_a: float  # smallest compute at which a reaches it (inf: never)
    compute_b: float  # compute at which b first reached its peak
    a_peak: float

    @property
    def ratio(self) -> float:
        """``compute_a / compute_b``; 0.55 reads "a matches b's peak with 55% of b's compute"."""
        return self.compute_a / self.compute_b if self.compute_b > 0 else math.inf

    def describe(self) -> str:
        if math.isinf(self.compute_a):
            return f"{self.a} never reaches {self.b}'s peak {self.target_score:.4g} (its best: {self.a_peak:.4g})."
        return (
            f"{self.a} matches {self.b}'s peak {self.target_score:.4g} with {self.compute_a:.3g} FLOPs, "
            f"{self.ratio:.0%} of the {self.compute_b:.3g} {self.b} needed."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "target_score": self.target_score,
            "compute_a": self.compute_a,
            "compute_b": self.compute_b,
            "ratio": self.ratio,
        }


def compute_to_match(runs_a: Points, runs_b: Points, *, higher_is_better: bool | None = None) -> Match:
    """Smallest compute at which A's frontier reaches B's peak score, and its ratio to B's compute at that peak.

    Each argument is a :class:`Frontier`, a list of :class:`RunResult`, or an ``(N, 2)`` array of (compute, score).
    ``higher_is_better`` is the metric's mode; it is required unless an argument is a :class:`Frontier`, which
    carries its own (for a loss, "reaching" B's peak means going as low).
    """
    higher = _direction(runs_a, runs_b, higher_is_better)
    a, b = _as_frontier(runs_a, "A", higher), _as_frontier(runs_b, "B", higher)
    return Match(a.strategy, b.strategy, b.peak_score, a.compute_to_reach(b.peak_score), b.peak_compute, a.peak_score)
