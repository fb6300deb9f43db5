"""Convolutional models for images (a plain CNN and a small ResNet, both width/depth configurable)
and the encoders of a table's image and sound columns."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaletrain.data.log_mel import LogMel


class Normalize(nn.Module):
    """Per-channel (x - mean) / std inside the model, so raw [0,1] pixels go in."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


GROUPS = 8  # GroupNorm's groups (channels per group at least 2)


def conv_bn(c_in: int, c_out: int, stride: int = 1, norm: str = "batch") -> nn.Sequential:
    """Conv, norm, ReLU. GroupNorm instead of BatchNorm (norm="group") for DP-SGD, where each
    row's gradient must depend on that row alone (and the ReLU not in place: Opacus's backward
    hooks return views that autograd forbids modifying)."""
    group = norm == "group"
    normed = nn.GroupNorm(min(GROUPS, c_out // 2) or 1, c_out) if group else nn.BatchNorm2d(c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), normed, nn.ReLU(inplace=not group))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.a, self.b = conv_bn(channels, channels, norm=norm), conv_bn(channels, channels, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


def stage_count(side: int, depth: int | None) -> int:
    """Return how many downsampling stages to use: halve the side until about 4 px, at most 3."""
    if depth:
        return depth
    stages = 0
    while side > 4 and stages < 3:
        side, stages = (side + 1) // 2, stages + 1
    return max(stages, 1)


class ConvNet(nn.Sequential):
    """A conv net that, evaluated with `shifted_views` on, averages its logits over the image
    and the image shifted one pixel left and right (zero-filled): shifts it was trained with
    (data.augment_shift), so its errors on them differ and partly cancel. Zero-config
    Fashion-MNIST, two runs: test accuracy 0.9372 → 0.9398 and 0.9378 → 0.9407 at 3× the
    inference (the four shifts, at 5×, gave no more). None: not decided yet, read as off; the
    decision is made on validation rows (fitting/shifts.py)."""

    shifted_views: bool | None = False
    VIEWS = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.shifted_views:
            return super().forward(x)
        n, w, padded = x.shape[0], x.shape[-1], F.pad(x, (1, 1))
        views = torch.cat([x, padded[..., 2:], padded[..., :w]])
        return super().forward(views).view(self.VIEWS, n, -1).mean(0)


def build_convnet(channels: int, side: int, n_out: int, width: int, depth: int | None, residual: bool,
                  dropout: float, mean: list[float], std: list[float], norm: str = "batch") -> ConvNet:
    """Return a CNN: stem, then stages that halve resolution (and from the second on double width).

    With residual=True each stage adds a two-conv residual block (the ResNet-9 layout that
    speed-run recipes use: few, wide layers converge in few epochs).
    """
    layers: list[nn.Module] = [Normalize(mean, std), conv_bn(channels, width, norm=norm)]
    c = width
    for stage in range(stage_count(side, depth)):
        c_out = width * 2 ** stage
        layers += [conv_bn(c, c_out, norm=norm), nn.MaxPool2d(2, ceil_mode=True)]
        c = c_out
        if residual:
            layers.append(ResidualBlock(c, norm))
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, n_out))
    return ConvNet(*layers)


class PictureEncoder(nn.Module):
    """An image column's encoder inside a table model: uint8 pixels (rows, channels, height,
    width) to a vector, by three conv stages and global average pooling (any image size)."""

    def __init__(self, channels: int, mean: list[float], std: list[float], width: int = 32):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = nn.Sequential(conv_bn(channels, width), nn.MaxPool2d(2), conv_bn(width, 2 * width), nn.MaxPool2d(2),
                                  conv_bn(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.width = 2 * width

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(pixels.float() / 255.0))


BACKBONE_KEYS = {"residual", "width", "depth", "side", "norm"}


class ConvBackbone(nn.Module):
    """An image column's encoder started from an earlier image run: that run's CNN (same
    shape, so its tensors load one for one) without its output layer."""

    def __init__(self, channels: int, mean: list[float], std: list[float], backbone: dict):
        super().__init__()
        if not isinstance(backbone, dict) or set(backbone) != BACKBONE_KEYS or not 0 < backbone["width"] <= 1024 \
                or not 0 < backbone["side"] <= 1024 or not 0 < (backbone["depth"] or 1) <= 6:
            raise ValueError(f"an image column's backbone must be {sorted(BACKBONE_KEYS)} within bounds")
        net = build_convnet(channels, backbone["side"], 1, backbone["width"], backbone["depth"], backbone["residual"],
                            0.0, mean, std, backbone["norm"])
        self.body = nn.Sequential(*list(net)[:-1])
        self.width = net[-1].in_features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels.float() / 255.0)


SOUND_KEYS = {"rate", "samples", "n_fft", "hop", "n_mels", "fmin", "fmax"}


def check_sound_front(sound, means: int, stds: int) -> None:
    """Refuse a sound column's front outside the bounds a run's state may hold (data/state_schema:
    SoundColumnState) before its DFT basis (n_fft² / 2 numbers, built even for the meta device)
    is computed: a tampered spec must not size it."""
    def within(key: str, lo: float, hi: float) -> bool:
        value = sound.get(key)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi

    if not isinstance(sound, dict) or set(sound) != SOUND_KEYS or not (
            within("rate", 1000, 48_000) and within("samples", 1, 480_000) and within("n_fft", 16, 8192)
            and within("hop", 1, 8192) and within("n_mels", 1, 256) and within("fmin", 0, 48_000)
            and within("fmax", 1, 48_000)) or means != sound["n_mels"] or stds != sound["n_mels"]:
        raise ValueError(f"a sound column's front must be {sorted(SOUND_KEYS)} within bounds, one mean and std per band")


class SoundEncoder(nn.Module):
    """A table's sound column's encoder: waveforms (rows, samples) to the standardized log-mel
    spectrogram, computed inside the model so an exported graph takes the waveform, then the
    picture encoder's three conv stages over (1, mels, frames)."""

    def __init__(self, sound: dict, mean: list[float], std: list[float], cnn: dict | None = None, width: int = 32):
        super().__init__()
        check_sound_front(sound, len(mean), len(std))
        self.front = LogMel(sound["rate"], sound["n_fft"], sound["hop"], sound["n_mels"], sound["fmin"], sound["fmax"],
                            list(mean), list(std))
        if cnn:  # an earlier sound run's CNN (its features standardized as above, so its own normalizer is 0 and 1)
            started = ConvBackbone(1, [0.0], [1.0], cnn)
            self.body, self.width = started.body, started.width
            return
        self.body = nn.Sequential(conv_bn(1, width), nn.MaxPool2d(2), conv_bn(width, 2 * width), nn.MaxPool2d(2),
                                  conv_bn(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.width = 2 * width

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.body(self.front(waves.float()))


def picture_encoder(channels: int, mean, std, backbone: dict | None = None) -> nn.Module:
    """A media column's encoder: the small CNN of fused inputs, an earlier run's (backbone), or
    for a sound column (backbone {"sound": its front's settings}) the CNN over its log-mel."""
    if backbone and "sound" in backbone:
        return SoundEncoder(backbone["sound"], list(mean), list(std), backbone.get("cnn"))
    if backbone:
        return ConvBackbone(channels, list(mean), list(std), backbone)
    return PictureEncoder(channels, list(mean), list(std))
