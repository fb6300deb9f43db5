"""Device, precision and strategy set-up in one thin layer, in the spirit of Lightning Fabric:
the loop, prediction, the range test and the budget probe place models and batches, pick
autocast, compile and wrap for data parallelism here, and nowhere else."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from scaletrain.parallel import distributed

COMPILE_BACKEND = "inductor"  # the tests swap in a cheaper backend to check the wiring


def resolve_device(asked: str) -> str:
    """The device `train.device` names: "auto" is CUDA where there is a GPU, else the CPU."""
    if asked == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return asked


def place(model: nn.Module, device: str, channels_last: bool = False) -> nn.Module:
    """The model on its device, convolution weights channels-last where asked (1.7x faster
    convolutions on this project's CPU, BENCHMARKS.md)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def to_device(tensors, device: torch.device, non_blocking: bool = False) -> tuple[torch.Tensor, ...]:
    """Tensors moved to `device` (non-blocking from pinned memory on CUDA); none copied on the CPU."""
    if device.type == "cpu":
        return tuple(tensors)
    return tuple(x.to(device, non_blocking=non_blocking) for x in tensors)


class OnDevice:
    """Batches moved to `device` as they are drawn, for batch sources that stay on the CPU
    (memory-mapped shards): the loop itself never moves data."""

    def __init__(self, batches, on: torch.device):
        self.batches, self.on = batches, on

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int, start: int = 0):
        for inputs, y in self.batches.epoch(epoch, start):
            yield to_device(inputs, self.on, non_blocking=True), y.to(self.on, non_blocking=True)


def as_model_dtype(batch: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Floating inputs in the model's dtype (a float64 copy of a model takes float64 inputs)."""
    if dtype == torch.float32:
        return batch
    return [x.to(dtype) if x.is_floating_point() else x for x in batch]


def native_bf16(device: str) -> bool:
    """True where bf16 convolutions beat fp32: a CPU with AMX tiles (the zero-config Fashion-MNIST
    ResNet's step 1.95x faster on a 2-core Xeon; a small MLP's step slower). Not on CUDA: this
    project's small conv nets are launch-bound there, and bf16's casts made an H200 step 1.2-1.3x
    slower (BENCHMARKS.md)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch: absent means no AMX assumed
    return device == "cpu" and bool(amx and amx())


def autocast(precision: str, device: str):
    """Return the autocast context for a precision (fp16 scaling is handled by the loop; "auto"
    not yet resolved, fitting/recipe.py, is fp32)."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


def grad_scaler(precision: str, device: str) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device) if precision == "fp16" else None


def parallel(model: nn.Module, device: str, fsdp: bool) -> nn.Module:
    """The module training steps call: the model itself in one process, else DDP or FSDP
    (before the optimizer is built: FSDP replaces the parameters)."""
    return distributed.wrap(model, device, fsdp)


def compiled(module: nn.Module, on: bool) -> nn.Module:
    """The module compiled with torch.compile where asked (it shares the module's parameters)."""
    return torch.compile(module, backend=COMPILE_BACKEND) if on else module


def fused_optimizer(model: nn.Module) -> dict:
    """Optimizer keywords for one fused kernel over all parameters, where they are all on CUDA.
    Not on the CPU, though its step over a small MLP is 3× faster there (0.13 against 0.40 ms):
    a sound run (ResNet, AdamW) killed and resumed then no longer ended bit-identical to an
    uninterrupted one (tests/test_audio.py), while a plain save and reload of a fused
    optimizer does; the cause is not found yet."""
    return {"fused": True} if all(p.is_cuda for p in model.parameters()) else {}
