"""Images: folders with one subfolder per class, image files, MNIST-format IDX folders, .npz
files and 3-d/4-d arrays.

Images are brought to one size and channel count and normalized per channel inside the
model; the models are conv nets (a small ResNet by default) trained on batches augmented on
the fly.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.config import Config, DataConfig, TrainConfig
from scaletrain.data.pixels import ImageTooLarge, decode_image, to_array
from scaletrain.data.prepared import Prepared
from scaletrain.data.preprocess import encode_target, fit_target
from scaletrain.data.sources import Source
from scaletrain.data.state_schema import ImageState
from scaletrain.errors import DataError
from scaletrain.modalities.base import DataFacts, ExportParts, Modality, Recipe, steps_to_epochs
from scaletrain.modalities.image.images import (
    ImageSet,
    check_image_array,
    check_labels,
    find_idx,
    image_subfolders,
    is_image_file,
    read_idx,
    read_image_files,
    read_image_folder,
    read_npz,
    resize_images,
)
from scaletrain.modalities.image.preprocess import fit_images, transform_images
from scaletrain.modalities.image.shards import decode_frame, prepare_image_shards

# torch and scikit-learn are imported where training needs them: `scaletrain prepare` shards an
# image folder through this module without either (2-3 s a process).

MAX_EPOCHS = 1000  # planned epochs of a time-limited image run: the time limit ends it first


@dataclass
class ImageFacts(DataFacts):
    image_shape: tuple = ()   # (channels, height, width)


class ImageRecipe(Recipe):
    """A small ResNet (conv-BN-ReLU stages that halve resolution, a residual block per stage:
    the layout of the fast CIFAR "ResNet-9" recipes) trained with SGD + Nesterov and a
    one-cycle schedule, label smoothing 0.1 and shift augmentation. One-cycle reaches a given
    accuracy in the fewest epochs, which is what a CPU budget needs."""

    model, dropout, optimizer, schedule, label_smoothing, early_stopping = "resnet", 0.0, "nesterov", "onecycle", 0.1, 0

    def fit_data(self, data: DataConfig, facts: DataFacts) -> None:
        data.channels, data.image_size = facts.image_shape[0], facts.image_shape[1]

    def bf16_pays(self, model) -> bool:
        # a ResNet step 1.95x faster on an AMX CPU; Fashion-MNIST in 10 minutes 0.940-0.945 against fp32's 0.938
        return model.name in ("cnn", "resnet")

    def batch_size(self, n_train: int) -> int:
        return 256 if n_train >= 20000 else 64

    def lr(self, optimizer: str, n_train: int) -> float:
        return 0.1 if optimizer in ("sgd", "momentum", "nesterov") else 2e-3

    def epochs(self, steps_per_epoch: int, time_limit: float | None, n_train: int) -> int:
        if time_limit:
            # the limit, not a count, ends the run: the one-cycle schedule anneals on time, so
            # every second of the budget is spent training (a count fitted to one machine's
            # speed would end early on a fast one and be cut short on a slow one)
            return MAX_EPOCHS
        return steps_to_epochs(3500, steps_per_epoch, 5, 40)


class Image(Modality):
    name = "image"
    state_schema = ImageState
    upload_type, upload_item = "image/", "an image"
    recipe = ImageRecipe()
    ends_on_time = True
    scaling_widths = (4, 8, 16, 32)
    # the ResNet's learning rate, weight decay, width and label smoothing; epochs follow the time limit
    search_space = {
        "train.lr": {"low": 0.02, "high": 0.4, "log": True, "grid": [0.05, 0.1, 0.2]},
        "train.weight_decay": {"low": 1e-4, "high": 2e-3, "log": True, "grid": [5e-4]},
        "model.width": [16, 32],
        "train.label_smoothing": {"low": 0.0, "high": 0.2, "grid": [0.0, 0.1]},
    }

    def recognizes(self, path: Path) -> bool:
        if path.is_dir():
            return bool(find_idx(path) or image_subfolders(path) or any(is_image_file(p) for p in path.iterdir()))
        return path.suffix.lower() == ".npz" or is_image_file(path)

    def read(self, path, size, channels) -> Source:
        path = Path(path)
        name = path.stem.split(".")[0] if path.is_file() else path.name or "data"
        if path.is_dir():
            idx = find_idx(path)
            if idx:
                train, test = read_idx(idx)
                return Source(self.name, name, items=resize_images(train, size, channels),
                              test_items=None if test is None else resize_images(test, size, channels))
            return Source(self.name, name, items=read_image_folder(path, size, channels))
        if path.suffix.lower() == ".npz":
            return Source(self.name, name, items=resize_images(read_npz(path), size, channels))
        return Source(self.name, name, items=read_image_files([path], None, size, channels))

    def from_array(self, x, y, size, channels) -> Source | None:
        if not isinstance(x, np.ndarray) or x.ndim < 3:
            return None
        labels = check_labels(None if y is None else np.asarray(y), len(x), "array")
        images = ImageSet(check_image_array(x, "array"), labels, [f"array[{i}]" for i in range(len(x))])
        return Source(self.name, "array", items=resize_images(images, size, channels))

    def test_source(self, source: Source, test_data, load) -> Source:
        """Separate test images are read at the training images' size and channel count."""
        shape = source.items.images.shape
        return load(test_data, size=tuple(shape[1:3]), channels=int(shape[3]))

    def shards_from(self, sources: list[str]) -> bool:
        return len(sources) == 1 and bool(image_subfolders(sources[0]))

    def prepare_shards(self, sources: list[str], out: str, options: dict) -> dict:
        keys = ("image_size", "channels", "shard_size", "val_fraction", "test_fraction", "seed", "workers", "verbose",
                "backend")
        return prepare_image_shards(sources[0], out, **{k: v for k, v in options.items() if k in keys})

    def prepare(self, source: Source, test: Source | None, data_cfg: DataConfig, seed: int) -> Prepared:
        return prepare_images(source, test, data_cfg, seed)

    def prepare_streamed(self, source: Source, manifest, data_cfg: DataConfig) -> Prepared:
        from scaletrain.modalities.image.from_shards import prepare_from_image_shards

        return prepare_from_image_shards(source, manifest, data_cfg)

    def facts(self, prepared: Prepared) -> DataFacts:
        return ImageFacts(self.name, prepared.task, prepared.n_train, prepared.n_classes, levels=prepared.scale_points,
                          imbalance=prepared.imbalance(), val_minority=prepared.val_minority(),
                          streamed=prepared.shard_url is not None, image_shape=tuple(prepared.val_inputs[0].shape[1:]))

    def model_spec(self, prepared: Prepared, n_out: int):
        from scaletrain.models.registry import ModelSpec

        p = prepared.preprocess
        return ModelSpec(self.name, n_out, shape=tuple(prepared.val_inputs[0].shape[1:]),
                         mean=tuple(p["mean"]), std=tuple(p["std"]))

    def channels_last(self, train: TrainConfig) -> bool:
        return train.channels_last

    def train_transform(self, config: Config):
        """uint8 batches to floats, augmented, channels-last (the augmentation's generator is
        checkpointed: `transform.generator`)."""
        import torch

        from scaletrain.modalities.image.augment import AugmentSettings, ImageAugment

        d = config.data
        settings = AugmentSettings(d.augment_shift, d.augment_flip, d.augment_rotate, d.augment_scale,
                                   d.augment_noise, d.augment_erase) if d.augment else AugmentSettings()
        augment = ImageAugment(settings, config.train.seed)
        channels_last = config.train.channels_last

        def transform(x, epoch: int):
            x = augment(x, epoch)
            return x.contiguous(memory_format=torch.channels_last) if channels_last else x
        transform.generator = augment.generator
        return transform

    def stream_tensors(self, state: dict, where: str):
        return functools.partial(_image_tensors, state, where)

    def read_settings(self, state: dict):
        return tuple(state["size"]), state["channels"]

    def as_run_input(self, source: Source) -> Source:
        if source.test_items is not None:  # an MNIST-format folder: use its test split
            return Source(self.name, source.name, items=source.test_items)
        return source

    def encode(self, state: dict, source: Source):
        if source.items is None:
            raise DataError("this model was trained on images; give an image folder, file, IDX folder or .npz")
        return (transform_images(source.items.images),), source.items.labels

    def eval_inputs(self, batch: list, train: TrainConfig) -> list:
        import torch

        from scaletrain.modalities.image.augment import to_float

        batch[0] = to_float(batch[0])
        if train.channels_last:
            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
        return batch

    def prediction_frame(self, source: Source) -> pd.DataFrame:
        return pd.DataFrame({"image": source.items.names})

    def check_run(self, state: dict, spec, tokenizer_size: int | None) -> str | None:
        (h, w), c = state["size"], state["channels"]
        if len(state["mean"]) != c or len(state["std"]) != c:
            return f"{c} channel(s) but {len(state['mean'])} means and {len(state['std'])} deviations"
        if spec.shape and tuple(spec.shape) != (c, h, w):
            return f"images of {(c, h, w)} but the model takes {tuple(spec.shape)}"
        return None

    def probe_source(self, state: dict) -> Source:
        (h, w), c = state["size"], state["channels"]
        return Source("image", "probe", items=ImageSet(np.zeros((1, h, w, c), np.uint8), None, ["probe"]))

    def upload_source(self, state: dict, data: bytes, name: str, limits) -> Source:
        """One image, its size read from the header (refused past `limits.pixels`), decoded and
        brought to the run's size and channels."""
        try:
            decoded = decode_image(data, limits.pixels)
        except ImageTooLarge as exc:
            raise ImageTooLarge(f"the image '{name}' is {exc} (--max-pixels)") from None
        if decoded is None:
            raise DataError(f"the upload '{name}' is not an image (PNG, JPEG, BMP, GIF, TIFF or WebP)")
        array = np.array(to_array(decoded, tuple(state["size"]), state["channels"])[None])  # writable: a tensor's memory
        return Source(self.name, name, items=ImageSet(array, None, [name]))

    def input_fields(self, state: dict) -> list[dict]:
        return [{"name": "image", "type": "image", "size": state["size"], "channels": state["channels"]}]

    def onnx_feeds(self, state: dict, source: Source) -> dict:
        return {"pixels": source.items.images.astype(np.uint8)}

    def export_parts(self, state: dict, opset: int) -> ExportParts:
        import torch

        from scaletrain.models.fronts import ImageFront

        (h, w), c = state["size"], state["channels"]
        described = [{"name": "pixels", "type": "uint8", "shape": ["batch", h, w, c],
                      "what": f"images of {h}x{w} pixels, {c} channel(s), 0-255, as stored (height, width, channels); "
                              "resize them first (predict does it on read)"}]
        return ExportParts(ImageFront(), (torch.zeros((2, h, w, c), dtype=torch.uint8),), ["pixels"], None, described)


def _image_tensors(state: dict, where: str, frame: pd.DataFrame):
    images = decode_frame(frame, state["size"], state["channels"])
    return (transform_images(images.images),), encode_target(state["target"], images.labels, where)


def _test_images(source: Source, test: Source | None) -> ImageSet | None:
    if test is not None:
        return test.test_items if test.test_items is not None else test.items
    return source.test_items


def prepare_images(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return Prepared images: split (IDX files keep their own test split), state fitted on train."""
    from scaletrain.data.split import split_items

    task, train, val, test_set = split_items(source.items, _test_images(source, test), data_cfg, seed, source.name,
                                             "images")
    state = fit_images(train.images)
    state["target"] = fit_target(train.labels, task)
    n_classes = len(state["target"].get("classes", []))
    summary = {"task": task, "images": len(train) + len(val) + len(test_set),
               "size": f"{state['size'][0]}×{state['size'][1]}", "channels": state["channels"],
               "classes": n_classes, "train_images": len(train), "val_images": len(val),
               "test_images": len(test_set)}
    return Prepared(
        "image", task, state,
        (transform_images(train.images),), encode_target(state["target"], train.labels),
        (transform_images(val.images),), encode_target(state["target"], val.labels),
        Source("image", f"{source.name} (validation)", items=val),
        Source("image", f"{source.name} (test)", items=test_set) if len(test_set) else None,
        summary, [])


IMAGE = Image()
