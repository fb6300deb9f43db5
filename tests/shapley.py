"""Exact interventional Shapley values of a table run's explained output (the predicted class's
logit minus the mean of the others': the log-odds for two classes), by enumerating every
coalition of raw columns against the run's background rows — the reference explanations are
measured against (tests, bench/explain_bench.py) — and each column's removal effect: how much
the output moves when that column alone takes the background's values."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from scaletrain.modalities.table.preprocess import feature_columns


class Coalitions:
    """v(S): the mean explained output over the background rows, with the columns in S taken
    from the explained rows and the others from the background row."""

    def __init__(self, run, frame: pd.DataFrame):
        inputs, _ = run.encode(run.source(frame))
        self.model, self.dense = run.model.eval(), inputs[0].float()
        self.codes = inputs[1] if len(inputs) > 1 else torch.zeros((len(self.dense), 0), dtype=torch.long)
        self.slots = np.asarray(feature_columns(run.preprocess))
        self.embedded = [c["name"] for c in run.preprocess["embed"]]
        self.columns = list(dict.fromkeys(list(self.slots) + self.embedded))
        self.bg_dense, self.bg_codes = run.background["dense"].float(), run.background["categories"].long()
        self.target = self.explained(self.dense, self.codes).argmax(dim=1)

    def explained(self, dense: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(dense, codes) if codes.shape[1] else self.model(dense)
        return out if out.shape[1] == 1 else out - (out.sum(dim=1, keepdim=True) - out) / (out.shape[1] - 1)

    def value(self, coalition) -> torch.Tensor:
        b = len(self.bg_dense)
        keep_dense = torch.from_numpy(np.isin(self.slots, list(coalition)))
        keep_codes = torch.tensor([name in coalition for name in self.embedded], dtype=torch.bool)
        d = torch.where(keep_dense, self.dense[:, None, :], self.bg_dense[None, :, :]).reshape(-1, self.dense.shape[1])
        c = torch.where(keep_codes, self.codes[:, None, :], self.bg_codes[None, :, :]).reshape(len(d), self.codes.shape[1])
        out = self.explained(d, c)
        return out.gather(1, self.target.repeat_interleave(b)[:, None]).reshape(-1, b).mean(dim=1)


def _values(game: Coalitions) -> dict:
    return {frozenset(s): game.value(s) for size in range(len(game.columns) + 1)
            for s in itertools.combinations(game.columns, size)}


def exact_shapley(run, frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, each raw column's exact Shapley value (2^columns coalitions x background rows)."""
    game = Coalitions(run, frame)
    values, m, phi = _values(game), len(game.columns), {}
    for column in game.columns:
        others = [c for c in game.columns if c != column]
        total = torch.zeros(len(game.dense))
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in itertools.combinations(others, size):
                total += weight * (values[frozenset(s) | {column}] - values[frozenset(s)])
        phi[column] = total.numpy()
    return pd.DataFrame(phi)


def largest_effects(run, frame: pd.DataFrame) -> pd.DataFrame:
    """Per row and column, the most that taking the column out changes the output, over every
    set of other columns kept (|v(S + c) - v(S)|): no Shapley value can exceed it."""
    game = Coalitions(run, frame)
    values, out = _values(game), {}
    for column in game.columns:
        others = [c for c in game.columns if c != column]
        steps = [(values[frozenset(s) | {column}] - values[frozenset(s)]).abs()
                 for size in range(len(others) + 1) for s in itertools.combinations(others, size)]
        out[column] = torch.stack(steps).max(dim=0).values.numpy()
    return pd.DataFrame(out)
