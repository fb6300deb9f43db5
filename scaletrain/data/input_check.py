"""What in new rows does not fit the schema a run was trained on: counted per column, so that
predict, serve and the exported model's users are told instead of the values being absorbed
(a word in a number column silently becomes a missing value, an unseen category the unknown slot)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaletrain.data.pixels import DATA_URI, names_an_image
from scaletrain.data.sounds import SOUND_URI, names_a_sound
from scaletrain.data.values import MISSING, TRUE_WORDS, category_strings

FALSE_WORDS = {"false", "no", "n", "f", "0", "0.0"}
# a media column's kind: what its cell holds, the data URI that holds one inline, the check that a path names one
MEDIA = {"image": ("an image", "image file", DATA_URI, names_an_image),
         "sound": ("a sound clip", "sound file", SOUND_URI, names_a_sound)}
FAR = 1.0  # a value is far outside the training range beyond the clip bounds by this many times their span


def needed_columns(state: dict) -> list[str]:
    """The raw columns a table run reads."""
    c, text = state["columns"], state.get("text")
    return (c["numeric_raw"] + c["boolean"] + list(c["datetime"]) + c["categorical"] + (text["columns"] if text else [])
            + [column["name"] for column in state.get("images", [])])


def table_warnings(state: dict, frame: pd.DataFrame) -> list[dict]:
    """One finding per column whose values the fitted preprocessing had to guess at:
    {column, problem, count, rows, example, mask (which rows), values (the column's)}."""
    findings, rows = [], len(frame)

    def add(column: str, problem: str, bad: np.ndarray) -> None:
        if bad.any():
            values = frame[column].to_numpy() if column in frame.columns else None
            findings.append({"column": column, "problem": problem, "count": int(bad.sum()), "rows": rows,
                             "example": None if values is None else str(values[bad][0]), "mask": bad, "values": values})

    absent = [c for c in needed_columns(state) if c not in frame.columns]
    for column in absent:
        add(column, "missing column (read as missing values)", np.ones(rows, dtype=bool))
    bounds = {col["name"]: (col["lo"], col["hi"]) for col in state["numeric"]}
    for name in (c for c in state["columns"]["numeric_raw"] if c not in absent):
        given = frame[name].notna().to_numpy()
        value = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        add(name, "not a number (read as missing)", given & np.isnan(value))
        add(name, "infinite (read as missing)", np.isinf(value))
        lo, hi = bounds[name]
        span = FAR * max(hi - lo, abs(hi), abs(lo), 1e-12)
        add(name, f"far outside the training range [{lo:.4g}, {hi:.4g}] (clipped to it)",
            np.isfinite(value) & ((value < lo - span) | (value > hi + span)))
    for name in (c for c in state["columns"]["boolean"] if c not in absent):
        words = frame[name].astype(str).str.strip().str.lower()
        add(name, "not a true/false value (read as false)",
            frame[name].notna().to_numpy() & ~words.isin(TRUE_WORDS | FALSE_WORDS).to_numpy())
    known = {col["name"]: set(col["categories"]) for col in state["onehot"] + state["embed"]}
    for name in (c for c in state["columns"]["categorical"] if c not in absent):
        keys = category_strings(frame[name])
        add(name, f"a category the model never saw (read as unknown; it knows {len(known[name] - {MISSING})})",
            ((keys != MISSING) & ~keys.isin(known[name])).to_numpy())
    for column in (c for c in state.get("images", []) if c["name"] not in absent):
        cells, (what, file, uri, readable) = frame[column["name"]], MEDIA[column.get("kind", "image")]
        empty = cells.map(lambda v: not isinstance(v, bytes) and (not isinstance(v, str) or not v.strip())).to_numpy()
        add(column["name"], f"without {what} (read as missing)", empty)
        add(column["name"], f"naming no readable {file} (read as missing)",
            ~empty & cells.map(lambda v, uri=uri, readable=readable: isinstance(v, str) and not v.startswith(uri)
                               and not readable(v)).to_numpy())
    return findings


def slice_findings(findings: list[dict], start: int, end: int) -> list[dict]:
    """The findings of rows start:end alone (one request's share of a micro-batch)."""
    out = []
    for f in findings:
        bad = f["mask"][start:end]
        if bad.any():
            values = None if f["values"] is None else f["values"][start:end]
            out.append(f | {"count": int(bad.sum()), "rows": end - start, "mask": bad, "values": values,
                            "example": None if values is None else str(values[bad][0])})
    return out


def with_absent_columns(state: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every column the run reads, absent ones as missing values."""
    absent = [c for c in needed_columns(state) if c not in frame.columns]
    return frame.assign(**{c: pd.Series([None] * len(frame), index=frame.index, dtype=object) for c in absent}) if absent else frame


def warning_line(finding: dict) -> str:
    """A finding as one line a person reads."""
    example = f" (e.g. {finding['example']!r})" if finding.get("example") not in (None, "None") else ""
    return f"column '{finding['column']}': {finding['count']} of {finding['rows']} rows {finding['problem']}{example}"
