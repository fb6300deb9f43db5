"""A table read into model inputs: target found, roles inferred, rows split, preprocessing
fitted on the training rows, and the notes that say what was read and how."""
from __future__ import annotations

import pandas as pd

from scaletrain.data.prepared import Prepared
from scaletrain.data.preprocess import encode_target, fit_target
from scaletrain.data.schema import find_target, infer_schema
from scaletrain.data.sounds import is_sound
from scaletrain.data.sources import Source
from scaletrain.errors import ConfigError, DataError, TargetError
from scaletrain.modalities.table.media import fit_media, media_counts
from scaletrain.modalities.table.preprocess import fit_table, table_summary, transform_table
from scaletrain.modalities.table.sounds import fit_sounds
from scaletrain.tasks import task_of
from scaletrain.tasks.infer import looks_like_counts

FEW_LABELS = 1000  # labelled texts under which the pretraining advice is given


def infinite_values(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Notes for number columns holding infinities ('Infinity', '1e999'): read as missing, said."""
    import numpy as np

    notes = []
    for name in columns:
        count = int(np.isinf(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)).sum())
        if count:
            notes.append(f"column '{name}': {count} infinite value(s) (such as 'Infinity' or '1e999') read as missing")
    return notes


def prepare_table(source: Source, test: Source | None, data_cfg, seed: int, starts: dict[str, str]) -> Prepared:
    """Return a Prepared table: target found, roles inferred, split, preprocessing fitted on train."""
    from scaletrain.data.split import split_rows

    frame, notes = source.frame, []
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"'{source.name}' has the column name '{dup}' twice; give every column its own name")
    target = find_target(frame, data_cfg.target, source.name)
    absent = frame[target].isna()
    if absent.all():
        raise TargetError(f"target column '{target}' has no values; pick a column with labels")
    if absent.any():
        notes.append(f"{int(absent.sum())} rows with a missing target were left out")
        frame = frame[~absent].reset_index(drop=True)
    schema = infer_schema(frame, target, data_cfg.task, data_cfg.columns)
    notes += [f"column '{c}' left out: {why}" for c, why in schema.dropped.items()]
    if data_cfg.task == "auto" and target is not None and looks_like_counts(frame[target].dropna()):
        notes.append(f"target '{target}' read as a count (whole numbers from 0, the larger the rarer): regression; "
                     "--set data.task=classification to predict its values as classes")
    notes += infinite_values(frame, schema.numeric)
    train, val, test_frame = split_rows(frame, target, task_of(schema.task).classifies, test, data_cfg, seed,
                                        source.name)
    state = fit_table(_fitted_on(train, data_cfg.preprocess_from, notes), schema, data_cfg.scale, data_cfg.clip_quantile,
                      data_cfg.missing_indicators, data_cfg.max_onehot, data_cfg.tokenizer, data_cfg.vocab_size)
    _check_starts(starts, schema, source.name)
    if schema.image or schema.sound:  # the media columns: images, then sounds
        state["images"] = fit_media(train, schema.image, data_cfg.image_size, starts) + fit_sounds(train, schema.sound, starts)
    state["target"] = fit_target(train[target], schema.task)
    state["target_column"] = target
    train_blocks = transform_table(state, train, source.name)
    notes += media_notes(state, train, train_blocks)
    summary = {"task": schema.task, **table_summary(frame, state),
               "train_rows": len(train), "val_rows": len(val), "test_rows": len(test_frame)}
    if summary["duplicate_rows"]:
        notes.append(f"{summary['duplicate_rows']} duplicate rows found (kept)")
    if "text" in state:
        t = state["text"]
        whence = f"from {data_cfg.tokenizer}" if data_cfg.tokenizer else "trained on the training rows"
        notes.append(f"text column(s) {', '.join(t['columns'])}: WordPiece tokenizer {whence} "
                     f"({t['vocab_size']:,} pieces, tokenizer.json), {t['length']} tokens kept per row "
                     f"({t['cut_in_training']} of {len(train)} training texts cut)")
        if not data_cfg.tokenizer and len(train) < FEW_LABELS:
            # BBC News: 33 labelled articles +11 points with a pretrained encoder; 1,669 reach 0.987 without one
            notes.append(f"with few labels ({len(train)} training texts, under {FEW_LABELS:,}), pretraining on "
                         "unlabeled text of the same kind helps: `scaletrain pretrain CORPUS --out DIR`, then train "
                         "with --set model.init_from=DIR")
    return Prepared(
        "table", schema.task, state,
        train_blocks.tensors(), encode_target(state["target"], train[target]),
        transform_table(state, val, source.name).tensors(), encode_target(state["target"], val[target]),
        Source("table", f"{source.name} (validation)", frame=val),
        Source("table", test.name if test else f"{source.name} (test)", frame=test_frame) if len(test_frame) else None,
        summary, notes)


def _check_starts(starts: dict[str, str], schema, name: str) -> None:
    """Only image, sound and text columns have encoders to start from earlier runs."""
    from scaletrain.rundir import RunDir  # torch: not for `scaletrain prepare`, which passes no starts

    for column, path in starts.items():
        if column not in schema.image + schema.sound + schema.text:
            raise ConfigError(f"model.encoders.{column}: '{column}' is not an image, sound or text column of '{name}' "
                              f"(image columns: {schema.image or 'none'}; sound: {schema.sound or 'none'}; "
                              f"text: {schema.text or 'none'})")
        if column in schema.text and not RunDir(path).is_pretrained():
            raise ConfigError(f"model.encoders.{column}.init_from '{path}': a text column starts from a pretraining "
                              "run (`scaletrain pretrain CORPUS --out DIR`)")


def media_notes(state: dict, train: pd.DataFrame, blocks) -> list[str]:
    """What the media columns are read as, and how many training cells held nothing readable."""
    notes = []
    for column, count in media_counts(state.get("images", []), train, blocks.absent.numpy()).items() \
            if state.get("images") else ():
        fitted = next(c for c in state["images"] if c["name"] == column)
        missing = f"{count['empty']} empty and {count['unreadable']} unreadable cell(s) of {len(train)} training rows"
        encoder = "an earlier run's" if fitted.get("backbone") else "its own"
        if is_sound(fitted):
            notes.append(f"sound column '{column}': clips of {fitted['samples'] / fitted['rate']:.2f} s at "
                         f"{fitted['rate']:,} Hz, {encoder} log-mel convolutional encoder; {missing} read as missing clips")
            continue
        notes.append(f"image column '{column}': {fitted['size'][0]}×{fitted['size'][1]} pixels, {fitted['channels']} "
                     f"channel(s), {encoder} convolutional encoder; {missing} read as missing images")
    return notes


def _fitted_on(train: pd.DataFrame, public: str | None, notes: list[str]) -> pd.DataFrame:
    """The rows preprocessing is fitted on: the training rows, or the public sample named by
    data.preprocess_from (its columns checked against theirs)."""
    if public is None:
        return train
    from scaletrain.modalities.table.tables import read_table

    sample = read_table(public)
    missing = [c for c in train.columns if c not in sample.columns]
    if missing:
        raise DataError(f"data.preprocess_from '{public}' lacks the column(s) {', '.join(missing[:5])}; give a sample "
                        "with the training data's columns")
    notes.append(f"preprocessing fitted on {len(sample):,} rows of '{public}' (data.preprocess_from), not on the "
                 "training rows; the column roles were still inferred from the training data")
    return sample[list(train.columns)]
