"""MATH-style data with difficulty levels, from the Hub or a local file, and a boxed-answer reward.

:func:`load_leveled_dataset` reads any dataset whose rows have a problem, an answer (or a worked solution ending in
``\\boxed{...}``) and a level, such as MATH (``"Level 3"``), and returns it ready for ``SECGRPOTrainer``: a
conversational ``prompt`` asking for the final answer in ``\\boxed{}``, the ``answer``, and the level normalised
into a ``difficulty`` column (``"Level 3"`` -> ``"3"``), the arm key a curriculum groups by.

:func:`boxed_answer_reward` compares the last ``\\boxed{...}`` of a completion with the reference answer. It uses
`math_verify <https://github.com/huggingface/Math-Verify>`_ when it is installed (``pip install math-verify``: symbolic
equivalence, as TRL's own ``accuracy_reward``), and otherwise a string normalisation (:func:`normalize_answer`:
LaTeX spacing and sizing commands, ``\\dfrac``, ``\\text{}``, degrees, percent, thousands separators, a leading
``x =``) followed by a numeric comparison when both sides are numbers or simple fractions. ``MATH_VERIFY_AVAILABLE``
says which one is active.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Sequence
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
LOCAL_FORMATS = {"json": "json", "jsonl": "json", "csv": "csv", "parquet": "parquet"}
MATH_VERIFY_AVAILABLE = importlib.util.find_spec("math_verify") is not None


# -- loading ---------------------------------------------------------------------------------------------------------
def _load(name_or_path: str, split: str, config_name: str | None) -> Dataset:
    if os.path.isdir(name_or_path) and (
        os.path.exists(os.path.join(name_or_path, "dataset_info.json"))
        or os.path.exists(os.path.join(name_or_path, "dataset_dict.json"))
    ):
        loaded = load_from_disk(name_or_path)
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise ValueError(f"{name_or_path} has splits {list(loaded)}, not {split!r}: pass split=...")
            return loaded[split]
        return loaded
    extension = name_or_path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(name_or_path) else ""
    if os.path.isfile(name_or_path):
        if extension not in LOCAL_FORMATS:
            raise ValueError(
                f"cannot read {name_or_path}: local files must be {sorted(LOCAL_FORMATS)} (or a save_to_disk folder)."
            )
        return load_dataset(LOCAL_FORMATS[extension], data_files=name_or_path, split="train")
    return load_dataset(name_or_path, config_name, split=split)


_LEVEL_PREFIX = re.compile(r"^\s*(level|lvl|difficulty)\s*[:#_-]?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")


def normalize_level(value: Any) -> str | None:
    """A level as a clean string: ``"Level 3"``, ``3``, ``3.0``, ``"3"`` -> ``"3"``; ``"Hard"`` -> ``"hard"``.

    Returns ``None`` for a missing or unknown level (``None``, ``""``, MATH's ``"Level ?"``).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    text = _LEVEL_PREFIX.sub("", str(value)).strip()
    if _NUMBER.match(text):
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    if re.fullmatch(r"[A-Za-z][\w\- ]*", text):
        return text.lower()
    return None


def load_leveled_dataset(
    name_or_path: str,
    level_column: str = "level",
    problem_column: str = "problem",
    answer_column: str = "answer",
    split: str = "train",
    config_name: str | None = None,
    solution_column: str | None = "solution",
    levels: Sequence[str] | None = None,
    instruction: str = BOXED_INSTRUCTION,
    system_prompt: str | None = None,
    drop_unleveled: bool = True,
) -> Dataset:
    """Load MATH-style problems with a level column, ready for a curriculum over levels.

    Args:
        name_or_path: a Hub dataset name (``datasets.load_dataset``), a local json, jsonl, csv or parquet file,
            or a folder written by ``save_to_disk``.
        level_column: the column holding each problem's level (``"Level 3"``, ``3``, ``"hard"``...).
        problem_column: the column holding the problem statement.
        answer_column: the column holding the final answer. If the data has none, the answer is taken from the last
            ``\\boxed{...}`` of ``solution_column`` (MATH's worked solutions); rows without one are dropped.
        split: the split of a Hub dataset or of a saved ``DatasetDict``.
        config_name: the Hub dataset's configuration (e.g. a MATH subject).
        levels: keep only these (normalised) levels, e.g. ``["1", "2", "3"]`` for training.
        instruction: appended to every problem; the default asks for the answer in ``\\boxed{}``.
        system_prompt: an optional system message.
        drop_unleveled: drop rows whose level is missing or unknown (MATH has a few ``"Level ?"``); if False, they
            raise an error.

    Returns:
        The data with its columns plus ``prompt`` (conversational), ``answer`` (a string) and ``difficulty`` (the
        normalised level).
    """
    dataset = _load(name_or_path, split, config_name)
    columns = dataset.column_names
    if level_column not in columns:
        raise ValueError(
            f"level column {level_column!r} not found in {name_or_path}; its columns are {columns}: "
            "pass level_column=... naming the column that holds each problem's level."
        )
    if problem_column not in columns:
        raise ValueError(
            f"problem column {problem_column!r} not found in {name_or_path}; its columns are {columns}: "
            "pass problem_column=..."
        )
    from_solution = answer_column not in columns
    if from_solution and (solution_column is None or solution_column not in columns):
        raise ValueError(
            f"answer column {answer_column!r} not found in {name_or_path} (and no solution column "
            f"{solution_column!r} to take a \\boxed{{}} answer from); its columns are {columns}: pass "
            "answer_column=... or solution_column=..."
        )

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        problem = str(row[problem_column]).strip()
        content = f"{problem}\n\n{instruction}" if instruction else problem
        if from_solution:
            answer = last_boxed(str(row[solution_column] or ""))
        else:
            answer = None if row[answer_column] is None else str(row[answer_column]).strip()
        return {
            "prompt": [*messages, {"role": "user", "content": content}],
            "answer": answer,
            "difficulty": normalize_level(row[level_column]),
        }

    converted = dataset.map(convert)
    unleveled = sum(level is None for level in converted["difficulty"])
    if unleveled and not drop_unleveled:
        examples = sorted({str(v) for v, d in zip(dataset[level_column], converted["difficulty"]) if d is None})[:5]
        raise ValueError(
            f"{unleveled} rows have no usable level (values such as {examples}); set drop_unleveled=True."
        )
    keep = set(levels) if levels is not None else None
    converted = converted.filter(
        lambda row: (
            row["difficulty"] is not None and bool(row["answer"]) and (keep is None or row["difficulty"] in keep)
        )
    )
    if len(converted) == 0:
        found = sorted({d for d in (normalize_level(v) for v in dataset[level_column]) if d is not None})
        raise ValueError(f"no rows left in {name_or_path} (levels found: {found}, levels asked: {levels}).")
    return converted


# -- answers ---------------------------------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; ``None`` if none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        # "\boxed 5": the unbraced form takes the next token
        match = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[start:])
        return match.group(1) if match else None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i].strip()
    return None  # unbalanced: the completion was cut off


_REMOVE = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "$")


def _strip_text_commands(s: str) -> str:
    return re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)


def normalize_answer(answer: str) -> str:
    """A canonical string for a final answer, for the comparison used when math_verify is not installed."""
    s = str(answer).strip()
    for token in _REMOVE:
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\ ", "")
    s = re.sub(r"\^\{?\\circ\}?", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _strip_text_commands(s)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^[a-zA-Z]=", "", s)  # "x=3" -> "3"
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"^(-?)\.(\d)", r"\g<1>0.\2", s)  # .5 -> 0.5
    return s


def _as_number(s: str) -> float | None:
    match = re.fullmatch(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", s) or re.fullmatch(
        r"(-?)(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", s
    )
    if match:
        sign, num, den = match.groups()
        if float(den) == 0:
            return None
        return (-1 if sign else 1) * float(num) / float(den)
    try:
        return float(s)
    except ValueError:
        return None


def answers_match(prediction: str, reference: str, use_math_verify: bool | None = None) -> bool:
    """Whether ``prediction`` and ``reference`` are the same final answer.

    ``use_math_verify=None`` uses math_verify when installed; False forces the string normalisation.
    """
    if use_math_verify is None:
        use_math_verify = MATH_VERIFY_AVAILABLE
    if use_math_verify:
        from math_verify import parse, verify

        gold = parse(f"\\boxed{{{reference}}}")
        if gold:
            return bool(verify(gold, parse(f"\\boxed{{{prediction}}}")))
    a, b = normalize_answer(prediction), normalize_answer(reference)
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def _text(completion: str | list[dict[str, Any]]) -> str:
    if isinstance(completion, str):
        return completion
    return "\n".join(str(message.get("content") or "") for message in completion)


def boxed_answer_reward(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 when the completion's last ``\\boxed{...}`` matches ``answer``, else 0.0 (no box: 0.0)."""
    rewards = []
    for completion, reference in zip(completions, answer, strict=True):
        predicted = last_boxed(_text(completion))
        rewards.append(1.0 if predicted is not None and answers_match(predicted, str(reference)) else 0.0)
    return rewards


__all__ = [
    "BOXED_INSTRUCTION",
    "MATH_VERIFY_AVAILABLE",
    "answers_match",
    "boxed_answer_reward",
    "last_boxed",
    "load_leveled_dataset",
    "normalize_answer",
    "normalize_level",
]
