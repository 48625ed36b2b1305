"""Number and duration formatting for the report's tables and sentences."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def fmt_int(x: Any) -> str:
    """An integer with thousands separators; blanks and "error" pass through."""
    if missing(x):
        return ""
    if isinstance(x, str):
        return x
    return f"{int(round(float(x))):,}"


def fmt_num(x: Any, digits: int = 4) -> str:
    """About ``digits`` significant digits, thousands separated: 527.8, 0.2354, 12,346."""
    if missing(x):
        return ""
    if isinstance(x, str):
        return x
    x = float(x)
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def fmt_si(x: Any) -> str:
    """A count with an SI suffix and 4 significant digits: 15.47 G, 416.5 k."""
    if missing(x):
        return ""
    if isinstance(x, str):
        return x
    x = float(x)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {suffix}"
    return f"{x:.4g}"


def fmt_pct(x: Any, signed: bool = False, decimals: int = 2) -> str:
    """A percentage (the value already in percent)."""
    if missing(x):
        return ""
    if isinstance(x, str):
        return x
    if signed and float(x) == 0:
        return "0"
    return f"{float(x):{'+' if signed else ''}.{decimals}f}%"


def fmt_frac(x: Any) -> str:
    """A fraction as a percentage with two decimals: 0.9905 -> 99.05%."""
    if missing(x) or isinstance(x, str):
        return "" if missing(x) else x
    return f"{100 * float(x):.2f}%"


def missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def ratio(a: float, b: float) -> str:
    r = a / b
    return f"{r:.1f}×" if r < 10 else f"{r:,.0f}×"


def share(x: float) -> str:
    return f"{x:.0f}%" if x >= 1 else f"{x:.1f}%"


def duration(seconds: Any) -> str:
    if missing(seconds):
        return ""
    total = int(round(float(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m} min {s} s" if h else (f"{m} min {s} s" if m else f"{s} s")
