"""Prepared data from table shards: preprocessing from the manifest's statistics, the training
rows left to stream, validation and test rows read (up to EVAL_ROWS each) for evaluation."""
from __future__ import annotations

import torch
from safetensors.torch import load as load_safetensors

from scaletrain.data.from_shards import class_counts, eval_sample
from scaletrain.data.manifest import STATS, filesystem, join
from scaletrain.data.prepared import Prepared, require_rows
from scaletrain.data.preprocess import encode_target, target_state
from scaletrain.data.schema import Schema
from scaletrain.data.sounds import is_sound
from scaletrain.data.sources import Source
from scaletrain.data.stats import TableStats, TargetStats
from scaletrain.errors import DataError, TargetError
from scaletrain.modalities.table.media import SAMPLE_IMAGES, fit_media
from scaletrain.modalities.table.preprocess import fit_text, table_state, transform_table
from scaletrain.modalities.table.sounds import fit_sounds
from scaletrain.tasks import task_of

EVAL_ROWS = 250_000  # validation/test rows read from shards into memory for evaluation
MEDIA_EVAL_ROWS = 10_000  # ... where rows hold images: up to 12 KB of pixels each once decoded
TEXT_FIT_ROWS = 100_000  # training rows the text columns' tokenizer, kept length and idf are fitted on


def prepare_from_table_shards(source: Source, manifest, data_cfg) -> Prepared:
    """Return Prepared table shards: preprocessing from the manifest's statistics, training rows
    left to stream, validation and test rows (up to EVAL_ROWS each) read for evaluation."""
    m = manifest.data
    roles = dict(m["roles"])
    if data_cfg.target is not None and data_cfg.target != roles["target"]:
        raise TargetError(f"'{source.url}' was prepared with target '{roles['target']}', not '{data_cfg.target}'; "
                          "prepare again with --target")
    if data_cfg.columns:
        raise DataError("data.columns must be given to `scaletrain prepare`; roles are fixed in the shards")
    fs, root = filesystem(source.url)
    with fs.open(join(root, STATS), "rb") as fh:
        sketches = load_safetensors(fh.read())
    stats = TableStats.from_parts(m["stats"], sketches)
    schema = Schema(**roles)
    state = table_state(stats, schema, data_cfg.scale, data_cfg.clip_quantile, data_cfg.missing_indicators,
                        data_cfg.max_onehot)
    state["target"] = target_state(TargetStats.from_plain(m["target"]))
    state["target_column"] = schema.target
    notes = [f"training rows stream from {len(manifest.split_shards('train'))} shard(s) in '{source.url}'"]
    if schema.text:
        state["text"], note = _fit_text_on_first_rows(manifest, source.url, schema.text, data_cfg)
        notes.append(note)
    if schema.image or schema.sound:  # the media columns: images, then sounds, fitted on the first training rows
        sample = eval_sample(manifest, source.url, "train", SAMPLE_IMAGES, [])
        state["images"] = fit_media(sample, schema.image, data_cfg.image_size, {}) + fit_sounds(sample, schema.sound, {})
        notes += streamed_media_notes(state["images"], stats, manifest.rows("train"))
    limit = MEDIA_EVAL_ROWS if schema.image or schema.sound else EVAL_ROWS
    val, test_frame = eval_sample(manifest, source.url, "val", limit, notes), \
        eval_sample(manifest, source.url, "test", limit, notes)
    require_rows(source.name, manifest.rows("train"), len(val), data_cfg.val_fraction)
    target = schema.target
    counts = class_counts(TargetStats.from_plain(m["target"]), state) if task_of(schema.task).classifies else None
    summary = {"task": schema.task, "rows": sum(m["rows"].values()), "columns": len(m["columns"]),
               "shards": len(manifest.shards), "numeric": schema.numeric, "boolean": schema.boolean,
               "datetime": schema.datetime, "categorical": schema.categorical, "dropped": schema.dropped,
               "train_rows": manifest.rows("train"), "val_rows": manifest.rows("val"), "test_rows": manifest.rows("test")}
    return Prepared(
        "table", schema.task, state, (), torch.empty(0, dtype=torch.long),
        transform_table(state, val, source.name).tensors(), encode_target(state["target"], val[target], source.name),
        Source("table", f"{source.name} (validation)", frame=val),
        Source("table", f"{source.name} (test)", frame=test_frame) if len(test_frame) else None,
        summary, notes, shard_url=source.url, train_rows=manifest.rows("train"), train_class_counts=counts)


def streamed_media_notes(images: list[dict], stats: TableStats, train_rows: int) -> list[str]:
    """What each media column is read as, and how many training cells `prepare` found nothing in."""
    def read_as(c: dict) -> str:
        if is_sound(c):
            return f"sound column '{c['name']}': clips of {c['samples'] / c['rate']:.2f} s at {c['rate']:,} Hz, its own log-mel"
        return f"image column '{c['name']}': {c['size'][0]}×{c['size'][1]} pixels, {c['channels']} channel(s), its own"

    return [f"{read_as(c)} convolutional encoder; {stats.media_absent.get(c['name'], 0)} of {train_rows} training cells "
            f"held no {'clip' if is_sound(c) else 'image'} when prepared (empty, not found or not one) and are read "
            "as missing" for c in images]


def _fit_text_on_first_rows(manifest, url: str, columns: list[str], data_cfg) -> tuple[dict, str]:
    """The text columns' state fitted on the first training row groups (up to about
    TEXT_FIT_ROWS rows: a tokenizer's vocabulary settles long before a corpus ends), and the note."""
    sample = eval_sample(manifest, url, "train", TEXT_FIT_ROWS, [])
    text = fit_text(sample, columns, data_cfg.tokenizer, data_cfg.vocab_size)
    whence = f"from {data_cfg.tokenizer}" if data_cfg.tokenizer else f"trained on the first {len(sample):,} training rows"
    return text, (f"text column(s) {', '.join(columns)}: WordPiece tokenizer {whence} ({text['vocab_size']:,} pieces, "
                  f"tokenizer.json), {text['length']} tokens kept per row, tokenized a streamed window at a time")
