"""`--max-drop`: whether a run's lines are too few against the export's last published object.

Each day's file replaces the day's audience in Salesforce, so a run over a half-loaded table
would wipe most users' segments. A run whose line count is more than `max_drop` percent below
the last object's is refused before anything is published (SPEC §4). Pure: the counts come in,
the refusal's words come out.
"""

import math
from fractions import Fraction

__all__ = ["drop_percent", "drop_refusal"]

_MAX_DECIMALS = 4


def drop_percent(lines: int, previous_lines: int) -> Fraction:
    """How many percent fewer `lines` are than `previous_lines` (0 when not fewer, or nothing before)."""
    if previous_lines <= 0 or lines >= previous_lines:
        return Fraction(0)
    return Fraction(previous_lines - lines, previous_lines) * 100


def drop_refusal(lines: int, previous_lines: int, max_drop: float, previous_uri: str) -> str | None:
    """Why `lines` may not replace the `previous_lines` of `previous_uri`, or None when they may.

    Refused when the drop is larger than `max_drop` percent: exactly `max_drop` percent fewer
    passes, and so does anything after an object of 0 lines (there was nothing to lose).
    `640 lines is 94% fewer than the 10,000 of s3://.../first_party_segment.txt.gz (--max-drop 50)`
    """
    limit = Fraction(str(max_drop))  # 33.3 is 333/10 here, not the float just below it
    drop = drop_percent(lines, previous_lines)
    if drop <= limit:
        return None
    noun = "line" if lines == 1 else "lines"
    return (
        f"{lines:,} {noun} is {_shown_percent(drop, limit)}% fewer than the {previous_lines:,} of {previous_uri} "
        f"(--max-drop {max_drop:g})"
    )


def _shown_percent(drop: Fraction, limit: Fraction) -> str:
    """The drop rounded to whole percent, or to as many decimals as it takes to stay above the
    limit and below 100 (a 50.4% drop under --max-drop 50 is not shown as "50%")."""
    for decimals in range(_MAX_DECIMALS + 1):
        text = f"{float(drop):.{decimals}f}"
        shown = Fraction(text)
        if shown > limit and (shown < 100 or drop == 100):
            return text
    scale = 10**_MAX_DECIMALS  # a hair above the limit, or below 100: rounded away from it
    near = math.ceil(drop * scale) if math.ceil(drop * scale) < 100 * scale else math.floor(drop * scale)
    return f"{near / scale:.{_MAX_DECIMALS}f}"
