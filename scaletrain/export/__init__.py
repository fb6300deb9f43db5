"""`scaletrain export`: a run as one ONNX file that takes raw input, with a model card beside it."""
from scaletrain.export.onnx_export import OPSET, export_onnx, onnx_inputs

__all__ = ["OPSET", "export_onnx", "onnx_inputs"]
