"""Training batches streamed from Parquet shards with bounded memory and exact resume.

The unit of work is one Parquet row group. Units are dealt to (rank, worker) slots once,
round-robin in manifest order, so every slot owns a fixed share and no row is seen twice or
missed in an epoch. Each epoch a slot visits its units in a seeded order, reads them a window
at a time, shuffles the window's rows with a seeded generator and cuts batches from the
concatenated stream. Because every unit's row count is in the manifest, a resume at batch k
skips whole windows without reading them and starts inside the right one: exact and cheap.

Loader workers (torch DataLoader processes) read and transform ahead of the model; the
DataLoader returns their batches round-robin, GROUP batches a turn, which `resume_point`
inverts for a resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from scaletrain.data.manifest import Manifest, filesystem, join


@dataclass(frozen=True)
class Unit:
    file: str
    row_group: int
    rows: int


def units_of(manifest: Manifest, split: str) -> list[Unit]:
    return [Unit(s["file"], i, n) for s in manifest.split_shards(split) for i, n in enumerate(s["row_groups"])]


def deal(units: list[Unit], slot: int, slots: int) -> list[Unit]:
    """Return the units slot `slot` of `slots` owns (rank * workers + worker)."""
    return units[slot::slots]


def read_units(root: str, url: str, units: list[Unit]) -> pd.DataFrame:
    fs, _ = filesystem(url)
    frames = []
    for unit in units:
        with fs.open(join(root, unit.file), "rb") as fh:
            frames.append(pq.ParquetFile(fh).read_row_group(unit.row_group).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class SlotStream:
    """One slot's epoch: windows of units, shuffled, cut into batches from row `start` on."""

    def __init__(self, units: list[Unit], batch_size: int, window: int, seed: int, shuffle: bool):
        self.units, self.batch_size, self.window, self.seed, self.shuffle = units, batch_size, window, seed, shuffle
        self.rows = sum(u.rows for u in units)

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def windows(self, epoch: int) -> list[list[Unit]]:
        order = list(self.units)
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch, 1]).permutation(len(order))
            order = [order[i] for i in perm]
        return [order[i:i + self.window] for i in range(0, len(order), self.window)]

    def row_stream(self, epoch: int, start_row: int, load) -> Iterator[tuple]:
        """Yield the epoch's rows as tensors, one shuffled window at a time, from `start_row` on.

        A window is transformed as a whole: per-batch pandas work would cost more than the
        model's step (measured 3x slower at batch 512).
        """
        offset = 0
        for index, window in enumerate(self.windows(epoch)):
            size = sum(u.rows for u in window)
            if offset + size <= start_row:
                offset += size
                continue  # a resume skips whole windows without reading them
            inputs, y = load(window)
            if self.shuffle:
                order = torch.from_numpy(np.random.default_rng([self.seed, epoch, 2, index]).permutation(size))
                inputs, y = tuple(x[order] for x in inputs), y[order]
            skip = max(start_row - offset, 0)
            yield tuple(x[skip:] for x in inputs), y[skip:]
            offset += size

    def batches(self, epoch: int, start_batch: int, load) -> Iterator[tuple]:
        pending: list[tuple] = []
        count = 0
        for part in self.row_stream(epoch, start_batch * self.batch_size, load):
            pending.append(part)
            count += len(part[1])
            while count >= self.batch_size:
                inputs, y = _concat(pending)
                yield tuple(x[:self.batch_size] for x in inputs), y[:self.batch_size]
                pending = [(tuple(x[self.batch_size:] for x in inputs), y[self.batch_size:])]
                count -= self.batch_size
        if count:
            yield _concat(pending)


def _concat(parts: list[tuple]) -> tuple:
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(xs) for xs in zip(*(p[0] for p in parts))), torch.cat([p[1] for p in parts])


class KeptUnits:
    """Encoded row groups held in memory up to `budget` bytes (first come, first kept). Encoding
    (tokenizing text, decoding images) is what a streamed epoch spends most on; a set that fits
    the budget is encoded once, in its first epoch. The tensors are the ones encoding would give
    again (augmentation is applied per batch, after), so batches and resumes are unchanged."""

    def __init__(self, budget: int):
        self.budget, self.used, self.units, self.full = budget, 0, {}, False

    def add(self, unit: Unit, part: tuple) -> tuple:
        """Keep a unit's tensors if they fit the budget (a copy: a view would hold the whole
        window's storage); return them either way."""
        size = sum(x.nbytes for x in part[0]) + part[1].nbytes
        if self.used + size > self.budget:
            self.full = True
            return part
        self.units[unit] = tuple(x.clone() for x in part[0]), part[1].clone()
        self.used += size
        return self.units[unit]

    @staticmethod
    def split(units: list[Unit], encoded: tuple) -> list[tuple]:
        """Each unit's rows of rows encoded together (a stream's encoding keeps every row, in
        order, with the same shape whatever rows it is given: windows are cut and shuffled by
        the manifest's row counts)."""
        inputs, y = encoded
        parts, start = [], 0
        for unit in units:
            parts.append((tuple(x[start:start + unit.rows] for x in inputs), y[start:start + unit.rows]))
            start += unit.rows
        return parts


GROUP = 32  # batches per message from a loader worker: one IPC round trip costs ~3 ms


def resume_point(lengths: list[int], start: int, group: int = 1) -> tuple[list[int], int]:
    """Return (batches each slot has served, slot whose turn is next) after `start` batches of
    the DataLoader's round-robin over the slots, each turn delivering `group` batches (exhausted
    slots drop out). A resume inside a group starts with that group's slot."""
    served, turn, remaining = [0] * len(lengths), 0, min(start, sum(lengths))
    while remaining > 0:
        if served[turn] < lengths[turn]:
            size = min(group, lengths[turn] - served[turn])
            if remaining < size:
                served[turn] += remaining
                return served, turn
            served[turn] += size
            remaining -= size
        turn = (turn + 1) % len(lengths)
    return served, turn


class _EpochDataset(IterableDataset):
    """One epoch of one rank. The DataLoader always starts its round-robin at worker 0, so on a
    resume worker i serves slot (turn + i): the slot whose turn it was comes first. Each item
    is a group of batches concatenated (one tensor per input), split again in the main process."""

    def __init__(self, stream: "ShardBatches", epoch: int, skips: list[int], turn: int):
        self.stream, self.epoch, self.skips, self.turn = stream, epoch, skips, turn

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)  # workers decode; the main process's threads train
        index = (self.turn + worker) % len(self.stream.slots)
        skip = self.skips[index]
        batches = self.stream.slots[index].batches(self.epoch, skip, self.stream.encoded)
        size = GROUP - skip % GROUP  # the first group may be the rest of one a resume cut
        while True:
            group = [b for _, b in zip(range(size), batches)]
            if not group:
                return
            yield _concat(group)
            size = GROUP



class ShardBatches:
    """Batches of a shard directory's split for one rank, in the shape TensorBatches yields."""

    def __init__(self, manifest: Manifest, url: str, split: str, state: dict, batch_size: int, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world: int = 1, workers: int = 0, window: int = 4,
                 device: str = "cpu", transform=None, to_tensors=None, cache_bytes: int = 0):
        self.manifest, self.url, self.state, self.batch_size = manifest, url, state, batch_size
        self.device = torch.device(device)
        self.workers, self.rank, self.world = workers, rank, world
        units = units_of(manifest, split)
        slots = world * max(workers, 1)
        self.slots = [SlotStream(deal(units, rank * max(workers, 1) + w, slots), batch_size, window,
                                 seed * 1_000_003 + rank * max(workers, 1) + w, shuffle)
                      for w in range(max(workers, 1))]
        self.transform = transform  # per batch in this process (augmentation RNG is checkpointed here)
        # frame of shard rows -> (inputs, targets): the modality's encoding (a table's by default)
        self.to_tensors = to_tensors  # the modality's: a frame of rows -> (inputs, targets)
        # encoded units kept between epochs (in this process: loader workers are new each epoch)
        self.kept = KeptUnits(cache_bytes if workers == 0 else 0)

    def read(self, units: list[Unit]) -> pd.DataFrame:
        return read_units(self.manifest.root, self.url, units)

    def tensors(self, frame: pd.DataFrame):
        return self.to_tensors(frame)

    def encoded(self, units: list[Unit]) -> tuple:
        """A window's rows as tensors, in the units' order: those kept from an earlier epoch, the
        rest read and encoded (together), then kept while the budget lasts."""
        kept = self.kept
        if not kept.budget:
            return self.tensors(self.read(units))
        parts = {u: kept.units[u] for u in units if u in kept.units}
        missing = [u for u in units if u not in parts]
        if missing:
            fresh = self.tensors(self.read(missing))
            if len(missing) == len(units) and kept.full:
                return fresh
            parts |= {u: kept.add(u, part) for u, part in zip(missing, kept.split(missing, fresh))}
        ordered = [parts[u] for u in units]
        return tuple(torch.cat(xs) for xs in zip(*(p[0] for p in ordered))), torch.cat([p[1] for p in ordered])

    def __len__(self) -> int:
        return sum(len(s) for s in self.slots)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.slots)

    def epoch(self, epoch: int = 0, start: int = 0):
        if self.workers == 0:
            batches = self.slots[0].batches(epoch, start, self.encoded)
        else:
            skips, turn = resume_point([len(s) for s in self.slots], start, GROUP)
            # its own generator: a DataLoader otherwise draws its worker seed from the global RNG,
            # which would shift dropout masks after a resume
            loader = DataLoader(_EpochDataset(self, epoch, skips, turn), batch_size=None, num_workers=self.workers,
                                prefetch_factor=2, pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(epoch))
            batches = (part for group in loader for part in self._split(group))
        for inputs, y in batches:
            if self.device.type != "cpu":
                inputs = tuple(x.to(self.device, non_blocking=True) for x in inputs)
                y = y.to(self.device, non_blocking=True)
            if self.transform is not None:
                inputs = (self.transform(inputs[0], epoch), *inputs[1:])
            yield inputs, y

    def _split(self, group: tuple):
        inputs, y = group
        for first in range(0, len(y), self.batch_size):
            yield tuple(x[first:first + self.batch_size] for x in inputs), y[first:first + self.batch_size]

    def __iter__(self):
        return self.epoch(0)
