"""Requests read into rows: a typed row model built from the run's columns (which is also the
OpenAPI schema), and each accepted body — JSON records or column arrays, a CSV/Parquet/JSONL
upload, text, an image — turned into a Source, or a RequestError that names what is wrong."""
from __future__ import annotations

import io
import json
from typing import Optional, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from scaletrain.data.sources import Source

FIELD_TYPES = {"number": Optional[float], "boolean": Optional[Union[bool, str]], "date": Optional[str],
               "category": Optional[Union[str, int, float]], "text": Optional[str]}


class RequestError(Exception):
    """A request the model cannot take: `status` and a message naming the field and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def row_model(fields: list[dict], optional: list[str]) -> type[BaseModel] | None:
    """The pydantic model of one row: each column the run reads is required (null for a missing
    value); the target and left-out columns may come along; anything else is refused."""
    typed = {f["name"]: (FIELD_TYPES[f["type"]], ...) for f in fields if f["type"] in FIELD_TYPES}
    if not typed:
        return None
    typed |= {name: (Optional[Union[str, float, bool]], None) for name in optional if name not in typed}
    return create_model("Row", __config__=ConfigDict(extra="forbid"), **typed)


def request_schema(row: type[BaseModel] | None) -> dict:
    """The OpenAPI request body of POST /predict."""
    content = {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "a CSV, Parquet or JSONL table, or an image"}}}}}
    if row is not None:
        records = {"type": "array", "items": row.model_json_schema()}
        content["application/json"] = {"schema": {"oneOf": [
            {"type": "object", "properties": {"records": records}, "required": ["records"]},
            {"type": "object", "properties": {"columns": {"type": "object"}}, "required": ["columns"]},
            records]}}
        content["text/plain"] = {"schema": {"type": "string", "description": "one text (a model with one text column)"}}
    else:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def rows_from_json(body: bytes, row: type[BaseModel] | None) -> list[dict]:
    """Validated rows from a JSON body: a list of records, {"records": [...]} or
    {"columns": {name: [values]}}. (Frames are made per micro-batch, not per request: a
    one-row DataFrame costs more than the model does.)"""
    if row is None:
        raise RequestError(415, "this model reads images: send one as a file upload (multipart field 'file') or as "
                                "the body with an image/* content type")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    if isinstance(data, dict) and "columns" in data:
        data = _records_from_columns(data["columns"])
    records = data.get("records") if isinstance(data, dict) else data
    if isinstance(data, dict) and records is None:
        raise RequestError(422, "the JSON body needs 'records' (a list of rows) or 'columns' (name -> list of values)")
    if not isinstance(records, list) or not records:
        raise RequestError(422, "'records' must be a non-empty list of rows (objects of column -> value)")
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(422, f"row {i}: expected an object of column -> value, got {type(record).__name__}")
        try:
            rows.append(row.model_validate(record).model_dump())
        except ValidationError as exc:
            raise RequestError(422, f"row {i}: " + "; ".join(_problem(e) for e in exc.errors()[:5])) from None
    return rows


def _records_from_columns(columns) -> list[dict]:
    if not isinstance(columns, dict) or not columns:
        raise RequestError(422, "'columns' must be an object of column name -> list of values")
    lengths = {name: len(v) if isinstance(v, list) else -1 for name, v in columns.items()}
    if min(lengths.values()) < 0 or len(set(lengths.values())) != 1:
        raise RequestError(422, f"every entry of 'columns' must be a list, all of one length (got lengths {lengths})")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _problem(error: dict) -> str:
    """One pydantic error as 'column x: what was expected'."""
    where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int) or len(error["loc"]) == 1)
    if error["type"] == "extra_forbidden":
        return f"unknown column '{where}' (the model reads no such column)"
    if error["type"] == "missing":
        return f"column '{where}' is missing (give null for a missing value)"
    return f"column '{where}': {error['msg'].lower()}, got {error.get('input')!r}"


def records_source(rows: list[dict], row: type[BaseModel]) -> Source:
    """Validated records (of one or many requests) as one table source."""
    return Source("table", "records", frame=typed_frame(rows, row))


def typed_frame(rows: list[dict], row: type[BaseModel]) -> pd.DataFrame:
    """Rows as a frame whose number columns are floats (NaN for null), as read from a file."""
    frame = pd.DataFrame(rows, columns=list(row.model_fields))
    for name, field in row.model_fields.items():
        if field.annotation == Optional[float]:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    return frame


def rows_from_text(body: bytes, fields: list[dict]) -> pd.DataFrame:
    """One row from a text/plain body, for a model whose only text column takes it."""
    texts = [f["name"] for f in fields if f["type"] == "text"]
    if len(texts) != 1 or len(fields) != 1:
        raise RequestError(415, f"a text body fits a model with one text column and nothing else; this model reads "
                                f"{[f['name'] for f in fields]}: send JSON records")
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise RequestError(422, f"empty text: send the text to classify in the body (column '{texts[0]}')")
    return pd.DataFrame({texts[0]: [text]})


def rows_from_upload(name: str, data: bytes) -> pd.DataFrame:
    """A table upload (CSV by default; Parquet or JSONL by its name)."""
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data))
        if name.endswith((".jsonl", ".json")):
            return pd.read_json(io.BytesIO(data), lines=name.endswith(".jsonl"))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file
        raise RequestError(422, f"the upload '{name}' is not a readable table ({type(exc).__name__}: {exc})") from None


def image_source(data: bytes, name: str, fields: list[dict]) -> Source:
    """One image upload, decoded and brought to the run's size and channels."""
    from scaletrain.data.images import ImageSet, decode_image, to_array

    image = next((f for f in fields if f["type"] == "image"), None)
    if image is None:
        raise RequestError(415, f"this model reads table rows {[f['name'] for f in fields][:8]}: send JSON records or a "
                                "CSV upload, not an image")
    decoded = decode_image(data)
    if decoded is None:
        raise RequestError(422, f"the upload '{name}' is not an image (PNG, JPEG, BMP, GIF, TIFF or WebP)")
    array = np.array(to_array(decoded, tuple(image["size"]), image["channels"])[None])  # writable: a tensor's memory
    return Source("image", name, images=ImageSet(array, None, [name]))
