"""serve's engine: the run's exported ONNX graph in onnxruntime, fed straight from parsed JSON.

Through torch and pandas a micro-batch of one-row requests cost ~5.6 ms (a DataFrame, the
input checks, the encoding) against ~0.08 ms for the graph itself, which already holds that
preprocessing; its feeds built from the validated records cost ~0.02 ms. The graph's `unfit`
output says which rows do not fit the trained schema, and only a batch that has such a row
pays for predict's own input checks, so the warnings are worded as predict words them.

The graph is exported on the first start and cached in the run directory (RUN/model.onnx; its
card names, by SHA-256, the run files it was built from and the graph itself, so a retrained
run or an edited file is exported again), and before it serves it must predict the run's probe
row as torch does. A run with no ONNX form (a datetime column, a modality that does not
export) is served through torch, as before, and the log says why.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from scaletrain.errors import ScaletrainError
from scaletrain.io import read_json
from scaletrain.run import Run
from scaletrain.rundir import fingerprint, sha256_of
from scaletrain.tasks import task_of

log = logging.getLogger("scaletrain.serve")
GRAPH = "model.onnx"


class GraphEngine:
    """`predict(feeds)` -> (class indices or values, probabilities or None, unfit flags or None),
    as Run.predict_encoded decides, from the exported graph."""

    def __init__(self, run: Run, path: Path, threads: int = 1):
        import onnxruntime as ort

        from scaletrain.export.onnx_export import label_array

        options = ort.SessionOptions()
        # micro-batches are small: one thread each, so that workers and threads do not oversubscribe the cores
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path, self.run = path, run
        self.classifies = task_of(run.task).classifies
        self.index = {v: i for i, v in enumerate(label_array(run.classes).tolist())} if self.classifies else {}
        # JSON records become feeds without a frame (no images to decode): cheap enough for the event loop
        self.reads_records = run.modality.record_feeds(run.preprocess, []) is not None

    def predict(self, feeds: dict[str, np.ndarray]):
        out = dict(zip(self.outputs, self.session.run(None, feeds)))
        if self.classifies:
            decisions = np.fromiter((self.index[v] for v in out["label"].tolist()), dtype=np.int64, count=len(out["label"]))
            return decisions, out["probabilities"], out.get("unfit")
        return out["value"], None, out.get("unfit")

    def agrees_with(self, run: Run) -> bool:
        """The graph predicts the run's probe row as torch does (labels equal, numbers within 1e-4)."""
        source = run.modality.probe_source(run.preprocess)
        values, proba, _ = self.predict(run.modality.onnx_feeds(run.preprocess, source))
        inputs, _ = run.encode(source)
        want, want_proba = run.predict_encoded(inputs)
        if not self.classifies:
            return bool(np.allclose(values, want, rtol=1e-4, atol=1e-4))
        return bool(np.array_equal(values, want) and np.allclose(proba, want_proba, atol=1e-4))


def graph_engine(run: Run, threads: int = 1, announce=lambda message: None) -> GraphEngine | None:
    """The run's graph in onnxruntime, exported first where RUN/model.onnx is missing or stale;
    None (the reason logged) where the run has no ONNX form or its graph does not agree."""
    if run.path is None:
        return None
    try:
        engine = GraphEngine(run, cached_graph(run.path, announce), threads)
    except (ScaletrainError, NotImplementedError) as exc:
        log.warning("serving through torch: the run has no ONNX form (%s)", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - the exporter or onnxruntime failing is no reason not to serve
        log.warning("serving through torch: exporting to ONNX failed (%s: %s)", type(exc).__name__, str(exc)[:300])
        return None
    if not engine.agrees_with(run):
        log.warning("serving through torch: %s does not predict as the run does", engine.path)
        return None
    return engine


def cached_graph(run_dir: Path, announce=lambda message: None) -> Path:
    """RUN/model.onnx where it was built from the run's present files, else a fresh export there
    (or in a temporary folder when the run directory cannot be written)."""
    from scaletrain.export import export_onnx

    path, card = Path(run_dir) / GRAPH, Path(run_dir) / Path(GRAPH).with_suffix(".card.json")
    if path.is_file() and card.is_file():
        try:
            built = read_json(card)
        except (OSError, ValueError, ScaletrainError):
            built = {}
        if isinstance(built, dict) and built.get("built_from") == fingerprint(run_dir) and built.get("sha256") == sha256_of(path):
            return path
    announce(f"exporting {run_dir} to ONNX for serving (once; kept as {path})")
    try:
        return export_onnx(run_dir)
    except OSError as exc:  # a read-only run directory (permissions, a read-only mount): exported for this start only
        folder = Path(tempfile.mkdtemp(prefix="scaletrain-serve-"))
        announce(f"{run_dir} cannot be written ({exc.strerror}): the ONNX export for serving goes to {folder}")
        return export_onnx(run_dir, folder / GRAPH)
