"""The image modality: folders of class subfolders, IDX files and arrays; reading, shards,
augmentation, preprocessing, and the Modality itself."""
from scaletrain.modalities.image.modality import IMAGE

__all__ = ["IMAGE"]
