"""A table's fitted preprocessing as an ONNX graph: raw columns in (numbers as doubles,
categories and booleans as strings), the model's dense block and category codes out.

The arithmetic is data/preprocess.transform_table's, step for step and in float64 as there,
so the exported model gives predict's numbers; category lookups are ai.onnx.ml LabelEncoders
(one hash lookup per value inside onnxruntime). A missing value is NaN in a number column and
the empty string in a string column.
"""
from __future__ import annotations

import itertools

import numpy as np

from scaletrain.data.input_check import FALSE_WORDS, FAR
from scaletrain.data.values import MISSING, TRUE_WORDS
from scaletrain.errors import ExportError

ML_OPSET = 3


class _Graph:
    """Nodes, constants and inputs collected while the graph is written."""

    def __init__(self):
        from onnx import helper

        self.helper, self.nodes, self.constants, self.inputs, self.count = helper, [], [], [], 0
        self.flat: dict[str, str] = {}
        self.flags: list[tuple[str, str]] = []  # (column, its (batch, 1) int64 flag of values that do not fit)

    def flag(self, column: str, bad: str) -> None:
        from onnx import TensorProto

        column_shaped = self.node("Reshape", [bad, self.constant(np.array([-1, 1]), "column")], "column")
        self.flags.append((column, self.node("Cast", [column_shaped], "flag", to=TensorProto.INT64)))

    def name(self, hint: str) -> str:
        self.count += 1
        return f"pre_{self.count}_{hint}"

    def node(self, op: str, inputs: list[str], hint: str, domain: str = "", **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], domain=domain, **attrs))
        return out

    def constant(self, value, hint: str) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add_input(self, column: str, elem_type: int) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(column, elem_type, ["batch", 1]))
        return column

    def strings(self, column: str) -> str:
        """The column's strings as a 1-d tensor (StringNormalizer and LabelEncoder take those)."""
        from onnx import TensorProto

        if column not in self.flat:  # one graph input per column, however many nodes read it
            self.flat[column] = self.node("Reshape", [self.add_input(column, TensorProto.STRING),
                                                      self.constant(np.array([-1]), "flat")], "flat")
        return self.flat[column]


def table_graph(state: dict, opset: int):
    """(ONNX model: raw columns -> `dense` float32 (batch, features) and `categories` int64
    (batch, embedded columns), the names of those two it has, a description of each input)."""
    from onnx import TensorProto, helper

    if state["columns"]["datetime"]:
        raise ExportError(f"datetime column(s) {list(state['columns']['datetime'])} cannot be parsed inside an ONNX "
                          "graph; give their parts as numeric columns, or leave them out with data.columns, and train again")
    g, described = _Graph(), []
    numbers = _numbers(g, state, described)
    dense = numbers + [_onehot(g, col, described) for col in state["onehot"]]
    codes = [g.node("Unsqueeze", [_codes(g, col, described), g.constant(np.array([1]), "axis")], "code")
             for col in state["embed"]]
    outputs, names = [], []
    if g.flags:  # per row and checked column: 1 where the value does not fit what the model was trained on
        g.nodes.append(helper.make_node("Concat", [f for _, f in g.flags], ["unfit"], axis=1))
        outputs.append(helper.make_tensor_value_info("unfit", TensorProto.INT64, ["batch", len(g.flags)]))
        described.append({"output": "unfit", "columns": [c for c, _ in g.flags],
                          "what": "1 where a value is a category the model never saw, not a true/false word, or a "
                                  "number far outside the training range (each still predicted, as predict does)"})
    if dense:
        g.nodes.append(helper.make_node("Concat", dense, ["dense"], axis=1))
        outputs.append(helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", None]))
        names.append("dense")
    if codes:
        g.nodes.append(helper.make_node("Concat", codes, ["categories"], axis=1))
        outputs.append(helper.make_tensor_value_info("categories", TensorProto.INT64, ["batch", len(codes)]))
        names.append("categories")
    graph = helper.make_graph(g.nodes, "preprocess", g.inputs, outputs, g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    return model, names, described


def _numbers(g: _Graph, state: dict, described: list) -> list[str]:
    """Each numeric and boolean column imputed, clipped and scaled (float64, then float32), and
    its missing indicator where it has one; in transform_table's order."""
    from onnx import TensorProto

    raw = {}
    for name in state["columns"]["numeric_raw"]:
        raw[name] = g.add_input(name, TensorProto.DOUBLE)
        described.append({"name": name, "type": "float64", "what": "a number; NaN where missing"})
    for name in state["columns"]["boolean"]:
        # every spelling of each true word in any case, rather than StringNormalizer's LOWER:
        # onnxruntime builds that from the machine's locale and fails where en_US is not installed
        keys = sorted({"".join(p) for w in TRUE_WORDS for p in itertools.product(*[{c.lower(), c.upper()} for c in w])})
        flag = g.node("LabelEncoder", [g.strings(name)], "bool", domain="ai.onnx.ml", keys_strings=keys + [""],
                      values_floats=[1.0] * len(keys) + [float("nan")], default_float=0.0)
        words = sorted({"".join(p) for w in TRUE_WORDS | FALSE_WORDS
                        for p in itertools.product(*[{c.lower(), c.upper()} for c in w])}) + [""]
        g.flag(name, g.node("LabelEncoder", [g.strings(name)], "unfit", domain="ai.onnx.ml", keys_strings=words,
                            values_int64s=[0] * len(words), default_int64=1))
        raw[name] = g.node("Reshape", [g.node("Cast", [flag], "double", to=TensorProto.DOUBLE),
                                       g.constant(np.array([-1, 1]), "column")], "column")
        described.append({"name": name, "type": "string", "what": f"true for any of {sorted(TRUE_WORDS)} "
                          "(any case), else false; the empty string where missing"})
    blocks = []
    for col in state["numeric"]:
        x = raw[col["name"]]
        if col["name"] in state["columns"]["numeric_raw"]:
            span = FAR * max(col["hi"] - col["lo"], abs(col["hi"]), abs(col["lo"]), 1e-12)
            g.flag(col["name"], g.node("Or", [g.node("Less", [x, g.constant(np.array(col["lo"] - span), "far_lo")], "below"),
                                            g.node("Greater", [x, g.constant(np.array(col["hi"] + span), "far_hi")], "above")],
                                       "far"))
        absent = g.node("Or", [g.node("IsNaN", [x], "nan"), g.node("IsInf", [x], "inf")], "absent")
        v = g.node("Where", [absent, g.constant(np.array(col["median"], dtype=np.float64), "median"), x], "imputed")
        v = g.node("Min", [g.node("Max", [v, g.constant(np.array(col["lo"], dtype=np.float64), "lo")], "lo"),
                           g.constant(np.array(col["hi"], dtype=np.float64), "hi")], "clipped")
        v = g.node("Div", [g.node("Sub", [v, g.constant(np.array(col["center"], dtype=np.float64), "center")], "centred"),
                           g.constant(np.array(col["scale"], dtype=np.float64), "scale")], "scaled")
        blocks.append(g.node("Cast", [v], "value", to=TensorProto.FLOAT))
        if col["indicator"]:
            blocks.append(g.node("Cast", [absent], "indicator", to=TensorProto.FLOAT))
    return blocks


def _codes(g: _Graph, col: dict, described: list) -> str:
    """1 + each value's index in the fitted categories, 0 for unseen ones (1-d int64); the empty
    string reads as a missing value, as NaN does in predict."""
    from onnx import TensorProto

    categories = list(col["categories"])
    keys, values = categories[:], list(range(1, len(categories) + 1))
    if MISSING in categories:
        keys.append("")
        values.append(categories.index(MISSING) + 1)
    described.append({"name": col["name"], "type": "string",
                      "what": f"a category ({len(categories)} known; others read as unseen); the empty string where missing"})
    strings = g.strings(col["name"])
    codes = g.node("LabelEncoder", [strings], "codes", domain="ai.onnx.ml", keys_strings=keys,
                   values_int64s=values, default_int64=0)
    # the empty string (missing) is not unseen; a LabelEncoder, as Equal takes strings only from opset 19
    given = g.node("LabelEncoder", [strings], "given", domain="ai.onnx.ml", keys_strings=[""], values_int64s=[0],
                   default_int64=1)
    g.flag(col["name"], g.node("Mul", [g.node("Cast", [g.node("Equal", [codes, g.constant(np.array(0), "zero")], "unseen")],
                                              "unseen", to=TensorProto.INT64), given], "unfit"))
    return codes


def _onehot(g: _Graph, col: dict, described: list) -> str:
    """The column's one-hot block (unseen first), as rows of an identity matrix."""
    eye = np.eye(len(col["categories"]) + 1, dtype=np.float32)
    return g.node("Gather", [g.constant(eye, "eye"), _codes(g, col, described)], "onehot", axis=0)
