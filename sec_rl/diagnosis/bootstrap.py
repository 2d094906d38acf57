"""Which value of a hyperparameter wins? The weighted bootstrap of arXiv 2507.04103, vectorised.

The study's procedure, for one hyperparameter:

1. resample the runs with replacement (B = 1,000 times, each resample as large as the sweep), drawing
   each run with probability proportional to ``1 / (runs sharing its value)``, so that a value that
   happened to be sampled more often does not win just by having more tickets;
2. in each resample, the best run wins for its value (ties split the win between the tied values, in
   proportion to their tied draws), and each value's best score is recorded;
3. report per value the win rate (share of resamples won) and the best score, with 95% intervals.

The best-score interval is the percentile interval of step 2's per-value maxima. A win rate has no
spread within one bootstrap (each resample is won or not), so its interval answers "how much would
this win rate move if the sweep were run again": the runs are resampled uniformly (as re-running the
sweep would) and, for each such resample, the exact probability that the weighted procedure picks
each value is computed in closed form (``P(best draw is in tie-block t) = (1 - C_<t)^n - (1 - C_<=t)^n``
for cumulative draw probabilities ``C`` of the score-sorted runs). Both intervals narrow as runs are added.

All resamples are drawn and scored at once as ``(B, n)`` arrays: there is no Python loop over resamples.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sec_rl.diagnosis.collect import RunResult
from sec_rl.diagnosis.space import DiagnosisError

MAX_LEVELS = 12  # a numeric parameter with more distinct values than this is binned


@dataclass
class ValueStats:
    """One value of the hyperparameter: how often it wins, and how good its best run is."""

    value: Any
    n_runs: int
    win_rate: float
    win_low: float
    win_high: float
    best: float
    best_low: float
    best_high: float


@dataclass
class Diagnosis:
    """Bootstrap verdict for one hyperparameter (at one compute budget, if ``budget`` is set)."""

    param: str
    values: list[ValueStats]
    n_runs: int
    n_resamples: int
    confidence: float = 0.95
    budget: float | None = None
    n_inactive: int = 0
    higher_is_better: bool = True
    binned: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def winner(self) -> Any:
        """The value with the highest win rate (``None`` without runs)."""
        played = [v for v in self.values if v.n_runs]
        return max(played, key=lambda v: v.win_rate).value if played else None

    @property
    def clear_winner(self) -> bool:
        """Whether the winner's win-rate interval lies above every other value's."""
        played = sorted((v for v in self.values if v.n_runs), key=lambda v: -v.win_rate)
        return len(played) == 1 or (len(played) > 1 and played[0].win_low > max(v.win_high for v in played[1:]))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["winner"], out["clear_winner"] = self.winner, self.clear_winner
        return out

    def format(self, digits: int = 3) -> str:
        """Plain-text table, one value per line."""
        pct = round(100 * self.confidence)
        budget = "all runs" if self.budget is None else f"compute <= {self.budget:.3g}"
        lines = [f"{self.param} ({budget}: {self.n_runs} runs, {self.n_resamples} resamples, {pct}% intervals)"]
        width = max([len(str(v.value)) for v in self.values] + [5])
        lines.append(f"  {'value':<{width}}  {'runs':>5}  {'win rate':>20}  {'best score':>28}")
        for v in self.values:
            win = f"{v.win_rate:6.1%} [{v.win_low:5.1%}, {v.win_high:5.1%}]"
            best = "-" if v.n_runs == 0 else f"{v.best:.{digits}g} [{v.best_low:.{digits}g}, {v.best_high:.{digits}g}]"
            mark = " <- winner" if v.value == self.winner and v.n_runs else ""
            lines.append(f"  {str(v.value):<{width}}  {v.n_runs:>5}  {win:>20}  {best:>28}{mark}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def _tie_blocks(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For scores sorted best first: each run's tie-block id, and the first and last index of its block."""
    block = np.concatenate([[0], np.cumsum(sorted_scores[1:] != sorted_scores[:-1])])
    starts = np.flatnonzero(np.concatenate([[True], block[1:] != block[:-1]]))
    ends = np.concatenate([starts[1:] - 1, [len(block) - 1]])
    return block, starts[block], ends[block]


def _exact_win_probabilities(
    draws: np.ndarray, labels: np.ndarray, first: np.ndarray, last: np.ndarray, n_values: int, tol: float = 1e-12
) -> np.ndarray:
    """Exact probability that one weighted resample of each multiset of runs is won by each value.

    Row ``b`` of ``draws`` is a multiset of runs, as indices into the score-sorted runs (``labels`` are their
    values, ``first``/``last`` bound each run's tie block). A weighted draw from it picks run ``j`` with
    probability ``q_j = copies_j / (copies of j's value * values present)``. With ``C`` the cumulative ``q`` in
    score order, the best of ``n`` draws lies in tie-block ``t`` with probability
    ``(1 - C_before_t)^n - (1 - C_through_t)^n``, shared within the block in proportion to ``q``.
    Only the best runs matter: the prefix grows until every row has ``(1 - C)^n < tol``. Returns ``(B, K)``.
    """
    n_rows, n_draws = draws.shape
    rows = np.arange(n_rows)[:, None]
    per_value = np.bincount((rows * n_values + labels[draws]).ravel(), minlength=n_rows * n_values)
    per_value = per_value.reshape(n_rows, n_values).astype(float)
    present = (per_value > 0).sum(axis=1, keepdims=True)
    weight = np.divide(1.0, per_value * present, out=np.zeros_like(per_value), where=per_value > 0)
    threshold = 1.0 - tol ** (1.0 / n_draws)
    m = min(len(labels), 64)
    while True:
        m = last[m - 1] + 1  # never cut a tie block
        inside = draws < m
        copies = np.bincount((rows * m + draws)[inside], minlength=n_rows * m).reshape(n_rows, m)
        q = copies * weight[:, labels[:m]]
        cum = np.cumsum(q, axis=1)
        if m == len(labels) or cum[:, -1].min() >= threshold:
            break
        m = min(len(labels), 4 * m)
    cum = np.hstack([np.zeros((n_rows, 1)), cum])
    before, through = cum[:, first[:m]], cum[:, last[:m] + 1]
    p_block = np.minimum(1.0, 1.0 - before) ** n_draws - np.clip(1.0 - through, 0.0, 1.0) ** n_draws
    share = np.divide(q, through - before, out=np.zeros_like(q), where=q > 0)
    return (p_block * share) @ np.eye(n_values)[labels[:m]]


def weighted_bootstrap(
    labels: np.ndarray,
    scores: np.ndarray,
    n_values: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    higher_is_better: bool = True,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """The bootstrap on integer labels ``0..n_values-1``. Returns arrays of length ``n_values``:
    ``runs, win_rate, win_low, win_high, best, best_low, best_high`` (NaN best for values without runs)."""
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1 or not len(labels):
        raise DiagnosisError("pass one label and one score per run, as two 1-D arrays of the same length (>= 1).")
    if not np.isfinite(scores).all():
        raise DiagnosisError("scores must be finite: drop runs without a score first.")
    if not 0 < confidence < 1:
        raise DiagnosisError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95.")
    if labels.min() < 0 or labels.max() >= n_values:
        raise DiagnosisError(f"labels must lie in 0..{n_values - 1}.")
    rng = rng or np.random.default_rng(0)
    n, B, K = len(scores), int(n_resamples), n_values
    signed = scores if higher_is_better else -scores
    order = np.argsort(-signed, kind="stable")  # run 0 is the best; a smaller index is a better run
    s, lab = signed[order], labels[order]
    block, first, last = _tie_blocks(s)
    counts = np.bincount(lab, minlength=K)
    played = np.flatnonzero(counts).astype(np.int32)

    # 1. Weighted resamples. Every value has total weight sum(1/count) = 1, so drawing a run with probability
    #    proportional to 1/count is drawing a value uniformly, then one of its runs uniformly.
    members = np.argsort(lab, kind="stable").astype(np.int32)  # runs grouped by value, best first in each
    offset = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
    value = played[rng.integers(0, len(played), size=(B, n), dtype=np.int32)]
    rank = (rng.random((B, n)) * counts[value]).astype(np.int32)  # rank of the drawn run within its value
    drawn = members[offset[value] + rank]

    # 2. The best draw wins (ties: split in proportion to the tied draws); each value's best draw is recorded.
    cells = np.arange(B, dtype=np.int32)[:, None] * K + value
    is_top = block[drawn] == block[drawn.min(axis=1)][:, None]
    credit = np.bincount(cells[is_top], minlength=B * K).reshape(B, K).astype(float)
    credit /= credit.sum(axis=1, keepdims=True)
    best_rank = np.full(B * K, n, dtype=np.int32)
    np.minimum.at(best_rank, cells.ravel(), rank.ravel())
    best_rank = best_rank.reshape(B, K)
    hit = best_rank < n
    best_samples = np.full((B, K), np.nan)
    best_samples[hit] = s[members[(offset[None, :] + best_rank)[hit]]]

    # 3. Win-rate interval: uniform resamples of the sweep, exact weighted win probability within each.
    win_samples = _exact_win_probabilities(rng.integers(0, n, size=(B, n), dtype=np.int32), lab, first, last, K)

    win_low, win_high = np.zeros(K), np.zeros(K)
    win_low[played], win_high[played] = _percentiles(win_samples[:, played], confidence)
    best, best_low, best_high = np.full(K, np.nan), np.full(K, np.nan), np.full(K, np.nan)
    best[played] = s[members[offset[played]]]  # each value's best run
    best_low[played], best_high[played] = _percentiles(best_samples[:, played], confidence)
    if not higher_is_better:  # back from negated scores: the interval's ends swap
        best, best_low, best_high = -best, -best_high, -best_low
    return {
        "runs": counts,
        "win_rate": credit.mean(axis=0),
        "win_low": win_low,
        "win_high": win_high,
        "best": best,
        "best_low": best_low,
        "best_high": best_high,
    }


def exact_win_rates(
    labels: np.ndarray, scores: np.ndarray, n_values: int, higher_is_better: bool = True
) -> np.ndarray:
    """The win rates the weighted bootstrap converges to as the number of resamples grows (closed form)."""
    labels, signed = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    signed = signed if higher_is_better else -signed
    order = np.argsort(-signed, kind="stable")
    _, first, last = _tie_blocks(signed[order])
    return _exact_win_probabilities(np.arange(len(order))[None, :], labels[order], first, last, n_values, tol=0.0)[0]


# ----------------------------------------------------------------------------------------- on run tables


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


def discretize(values: Sequence[float], n_bins: int = 5) -> tuple[list[str], list[str]]:
    """Quantile bins for a continuous parameter (log-spaced when all values are positive).
    Returns each run's bin label and the labels in increasing order."""
    x = np.asarray(values, dtype=float)
    log = bool((x > 0).all())
    t = np.log(x) if log else x
    edges = np.unique(np.quantile(t, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    raw = np.exp(edges) if log else edges
    names = [f"[{raw[i]:.3g}, {raw[i + 1]:.3g}{']' if i == len(edges) - 2 else ')'}" for i in range(len(edges) - 1)]
    return [names[i] for i in which], names


def diagnose(
    runs: Sequence[RunResult],
    param: str,
    *,
    budgets: Sequence[float] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    higher_is_better: bool = True,
    values: Sequence[Any] | None = None,
    include_unfinished: bool = False,
    n_bins: int = 5,
) -> list[Diagnosis]:
    """Bootstrap diagnosis of ``param`` over finished runs; one :class:`Diagnosis` per budget
    (``budgets=None``: one over all runs). A budget keeps the runs whose compute is at most the budget.

    Args:
        values: the parameter's possible values in display order (e.g. from the space); values never
            run are listed with 0 runs.
        include_unfinished: also use unfinished/crashed runs that logged a score (their last one).
        n_bins: numeric parameters with more than 12 distinct values are binned into this many quantile bins.
    """
    not_finite = [r.run_id for r in runs if r.ok and not math.isfinite(r.score)]
    if not_finite:
        raise DiagnosisError(
            f"runs {not_finite[:5]} have status 'ok' but no finite score ({len(not_finite)} in all): a NaN or "
            "infinite score cannot be ranked. Give them status 'invalid' with the value in their reason (collect() "
            "and read_table() do), or fix the metric."
        )
    usable = [r for r in runs if (r.ok or include_unfinished) and math.isfinite(r.score)]
    active = [r for r in usable if r.params.get(param) is not None]
    if not active:
        seen = sorted({k for r in usable for k in r.params})
        raise DiagnosisError(f"no finished run has parameter {param!r}: parameters present are {seen}.")
    raw = [r.params[param] for r in active]
    unhashable = [v for v in raw if isinstance(v, list | dict)]
    if unhashable:
        raise DiagnosisError(f"parameter {param!r} has list/dict values such as {unhashable[0]!r}; diagnose scalars.")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
    binned = numeric and len(set(raw)) > MAX_LEVELS
    if binned:
        keys, levels = discretize(raw, n_bins)
    else:
        keys = raw
        levels = list(values) if values is not None else []
        levels += sorted(set(raw) - set(levels), key=_sort_key)
    code = {v: i for i, v in enumerate(levels)}
    labels = np.array([code[k] for k in keys])
    scores = np.array([r.score for r in active])
    compute = np.array([r.compute for r in active])
    notes = []
    if len(usable) > len(active):
        notes.append(f"{len(usable) - len(active)} runs without {param} (inactive there) are left out.")

    if budgets is not None and not np.isfinite(compute).all():
        missing = [r.run_id for r in active if not math.isfinite(r.compute)][:5]
        raise DiagnosisError(
            f"budgets need every run's compute, but runs {missing} have none: "
            "name the key that holds it (--compute-key), or drop --budgets."
        )
    results = []
    for i, budget in enumerate([None] if budgets is None else list(budgets)):
        keep = np.ones(len(active), bool) if budget is None else compute <= budget
        if not keep.any():
            raise DiagnosisError(f"no run fits compute budget {budget:.3g} (smallest run: {compute.min():.3g}).")
        rng = np.random.default_rng([seed, zlib.crc32(param.encode()), i])
        stats = weighted_bootstrap(
            labels[keep],
            scores[keep],
            len(levels),
            n_resamples=n_resamples,
            confidence=confidence,
            higher_is_better=higher_is_better,
            rng=rng,
        )
        columns = ("win_rate", "win_low", "win_high", "best", "best_low", "best_high")
        rows = [
            ValueStats(level, int(stats["runs"][k]), *(float(stats[c][k]) for c in columns))
            for k, level in enumerate(levels)
        ]
        results.append(
            Diagnosis(
                param=param,
                values=rows,
                n_runs=int(keep.sum()),
                n_resamples=n_resamples,
                confidence=confidence,
                budget=budget,
                n_inactive=len(usable) - len(active),
                higher_is_better=higher_is_better,
                binned=binned,
                notes=list(notes),
            )
        )
    return results


def diagnose_all(
    runs: Sequence[RunResult], params: Sequence[str] | None = None, **kwargs: Any
) -> dict[str, list[Diagnosis]]:
    """:func:`diagnose` for several parameters (default: every parameter that takes at least two values)."""
    if params is None:
        usable = [r for r in runs if r.ok and math.isfinite(r.score)]
        seen: dict[str, set[str]] = {}
        for r in usable:
            for k, v in r.params.items():
                seen.setdefault(k, set()).add(repr(v))
        params = [k for k, v in seen.items() if len(v) > 1]
    values: Mapping[str, Sequence[Any]] = kwargs.pop("values", None) or {}
    return {p: diagnose(runs, p, values=values.get(p), **kwargs) for p in params}
