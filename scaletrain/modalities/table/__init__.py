"""The table modality: rows of numbers, categories and free text (a text column is a column
type of a table, not a modality of its own: its tokenizer and bag are shared with pretraining,
in data/text.py). Reading files, shards and their statistics, and the Modality itself."""
from scaletrain.modalities.table.modality import TABLE

__all__ = ["TABLE"]
