"""Gradient-boosted trees as a torch module: the trees LightGBM grows (train/boosted.py), held as
tensors of node tables, so a boosted model is saved in safetensors, checked on load, exported
to ONNX and served exactly like the networks. Written here (not Hummingbird or onnxmltools)
because the run format, the loading checks and the exported front are scaletrain's own: the
module is ~40 lines of gathers and a convert-from-JSON.

Every tree is padded to the same node count; a leaf points to itself, so `depth` rounds of
"go left or right" leave every row at its leaf whatever the tree's own depth.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TreeEnsemble(nn.Module):
    """Sum over trees of the leaf value each row reaches, plus a base score, per output.

    Node tables (trees × nodes): the feature a node splits on, its threshold (left when the
    value is <= it), its two children; leaves carry values (trees × nodes × outputs)."""

    def __init__(self, trees: int, nodes: int, outputs: int, depth: int):
        super().__init__()
        self.depth = depth
        self.register_buffer("feature", torch.zeros((trees, nodes), dtype=torch.long))
        self.register_buffer("threshold", torch.zeros((trees, nodes)))
        self.register_buffer("left", torch.zeros((trees, nodes), dtype=torch.long))
        self.register_buffer("right", torch.zeros((trees, nodes), dtype=torch.long))
        self.register_buffer("value", torch.zeros((trees, nodes, outputs)))
        self.register_buffer("base", torch.zeros(outputs))

    def forward(self, dense: torch.Tensor, categories: torch.Tensor | None = None, *text) -> torch.Tensor:
        x = dense if categories is None or not categories.shape[1] else torch.cat([dense, categories.float()], dim=1)
        trees, nodes = self.feature.shape
        offset = (torch.arange(trees, device=x.device) * nodes).unsqueeze(1)  # each tree's first row of the flat tables
        # the children as flat indices, and `take` on the flat tables rather than `table[at]` (advanced
        # indexing is ~1.6x slower on the CPU): 300 trees of depth 12 over 11k rows, one thread, 808-849 -> 602-626 ms
        left, right = (self.left + offset).reshape(-1), (self.right + offset).reshape(-1)
        at = offset.reshape(1, trees).expand(x.shape[0], trees)  # every row starts at every tree's root
        for _ in range(self.depth):
            went_left = torch.gather(x, 1, self.feature.take(at)) <= self.threshold.take(at)  # NaN goes right
            at = torch.where(went_left, left.take(at), right.take(at))
        return self.value.reshape(trees * nodes, -1)[at].sum(dim=1) + self.base

    def table_problem(self, inputs: int) -> str | None:
        """What is wrong with loaded node tables (a split on a column the rows do not have, a
        child outside its tree), or None: checked before a tampered file can index past them."""
        nodes = self.feature.shape[1]
        if self.feature.numel() and not (0 <= int(self.feature.min()) and int(self.feature.max()) < max(inputs, 1)):
            return f"a tree splits on input {int(self.feature.max())} of {inputs}"
        for side in (self.left, self.right):
            if side.numel() and not (0 <= int(side.min()) and int(side.max()) < nodes):
                return f"a tree node points to child {int(side.max())} of {nodes}"
        return None


def from_lightgbm(model: str, outputs: int, base: float = 0.0) -> TreeEnsemble:
    """A TreeEnsemble from LightGBM's text model (`Booster.model_to_string()`): tree i adds to
    output i mod `outputs` (multiclass grows one tree per class per round); with one binary logit
    spread over two outputs (`outputs`=2, one tree per round), the trees add to the second.

    The text model, not `dump_model()`'s JSON: its node arrays parse straight into numpy, where
    the JSON cost ~0.1 s a model to write and read back (a cross-validated zero-config fit of a
    small table converts a dozen)."""
    header, *blocks = model.split("\nTree=")
    per_round = max(1, int(_fields(header).get("num_tree_per_iteration", 1)))
    tables = [_node_table(_fields(block.split("\nend of trees")[0])) for block in blocks]
    nodes = max(len(table[0]) for table in tables)
    feature, left, right = (np.zeros((len(tables), nodes), dtype=np.int64) for _ in range(3))
    threshold, value = np.zeros((len(tables), nodes), dtype=np.float32), np.zeros((len(tables), nodes, outputs), np.float32)
    for i, (split_on, at, lower, upper, leaf) in enumerate(tables):
        size, column = len(split_on), i % per_round if per_round > 1 else outputs - 1
        feature[i, :size], threshold[i, :size], left[i, :size], right[i, :size] = split_on, at, lower, upper
        value[i, :size, column] = leaf
        left[i, size:] = right[i, size:] = np.arange(size, nodes)  # padding: nodes that point to themselves
    ensemble = TreeEnsemble(len(tables), nodes, outputs, _depth(left, right))
    for name, array in (("feature", feature), ("threshold", threshold), ("left", left), ("right", right), ("value", value)):
        getattr(ensemble, name).copy_(torch.from_numpy(array))
    ensemble.base[-1 if per_round == 1 else slice(None)] = base
    return ensemble


LARGEST = float(torch.finfo(torch.float32).max)  # a leaf's threshold: finite (a run's tensors must be)


def _fields(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


def _node_table(tree: dict[str, str]) -> tuple:
    """(features, thresholds, left and right children, leaf values) of one tree: its
    split nodes in LightGBM's order (the root first), then its leaves, each a node that splits
    on feature 0 at the largest float and is its own child either way."""
    def numbers(key: str, dtype=np.int64) -> np.ndarray:
        return np.array(tree[key].split(), dtype=dtype)

    leaves = numbers("leaf_value", np.float64)
    splits = len(leaves) - 1
    if (numbers("decision_type") & 1).any():  # bit 0: a categorical split
        raise ValueError("a tree splits on a category's set; only numeric '<=' splits are compiled")
    size = splits + len(leaves)
    own = np.arange(splits, size)  # LightGBM writes leaf j as child ~j; it sits after the splits

    def child(key: str) -> np.ndarray:
        index = numbers(key)
        return np.concatenate([np.where(index >= 0, index, splits + ~index), own])

    left, right = child("left_child"), child("right_child")
    thresholds = np.clip(numbers("threshold", np.float64), -LARGEST, LARGEST)  # LightGBM writes 1e300 for "all"
    return (np.concatenate([numbers("split_feature"), np.zeros(len(leaves), np.int64)]),
            np.concatenate([thresholds, np.full(len(leaves), LARGEST)]), left, right,
            np.concatenate([np.zeros(splits), leaves]))


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Rounds of "go left or right" that take every tree's root to its deepest leaf, found for
    all trees at once (a leaf, or padding, is its own child)."""
    splits = left != np.arange(left.shape[1])
    frontier, depth = np.zeros_like(splits), 0
    frontier[:, 0] = True
    while (frontier & splits).any():
        tree, node = np.nonzero(frontier & splits)
        frontier = np.zeros_like(splits)
        frontier[tree, left[tree, node]] = frontier[tree, right[tree, node]] = True
        depth += 1
    return depth
