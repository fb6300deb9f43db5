"""Sound clips: a folder with one subfolder per class of .wav/.flac/.ogg/.mp3 files, a folder of
clips, one file, or a 2-d array of samples at a trained run's rate.

Clips are mixed to mono, resampled to 16 kHz and brought to one length (clips.py); each
becomes a standardized log-mel spectrogram (features.py), computed once, that the image conv
nets read as a one-channel picture of time and frequency, augmented by SpecAugment on the
fly. The exported model takes the raw waveform: the features are inside its graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.config import Config, DataConfig
from scaletrain.data.prepared import Prepared
from scaletrain.data.preprocess import encode_target, fit_target
from scaletrain.data.sounds import fit_length, read_clip
from scaletrain.data.sources import Source
from scaletrain.errors import DataError
from scaletrain.modalities.audio.clips import (
    ClipSet,
    audio_subfolders,
    check_waves,
    is_audio_file,
    read_clip_files,
    read_clip_folder,
)
from scaletrain.modalities.audio.listing import has_features_beside, is_listing, labelled, labels_in, read_listing
from scaletrain.modalities.audio.state import AudioState
from scaletrain.modalities.base import DataFacts, ExportParts, Modality, Recipe

MAX_EPOCHS = 1000  # planned epochs of a time-limited run: the time limit ends it first
# A compute budget in clips rather than steps (a step of 64 clips costs twice one of 32): 1-s
# clips on 2 CPU cores pass the channels-last ResNet at about 160 a second, so 1,500 training
# clips stay within 10 minutes; at 60 epochs (1,200 steps, not channels-last) instrument
# families took 971 s; at 30,000 clips 128 programs fell below the baseline (BENCHMARKS.md)
CLIPS_SEEN = 60_000


@dataclass
class AudioFacts(DataFacts):
    feature_shape: tuple = ()  # (1, mels, frames)


class AudioRecipe(Recipe):
    """The image modality's small ResNet on the spectrogram, trained with AdamW and a
    one-cycle schedule, label smoothing 0.1, SpecAugment and time shifts on every batch."""

    model, dropout, optimizer, schedule, label_smoothing, early_stopping = "resnet", 0.1, "adamw", "onecycle", 0.1, 0
    # fp32 under train.precision=auto (Recipe.bf16_pays): bf16 trained the spoken keywords 2x faster on an AMX CPU
    # but scored 0.779 against fp32's 0.842 (four held-out voices, 60 epochs each, BENCHMARKS.md)

    def batch_size(self, n_train: int) -> int:
        """64, or for few clips a power of two near an eighth of them (at least 8): a folder of
        34 clips trains on 4 batches an epoch, not 2 (at 32 a clip, 60 epochs left it at chance)."""
        return int(min(64, max(8, 2 ** math.floor(math.log2(max(n_train, 1) / 8)))))

    def lr(self, optimizer: str, n_train: int) -> float:
        return 0.1 if optimizer in ("sgd", "momentum", "nesterov") else 3e-3

    def epochs(self, steps_per_epoch: int, time_limit: float | None, n_train: int) -> int:
        """About CLIPS_SEEN clips through the net, in 10 to 60 epochs: 60 for a few hundred clips
        (spoken keywords, 408 a voice held out), about 40 for 1,500 (instrument notes)."""
        if time_limit:  # the one-cycle schedule anneals on time: every second of the budget trains
            return MAX_EPOCHS
        return int(min(60, max(10, round(CLIPS_SEEN / max(n_train, 1)))))


class Audio(Modality):
    name = "audio"
    state_schema = AudioState
    upload_type, upload_item = "audio/", "a sound clip"
    recipe = AudioRecipe()
    ends_on_time = True
    scaling_widths = (4, 8, 16, 32)
    search_space = {
        "train.lr": {"low": 5e-4, "high": 1e-2, "log": True, "grid": [1e-3, 3e-3]},
        "train.weight_decay": {"low": 1e-4, "high": 5e-2, "log": True, "grid": [1e-2]},
        "model.width": [16, 32],
        "model.dropout": {"low": 0.0, "high": 0.3, "grid": [0.0, 0.1]},
    }

    # ------------------------------------------------------------ reading
    def recognizes(self, path: Path) -> bool:
        if path.is_dir():
            return bool(audio_subfolders(path)) or any(is_audio_file(p) for p in path.iterdir())
        return is_audio_file(path) or (is_listing(path) and not has_features_beside(path))

    def read(self, path, size, channels) -> Source:
        """`size` is a trained run's (rate, samples): new clips are brought to them."""
        path = Path(path)
        rate, samples = size if size else (None, None)
        if path.is_dir():
            return Source(self.name, path.name or "data", items=read_clip_folder(path, rate, samples))
        if is_listing(path):
            return Source(self.name, path.stem, items=read_listing(path, rate, samples))
        return Source(self.name, path.stem, items=read_clip_files([path], None, rate, samples))

    def from_array(self, x, y, size, channels) -> Source | None:
        """Clips as a 2-d array (clips, samples) only for a run trained on clips of that length
        (a 2-d array is table rows otherwise)."""
        if not isinstance(x, np.ndarray) or x.ndim != 2 or not size or x.shape[1] != size[1]:
            return None
        clips = ClipSet(check_waves(x, "array"), None if y is None else np.asarray(y),
                        [f"array[{i}]" for i in range(len(x))], int(size[0]))
        return Source(self.name, "array", items=clips)

    def test_source(self, source: Source, test_data, load) -> Source:
        """Separate test clips are read at the training clips' rate and length."""
        clips = source.items
        return load(test_data, size=(clips.rate, clips.waves.shape[1]))

    # ------------------------------------------------------------ training
    def prepare(self, source: Source, test: Source | None, data_cfg: DataConfig, seed: int) -> Prepared:
        return prepare_clips(source, test, data_cfg, seed)

    def facts(self, prepared: Prepared) -> DataFacts:
        return AudioFacts(self.name, prepared.task, prepared.n_train, prepared.n_classes, levels=prepared.scale_points,
                          imbalance=prepared.imbalance(), val_minority=prepared.val_minority(),
                          feature_shape=tuple(prepared.val_inputs[0].shape[1:]))

    def model_spec(self, prepared: Prepared, n_out: int):
        from scaletrain.models.registry import ModelSpec

        # the features are standardized per band by the front: the conv net's own normalization is the identity
        return ModelSpec(self.name, n_out, shape=tuple(prepared.val_inputs[0].shape[1:]), mean=(0.0,), std=(1.0,))

    def channels_last(self, train) -> bool:
        """As images: the ResNet on 64 × 101 spectrograms, batch 64, 2 CPU cores, takes 0.39 s a
        step channels-last and 0.56 s without (width 32; 0.13 against 0.17 at width 16)."""
        return train.channels_last

    def train_transform(self, config: Config):
        """SpecAugment and time shifts (their generator is checkpointed: `transform.generator`),
        batches channels-last."""
        import torch

        layout = torch.channels_last if config.train.channels_last else torch.contiguous_format
        if not config.data.augment:
            return None if layout is torch.contiguous_format else lambda x, epoch: x.contiguous(memory_format=layout)
        from scaletrain.modalities.audio.augment import SpecAugment

        augment = SpecAugment(config.train.seed)

        def transform(x, epoch: int):
            return augment(x, epoch).contiguous(memory_format=layout)
        transform.generator = augment.generator
        return transform

    def eval_inputs(self, batch: list, train) -> list:
        if train.channels_last:
            import torch

            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
        return batch

    # ------------------------------------------------------------ a trained run
    def read_settings(self, state: dict):
        return (state["rate"], state["samples"]), None

    def encode(self, state: dict, source: Source):
        if not isinstance(source.items, ClipSet):
            raise DataError("this model was trained on sound clips; give a folder of them, a sound file, or an array "
                            f"of clips ({state['samples']} samples at {state['rate']} Hz)")
        from scaletrain.data.log_mel import features, front_of

        return (features(front_of(state), source.items.waves),), labels_in(source.items, state.get("target_column"))

    def prediction_frame(self, source: Source) -> pd.DataFrame:
        """The clips' names, and a listing's other columns beside them."""
        frame = pd.DataFrame({"clip": source.items.names})
        table = source.items.table
        return frame if table is None else pd.concat([frame, table.drop(columns=["clip"], errors="ignore")], axis=1)

    def check_run(self, state: dict, spec, tokenizer_size: int | None) -> str | None:
        n_mels = state["n_mels"]
        if len(state["mean"]) != n_mels or len(state["std"]) != n_mels:
            return f"{n_mels} mel bands but {len(state['mean'])} means and {len(state['std'])} deviations"
        shape = (1, n_mels, 1 + state["samples"] // state["hop"])
        if spec.shape and tuple(spec.shape) != shape:
            return f"spectrograms of {shape} but the model takes {tuple(spec.shape)}"
        return None

    def probe_source(self, state: dict) -> Source:
        silence = np.zeros((1, state["samples"]), np.float32)
        return Source(self.name, "probe", items=ClipSet(silence, None, ["probe"], state["rate"]))

    def upload_source(self, state: dict, data: bytes, name: str, limits) -> Source:
        """One sound file's bytes (WAV, FLAC, OGG, MP3), read as the run reads clips."""
        wave = fit_length(read_clip(data, state["rate"], name), state["samples"])
        return Source(self.name, name, items=ClipSet(wave[None], None, [name], state["rate"]))

    def input_fields(self, state: dict) -> list[dict]:
        return [{"name": "audio", "type": "audio", "rate": state["rate"], "samples": state["samples"]}]

    def onnx_feeds(self, state: dict, source: Source) -> dict:
        return {"waveform": source.items.waves.astype(np.float32)}

    def export_parts(self, state: dict, opset: int) -> ExportParts:
        import torch

        from scaletrain.data.log_mel import front_of

        rate, samples = state["rate"], state["samples"]
        described = [{"name": "waveform", "type": "float32", "shape": ["batch", samples],
                      "what": f"mono clips of {samples} samples at {rate} Hz ({samples / rate:.2f} s), in [-1, 1]; "
                              "mix down, resample and crop or pad with silence at the end first (predict does it on read)"}]
        return ExportParts(front_of(state).eval(), (torch.zeros((2, samples)),), ["waveform"], None, described)


def prepare_clips(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Prepared clips: split (stratified), band statistics fitted on the training clips."""
    from scaletrain.data.log_mel import features, fit_features, front_of
    from scaletrain.data.split import split_items

    clips, column, unlabelled = labelled(source.items, data_cfg.target, source.name)
    test_clips = None if test is None else labelled(test.items, column or data_cfg.target, test.name)[0]
    task, train, val, test_set = split_items(clips, test_clips, data_cfg, seed, source.name, "sound clips")
    state = {"kind": "audio", **fit_features(train.waves, clips.rate)}
    state["target"] = fit_target(train.labels, task)
    if column:
        state["target_column"] = column  # a listing's: new listings are scored by it
    front = front_of(state)
    summary = {"task": task, "clips": len(train) + len(val) + len(test_set), "rate": f"{clips.rate} Hz",
               "seconds": round(clips.waves.shape[1] / clips.rate, 3), "classes": len(state["target"].get("classes", [])),
               "train_clips": len(train), "val_clips": len(val), "test_clips": len(test_set)}
    notes = [f"skipped {len(clips.skipped)} sound file(s) that could not be read: " + "; ".join(clips.skipped[:5])
             + (" …" if len(clips.skipped) > 5 else "")] if clips.skipped else []
    notes += [unlabelled] if unlabelled else []
    return Prepared(
        "audio", task, state,
        (features(front, train.waves),), encode_target(state["target"], train.labels),
        (features(front, val.waves),), encode_target(state["target"], val.labels),
        Source("audio", f"{source.name} (validation)", items=val),
        Source("audio", f"{source.name} (test)", items=test_set) if len(test_set) else None,
        summary, notes)


AUDIO = Audio()
