"""Numbers for a reader: one place that formats p-values, effects and durations.

Used by the report, the plugin's table, the CLI and the claims' reason texts, so a p-value reads
the same everywhere (``0.032``, ``4.1e-07``, ``< 1e-300``).

>>> pvalue(0.0321), pvalue(4.06e-7), pvalue(0.0), pvalue(None)
('0.032', '4.1e-07', '< 1e-300', '–')
>>> number(0.000733), number(12.3456), number(1.2e-5), number(123456.0)
('0.000733', '12.3', '1.2e-05', '1.2e+05')
>>> seconds(60.07553958892822), seconds(5.2), seconds(3725)
('1 min 0 s', '5.2 s', '1 h 2 min')
>>> print(printable("REFUTED" + chr(27) + "[2J" + chr(7) + " ok"))
REFUTED\\x1b[2J\\x07 ok
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

__all__ = ["MISSING", "count", "number", "printable", "pvalue", "seconds"]

#: what a missing or non-finite value reads as
MISSING = "–"


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes, bells, carriage
    returns; not newlines or tabs) shown as ``\\xNN`` escapes, so text from outside (a
    baseline, a file name) cannot move the cursor, clear the screen or hide a line."""
    return "".join(
        c if c in "\n\t" or (c.isprintable() and not _is_control(c)) else _escape(c) for c in text
    )


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf")


def _escape(c: str) -> str:
    return ascii(c)[1:-1]


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def number(x: Any, digits: int = 3, *, missing: str = MISSING) -> str:
    """``digits`` significant digits; scientific notation only for very small or large values.

    A value that is not a number is returned as its text (so labels pass through).
    """
    if x is None:
        return missing
    v = _finite(x)
    if v is None:
        return missing if isinstance(x, float | int) else str(x)
    if v == 0:
        return "0"
    if abs(v) < 1e-4 or abs(v) >= 1e5:
        return f"{v:.{max(digits - 2, 1)}e}"
    text = f"{v:.{digits}g}"
    if "e" in text:  # 'g' chose an exponent for e.g. 12345 at 3 digits
        text = f"{v:.0f}"
    return text


def pvalue(p: Any, *, missing: str = MISSING) -> str:
    """A p-value: two significant digits, scientific below 0.001; 0 (underflow) as ``< 1e-300``."""
    v = _finite(p)
    if v is None:
        return missing
    if v == 0:
        return "< 1e-300"
    if v < 1e-3:
        return f"{v:.1e}"
    return f"{v:.2g}"


def seconds(s: Any, *, missing: str = MISSING) -> str:
    """A duration for a reader: ``5.2 s``, ``1 min 0 s``, ``1 h 2 min``."""
    v = _finite(s)
    if v is None or v < 0:
        return missing
    if v < 60:
        return f"{v:.1f} s" if v < 10 else f"{v:.0f} s"
    if v < 3600:
        minutes, rest = divmod(round(v), 60)
        return f"{minutes} min {rest} s"
    hours, rest = divmod(round(v), 3600)
    return f"{hours} h {rest // 60} min"


def count(n: Any, noun: str, plural: str | None = None) -> str:
    """``1 photo``, ``3 photos`` (``plural`` when the noun does not just take an s)."""
    try:
        k = int(n)
    except (TypeError, ValueError):
        return f"{MISSING} {plural or noun + 's'}"
    return f"{k} {noun if k == 1 else (plural or noun + 's')}"
