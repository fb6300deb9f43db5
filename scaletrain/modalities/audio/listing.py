"""A listing of sound clips: a table (CSV, TSV, Parquet, JSONL) with a column of paths to sound
files — absolute, or relative to the table's folder — and, for training, a label column (the
target, `--target`, or the one guessed as for tables). The other columns stay beside the clips
(`ClipSet.table`) and predict writes them back next to its predictions."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaletrain.data.sounds import AUDIO_SUFFIXES
from scaletrain.errors import DataError, TargetError
from scaletrain.modalities.audio.clips import ClipSet, read_clip_files

LISTING_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
PEEK_ROWS = 20
FEATURE_PEEK_ROWS = 500  # rows whose columns' roles decide whether a listing is a table with sounds
def labels_in(clips: ClipSet, column: str | None):
    """A listing's labels from `column` (new input to evaluate), or the clips' own."""
    if clips.table is not None and column in clips.table.columns:
        return clips.table[column].to_numpy()
    return clips.labels


def _read(path: Path, rows: int | None = None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        return frame.head(rows) if rows else frame
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, nrows=rows, dtype=False)
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=rows, dtype=str)


def path_column(frame: pd.DataFrame) -> str | None:
    """The first column whose present values are all names of sound files."""
    for name in frame.columns:
        values = frame[name].dropna().head(PEEK_ROWS)
        if len(values) and all(isinstance(v, str) and Path(v.strip()).suffix.lower() in AUDIO_SUFFIXES for v in values):
            return str(name)
    return None


def is_listing(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() not in LISTING_SUFFIXES:
        return False
    try:
        return path_column(_read(path, PEEK_ROWS)) is not None
    except Exception:  # noqa: BLE001 - not a readable table: the table reader says what is wrong with it
        return False


def has_features_beside(path: Path) -> bool:
    """Whether a listing holds, beside its clips and one label, columns a table model would read
    (not IDs, not constants, as the table's roles say): then it is a table with a sound column,
    and the table modality fuses the clips with those columns."""
    from scaletrain.data.schema import column_role

    try:
        frame = _read_typed(path, FEATURE_PEEK_ROWS)
    except Exception:  # noqa: BLE001 - read again, and refused with the reason, by whichever modality takes it
        return False
    column = path_column(frame)
    roles = [column_role(frame[c], len(frame))[0] for c in frame.columns if c != column]
    return sum(role != "dropped" for role in roles) >= 2


def _read_typed(path: Path, rows: int) -> pd.DataFrame:
    """The first rows with the column types pandas infers (numbers as numbers: an ID is seen as one)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=rows)
    return _read(path, rows)


def read_listing(path: Path, rate: int | None, samples: int | None) -> ClipSet:
    """The listed clips (unreadable files skipped and named), the other columns beside them."""
    try:
        frame = _read(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read the listing '{path}': {str(exc)[:200]}") from None
    column = path_column(frame)
    frame = frame[frame[column].notna()].reset_index(drop=True)
    files = [p if p.is_absolute() else path.parent / p for p in (Path(str(v).strip()) for v in frame[column])]
    missing = [str(f) for f in files if not f.is_file()]
    if len(missing) == len(files):
        raise DataError(f"none of the {len(files)} files in column '{column}' of '{path}' exists (the first: "
                        f"'{missing[0]}'); relative paths are read from the listing's folder")
    return read_clip_files(files, None, rate, samples, frame.drop(columns=[column]))


def labelled(clips: ClipSet, target: str | None, name: str) -> tuple[ClipSet, str | None, str | None]:
    """(a listing's clips labelled by its target column — given, or guessed as for tables —, that
    column, a note on the clips left out for want of a label); other clips as they are."""
    if clips.table is None:
        return clips, None, None
    from scaletrain.data.schema import find_target

    try:
        column = find_target(clips.table, target, name)
    except TargetError:
        if target is not None or clips.table.shape[1] != 1:
            raise
        column = str(clips.table.columns[0])  # the one column beside the paths
    present = clips.table[column].notna().to_numpy()
    kept = clips.subset(present.nonzero()[0])
    kept.labels, kept.skipped = kept.table[column].to_numpy(), clips.skipped
    notes = [] if present.all() else [f"{int((~present).sum())} listed clip(s) without a label in '{column}' left out"]
    others = [str(c) for c in clips.table.columns if c != column]
    if others:  # said, not silently ignored: the clips are all the model reads
        notes.append(f"column(s) {', '.join(others[:10])}{' …' if len(others) > 10 else ''} of the listing not used as "
                     "inputs: the model learns from the sound alone (they are IDs or constants; a listing with "
                     "feature columns is trained as a table that fuses them with the clips)")
    return kept, column, "; ".join(notes) or None
