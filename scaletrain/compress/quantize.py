"""int8 quantization of an exported (raw-input) ONNX model, by onnxruntime's quantizer.

Dense layers (MLP, Transformer) get dynamic quantization: int8 weights per output channel,
activations quantized on the fly. Convolutions get static per-channel quantization calibrated
on the run's validation rows (QDQ). Only MatMul/Gemm/Conv are quantized: normalization
layers, softmax and the preprocessing (the traced `front`, `front_nodes`) stay in float (static int8 of LayerNorm is what ruined
the F1 in the DistilBERT report the issue cites). Whether it is any faster is measured, not
assumed (compress/measure.py): int8 is slower than float on some CPUs and models.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

DENSE_OPS = ["MatMul", "Gemm"]
CONV_OPS = ["Conv", "MatMul", "Gemm"]
CALIBRATION_ROWS, CALIBRATION_BATCH = 512, 64


class _Rows:
    """onnxruntime's CalibrationDataReader over feeds of raw validation rows."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        n = min(len(next(iter(feeds.values()))), CALIBRATION_ROWS)
        self.batches = iter([{k: v[i:i + CALIBRATION_BATCH] for k, v in feeds.items()} for i in range(0, n, CALIBRATION_BATCH)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # the reader protocol asks for it; one pass is all MinMax calibration needs
        pass


def has_convolutions(path: Path) -> bool:
    import onnx

    return any(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def front_nodes(path: Path) -> list[str]:
    """The nodes of the traced preprocessing (the modality's `front`: a sound's STFT and mel
    filterbank are a Conv and a MatMul), which stay in float: int8 power spectra under a log
    changed 4 in 10 of a sound run's decisions. The exporter records each node's module path."""
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node
            if any(p.key == "namespace" and "/front:" in p.value for p in node.metadata_props)]


@contextlib.contextmanager
def _quiet_root():
    """The root logger at ERROR while the quantizer runs (it logs advice on every call through
    the root logger), then as it was: left at ERROR, it silenced every warning of the process."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32: Path, out: Path, calibration: dict[str, np.ndarray]) -> str:
    """Write the int8 model; return which quantization it got (dynamic or static)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    kept = front_nodes(fp32)
    with contextlib.redirect_stdout(io.StringIO()), _quiet_root():
        if has_convolutions(fp32):
            quantize_static(fp32, out, _Rows(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            op_types_to_quantize=CONV_OPS, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)
            return "static (per-channel, calibrated on validation rows)"
        quantize_dynamic(fp32, out, per_channel=True, op_types_to_quantize=DENSE_OPS, weight_type=QuantType.QInt8,
                         nodes_to_exclude=kept)
    return "dynamic (per-channel int8 weights)"
