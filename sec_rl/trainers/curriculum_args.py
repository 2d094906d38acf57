"""The curriculum fields shared by the SEC trainers' configs (GRPO and SFT)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sec_rl.curriculum import (
    CURRICULA,
    POOL_STRATEGIES,
    POOLS,
    DifficultyPools,
    make_curriculum,
    strategy_parameters,
)

NO_CURRICULUM = "none"


def takes_temperature(curriculum: str) -> bool:
    """Whether a ``curriculum`` setting samples from a Boltzmann distribution: takes ``curriculum_temperature``."""
    return curriculum != NO_CURRICULUM and "temperature" in strategy_parameters(curriculum)


@dataclass
class CurriculumArguments:
    """Curriculum settings, mixed into a TRL config dataclass so they parse from flags and YAML (``TrlParser``).

    ``curriculum_signal`` depends on the trainer: each config lists the values it accepts in
    ``curriculum_signals`` (GRPO's by default) and may refine :meth:`_validate_curriculum_signal`.
    """

    #: The values ``curriculum_signal`` accepts, each with a one-line meaning (a config overrides it with its own).
    curriculum_signals: ClassVar[dict[str, str]] = {
        "advantages": "the advantages the trainer trains on",
        "raw_advantages": "reward minus group mean, whatever the reward scaling",
    }

    curriculum: str = field(
        default="sec",
        metadata={
            "help": "Strategy that chooses each prompt's category: one of "
            f"{sorted(CURRICULA)}; or {sorted(POOL_STRATEGIES)}, whose arms are difficulty pools that problems move "
            f"between by their latest group success (no category column needed); or a strategy of your own by import "
            f"path, 'my_pkg.module:MyStrategy'; or '{NO_CURRICULUM}' for TRL's own uniform sampler."
        },
    )
    curriculum_column: list[str] | None = field(
        default=None,
        metadata={
            "help": "Dataset column(s) holding each row's category, e.g. `difficulty`. Several columns make joint "
            "arms keyed 'a-b' (e.g. `difficulty domain`). Required unless curriculum is 'none'."
        },
    )
    curriculum_categories: list[str] | None = field(
        default=None,
        metadata={
            "help": "The arms in order, easy to hard (the order matters for 'ordered' and 'reverse'). Default: the "
            "distinct values found in the data, sorted naturally (numbers by value)."
        },
    )
    curriculum_alpha: float | None = field(
        default=None,
        metadata={"help": "TD(0) step size of 'sec' and 'learning_progress', in (0, 1]. Default: 0.5 (the paper)."},
    )
    curriculum_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Boltzmann temperature tau > 0. Default: the strategy's own (1.0 for 'sec', as for Countdown in "
            "the paper; it used 0.4 for MATH and 0.2 for the multi-domain run)."
        },
    )
    curriculum_signal: str = field(
        default="advantages",
        metadata={
            "help": "What the curriculum learns from. 'advantages': the advantages the trainer trains on. "
            "'raw_advantages': reward minus group mean, which keeps tracking p(1-p) when rewards are scaled per "
            "group (with scale_rewards='group' and small groups, mean |A| is nearly constant)."
        },
    )
    curriculum_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Other parameters of the strategy, as a dict or a JSON string, e.g. "
            '\'{"unsampled": "keep"}\' for sec or \'{"target": 0.5}\' for target_success.'
        },
    )
    curriculum_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the curriculum sampler's private generator. Default: `seed`."},
    )
    curriculum_pools: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "Difficulty pools inside each category: the strategy picks the category, then a problem is drawn "
            "from its easy / normal / hard pool by each problem's latest group success (prime-rl's rule). True for "
            "the defaults (hard <= 0.25 weight 0.2, normal <= 0.75 weight 1.0, easy weight 0.2), or a dict / JSON "
            'string of them, e.g. \'{"hard": 0.1, "easy_weight": 0.0}\'. GRPO only.'
        },
    )

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if isinstance(self.curriculum_column, str):
            self.curriculum_column = [self.curriculum_column]
        if isinstance(self.curriculum_kwargs, str):
            try:
                self.curriculum_kwargs = json.loads(self.curriculum_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"curriculum_kwargs is not valid JSON ({err}): pass e.g. '{{\"target\": 0.5}}'."
                ) from err
        self.curriculum_pools = _pool_settings(self.curriculum_pools)
        if not self.curriculum_enabled:
            return
        pool_strategy = self.curriculum in POOL_STRATEGIES
        if pool_strategy and self.curriculum_pools is not None:
            raise ValueError(
                f"curriculum={self.curriculum!r} already draws by difficulty pools, so curriculum_pools cannot "
                "compose with it: unset curriculum_pools, or use a category strategy (sec, random, ...) with pools."
            )
        if not self.curriculum_column and not pool_strategy:
            raise ValueError(
                f"curriculum={self.curriculum!r} needs `curriculum_column`: the dataset column(s) that hold each "
                "row's category, e.g. curriculum_column='difficulty'."
            )
        self._validate_curriculum_signal()
        # Build a throw-away instance now, so an unknown name or an out-of-range parameter fails at config time.
        probe_arms = list(POOLS) if pool_strategy else ["probe"]
        make_curriculum(self.curriculum, probe_arms, sizes=[1] * len(probe_arms), total_updates=1,
                        **self.curriculum_params())  # fmt: skip

    def _validate_curriculum_signal(self) -> None:
        """Reject a ``curriculum_signal`` this config's trainer cannot compute, listing the ones it can."""
        if self.curriculum_signal not in self.curriculum_signals:
            choices = "; ".join(f"{name!r} ({meaning})" for name, meaning in self.curriculum_signals.items())
            raise ValueError(
                f"curriculum_signal={self.curriculum_signal!r} is not supported by {type(self).__name__}: use one of "
                f"{choices}."
            )

    @property
    def curriculum_enabled(self) -> bool:
        return self.curriculum != NO_CURRICULUM

    def curriculum_params(self) -> dict[str, Any]:
        """The strategy's parameters: the explicit fields that are set, plus ``curriculum_kwargs``."""
        params = dict(self.curriculum_kwargs or {})
        if self.curriculum_alpha is not None:
            params["alpha"] = self.curriculum_alpha
        if self.curriculum_temperature is not None:
            params["temperature"] = self.curriculum_temperature
        return params


def _pool_settings(value: dict[str, float] | str | bool | None) -> dict[str, float] | None:
    """``curriculum_pools`` as DifficultyPools' keyword arguments (None: no pools), checked now."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false"):
            return {} if value.strip().lower() == "true" else None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"curriculum_pools is not valid JSON ({err}): pass e.g. '{{\"hard\": 0.25}}'.") from err
    settings = dict(value)
    try:
        DifficultyPools(**settings)
    except TypeError as err:
        raise ValueError(
            f"curriculum_pools={settings}: {err}. Use the fields hard, normal, easy_weight, normal_weight and "
            "hard_weight."
        ) from err
    return settings
