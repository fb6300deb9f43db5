"""Checkpoints that make a resume exact: weights, optimizer, every RNG, the data position and
callback state in one safetensors file (tensors + JSON metadata), written atomically, with a
SHA-256 in a JSON sidecar so that a damaged file is detected and skipped."""
from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from scaletrain.errors import ConfigError, RunDirError
from scaletrain.rundir import CheckpointFolder
from scaletrain.train.loop import Callback, TrainState


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, slots in state["state"].items():
        plain["state"].setdefault(str(index), {})
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], plain: dict) -> None:
    state = {int(i): dict(slots) for i, slots in plain["state"].items()}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def rng_state(generators: dict[str, torch.Generator]) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return every random state: Python's and NumPy's as JSON, torch's as tensors."""
    kind, keys, pos, gauss, cached = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    tensors = {"torch": torch.get_rng_state(), **{f"gen.{k}": g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    plain = {"python": [version, list(internal), py_gauss], "numpy": [kind, keys.tolist(), pos, gauss, cached]}
    return plain, tensors


def set_rng_state(plain: dict, tensors: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    version, internal, py_gauss = plain["python"]
    random.setstate((version, tuple(internal), py_gauss))
    kind, keys, pos, gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, gauss, cached))
    torch.set_rng_state(tensors["torch"])
    for name, generator in generators.items():
        generator.set_state(tensors[f"gen.{name}"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)




def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "columns":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Return the config keys whose values differ between a checkpoint and this run."""
    a, b = _flat(saved), _flat(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))




def valid_checkpoints(folder: Path):
    """Yield (path, tensors, metadata) of the checkpoints whose checksum holds, newest first.

    A damaged newest file (a crash mid-copy, a bad disk) falls back to the one before it.
    """
    store = CheckpointFolder(folder)
    for path in reversed(store.files()):
        try:
            tensors, meta = store.read(path)
        except Exception as exc:  # noqa: BLE001 - whatever the damage, try the previous one
            warnings.warn(f"checkpoint '{path}' is damaged ({exc}); using the one before it", stacklevel=2)
            continue
        yield path, tensors, meta


def newest_valid(folder: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Return (tensors, metadata) of the newest checkpoint whose checksum holds, else None."""
    for _, tensors, meta in valid_checkpoints(folder):
        return tensors, meta
    return None


class Checkpoint(Callback):
    """Writes checkpoints every N steps / M minutes and at each epoch end; restores on resume."""

    def __init__(self, folder: str | Path, every_steps: int = 0, every_minutes: float = 0.0, keep: int = 2,
                 config: dict | None = None, stateful: dict | None = None,
                 generators: dict[str, torch.Generator] | None = None, resume: bool = False, write: bool = True):
        self.folder, self.every_steps, self.every_minutes, self.keep = Path(folder), every_steps, every_minutes, keep
        self.config, self.stateful, self.generators = config or {}, stateful or {}, generators or {}
        self.resume, self.write = resume, write  # write: False on all data-parallel ranks but 0
        self.last_time = time.monotonic()
        self.resumed_from: int | None = None

    # ---------------------------------------------------------------- save
    def save(self, state: TrainState, epoch_done: bool) -> None:
        if not self.write:
            return
        opt_tensors, opt_plain = optimizer_tensors(state.optimizer)
        rng_plain, rng_tensors = rng_state(self.generators)
        tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
        tensors.update({f"optimizer.{k}": v for k, v in opt_tensors.items()})
        tensors.update({f"rng.{k}": v for k, v in rng_tensors.items()})
        callbacks = {}
        for name, callback in self.stateful.items():
            plain, cb_tensors = callback.state_dict()
            callbacks[name] = plain
            tensors.update({f"cb.{name}.{k}": v for k, v in cb_tensors.items()})
        meta = {"epoch": state.epoch + 1 if epoch_done else state.epoch, "batch": 0 if epoch_done else state.batch,
                "step": state.step, "lr": state.lr, "stop": state.stop, "elapsed": state.elapsed,
                "loss_sum": 0.0 if epoch_done else float(state.loss_sum),
                "loss_count": 0 if epoch_done else state.loss_count,
                "optimizer": opt_plain, "rng": rng_plain, "callbacks": callbacks, "config": self.config,
                "grad_scaler": state.scaler.state_dict() if state.scaler else None}
        # names sort by (step, epoch, batch): the epoch-end save of a step sorts after its step save
        path = self.folder / f"step-{state.step:09d}-{meta['epoch']:05d}-{meta['batch']:06d}.safetensors"
        store = CheckpointFolder(self.folder)
        try:
            store.write(path.name, tensors, meta, {"epoch": meta["epoch"], "step": state.step})
        except OSError as exc:
            self._write_failed(path, exc)
        store.prune(self.keep)
        self.last_time = time.monotonic()

    def _write_failed(self, path: Path, exc: OSError) -> None:
        """Stop, saying which earlier checkpoint is intact (the failed save removed its files).

        Writes go to a temporary name and are renamed only when whole, and old checkpoints
        are pruned only after a save succeeds, so the previous checkpoint is never touched.
        """
        previous = CheckpointFolder(self.folder).files()
        kept = (f"the last good checkpoint '{previous[-1]}' is untouched; fix that, then rerun with --resume"
                if previous else "no earlier checkpoint exists; fix that and train again")
        raise RunDirError(f"could not write checkpoint '{path}' ({exc.strerror or exc}); {kept}") from None

    def on_step_end(self, state: TrainState, loss) -> None:
        due_steps = self.every_steps and state.step % self.every_steps == 0
        due_time = self.every_minutes and time.monotonic() - self.last_time >= 60 * self.every_minutes
        if due_steps or due_time:
            self.save(state, epoch_done=False)

    def on_epoch_end(self, state: TrainState) -> None:
        self.save(state, epoch_done=True)

    # ---------------------------------------------------------------- resume
    def on_train_begin(self, state: TrainState) -> None:
        if not self.resume or not self.folder.is_dir():
            return
        for path, tensors, meta in valid_checkpoints(self.folder):
            if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
                warnings.warn(f"checkpoint '{path}' has no readable state; using the one before it", stacklevel=2)
                continue
            differ = config_differences(meta["config"], self.config)
            if differ:
                raise ConfigError(f"--resume refused: the config differs from the checkpoint's in {', '.join(differ[:8])}; "
                                  "resume with the same config or train into a new --out")
            try:
                self._restore(state, tensors, meta)
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
                # a checkpoint that passes its checksum but does not fit this model (forged, or
                # from another version): the one before it may
                warnings.warn(f"checkpoint '{path}' does not fit this run ({type(exc).__name__}); using the one "
                              "before it", stacklevel=2)
                continue
            self.resumed_from = state.step
            return
        if not CheckpointFolder(self.folder).files():  # a candidate the interrupted run had not reached
            return
        raise RunDirError(f"--resume: no checkpoint in '{self.folder}' can be restored (each is damaged or does not "
                          "fit this run); train afresh with --overwrite")

    def _restore(self, state: TrainState, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        state.model.load_state_dict(part("model."))
        load_optimizer(state.optimizer, part("optimizer."), meta["optimizer"])
        for name, callback in self.stateful.items():
            callback.load_state_dict(meta["callbacks"][name], part(f"cb.{name}."))
        set_rng_state(meta["rng"], part("rng."), self.generators)
        if state.scaler and meta.get("grad_scaler"):
            state.scaler.load_state_dict(meta["grad_scaler"])
        state.epoch, state.batch, state.step, state.lr = (int(meta["epoch"]), int(meta["batch"]), int(meta["step"]),
                                                          float(meta["lr"]))
        state.stop, state.elapsed_before = bool(meta["stop"]), float(meta["elapsed"])
        state.loss_sum, state.loss_count = float(meta["loss_sum"]), int(meta["loss_count"])
