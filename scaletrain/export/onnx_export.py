"""One ONNX file from a run: raw input in; the label in the target's own values and the class
probabilities (or the value) out; batch axis dynamic.

The model and the tensor parts of the preprocessing are traced by torch's exporter (the
modality's `front`, the model, and the decision: probabilities, tuned threshold or class
shifts); string lookups, which torch cannot hold, come from the modality as an ONNX graph and
are joined in front with onnx.compose; the labels are a Gather from the classes at the end.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scaletrain.data.onnx_graph import ML_OPSET
from scaletrain.data.sources import Source
from scaletrain.data.text import padded_tokenizer
from scaletrain.io import atomic_write_bytes, write_json, write_text
from scaletrain.run import Run
from scaletrain.rundir import fingerprint
from scaletrain.tasks import task_of
from scaletrain.version import VERSION

OPSET = 18


class Decided(nn.Module):
    """front -> model -> (class index, probabilities) as Run.predict_encoded decides, or the value."""

    def __init__(self, front: nn.Module, model: nn.Module, target: dict, loss: str):
        super().__init__()
        self.front, self.model, self.target, self.loss = front, model, target, loss

    def forward(self, *inputs: torch.Tensor):
        blocks = self.front(*inputs)
        out = self.model(*(blocks if isinstance(blocks, tuple) else (blocks,))).float()
        decisions, proba = task_of(self.target["task"]).decide(out, self.target, self.loss)  # as Run.predict_encoded
        return decisions if proba is None else (decisions, proba)


def export_onnx(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/model.onnx (or `out`), its model card (model.card.json) and, for text, the
    tokenizer that pads to the model's length (model.tokenizer.json); return the ONNX file's path."""
    import onnx

    from scaletrain.recommend.store import is_recommender

    if is_recommender(run_dir):
        from scaletrain.export.towers import export_towers

        return export_towers(run_dir, out)
    run = Run.load(run_dir)
    out = Path(out) if out else run.path / "model.onnx"
    parts = run.modality.export_parts(run.preprocess, OPSET)
    for module in run.model.modules():  # a Transformer's text windows: all encoded, no branch on the data
        if hasattr(module, "every_window"):
            module.every_window = True
    model = _traced(Decided(parts.front, run.model.float().cpu().eval(), run.preprocess["target"], run.config.train.loss),
                    parts.example, parts.names, run.task)
    if parts.graph is not None:
        parts.graph.ir_version = model.ir_version
        feeds = [n for n in parts.names if n in {o.name for o in parts.graph.graph.output}]
        model = onnx.compose.merge_models(parts.graph, model, io_map=[(n, n) for n in feeds])
    if task_of(run.task).classifies:
        model = _with_labels(model, run.classes)
    _outputs_first(model, ["value", "label", "probabilities"])  # the input checks' `unfit` flags after them
    _one_opset_per_domain(model)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = model.SerializeToString()
    atomic_write_bytes(out, graph)
    if "text" in run.preprocess:
        # its own name: beside RUN/model.onnx a plain tokenizer.json would overwrite the run's
        write_text(out.with_suffix(".tokenizer.json"), padded_tokenizer(run.preprocess["text"]))
    card = model_card(run, parts.inputs, out)
    # what the graph was built from: `serve` reuses RUN/model.onnx only while both still match
    card["built_from"], card["sha256"] = fingerprint(run.path), hashlib.sha256(graph).hexdigest()
    write_json(out.with_suffix(".card.json"), card)
    return out


def _one_opset_per_domain(model) -> None:
    """Keep one opset import per domain (the highest): merge_models lists the default domain
    once per part, and onnxruntime's quantizer refuses a model that declares it twice."""
    versions: dict[str, int] = {}
    for entry in model.opset_import:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    del model.opset_import[:]
    for domain, version in versions.items():
        model.opset_import.add(domain=domain, version=version)


def _traced(module: nn.Module, example: tuple, names: list[str], task: str):
    """The torch part as an ONNX model with a dynamic batch axis."""
    outputs = task_of(task).graph_outputs()
    batch = torch.export.Dim("batch", min=1)
    _read_torchlib_once()
    # torchvision's ops (unused), and the graph optimizer's notes on what it left unfolded: not the user's concern
    for name in ("torch.onnx._internal.exporter._registration", "onnxscript.optimizer", "onnx_ir.passes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, example, None, input_names=names, output_names=outputs, dynamo=True,
                                    opset_version=OPSET,  # forward(*inputs) is one parameter: its shapes a tuple
                                    dynamic_shapes=(tuple({0: batch} for _ in example),),
                                    verbose=False)
    return program.model_proto


@functools.cache
def _read_torchlib_once() -> None:
    """torch's exporter rebuilds its table of ONNX functions on every export: it parses the
    source of ~500 onnxscript functions (~1 s), then reads each one's signature into a registry
    (~0.3 s), as long as the rest of a small model's export. Neither can change within a
    process, so both are built once (where onnxscript and torch still have them); each export
    gets its own copy of the registry's lists, which a custom translation table adds to."""
    try:
        from onnxscript._framework_apis import torch_2_11 as apis  # what torch 2.13's exporter reads
        from torch.onnx._internal.exporter import _constants, _registration
    except ImportError:
        return
    apis.get_torchlib_ops = functools.cache(apis.get_torchlib_ops)
    registry = _registration.ONNXRegistry
    built = functools.cache(registry.from_torchlib)

    def from_torchlib(opset_version=_constants.TORCHLIB_OPSET):
        shared, own = built(opset_version), registry()
        own._opset_version, own.functions = shared._opset_version, {k: list(v) for k, v in shared.functions.items()}
        return own

    registry.from_torchlib = staticmethod(from_torchlib)


def _with_labels(model, classes: list):
    """The model with a `label` output (the classes' own values) in place of the class index."""
    from onnx import helper, numpy_helper

    values = label_array(classes)
    model.graph.initializer.append(numpy_helper.from_array(values, "classes"))
    model.graph.node.append(helper.make_node("Gather", ["classes", "index"], ["label"], axis=0))
    kept = [o for o in model.graph.output if o.name != "index"]
    del model.graph.output[:]
    elem = helper.np_dtype_to_tensor_dtype(values.dtype) if values.dtype != object else 8  # 8: STRING
    model.graph.output.extend([helper.make_tensor_value_info("label", elem, ["batch"])] + kept)
    return model


def _outputs_first(model, names: list[str]) -> None:
    """Reorder the graph's outputs: `names` (those it has) first, the rest after."""
    outputs = sorted(model.graph.output, key=lambda o: names.index(o.name) if o.name in names else len(names))
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def label_array(classes: list) -> np.ndarray:
    """The classes as int64 or float64 where they are numbers, else as strings."""
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in classes):
        return np.asarray(classes, dtype=np.int64)
    if all(isinstance(c, (float, np.floating)) for c in classes):
        return np.asarray(classes, dtype=np.float64)
    return np.asarray([str(c) for c in classes], dtype=object)


def onnx_inputs(run: Run, data, tokenizer_json: str | None = None) -> dict[str, np.ndarray]:
    """The exported model's feeds for raw rows (a DataFrame), an array of items (uint8 images
    (batch, h, w, c), clips (batch, samples)) or a loaded Source: what the model card's `call`
    does, for tests and benchmarks. `tokenizer_json`: the tokenizer file written beside the
    model, to check that it gives the ids the model was exported with."""
    if isinstance(data, np.ndarray):
        data = run.source(data)
    source = data if isinstance(data, Source) else Source(run.modality.name, "rows", frame=data)
    state = run.preprocess
    if tokenizer_json is not None:
        state = state | {"text": state["text"] | {"padded_tokenizer": tokenizer_json}}
    return run.modality.onnx_feeds(state, source)


def model_card(run: Run, inputs: list[dict] | None, out: Path) -> dict:
    """What the exported model takes, gives and was trained on."""
    m = run.metrics
    target = run.preprocess.get("target_column")
    outputs = task_of(run.task).card_outputs(run.preprocess["target"], target)
    call = ["import onnxruntime as ort", f"session = ort.InferenceSession('{out.name}')"]
    if "text" in run.preprocess:
        call += ["from tokenizers import Tokenizer", f"tokenizer = Tokenizer.from_file('{out.with_suffix('.tokenizer.json').name}')",
                 "tokens = np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int64)"]
    checks = [d for d in inputs or [] if "output" in d]
    if checks:
        outputs.append({"name": "unfit", "type": "int64", "shape": ["batch", len(checks[0]["columns"])], **checks[0]})
    call.append("outputs = session.run(None, {name: column for each input, each shaped (batch, 1) or as listed})")
    return {"model": out.name, "format": f"ONNX (opset {OPSET}, ai.onnx.ml {ML_OPSET})", "scaletrain": VERSION,
            "task": run.task, "target": run.preprocess.get("target_column"), "classes": run.classes,
            "inputs": [d for d in inputs or [] if "output" not in d], "outputs": outputs, "call": call,
            "metrics": {k: m[k] for k in ("test", "val") if k in m},
            "data": m.get("data", {}), "model_name": run.config.model.name, "notes": m.get("notes", []),
            "decision": {k: run.preprocess["target"][k] for k in ("threshold", "class_bias") if k in run.preprocess["target"]},
            "config": json.loads(json.dumps(run.config.to_dict(), default=str))}
