"""Checkpoints: model and optimizer tensors as safetensors, the rest as JSON; last K kept."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from scaletrain.io import save_tensors, write_json
from scaletrain.train.loop import Callback, TrainState


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain["state"].setdefault(str(index), {})[key] = value
    return tensors, plain


class Checkpoint(Callback):
    """Writes checkpoints at each epoch end and every N steps / M minutes, atomically."""

    def __init__(self, folder: str | Path, every_steps: int = 0, every_minutes: float = 0.0, keep: int = 2):
        self.folder, self.every_steps, self.every_minutes, self.keep = Path(folder), every_steps, every_minutes, keep
        self.last_time = time.monotonic()

    def save(self, state: TrainState) -> None:
        tensors, plain = optimizer_tensors(state.optimizer)
        tensors.update({f"model.{k}": v for k, v in state.model.state_dict().items()})
        name = f"step-{state.step:09d}"
        save_tensors(self.folder / f"{name}.safetensors", tensors,
                     metadata={"optimizer": json.dumps(plain), "epoch": str(state.epoch), "step": str(state.step)})
        write_json(self.folder / f"{name}.json", {"epoch": state.epoch, "step": state.step, "lr": state.lr})
        for old in sorted(self.folder.glob("step-*.safetensors"))[:-self.keep or None]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        self.last_time = time.monotonic()

    def on_step_end(self, state: TrainState, loss) -> None:
        due_steps = self.every_steps and state.step % self.every_steps == 0
        due_time = self.every_minutes and time.monotonic() - self.last_time >= 60 * self.every_minutes
        if due_steps or due_time:
            self.save(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self.save(state)
