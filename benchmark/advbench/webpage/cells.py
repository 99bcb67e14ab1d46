"""Values as the page shows them: escaping, numbers, colours and their contrast."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import pandas as pd

from advbench.tables import COLUMNS

TEXT, LIGHT, STRONG = "#111111", (255, 255, 255), (231, 111, 81)
"""Dark text on a light background; grid cells go from white to a warm orange with the damage."""

DEFAULTS = {"side": "query", "goal": "untargeted", "budget": "linf", "threat": "none", "defence": "none"}
"""Values of columns a results.csv written before they existed lacks."""


def _e(value: Any) -> str:
    """``value`` as escaped HTML text (blank for NaN / None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return escape(str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    """A number as the CSV shows it (``digits`` decimals; blank for NaN)."""
    if value is None or pd.isna(value):
        return ""
    if isinstance(value, bool | str):
        return str(value)
    return f"{float(value):.{digits}f}"


def _cell_text(value: Any) -> str:
    """A summary-table value as summary.md shows it."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every :data:`advbench.leaderboard.COLUMNS` column (a results.csv of an older
    version lacks the threat-model and target columns: defaults and NaN)."""
    missing = {c: DEFAULTS.get(c, float("nan")) for c in COLUMNS if c not in frame.columns}
    frame = frame.assign(**missing) if missing else frame.copy()
    for column, default in DEFAULTS.items():
        frame[column] = frame[column].fillna(default).astype(str)
    return frame.reset_index(drop=True)


def colour(share: float) -> str:
    """Background of a grid cell whose share of clean mAP destroyed is ``share`` (0..1)."""
    t = 0.0 if pd.isna(share) else min(max(float(share), 0.0), 1.0)
    r, g, b = (round(lo + t * (hi - lo)) for lo, hi in zip(LIGHT, STRONG, strict=True))
    return f"rgb({r},{g},{b})"


def contrast(background: tuple[int, int, int], text: tuple[int, int, int] = (17, 17, 17)) -> float:
    """WCAG contrast ratio of two sRGB colours (4.5 or more: legible body text)."""

    def luminance(rgb: tuple[int, int, int]) -> float:
        lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(background), luminance(text)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
