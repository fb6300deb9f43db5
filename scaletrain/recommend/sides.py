"""Side tables of items (`--items items.csv`) and of users (`--users users.csv`): what the
two-tower model reads besides ids and histories, so that an item nobody has interacted with yet
can still be ranked by what it is, and a user with no history yet by who they are.

One row per item (user), joined by the item (user) column's name, else a column named like
`item`/`itemid`/`id`, else the first column. Every other column
is a feature: numbers are standardized (a missing one is the mean, 0), any other value becomes
words — split on spaces, commas, bars and slashes, so a genre list, a category or a title all
work — hashed into TOKEN_BUCKETS rows of one embedding bag (the column's name is part of the
hash, so `Drama` the genre and `Drama` in a title are different features).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scaletrain.errors import DataError
from scaletrain.recommend.interactions import id_key, normalized

TOKEN_BUCKETS = 1 << 13  # 8,192 words per side table: an Adam step over the table is paid each batch
MAX_TOKENS = 64  # words kept per item and column: a long description costs no more than this
_SPLIT = re.compile(r"[\s,;|/]+")


@dataclass
class SideFeatures:
    """Per item (in the run's item order): standardized numbers and hashed word ids (CSR)."""

    numbers: torch.Tensor   # (items, number columns)
    offsets: torch.Tensor   # (items + 1,) where each item's words start in `tokens`
    tokens: torch.Tensor    # word ids in [0, TOKEN_BUCKETS)
    columns: dict           # {"numbers": [...], "words": [...]}: what was read, for the notes and the card

    def rows(self, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens, offsets with the end, numbers) of the rows `which`, in that order."""
        starts, lengths = self.offsets[which], self.offsets[which + 1] - self.offsets[which]
        ends = torch.cumsum(lengths, 0)
        within = torch.arange(int(ends[-1]) if len(ends) else 0) - torch.repeat_interleave(ends - lengths, lengths)
        tokens = self.tokens[torch.repeat_interleave(starts, lengths) + within]
        return tokens, torch.cat([torch.zeros(1, dtype=ends.dtype), ends]), self.numbers[which]


@dataclass(frozen=True)
class Sides:
    """The side tables a run was given (None: not given)."""

    items: SideFeatures | None = None
    users: SideFeatures | None = None

    def __bool__(self) -> bool:
        return self.items is not None or self.users is not None


def words_of(value, column: str) -> list[int]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    words = [w for w in _SPLIT.split(str(value).lower()) if w][:MAX_TOKENS]
    return [zlib.crc32(f"{column}\x1f{w}".encode()) % TOKEN_BUCKETS for w in words]


def key_column(frame: pd.DataFrame, role_column: str, role: str, where: str) -> str:
    by_name = {normalized(c): c for c in frame.columns}
    for name in (role_column, normalized(role_column), role, f"{role}id", "id"):
        if name in frame.columns or name in by_name:
            return name if name in frame.columns else by_name[name]
    if len(frame.columns) < 2:
        raise DataError(f"'{where}' needs a key column and at least one feature column")
    return frame.columns[0]


def read_side(frame: pd.DataFrame, ids: list, role_column: str, role: str, where: str) -> tuple[SideFeatures, list, list[str]]:
    """The features of `ids`' rows (role: "item" or "user"), then of the side table's keys not
    among them (their ids appended: the catalogue, or the users, grow by them); and notes."""
    key = key_column(frame, role_column, role, where)
    frame = frame.drop_duplicates(subset=key, keep="first")
    keys = frame[key].map(id_key)
    known = {id_key(i) for i in ids}
    new_ids = [v for v, k in zip(frame[key], keys) if k not in known]
    new_ids = [int(v) if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()) else str(v)
               for v in new_ids] if all(isinstance(i, int) for i in ids) else [str(v) for v in new_ids]
    every = list(ids) + new_ids
    rows = frame.set_index(keys).reindex([id_key(i) for i in every])
    features = [c for c in frame.columns if c != key]
    if not features:
        raise DataError(f"'{where}': a side table needs at least one feature column beside its key '{key}' "
                        f"(its columns: {list(frame.columns)[:10]})")
    numeric = [c for c in features if frame[c].dtype.kind in "iufb"]
    wordy = [c for c in features if c not in numeric]
    numbers = rows[numeric].astype(np.float64)
    numbers = ((numbers - numbers.mean()) / numbers.std().replace(0, 1).fillna(1)).fillna(0.0)
    per_row = [[t for c in wordy for t in words_of(v, c)] for v in zip(*(rows[c] for c in wordy))] if wordy \
        else [[] for _ in every]
    offsets = np.cumsum([0] + [len(t) for t in per_row])
    tokens = np.fromiter((t for ts in per_row for t in ts), dtype=np.int64, count=int(offsets[-1]))
    joined = "the catalogue" if role == "item" else "the users"
    notes = [f"{role} features from '{where}' (key '{key}'): numbers {numeric or 'none'}, words from {wordy or 'none'}"
             + (f"; {len(new_ids):,} {role}s with no interaction yet join {joined}" if new_ids else "")]
    missing = int(rows[features].isna().all(axis=1).sum())
    if missing:
        notes.append(f"{missing:,} {role}s have no row in '{where}': their features are empty")
    side = SideFeatures(torch.tensor(numbers.to_numpy(), dtype=torch.float32), torch.from_numpy(offsets),
                        torch.from_numpy(tokens), {"numbers": numeric, "words": wordy})
    return side, every, notes
