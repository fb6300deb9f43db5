"""A side table of items (`--items items.csv`): what the two-tower model reads besides ids, so
that an item nobody has interacted with yet can still be ranked by what it is.

One row per item, joined by the item column's name (or the first column). Every other column
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

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"side.numbers": self.numbers, "side.offsets": self.offsets, "side.tokens": self.tokens}


def words_of(value, column: str) -> list[int]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    words = [w for w in _SPLIT.split(str(value).lower()) if w][:MAX_TOKENS]
    return [zlib.crc32(f"{column}\x1f{w}".encode()) % TOKEN_BUCKETS for w in words]


def key_column(frame: pd.DataFrame, item_column: str, where: str) -> str:
    by_name = {normalized(c): c for c in frame.columns}
    for name in (item_column, normalized(item_column), "item", "itemid", "id"):
        if name in frame.columns or name in by_name:
            return name if name in frame.columns else by_name[name]
    if len(frame.columns) < 2:
        raise DataError(f"'{where}' needs a key column and at least one feature column")
    return frame.columns[0]


def read_items(frame: pd.DataFrame, item_ids: list, item_column: str, where: str) -> tuple[SideFeatures, list, list[str]]:
    """The features of `item_ids`' items, then of the side table's items not among them (their
    ids appended: the catalogue grows by them); and notes."""
    key = key_column(frame, item_column, where)
    frame = frame.drop_duplicates(subset=key, keep="first")
    keys = frame[key].map(id_key)
    known = {id_key(i) for i in item_ids}
    new_ids = [v for v, k in zip(frame[key], keys) if k not in known]
    new_ids = [int(v) if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()) else str(v)
               for v in new_ids] if all(isinstance(i, int) for i in item_ids) else [str(v) for v in new_ids]
    every = list(item_ids) + new_ids
    rows = frame.set_index(keys).reindex([id_key(i) for i in every])
    features = [c for c in frame.columns if c != key]
    numeric = [c for c in features if frame[c].dtype.kind in "iufb"]
    wordy = [c for c in features if c not in numeric]
    numbers = rows[numeric].astype(np.float64)
    numbers = ((numbers - numbers.mean()) / numbers.std().replace(0, 1).fillna(1)).fillna(0.0)
    per_item = [[t for c in wordy for t in words_of(v, c)] for v in zip(*(rows[c] for c in wordy))] if wordy \
        else [[] for _ in every]
    offsets = np.cumsum([0] + [len(t) for t in per_item])
    tokens = np.fromiter((t for ts in per_item for t in ts), dtype=np.int64, count=int(offsets[-1]))
    notes = [f"item features from '{where}' (key '{key}'): numbers {numeric or 'none'}, words from {wordy or 'none'}"
             + (f"; {len(new_ids):,} items with no interaction yet join the catalogue" if new_ids else "")]
    missing = int(rows[features].isna().all(axis=1).sum())
    if missing:
        notes.append(f"{missing:,} items have no row in '{where}': their features are empty")
    side = SideFeatures(torch.tensor(numbers.to_numpy(), dtype=torch.float32), torch.from_numpy(offsets),
                        torch.from_numpy(tokens), {"numbers": numeric, "words": wordy})
    return side, every, notes
