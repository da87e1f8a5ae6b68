"""Building blocks of the policy models: strict frozen models and duration fields."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.durations import DurationError, parse_duration

Risk = Literal["low", "medium", "high", "critical"]
RISK_ORDER: tuple[Risk, ...] = ("low", "medium", "high", "critical")


class StrictModel(BaseModel):
    """A policy section: unknown keys are errors (a typo must not silently do nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def as_duration(value: object) -> timedelta:
    """A duration field's value from YAML text such as ``30m``; ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError("a duration is written as text such as 30m, 4h or 2d")
