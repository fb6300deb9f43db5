"""The audio modality: folders of sound clips; reading (soundfile, soxr), log-mel features in
torch, SpecAugment, and the Modality itself."""
from scaletrain.modalities.audio.modality import AUDIO

__all__ = ["AUDIO"]
