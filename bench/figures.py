"""Figures (a measured value, its baseline, the budget) and the table they print as."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class Check(Enum):
    RATIO_AT_LEAST = "ratio_at_least"  # value / baseline >= threshold
    RATIO_ABOVE = "ratio_above"  # value / baseline > threshold
    RATIO_AT_MOST = "ratio_at_most"  # value / baseline <= threshold (a cost against a baseline)
    AT_MOST = "at_most"  # value <= threshold
    EQUALS = "equals"  # value == threshold


@dataclass(frozen=True, slots=True)
class Target:
    check: Check
    threshold: float

    def describe(self, unit: str) -> str:
        if self.check is Check.RATIO_AT_LEAST:
            return f">= {self.threshold:g}x"
        if self.check is Check.RATIO_ABOVE:
            return f"> {self.threshold:g}x"
        if self.check is Check.RATIO_AT_MOST:
            return f"<= {self.threshold:g}x"
        if self.check is Check.AT_MOST:
            return f"<= {self.threshold:g} {unit}".strip()
        return f"= {self.threshold:g} {unit}".strip()


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the table. ``value`` None means "not measured" and ``note`` says why."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """True / False against the target; None when there is no target or no value."""
        if self.target is None or self.value is None:
            return None
        check, threshold = self.target.check, self.target.threshold
        if check is Check.AT_MOST:
            return self.value <= threshold
        if check is Check.EQUALS:
            return self.value == threshold
        ratio = self.ratio
        if ratio is None:
            return None
        if check is Check.RATIO_AT_MOST:
            return ratio <= threshold
        return ratio >= threshold if check is Check.RATIO_AT_LEAST else ratio > threshold


def format_number(value: float | None, unit: str = "") -> str:
    """``12345.6, "req/s"`` -> ``"12,346 req/s"``; small values keep two decimals."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}".strip()


def render_table(figures: Sequence[Figure]) -> str:
    """Plain-text table: figure, value, baseline, ratio, target, met?"""
    header = ("figure", "value", "baseline", "ratio", "target", "met?")
    rows: list[tuple[str, ...]] = []
    for fig in figures:
        baseline = format_number(fig.baseline, fig.unit) if fig.baseline is not None else ""
        if baseline and fig.baseline_name:
            baseline = f"{baseline} ({fig.baseline_name})"
        ratio = f"{fig.ratio:.2f}x" if fig.ratio is not None else ""
        target = fig.target.describe(fig.unit) if fig.target is not None else ""
        met = {True: "yes", False: "NO", None: ""}[fig.met]
        value = format_number(fig.value, fig.unit) if fig.value is not None else fig.note
        if fig.value is None and fig.target is not None:
            met = "n/a"
        rows.append((fig.name, value, baseline, ratio, target, met))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    out = [line(header), rule, *(line(r) for r in rows)]
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note and f.value is not None]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in 0..1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
