"""Durations as people write them on a command line: '90', '90s', '10m', '1.5h'."""
from __future__ import annotations

import re

from scaletrain.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int | None) -> float | None:
    """Return seconds from '90', '90s', '10m' or '1.5h'."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"time limit '{text}' is not a duration; write e.g. 90s, 10m or 1h")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
