"""Data layer: sources, schema inference, splits, fitted preprocessing, augmentation, batches."""
