"""Attributions for table models no gradient rule reads — boosted trees, and blends or bagged
ensembles of candidates — by Shapley value sampling over the raw columns (Štrumbelj &
Kononenko 2014), against the same background rows as the networks' path (attributions.py).

Each row is walked from a background row to itself one raw column at a time (its dense slots
and category code switched together), in random column orders and their reverses
(antithetic: the pairs' errors cancel to first order); a column's attribution is the mean of the
output's change when it switched. Every walk sums exactly to f(row) − f(background row), so
completeness holds as it does for DeepLIFT. Written here rather than with Captum's
ShapleyValueSampling because the category codes are integers that an input-times-mask
ablation cannot mix, and one pass here evaluates every row × background pair at once.
"""
from __future__ import annotations

import numpy as np
import torch

from scaletrain.modalities.table.preprocess import feature_columns
from scaletrain.run import Run

ORDERS = 4        # column orders per row × background pair (two antithetic pairs)
SEED = 0          # the orders are drawn reproducibly: the same run explains a row the same way twice


def column_groups(run: Run, dense_width: int, codes_width: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The raw columns, and for each dense slot and each category code the column it belongs to."""
    dense_names = feature_columns(run.preprocess)[:dense_width]
    code_names = [c["name"] for c in run.preprocess["embed"]][:codes_width]
    columns = list(dict.fromkeys(dense_names + code_names))
    index = {name: i for i, name in enumerate(columns)}
    return (columns, torch.tensor([index[n] for n in dense_names], dtype=torch.long),
            torch.tensor([index[n] for n in code_names], dtype=torch.long))


@torch.no_grad()
def sampled_attributions(run: Run, forward, dense: torch.Tensor, codes: torch.Tensor, fixed: tuple,
                         background: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor,
                         orders: int = ORDERS) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per row, each raw column's attribution for output `target` (a matrix rows × columns),
    the columns, and the background's mean output per row. `forward(dense, codes, *fixed)`
    returns the explained outputs; `fixed` (free text) is held as the row has it."""
    columns, dense_group, code_group = column_groups(run, dense.shape[1], codes.shape[1])
    n, b = len(dense), len(background[0])
    pair = lambda x: x.repeat_interleave(b, dim=0)  # noqa: E731 - every row once per background row
    row_dense, row_codes, targets = pair(dense), pair(codes), pair(target)
    base_dense, base_codes = background[0].repeat(n, 1), background[1].repeat(n, 1)
    held = tuple(pair(x) for x in fixed)

    def explained(d: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return forward(d, c, *held).gather(1, targets[:, None]).squeeze(1)

    start = explained(base_dense, base_codes)
    phi = torch.zeros((n * b, len(columns)), dtype=torch.float64)
    generator = torch.Generator().manual_seed(SEED)
    order = torch.arange(len(columns))
    for k in range(orders):
        order = torch.randperm(len(columns), generator=generator) if k % 2 == 0 else order.flip(0)  # antithetic
        d, c, previous = base_dense.clone(), base_codes.clone(), start
        for column in order.tolist():
            d[:, dense_group == column] = row_dense[:, dense_group == column]
            c[:, code_group == column] = row_codes[:, code_group == column]
            current = explained(d, c)
            phi[:, column] += (current - previous).double()
            previous = current
    phi = (phi / orders).reshape(n, b, -1).mean(dim=1)
    return phi.numpy(), columns, start.reshape(n, b).mean(dim=1).numpy()
