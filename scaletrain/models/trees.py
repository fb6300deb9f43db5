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
        offset = torch.arange(trees, device=x.device) * nodes  # row t of the flattened tables
        flat = [t.reshape(-1) for t in (self.feature, self.threshold, self.left, self.right)]
        at = offset.expand(x.shape[0], trees)  # every row starts at every tree's root
        for _ in range(self.depth):
            value = torch.gather(x, 1, flat[0][at])
            at = offset + torch.where(value <= flat[1][at], flat[2][at], flat[3][at])
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


def from_lightgbm(dump: dict, outputs: int, base: float = 0.0) -> TreeEnsemble:
    """A TreeEnsemble from LightGBM's `Booster.dump_model()`: tree i adds to output i mod
    `outputs` (multiclass grows one tree per class per round); with one binary logit spread
    over two outputs (`outputs`=2, one tree per round), the trees add to the second."""
    infos = dump["tree_info"]
    per_round = max(1, dump.get("num_tree_per_iteration", 1))
    tables = [_node_table(info["tree_structure"]) for info in infos]
    nodes = max(len(t) for t in tables)
    depth = max(_depth(info["tree_structure"]) for info in infos)
    model = TreeEnsemble(len(tables), nodes, outputs, depth)
    # filled as numpy arrays, copied in once: element-wise tensor writes cost ~0.4 s a model
    feature, left, right = (np.zeros((len(tables), nodes), dtype=np.int64) for _ in range(3))
    threshold, value = np.zeros((len(tables), nodes), dtype=np.float32), np.zeros((len(tables), nodes, outputs), np.float32)
    for i, table in enumerate(tables):
        column = i % per_round if per_round > 1 else outputs - 1
        rows = np.array(table, dtype=np.float64).reshape(-1, 5)
        feature[i, :len(table)], left[i, :len(table)], right[i, :len(table)] = rows[:, [0, 2, 3]].T.astype(np.int64)
        threshold[i, :len(table)], value[i, :len(table), column] = rows[:, 1], rows[:, 4]
        left[i, len(table):] = right[i, len(table):] = np.arange(len(table), nodes)
    for name, array in (("feature", feature), ("threshold", threshold), ("left", left), ("right", right), ("value", value)):
        getattr(model, name).copy_(torch.from_numpy(array))
    model.base[-1 if per_round == 1 else slice(None)] = base
    return model


LARGEST = float(torch.finfo(torch.float32).max)  # a leaf's threshold: finite (a run's tensors must be)


def _node_table(root: dict) -> list[tuple]:
    """(feature, threshold, left, right, leaf value) per node, breadth-first, root first; a
    leaf splits on feature 0 at the largest float and is its own child either way."""
    table, queue = [], [root]
    while queue:
        node = queue.pop(0)
        if "leaf_value" in node or "split_feature" not in node:
            table.append((0, LARGEST, len(table), len(table), float(node.get("leaf_value", 0.0))))
            continue
        if node.get("decision_type", "<=") != "<=":
            raise ValueError(f"a tree splits by {node['decision_type']!r}; only numeric '<=' splits are compiled")
        first = len(table) + len(queue) + 1  # where its children will land, breadth-first
        threshold = min(max(float(node["threshold"]), -LARGEST), LARGEST)  # LightGBM writes 1e300 for "all"
        table.append((int(node["split_feature"]), threshold, first, first + 1, 0.0))
        queue += [node["left_child"], node["right_child"]]
    return table


def _depth(node: dict) -> int:
    if "split_feature" not in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))
