"""Arm names built from one or several category columns, and the reading of names sec-rl 0.1.0 saved.

A single column's value is its own name (``"3"``, ``"zebra"``). Several columns are joined with ``-``
(the SEC paper's 2D arms, ``("3", "zebra") -> "3-zebra"``) after escaping ``\\`` and ``-`` inside each
value with a backslash, so that ``("a-b", "c")`` and ``("a", "b-c")``, or ``(-1, 2)`` and ``("", "1-2")``,
get different names. Values without ``-`` or ``\\`` give the same name as before the escaping existed,
so most saved state files read unchanged; :func:`match_saved_arms` maps the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ARM_SEPARATOR = "-"
ESCAPE = "\\"


def _escape(value: str) -> str:
    return value.replace(ESCAPE, ESCAPE + ESCAPE).replace(ARM_SEPARATOR, ESCAPE + ARM_SEPARATOR)


def arm_key(values: Iterable[Any]) -> str:
    """Name of the arm of one row, given its category column values in column order.

    ``("3", "zebra") -> "3-zebra"``, ``("a-b", "c") -> "a\\-b-c"``, ``("x",) -> "x"`` (a single
    column keeps its plain value). Distinct tuples of the same length always get distinct names.
    """
    parts = [str(v) for v in values]
    if not parts:
        raise ValueError("arm_key() got no values: pass the row's value of each category column (at least one).")
    if len(parts) == 1:
        return parts[0]
    return ARM_SEPARATOR.join(_escape(p) for p in parts)


def split_arm_key(key: str) -> list[str]:
    """Column values of a name made by :func:`arm_key` from several columns (the inverse of that case)."""
    parts, current, chars = [], [], iter(key)
    for ch in chars:
        if ch == ESCAPE:
            nxt = next(chars, None)
            if nxt not in (ESCAPE, ARM_SEPARATOR):
                raise ValueError(
                    f"{key!r} is not an arm_key of several columns: {ESCAPE!r} must precede {ESCAPE!r} or "
                    f"{ARM_SEPARATOR!r}; a single column's name is its plain value and needs no splitting."
                )
            current.append(nxt)
        elif ch == ARM_SEPARATOR:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def legacy_arm_key(key: str) -> str:
    """The name the same row got before the escaping (values joined with ``-`` as they were)."""
    try:
        return ARM_SEPARATOR.join(split_arm_key(key))
    except ValueError:
        return key  # not an escaped joint name (a single column's value): its name never changed


def match_saved_arms(saved: Sequence[str], current: Sequence[str]) -> dict[str, str]:
    """Map each arm name of a saved state to this run's name for it.

    Names saved by this version map to themselves. A state written before the escaping, whose joint
    names held a ``-`` inside a value, maps through :func:`legacy_arm_key`. Raises when the saved arms
    are not this run's arms under either reading.
    """
    saved, current = [str(s) for s in saved], [str(c) for c in current]
    if saved == current:
        return {c: c for c in current}
    legacy = [legacy_arm_key(c) for c in current]
    if saved == legacy and len(set(legacy)) == len(legacy):
        return dict(zip(legacy, current))
    raise ValueError(
        f"state was saved for categories {saved}, but this curriculum has {current}: resume with the same "
        "dataset, category columns and curriculum_categories (sec-rl 0.1.0 joined several columns with an "
        "unescaped '-'; such names are read too, when they match these categories)."
    )


def upgrade_curriculum_state(state: Mapping[str, Any], categories: Sequence[str]) -> dict[str, Any]:
    """A ``curriculum_state.json`` dict with its arm names in this version's form (a copy; ``state`` is kept).

    Renames the strategy's ``categories``, the keys of ``probabilities``, of the sampler's ``queues`` and of
    each mapping in ``signal``. Raises (naming both lists) when the saved arms are not ``categories``.
    """
    out = dict(state)
    curriculum = dict(out["curriculum"])
    mapping = match_saved_arms(curriculum["categories"], categories)
    if all(k == v for k, v in mapping.items()):
        return out

    def rename(d: Mapping[str, Any]) -> dict[str, Any]:
        return {mapping.get(k, k): v for k, v in d.items()}

    curriculum["categories"] = [mapping[c] for c in curriculum["categories"]]
    out["curriculum"] = curriculum
    if isinstance(out.get("probabilities"), Mapping):
        out["probabilities"] = rename(out["probabilities"])
    if isinstance(out.get("sampler"), Mapping) and isinstance(out["sampler"].get("queues"), Mapping):
        out["sampler"] = {**out["sampler"], "queues": rename(out["sampler"]["queues"])}
    if isinstance(out.get("signal"), Mapping):
        out["signal"] = {k: rename(v) if isinstance(v, Mapping) else v for k, v in out["signal"].items()}
    return out
