"""An interactions log too big to hold, read from prepared shards a row group at a time.

`prepare` writes the shards; a log of more than STREAM_ROWS interactions is never read whole
(smaller ones are: interactions.read_interactions). Each pass reads only the role columns of
one row group at a time, so memory follows the number of users and items (their ids, counts
and latest items), never the number of interactions:

- `LogStream.open`: the ids, every user's and item's count, and each user's latest item
  (by the time column; by its place in the log without one) — one pass;
- `shuffled_rows`: the log as (user, item) index arrays, a row group at a time, in a seeded order;
- `history_blocks`: every user's items in CSR order, a block of users at a time, for the run
  directory's history file (recommend/histories.py). Within a user the items are in the
  shards' order, not sorted by time: the factorization a streamed log trains does not weigh
  recency, and sorting would hold a block's times too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd

from scaletrain.config import DataConfig
from scaletrain.data.stream import Unit
from scaletrain.errors import DataError
from scaletrain.recommend.interactions import find_roles, seconds_of

STREAM_ROWS = 5_000_000    # a log with more interactions than this is streamed
BLOCK_ROWS = 16_000_000    # history rows assembled at once (64 MB): the passes history_blocks makes
WINDOW_ROWS = 1_000_000    # rows shuffled together in training: row groups are ~10,000 rows


def is_streamed(source) -> bool:
    """True for prepared shards of more than STREAM_ROWS interactions."""
    from scaletrain.data.manifest import is_shard_dir, read_manifest

    return is_shard_dir(source) and sum(s["rows"] for s in read_manifest(str(source)).shards) > STREAM_ROWS


@dataclass
class LogStream:
    url: str
    root: str
    units: list[Unit]
    roles: dict[str, str | None]
    user_ids: np.ndarray = None       # sorted: an id's index is its place
    item_ids: np.ndarray = None
    user_counts: np.ndarray = None
    item_counts: np.ndarray = None
    latest_item: np.ndarray = None    # per user: their latest item's index
    min_rating: float | None = None   # rows rated under it are not interactions
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, url: str, manifest, data: DataConfig) -> "LogStream":
        """The log's ids, counts and latest items, in two passes over the role columns."""
        import pyarrow.parquet as pq

        from scaletrain.data.manifest import filesystem, join

        units = [Unit(s["file"], i, n) for s in manifest.shards for i, n in enumerate(s["row_groups"])]
        fs, _ = filesystem(url)
        with fs.open(join(manifest.root, manifest.shards[0]["file"]), "rb") as fh:
            names = pq.ParquetFile(fh).schema_arrow.names
        roles, notes = find_roles(pd.DataFrame(columns=names), data, url)
        if data.min_rating is not None:
            if roles["rating"] is None:
                raise DataError(f"'{url}': data.min_rating={data.min_rating:g} needs a rating column; name it with --rating")
            notes.append(f"a rating of {data.min_rating:g} or more in '{roles['rating']}' counts as an interaction")
        log = cls(url, manifest.root, units, roles, min_rating=data.min_rating, notes=notes + [
            f"{len(units)} row groups of prepared shards streamed (their train/validation/test split is not used, the "
            "recommender holds out items per user); repeated (user, item) pairs are not merged"])
        log.user_ids, log.item_ids = log.vocabulary()
        log.count()
        return log

    def frames(self, order: np.ndarray | None = None) -> Iterator[pd.DataFrame]:
        """The role columns of each row group (in `order`, else the log's), one at a time."""
        import pyarrow.parquet as pq

        from scaletrain.data.manifest import filesystem, join

        fs, _ = filesystem(self.url)
        rating = [self.roles["rating"]] if self.min_rating is not None else []
        columns = [c for c in (self.roles["user"], self.roles["item"], self.roles["time"]) if c is not None]
        for index in (range(len(self.units)) if order is None else order):
            unit = self.units[index]
            with fs.open(join(self.root, unit.file), "rb") as fh:
                frame = pq.ParquetFile(fh).read_row_group(unit.row_group, columns=columns + rating).to_pandas()
            if rating:  # a rating under data.min_rating is not an interaction
                frame = frame[pd.to_numeric(frame[rating[0]], errors="coerce") >= self.min_rating]
            yield frame.dropna(subset=columns[:2])

    def vocabulary(self) -> tuple[np.ndarray, np.ndarray]:
        """The sorted distinct user and item ids: each row group's, merged every few million."""
        found = {"user": [], "item": []}
        for frame in self.frames():
            for role, parts in found.items():
                parts.append(np.unique(keys_of(frame[self.roles[role]])))
                if sum(map(len, parts)) > 4 * WINDOW_ROWS:
                    found[role] = [np.unique(np.concatenate(parts))]
        users, items = (np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
                        for parts in found.values())
        if not len(users):
            raise DataError(f"'{self.url}': no rows with both a user and an item")
        return users, items

    def indices(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) indices of a frame's rows: their ids' places in the sorted vocabularies."""
        return (np.searchsorted(self.user_ids, keys_of(frame[self.roles["user"]])),
                np.searchsorted(self.item_ids, keys_of(frame[self.roles["item"]])))

    def count(self) -> None:
        """Counts per user and item, and each user's latest item (the later row where times tie)."""
        self.user_counts = np.zeros(len(self.user_ids), np.int64)
        self.item_counts = np.zeros(len(self.item_ids), np.int64)
        latest = np.full(len(self.user_ids), -np.inf)
        self.latest_item = np.full(len(self.user_ids), -1, np.int64)
        place = 0
        for frame in self.frames():
            users, items = self.indices(frame)
            self.user_counts += np.bincount(users, minlength=len(self.user_ids))
            self.item_counts += np.bincount(items, minlength=len(self.item_ids))
            when = place + np.arange(len(frame), dtype=np.float64) if self.roles["time"] is None else \
                seconds_of(frame[self.roles["time"]], self.url)
            place += len(frame)
            order = np.lexsort((np.arange(len(users)), when, users))
            last = order[np.r_[users[order][1:] != users[order][:-1], True]]  # each user's latest row here
            later = when[last] >= latest[users[last]]
            latest[users[last[later]]] = when[last[later]]
            self.latest_item[users[last[later]]] = items[last[later]]

    def shuffled_rows(self, seed: int, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every row as (user, item) indices: row groups in a seeded order, gathered into windows
        of WINDOW_ROWS rows, each window's rows shuffled."""
        rng = np.random.default_rng([seed, epoch])
        window, size = [], 0
        for frame in self.frames(rng.permutation(len(self.units))):
            window.append(self.indices(frame))
            size += len(frame)
            if size >= WINDOW_ROWS:
                yield shuffled(window, rng)
                window, size = [], 0
        if window:
            yield shuffled(window, rng)

    def history_blocks(self, indptr: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, items) blocks of the users' CSR rows, in the shards' order within a user:
        one pass over the log per block of at most BLOCK_ROWS rows (or one user's)."""
        first_user = 0
        while first_user < len(indptr) - 1:
            end_user = max(first_user + 1, int(np.searchsorted(indptr, indptr[first_user] + BLOCK_ROWS, "right")) - 1)
            base = indptr[first_user]
            block = np.empty(int(indptr[end_user] - base), np.int32)
            cursor = indptr[first_user:end_user] - base
            for frame in self.frames():
                users, items = self.indices(frame)
                mine = (users >= first_user) & (users < end_user)
                users, items = users[mine] - first_user, items[mine]
                order = np.argsort(users, kind="stable")
                counts = np.bincount(users, minlength=end_user - first_user)
                starts = np.repeat(np.cumsum(counts) - counts, counts)
                block[cursor[users[order]] + np.arange(len(order)) - starts] = items[order]
                cursor += counts
            yield int(base), block
            first_user = end_user


def shuffled(parts: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    users, items = (np.concatenate(column) for column in zip(*parts))
    order = rng.permutation(len(users))
    return users[order], items[order]


def keys_of(column: pd.Series) -> np.ndarray:
    """Ids as sortable keys: integers where the column holds whole numbers (196 and 196.0
    alike), else strings — interactions.indexed's spellings."""
    values = column.to_numpy()
    if column.dtype.kind in "iu" or (column.dtype.kind == "f" and np.all(np.mod(values, 1) == 0)):
        return values.astype(np.int64)
    return column.astype(str).to_numpy()
