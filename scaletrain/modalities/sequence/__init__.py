"""The sequence modality: tables (JSONL, Parquet, DataFrames) with a column of variable-length
sequences of numbers or vectors, read by a recurrent or 1-d convolutional encoder beside the
row's other number columns."""
from scaletrain.modalities.sequence.modality import SEQUENCE

__all__ = ["SEQUENCE"]
