"""Log-mel spectrograms computed with torch ops, the same module in training, predict and the
exported ONNX graph (which therefore takes raw waveforms).

The short-time Fourier transform is a strided 1-d convolution with a Hann-windowed DFT basis
(cos and sin rows) rather than `torch.stft`: plain convolution and matrix products export to
ONNX with every opset and run on every backend, and the numbers equal librosa's within 1e-4
(tests/test_audio.py). torchaudio is not used: it does not import against our CPU torch.
The mel filterbank is the Slaney one (librosa's default: the mel scale linear below 1 kHz and
logarithmic above, each triangle of unit area). Bands are standardized with the mean and
deviation of the training clips' log-mel values, fitted once and stored in preprocess.json.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

N_FFT = 512          # 32 ms at 16 kHz: the frame of speech recognizers' front ends
HOP = 160            # 10 ms
N_MELS = 64
FMIN = 20.0
# mel power below it is silence (about -90 dBFS, a 16-bit recording's noise floor): log(0) would
# be -inf, and a lower floor reaches float32's rounding residue, where torch and onnxruntime
# differ by whole units of log (1e-10 let exported probabilities drift by 3e-5)
LOG_FLOOR = 1e-6
FEATURE_CHUNK = 256  # clips transformed at once: bounds the memory of the frames


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1): triangles between mel-spaced edges, each of unit area."""
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def mel_band_centres(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Each band's centre frequency, Hz (the peak of its triangle)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))[1:-1]


def dft_basis(n_fft: int) -> np.ndarray:
    """(2 * bins, 1, n_fft) convolution weights: the periodic-Hann-windowed cos and sin rows."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2.0 * np.pi * k * n[None, :] / n_fft
    return np.concatenate([window * np.cos(angle), -window * np.sin(angle)])[:, None, :]


class LogMel(nn.Module):
    """Waveforms (batch, samples) -> standardized log-mel spectrograms (batch, 1, mels, frames)."""

    def __init__(self, rate: int, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS, fmin: float = FMIN,
                 fmax: float | None = None, mean: list | None = None, std: list | None = None):
        super().__init__()
        self.n_fft, self.hop, self.bins = n_fft, hop, n_fft // 2 + 1
        self.register_buffer("basis", torch.from_numpy(dft_basis(n_fft)).float())
        bank = mel_filterbank(rate, n_fft, n_mels, fmin, fmax or rate / 2.0)
        self.register_buffer("bank", torch.from_numpy(bank.T.copy()).float())
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0] * n_mels).view(1, 1, -1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0] * n_mels).view(1, 1, -1, 1))

    def power(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, bins, frames) power spectrum; frames centred on every hop (zero padding)."""
        x = nn.functional.pad(waves.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2))
        spectrum = nn.functional.conv1d(x, self.basis.to(x.dtype), stride=self.hop)
        real, imag = spectrum[:, :self.bins], spectrum[:, self.bins:]
        return real * real + imag * imag

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, mels, frames): natural log of the mel power, floored at LOG_FLOOR."""
        mel = torch.matmul(self.power(waves).transpose(1, 2), self.bank.to(waves.dtype)).transpose(1, 2)
        return torch.log(mel.clamp(min=LOG_FLOOR))

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(waves).unsqueeze(1) - self.mean) / self.std


def front_of(state: dict) -> LogMel:
    """The run's feature front, with its fitted band statistics."""
    return LogMel(state["rate"], state["n_fft"], state["hop"], state["n_mels"], state["fmin"], state["fmax"],
                  state["mean"], state["std"])


def features(front: LogMel, waves: np.ndarray) -> torch.Tensor:
    """Standardized log-mel spectrograms of float32 clips (n, samples), a chunk at a time."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(waves), FEATURE_CHUNK):
            chunks.append(front(torch.from_numpy(np.ascontiguousarray(waves[start:start + FEATURE_CHUNK]))))
    frames = 1 + waves.shape[1] // front.hop
    return torch.cat(chunks) if chunks else torch.zeros((0, 1, front.bank.shape[1], frames))


def fit_features(waves: np.ndarray, rate: int) -> dict:
    """The feature state fitted on training clips: the STFT and mel settings, and each band's
    mean and deviation of log-mel values over every clip and frame."""
    state = {"rate": rate, "samples": int(waves.shape[1]), "n_fft": N_FFT, "hop": HOP,
             "n_mels": N_MELS, "fmin": FMIN, "fmax": rate / 2.0}
    raw = features(LogMel(rate, N_FFT, HOP, N_MELS, FMIN, rate / 2.0), waves)[:, 0].double()
    std = raw.std(dim=(0, 2))
    state["mean"] = raw.mean(dim=(0, 2)).tolist()
    state["std"] = [float(s) if s > 1e-6 else 1.0 for s in std]
    return state
