"""Table preprocessing, fitted on training rows only, stored as JSON, applied in predict.

Follows scikit-learn's contract (fit learns, transform applies) but keeps state as plain
JSON data instead of pickled objects, so a run directory is safe to load and to read.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scaletrain.data.input_check import with_absent_columns
from scaletrain.data.preprocess import arrow_text, encode_target, given_tokenizer
from scaletrain.data.schema import Schema
from scaletrain.data.stats import MAX_EMBED, CategoryCounts, NumericStats, TableStats
from scaletrain.data.text import (
    counts_and_idf,
    encode_texts,
    length_for,
    padded_tokenizer,
    piece_weights,
    row_texts,
    tokenizer_from_json,
    train_tokenizer,
)
from scaletrain.data.values import (
    DATE_PARTS,
    MISSING,
    UNKNOWN,
    category_strings,
    date_parts,
    label_key,
    numeric_columns,
)
from scaletrain.errors import DataError
from scaletrain.modalities.table.media import read_media

if TYPE_CHECKING:  # torch is imported where tensors are made: `prepare` runs without it
    import torch


@dataclass
class TableBlocks:
    """Model inputs for a table: dense floats and category indices for embeddings."""

    numbers: torch.Tensor
    categories: torch.Tensor | None
    tokens: torch.Tensor | None = None  # free text: token ids (rows, length), 0 = padding
    weights: torch.Tensor | None = None  # and each token's weight (a bag of them: the row's TF-IDF)
    absent: torch.Tensor | None = None  # media columns: 1 where a row's image or clip is missing or unreadable
    pictures: tuple = ()                # and each column's uint8 pixels (rows, channels, height, width)
    #                                     or float32 samples (rows, samples) for a sound column

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The model's inputs: dense, then categories, text and images where the table has them
        (a later block present makes the earlier ones present, empty where the table lacks them)."""
        if self.tokens is not None or self.pictures:
            import torch

            rows = len(self.numbers)
            categories = self.categories if self.categories is not None else torch.zeros((rows, 0), dtype=torch.long)
            text = (self.tokens, self.weights) if self.tokens is not None else \
                (torch.zeros((rows, 0), dtype=torch.long), torch.zeros((rows, 0)))
            return (self.numbers, categories, *text) + ((self.absent, *self.pictures) if self.pictures else ())
        return (self.numbers,) if self.categories is None else (self.numbers, self.categories)


def table_spec(frame: pd.DataFrame, schema: Schema) -> dict:
    """Return which raw columns feed the numeric block (datetime parts that vary in `frame`)."""
    spec = {"numeric_raw": schema.numeric, "boolean": schema.boolean, "datetime": {}}
    for name in schema.datetime:
        parts = date_parts(frame[name], list(DATE_PARTS))
        spec["datetime"][name] = [p for p, s in parts.items() if s.nunique() > 1]
    return spec


def fit_table(frame: pd.DataFrame, schema: Schema, scale: str, clip_quantile: float,
              missing_indicators: bool, max_onehot: int, tokenizer: str | None = None,
              vocab_size: int | None = None) -> dict:
    """Return the preprocessing state learned from training rows."""
    stats = TableStats(table_spec(frame, schema), schema.categorical)
    stats.update(frame)
    state = table_state(stats, schema, scale, clip_quantile, missing_indicators, max_onehot)
    return state | ({"text": fit_text(frame, schema.text, tokenizer, vocab_size)} if schema.text else {})


def fit_text(frame: pd.DataFrame, columns: list[str], tokenizer_from: str | None = None,
             vocab_size: int | None = None) -> dict:
    """The text columns' tokenizer (trained on these rows, or given), vocabulary and kept length."""
    texts = row_texts([frame[c].tolist() for c in columns])
    tokenizer = given_tokenizer(tokenizer_from) if tokenizer_from else train_tokenizer(texts, vocab_size)
    counts, idf = counts_and_idf(tokenizer, texts)
    length = length_for(counts)  # a pretrained encoder reads longer texts in windows (PooledText)
    return {"columns": list(columns), "length": length, "vocab_size": tokenizer.get_vocab_size(),
            "cut_in_training": int((counts > length).sum()), "idf": idf, "tokenizer": tokenizer.to_str()}




def table_state(stats: TableStats, schema: Schema, scale: str, clip_quantile: float,
                missing_indicators: bool, max_onehot: int) -> dict:
    """Return the preprocessing state from training-row statistics.

    Numbers: missing values become the median; values are clipped to the clip_quantile
    quantiles, then centred and scaled by the mean and standard deviation of the clipped
    values. All of it comes from one-pass statistics, so streamed data gets the same state
    as in-memory data.
    """
    numeric = []
    for name in _derived_names(stats.spec):
        column = stats.numeric.get(name) or NumericStats()
        m = column.moments
        if m.count:
            lo, median, hi = (column.sketch.quantiles([clip_quantile, 0.5, 1 - clip_quantile]) if clip_quantile > 0
                              else [m.min, column.sketch.quantiles([0.5])[0], m.max])
        else:
            lo = median = hi = 0.0
        with np.errstate(all="ignore"):
            center, spread = {"standard": column.clipped_mean_std(lo, hi), "minmax": (lo, hi - lo),
                              "none": (0.0, 1.0)}[scale]
        if not (np.isfinite(center) and np.isfinite(spread)):
            raise DataError(f"column '{name}' holds values too large to scale (from {m.min:g} to {m.max:g}); "
                            "rescale the column or drop it with data.columns")
        numeric.append({"name": name, "median": median, "lo": lo, "hi": hi, "center": float(center),
                        "scale": float(spread) if spread > 0 else 1.0,
                        "indicator": bool(missing_indicators and column.missing > 0)})
    onehot, embed = [], []
    for name in schema.categorical:
        counts = stats.categories.get(name) or CategoryCounts()
        entry = {"name": name, "categories": counts.ranked(MAX_EMBED)}
        (onehot if len(counts) <= max_onehot else embed).append(entry)
    return {"kind": "table", "columns": {**stats.spec, "categorical": schema.categorical},
            "numeric": numeric, "onehot": onehot, "embed": embed,
            "dropped": schema.dropped, "target": schema.target}


def _derived_names(spec: dict) -> list[str]:
    """Return the numeric block's source names in the order numeric_columns makes them."""
    return (list(spec["numeric_raw"]) + list(spec["boolean"])
            + [f"{name}.{part}" for name, parts in spec["datetime"].items() for part in parts])




def _category_codes(series: pd.Series, categories: list[str]) -> np.ndarray:
    """Return 1 + each value's index in `categories`, 0 for unknown ones (a hash lookup in C)."""
    if (text := arrow_text(series)) is not None:
        # looked up in Arrow: turning 180k strings into Python objects first cost 5x as much
        codes = pc.index_in(pc.fill_null(text, MISSING), value_set=pa.array(categories, text.type))
        return pc.fill_null(codes, -1).to_numpy().astype(np.int64) + 1
    codes = pd.Index(categories).get_indexer(category_strings(series).to_numpy(dtype=object))
    return (codes + 1).astype(np.int64)


def table_feature_names(state: dict) -> list[str]:
    """Return the names of the dense block's columns, in order."""
    names = []
    for col in state["numeric"]:
        names.append(col["name"])
        if col["indicator"]:
            names.append(f"{col['name']}.missing")
    for col in state["onehot"]:
        names += [f"{col['name']}={UNKNOWN}"] + [f"{col['name']}={c}" for c in col["categories"]]
    return names


def feature_columns(state: dict) -> list[str]:
    """The raw column behind each of the dense block's columns (a missing indicator, a one-hot
    slot and a date part belong to the column they come from), in table_feature_names' order."""
    raw = {f"{name}.{part}": name for name, parts in state["columns"]["datetime"].items() for part in parts}
    columns = []
    for col in state["numeric"]:
        columns += [raw.get(col["name"], col["name"])] * (2 if col["indicator"] else 1)
    for col in state["onehot"]:
        columns += [col["name"]] * (len(col["categories"]) + 1)
    return columns


def transform_table(state: dict, frame: pd.DataFrame, source: str = "input") -> TableBlocks:
    """Return the model inputs for raw rows, using only the fitted state."""
    import torch

    text = state.get("text")
    needed = (state["columns"]["numeric_raw"] + state["columns"]["boolean"] + list(state["columns"]["datetime"])
              + state["columns"]["categorical"] + (text["columns"] if text else []) + image_columns(state))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {missing[:5]} that the model was trained on")
    derived = numeric_columns(frame, state["columns"])
    blocks = []
    for col in state["numeric"]:
        v = derived[col["name"]].to_numpy(dtype=np.float64)
        absent = ~np.isfinite(v)
        v = np.where(absent, col["median"], v)
        v = (np.clip(v, col["lo"], col["hi"]) - col["center"]) / col["scale"]
        blocks.append(v[:, None])
        if col["indicator"]:
            blocks.append(absent[:, None].astype(np.float64))
    for col in state["onehot"]:
        index = _category_codes(frame[col["name"]], col["categories"])
        onehot = np.zeros((len(frame), len(col["categories"]) + 1))
        onehot[np.arange(len(frame)), index] = 1.0
        blocks.append(onehot)
    dense = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
    categories = None
    if state["embed"]:
        codes = []
        for col in state["embed"]:
            codes.append(_category_codes(frame[col["name"]], col["categories"]))
        categories = torch.from_numpy(np.stack(codes, axis=1).astype(np.int64))
    tokens = weights = None
    if text:
        ids, _ = encode_texts(tokenizer_from_json(text["tokenizer"]), row_texts([frame[c].tolist() for c in text["columns"]]),
                              text["length"])
        tokens, weights = torch.from_numpy(ids), torch.from_numpy(piece_weights(ids, text["idf"]))
    blocks = TableBlocks(torch.from_numpy(dense.astype(np.float32)), categories, tokens, weights)
    if state.get("images"):
        absent, pictures = read_media(state["images"], frame)
        blocks.absent, blocks.pictures = torch.from_numpy(absent), tuple(torch.from_numpy(p) for p in pictures)
    return blocks


def image_columns(state: dict) -> list[str]:
    """The names of a table's image columns (none for runs without them)."""
    return [column["name"] for column in state.get("images", [])]


def column_feeds(state: dict, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """An exported table model's inputs for raw rows (Table.onnx_feeds); an absent column is
    read as missing values, as predict reads it."""
    feeds, frame = {}, with_absent_columns(state, frame)
    for name in state["columns"]["numeric_raw"]:
        feeds[name] = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64).reshape(-1, 1)
    for name in state["columns"]["boolean"] + state["columns"]["categorical"]:
        keys = category_strings(frame[name]).astype(str)  # predict's category keys; '' where missing
        feeds[name] = keys.where(keys != MISSING, "").to_numpy(dtype=object).reshape(-1, 1)
    if "text" in state:
        tokenizer = tokenizer_from_json(padded_tokenizer(state["text"]))
        texts = row_texts([frame[c].tolist() for c in state["text"]["columns"]])
        feeds["tokens"] = np.asarray([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int64)
    if state.get("images"):
        absent, pictures = read_media(state["images"], frame)
        for j, (column, pixels) in enumerate(zip(state["images"], pictures)):
            feeds[f"{column['name']}.missing"] = absent[:, j:j + 1]
            feeds[column["name"]] = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1) if pixels.ndim == 4 else pixels)
    return feeds


def record_feeds(state: dict, records: list[dict]) -> dict[str, np.ndarray]:
    """column_feeds for validated JSON records (not image columns), value by value as
    pd.to_numeric and category_strings read a frame of them: for the few rows of a served
    request a DataFrame costs ~4 ms, these lists ~0.02 ms (serve/graph.py)."""
    c, feeds = state["columns"], {}
    for name in c["numeric_raw"]:
        feeds[name] = np.array([np.nan if r[name] is None else r[name] for r in records], dtype=np.float64).reshape(-1, 1)
    for name in c["boolean"] + c["categorical"]:
        keys = [MISSING if v is None or v != v else label_key(v) for v in (r[name] for r in records)]
        feeds[name] = np.array(["" if k == MISSING else k for k in keys], dtype=object).reshape(-1, 1)
    if "text" in state:
        text = state["text"]
        tokenizer = _padding_tokenizer(text["tokenizer"], text["length"], text.get("padded_tokenizer"))
        texts = row_texts([[r[name] for r in records] for name in text["columns"]])
        feeds["tokens"] = np.asarray([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int64)
    return feeds


@functools.lru_cache(maxsize=4)
def _padding_tokenizer(tokenizer: str, length: int, given: str | None):
    """The padding tokenizer, built once per run (from its JSON: ~ms) rather than per request."""
    return tokenizer_from_json(padded_tokenizer({"tokenizer": tokenizer, "length": length, "padded_tokenizer": given}))


def table_summary(frame: pd.DataFrame, state: dict) -> dict:
    """Return what the report says about the input table."""
    return {"rows": int(len(frame)), "columns": int(frame.shape[1]),
            "duplicate_rows": int(frame.duplicated().sum()),
            "missing_cells": int(frame.isna().sum().sum()),
            "numeric": state["columns"]["numeric_raw"], "boolean": state["columns"]["boolean"],
            "datetime": list(state["columns"]["datetime"]), "categorical": state["columns"]["categorical"],
            "dropped": state["dropped"]}


def table_tensors(state: dict, where: str):
    """Return frame -> (table inputs, encoded targets) with a table's fitted state (a partial:
    loader worker processes may need to pickle it)."""
    return functools.partial(_table_tensors, state, where)


def _table_tensors(state: dict, where: str, frame: pd.DataFrame):
    target = frame[state.get("target_column", "label")]
    return transform_table(state, frame, where).tensors(), encode_target(state["target"], target, where)
