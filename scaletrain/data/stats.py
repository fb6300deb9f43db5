"""Mergeable column statistics: everything preprocessing is fitted from, in one pass.

In memory the whole training frame is one chunk; `prepare` feeds shard-sized chunks (in
parallel processes, merged after). Both paths fit preprocessing from the same statistics,
so they agree: counts and categories exactly, mean and variance to float rounding (Chan's
merge of Welford moments), quantiles exactly up to EXACT_LIMIT values per column and within
a KLL sketch's rank error (~0.7% at k=400) beyond it. Apache DataSketches' KLL is used for the
sketch: mergeable, bounded, well tested. Its compaction is randomized, so two `prepare` runs
over more than EXACT_LIMIT rows may differ slightly; training from one prepared directory
is deterministic because the sketch is stored there.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaletrain.tasks import task_of
from scaletrain.tasks.regression import MAX_LEVELS

EXACT_LIMIT = 16_384      # values kept verbatim per column before switching to the sketch
KLL_K = 400
BLOCK = 1 << 16           # values sorted together before they enter the sketch
COMPACT = 8               # of which every COMPACT-th enters
MAX_TRACKED = 200_000     # distinct categories counted per column; the rarest half is dropped beyond
MAX_EMBED = 50_000        # categories given an embedding row; the rest share the unknown slot


@dataclass
class Moments:
    """Count, mean and sum of squared deviations, merged with Chan et al.'s formula."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = 0.0
    max: float = 0.0

    def update(self, values: np.ndarray) -> None:
        if values.size:
            with np.errstate(over="ignore", invalid="ignore"):  # near-float-max values: reported by the caller
                mean = values.mean()
                self.merge(Moments(int(values.size), float(mean), float(((values - mean) ** 2).sum()),
                                   float(values.min()), float(values.max())))

    def merge(self, other: "Moments") -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = other.count, other.mean, other.m2, other.min, other.max
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0


class QuantileSketch:
    """Exact quantiles for small columns, a KLL sketch for large ones; mergeable either way.

    Beyond the exact limit values are buffered; every BLOCK of them is sorted and every
    COMPACT-th value (from a random offset) goes into the KLL sketch, standing for COMPACT
    values. Feeding the sketch item by item costs ~40 ns a value, 0.5 s per 200 MB file in
    `prepare`; sorting and compacting first costs about half. The rank error this adds is at
    most COMPACT/BLOCK (0.01%) per block, some 50x below the sketch's own (~0.7% at k=400).
    """

    def __init__(self):
        self.values: np.ndarray | None = np.empty(0)
        self.kll = None
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.rng = np.random.default_rng(0)

    def _to_sketch(self) -> None:
        from datasketches import kll_doubles_sketch

        self.kll = kll_doubles_sketch(KLL_K)
        if self.values is not None and self.values.size:
            self._buffer(self.values)
        self.values = None

    def _buffer(self, values: np.ndarray) -> None:
        self.pending.append(np.asarray(values, dtype=np.float64))
        self.pending_size += values.size
        if self.pending_size >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self.pending_size:
            block = np.sort(np.concatenate(self.pending))
            self.kll.update(np.ascontiguousarray(block[int(self.rng.integers(COMPACT))::COMPACT]))
        self.pending, self.pending_size = [], 0

    def update(self, values: np.ndarray) -> None:
        if self.values is not None and self.values.size + values.size <= EXACT_LIMIT:
            self.values = np.concatenate([self.values, values])
            return
        if self.kll is None:
            self._to_sketch()
        self._buffer(values)

    def merge(self, other: "QuantileSketch") -> None:
        if other.values is not None:
            self.update(other.values)
            return
        if self.kll is None:
            self._to_sketch()
        other._flush()
        self.kll.merge(other.kll)  # both hold values compacted COMPACT to 1: the weights agree

    def quantiles(self, qs: list[float]) -> list[float]:
        if self.values is not None:
            return [float(v) for v in np.quantile(self.values, qs)] if self.values.size else [0.0] * len(qs)
        self._flush()
        return [float(v) for v in self.kll.get_quantiles(qs)]

    def weighted_items(self, count: int):
        """Yield (value, how many of the `count` values it stands for) of the sketch."""
        self._flush()
        scale = count / max(self.kll.n, 1)
        for item, weight in self.kll:
            yield item, weight * scale

    def to_array(self) -> np.ndarray:
        """The exact values (float64) or the serialized sketch (uint8), for safetensors."""
        if self.values is not None:
            return self.values.astype(np.float64)
        self._flush()
        return np.frombuffer(self.kll.serialize(), dtype=np.uint8).copy()

    @classmethod
    def from_array(cls, array) -> "QuantileSketch":
        array = np.asarray(array)  # numpy, or a CPU tensor from safetensors.torch
        sketch = cls()
        if array.dtype == np.float64:
            sketch.values = array.copy()
        else:
            from datasketches import kll_doubles_sketch

            sketch.values, sketch.kll = None, kll_doubles_sketch.deserialize(array.tobytes())
        return sketch


@dataclass
class NumericStats:
    missing: int = 0
    moments: Moments = field(default_factory=Moments)
    sketch: QuantileSketch = field(default_factory=QuantileSketch)

    def update(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        self.missing += int(values.size - finite.size)
        self.moments.update(finite)
        self.sketch.update(finite)

    def merge(self, other: "NumericStats") -> None:
        self.missing += other.missing
        self.moments.merge(other.moments)
        self.sketch.merge(other.sketch)

    def clipped_mean_std(self, lo: float, hi: float) -> tuple[float, float]:
        """Return the mean and std of the finite values clipped to [lo, hi].

        Exact while the values are kept; beyond, the exact raw sums are corrected for the
        tails below lo and above hi, which the sketch's weighted items estimate.
        """
        m = self.moments
        if m.count == 0:
            return 0.0, 0.0
        if self.sketch.values is not None:
            clipped = np.clip(self.sketch.values, lo, hi)
            return float(clipped.mean()), float(clipped.std())
        total, squares = m.mean * m.count, m.m2 + m.mean * m.mean * m.count
        for item, weight in self.sketch.weighted_items(m.count):
            bound = lo if item < lo else hi if item > hi else None
            if bound is not None:
                total += weight * (bound - item)
                squares += weight * (bound * bound - item * item)
        mean = total / m.count
        return float(mean), float(np.sqrt(max(squares / m.count - mean * mean, 0.0)))


class CategoryCounts(Counter):
    """Value counts; beyond MAX_TRACKED distinct values the rarest half is dropped (their
    counts go to `other`), keeping memory bounded on ID-like columns."""

    other: int = 0

    def add(self, counts: dict) -> None:
        self.update(counts)
        if len(self) > MAX_TRACKED:
            for key, count in self.most_common()[MAX_TRACKED // 2:]:
                self.other += count
                del self[key]

    def ranked(self, limit: int | None = None) -> list[str]:
        """Return categories by falling count, ties by name, so every merge order agrees."""
        return [k for k, _ in sorted(self.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


@dataclass
class TableStats:
    """Statistics of the training rows of a table, per derived numeric and categorical column."""

    spec: dict                  # numeric_raw / boolean / datetime parts, as in the preprocessing state
    categorical: list[str]
    rows: int = 0
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    categories: dict[str, CategoryCounts] = field(default_factory=dict)
    media: list[str] = field(default_factory=list)  # image columns: only their cells without an image are counted
    media_absent: dict[str, int] = field(default_factory=dict)

    def update(self, frame: pd.DataFrame) -> None:
        from scaletrain.data.values import category_strings, numeric_columns

        self.rows += len(frame)
        for name in self.media:
            self.media_absent[name] = self.media_absent.get(name, 0) + int(frame[name].isna().sum())
        for name, series in numeric_columns(frame, self.spec).items():
            self.numeric.setdefault(name, NumericStats()).update(series.to_numpy(dtype=np.float64))
        for name in self.categorical:
            self.categories.setdefault(name, CategoryCounts()).add(category_strings(frame[name]).value_counts().to_dict())

    def update_arrow(self, table) -> None:
        """Update from a table already in shard types (numbers and booleans as float64,
        categories as text), as `prepare`'s Arrow reader makes; no datetime columns."""
        from scaletrain.data.values import MISSING

        self.rows += len(table)
        for name in self.media:
            self.media_absent[name] = self.media_absent.get(name, 0) + table[name].null_count
        for name in self.spec["numeric_raw"] + self.spec["boolean"]:
            self.numeric.setdefault(name, NumericStats()).update(table[name].to_numpy())  # nulls -> NaN
        for name in self.categorical:
            self.categories.setdefault(name, CategoryCounts()).add(
                {MISSING if value is None else value: count for value, count in _value_counts(table[name])})

    def merge(self, other: "TableStats") -> None:
        self.rows += other.rows
        for name, count in other.media_absent.items():
            self.media_absent[name] = self.media_absent.get(name, 0) + count
        for name, stats in other.numeric.items():
            self.numeric.setdefault(name, NumericStats()).merge(stats)
        for name, counts in other.categories.items():
            self.categories.setdefault(name, CategoryCounts()).add(counts)
            self.categories[name].other += counts.other

    # ---------------------------------------------------------------- storage (JSON + safetensors)
    def to_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        plain = {"spec": self.spec, "categorical": self.categorical, "rows": self.rows,
                 "numeric": {k: {"missing": s.missing, "moments": vars(s.moments)} for k, s in self.numeric.items()},
                 "categories": {k: {"counts": dict(c), "other": c.other} for k, c in self.categories.items()},
                 "media": self.media, "media_absent": self.media_absent}
        tensors = {f"sketch.{k}": s.sketch.to_array() for k, s in self.numeric.items()}
        return json.loads(json.dumps(plain)), tensors

    @classmethod
    def from_parts(cls, plain: dict, tensors: dict) -> "TableStats":
        stats = cls(plain["spec"], plain["categorical"], plain["rows"], media=plain.get("media", []),
                    media_absent=dict(plain.get("media_absent", {})))
        for name, entry in plain["numeric"].items():
            stats.numeric[name] = NumericStats(entry["missing"], Moments(**entry["moments"]),
                                               QuantileSketch.from_array(tensors[f"sketch.{name}"]))
        for name, entry in plain["categories"].items():
            counts = CategoryCounts(entry["counts"])
            counts.other = entry["other"]
            stats.categories[name] = counts
        return stats


@dataclass
class TargetStats:
    """The label distribution (classification) or moments (regression) of a target."""

    task: str
    labels: CategoryCounts = field(default_factory=CategoryCounts)
    moments: Moments = field(default_factory=Moments)
    examples: dict = field(default_factory=dict)  # label key -> one original value, to keep its type
    fractional: int = 0  # regression: targets that are not whole numbers (none: the target has levels)
    wholes: list = field(default_factory=list)  # regression: its distinct whole numbers, the first MAX_LEVELS + 1

    def update(self, values: pd.Series) -> None:
        from scaletrain.data.values import category_strings, json_value, label_key

        values = values.dropna()
        if not task_of(self.task).classifies:
            self._numbers(pd.to_numeric(values).to_numpy(dtype=np.float64))
            return
        self.labels.add(category_strings(values).value_counts().to_dict())
        for value in values.drop_duplicates():
            self.examples.setdefault(label_key(value), json_value(value))

    def update_arrow(self, column) -> None:
        """Update from an Arrow column without missing values (`prepare`'s Arrow reader)."""
        from scaletrain.data.values import label_key

        if not task_of(self.task).classifies:
            self._numbers(column.to_numpy().astype(np.float64))
            return
        counts: dict = {}
        for value, count in _value_counts(column):
            key = label_key(value)
            counts[key] = counts.get(key, 0) + count
            self.examples.setdefault(key, value)
        self.labels.add(counts)

    def _numbers(self, values: np.ndarray) -> None:
        self.moments.update(values)
        with np.errstate(invalid="ignore"):
            self.fractional += int(np.count_nonzero(np.mod(values, 1)))
        if not self.fractional and len(self.wholes) <= MAX_LEVELS:
            self._add_wholes(np.unique(values).tolist())

    def _add_wholes(self, values: list) -> None:
        self.wholes = sorted(set(self.wholes) | {int(v) for v in values})[:MAX_LEVELS + 1]

    def merge(self, other: "TargetStats") -> None:
        self.labels.add(other.labels)
        self.moments.merge(other.moments)
        self.fractional += other.fractional
        self._add_wholes(other.wholes)
        for key, value in other.examples.items():
            self.examples.setdefault(key, value)

    def to_plain(self) -> dict:
        return json.loads(json.dumps({"task": self.task, "labels": dict(self.labels), "moments": vars(self.moments),
                                      "examples": self.examples, "fractional": self.fractional,
                                      "wholes": self.wholes}))

    @classmethod
    def from_plain(cls, plain: dict) -> "TargetStats":
        return cls(plain["task"], CategoryCounts(plain["labels"]), Moments(**plain["moments"]), plain["examples"],
                   plain.get("fractional", 1), plain.get("wholes", []))  # stats from before: no levels claimed


def _value_counts(column) -> list[tuple]:
    """Return (value, count) pairs of an Arrow column, None for missing, counted by Arrow."""
    import pyarrow.compute as pc

    counted = pc.value_counts(column)
    return list(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()))
