"""An interactions table read into user and item indices, with the roles of its columns.

The roles are the user, the item, an optional rating (or weight) and an optional time. Given
ones are checked; missing ones are found by their names (`userId`, `user_id:token`,
`movieId`, `timestamp`, …) and the choice is said in the notes. A (user, item) pair logged
more than once counts once, at its last time: ranking an item the user already has is never
useful, and leave-last-out must not hold out an item still in the training part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaletrain.config import DataConfig
from scaletrain.errors import DataError

ROLE_NAMES = {  # normalized column names (lower case, letters and digits only) per role
    "user": ("user", "userid", "users", "uid", "customer", "customerid", "client", "clientid", "member", "visitor",
             "visitorid", "reviewer", "reviewerid", "account", "accountid"),
    "item": ("item", "itemid", "items", "iid", "movie", "movieid", "product", "productid", "song", "songid", "track",
             "trackid", "article", "articleid", "book", "bookid", "isbn", "sku", "asin", "video", "videoid"),
    "rating": ("rating", "ratings", "score", "stars", "weight", "count", "plays", "playcount", "clicks"),
    "time": ("timestamp", "time", "date", "datetime", "ts", "when", "eventtime", "created", "createdat"),
}
REQUIRED = ("user", "item")


def normalized(name: str) -> str:
    """`user_id:token` (RecBole's header) and `User ID` both become `userid`."""
    return re.sub(r"[^a-z0-9]", "", str(name).split(":")[0].lower())


@dataclass
class Interactions:
    """Rows as indices into `user_ids` and `item_ids`, with their times (None: no time column)."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    user_ids: list
    item_ids: list
    roles: dict[str, str | None]
    notes: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def read_interactions(source, data: DataConfig) -> tuple[pd.DataFrame, list[str]]:
    """The table behind `source` (a file, folder or glob, or shards `prepare` wrote) and notes.
    From Parquet only the role columns are read (found from the schema first): a wide log costs
    its user, item, rating and time columns. Prepared shards are read whole, train, validation
    and test alike: the recommender cuts its own split per user."""
    import pyarrow.parquet as pq

    from scaletrain.data.manifest import is_shard_dir, join, read_manifest, verify_shards
    from scaletrain.modalities.table.tables import expand_paths, read_table

    if is_shard_dir(source):
        manifest = read_manifest(str(source))
        verify_shards(manifest, str(source))
        files = [join(manifest.root, shard["file"]) for shard in manifest.shards]
        note = [f"{len(files)} prepared shard(s) read whole: their train/validation/test split is not used, the "
                "recommender holds out items per user"]
    else:
        files, note = [str(p) for p in expand_paths(source)], []
    if not all(f.endswith((".parquet", ".pq")) for f in files):
        return read_table(source), note
    names = pq.read_schema(files[0]).names
    roles, _ = find_roles(pd.DataFrame(columns=names), data, str(source))
    columns = [c for c in roles.values() if c is not None]
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True), note


def find_roles(frame: pd.DataFrame, data: DataConfig, where: str) -> tuple[dict[str, str | None], list[str]]:
    """The column of each role, and a note for each one found by its name."""
    given = {"user": data.user, "item": data.item, "rating": data.rating, "time": data.time}
    by_name = {normalized(c): c for c in frame.columns}
    roles, notes = {}, []
    for role, column in given.items():
        if column is not None and column not in frame.columns:
            raise DataError(f"'{where}' has no column '{column}' (given as the {role}); its columns: "
                            f"{', '.join(map(str, frame.columns[:20]))}")
        if column is None:
            column = next((by_name[n] for n in ROLE_NAMES[role] if n in by_name), None)
            if column is not None:
                notes.append(f"the {role} column is '{column}' (by its name; --{role} sets another)")
        roles[role] = column
    for role in REQUIRED:
        if roles[role] is None:
            raise DataError(f"'{where}': no {role} column found by its name among {', '.join(map(str, frame.columns[:20]))}; "
                            f"name it with --{role} COLUMN")
    taken = [c for c in roles.values() if c is not None]
    if len(set(taken)) < len(taken):
        raise DataError(f"'{where}': one column has two roles ({roles}); give each role its own column")
    return roles, notes


def id_key(value) -> str:
    """One spelling per id, whichever way a file wrote it: 196, 196.0 and "196" are one user."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def seconds_of(column: pd.Series, where: str) -> np.ndarray:
    """Times as float seconds: numbers as they are (Unix times), else parsed dates."""
    if column.dtype.kind in "iuf":
        values = column.to_numpy(np.float64)
    else:
        parsed = pd.to_datetime(column, errors="coerce", utc=True)
        bad = parsed.isna() & column.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"'{where}', row {row + 2}: time '{column.iloc[row]}' in column '{column.name}' is neither "
                            "a number nor a date; fix it or name another column with --time")
        values = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    return values


def interactions_from(frame: pd.DataFrame, data: DataConfig, where: str) -> Interactions:
    """Index a table of interactions (its rows in their order) by its roles."""
    roles, notes = find_roles(frame, data, where)
    keep = frame[roles["user"]].notna() & frame[roles["item"]].notna()
    if not keep.all():
        notes.append(f"{int((~keep).sum()):,} rows without a user or an item were left out")
    if roles["rating"] is not None:
        ratings = pd.to_numeric(frame[roles["rating"]], errors="coerce")
        if data.min_rating is not None:
            keep &= ratings >= data.min_rating
            notes.append(f"a rating of {data.min_rating:g} or more in '{roles['rating']}' counts as an interaction "
                         f"({int(keep.sum()):,} of {len(frame):,} rows)")
        else:
            notes.append(f"every rating in '{roles['rating']}' counts as an interaction (a rating means the user chose "
                         "the item); --set data.min_rating=4 keeps only the liked ones")
    frame = frame[keep.to_numpy()]
    if frame.empty:
        raise DataError(f"'{where}': no interactions left (every row lacks a user or an item, or is under "
                        f"data.min_rating={data.min_rating})")
    times = seconds_of(frame[roles["time"]], where) if roles["time"] is not None else None
    users, user_ids = indexed(frame[roles["user"]])
    items, item_ids = indexed(frame[roles["item"]])
    return deduplicated(Interactions(users, items, times, user_ids, item_ids, roles, notes))


def indexed(column: pd.Series) -> tuple[np.ndarray, list]:
    """(each row's index, the ids in index order) without a Python call per row: whole numbers
    (196 and 196.0 alike) as integers, anything else as strings — id_key's spellings, so
    that looking an id up later finds it."""
    values = column.to_numpy()
    if column.dtype.kind in "iu" or (column.dtype.kind == "f" and np.all(np.mod(values, 1) == 0)):
        codes, ids = pd.factorize(values.astype(np.int64), sort=True)
        return codes.astype(np.int64), [int(v) for v in ids]
    codes, ids = pd.factorize(column.astype(str).to_numpy(), sort=True)
    return codes.astype(np.int64), [str(v) for v in ids]


def deduplicated(found: Interactions) -> Interactions:
    """One row per (user, item), at its last time (the later row where times tie)."""
    order = np.lexsort((np.arange(len(found.users)), found.times if found.times is not None else
                        np.zeros(len(found.users)), found.items, found.users))
    pairs = found.users[order] * found.n_items + found.items[order]
    last = np.r_[pairs[1:] != pairs[:-1], True]
    rows = np.sort(order[last])
    if len(rows) < len(found.users):
        found.notes.append(f"{len(found.users) - len(rows):,} repeated (user, item) pairs count once, at their last time")
    times = None if found.times is None else found.times[rows]
    return Interactions(found.users[rows], found.items[rows], times, found.user_ids, found.item_ids, found.roles,
                        found.notes)


def history(users: np.ndarray, items: np.ndarray, times: np.ndarray | None, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows (indptr, item indices) of each user's items, oldest first (row order where
    times tie or are absent): what the recency weights count back from."""
    order = np.lexsort((np.arange(len(users)), np.zeros(len(users)) if times is None else times, users))
    indptr = np.searchsorted(users[order], np.arange(n_users + 1)).astype(np.int64)
    return indptr, items[order].astype(np.int64)


def recency_weights(indptr: np.ndarray, half_life: float) -> np.ndarray:
    """Each history entry's weight: 1 for the user's latest, halving every `half_life` entries
    back (0: all 1). On MovieLens' leave-last-out a half-life of 7 raised EASE's NDCG@10
    from 0.074 to 0.10: what a user watched last says most about what comes next."""
    lengths = np.diff(indptr)
    if half_life <= 0:
        return np.ones(int(indptr[-1]), np.float32)
    back = np.repeat(indptr[1:], lengths) - 1 - np.arange(int(indptr[-1]))
    return np.power(0.5, back / half_life).astype(np.float32)
