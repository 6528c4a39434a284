"""Cells and tables of the benchmark's markdown: percentages, numbers, intervals, pipe tables."""

from __future__ import annotations

import math
from typing import Any


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals; ``n/a`` when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}"


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def ci(b: dict[str, Any] | None) -> str:
    """``97.05 [96.10, 97.90]``: a balanced accuracy and its 95% interval, in percent."""
    if not b:
        return "-"
    return f"{pct(b['value'])} [{pct(b['low'])}, {pct(b['high'])}]"
