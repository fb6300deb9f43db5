"""What one request may make the server do, checked before the work: bytes of body, rows (from
Parquet metadata before reading; counted while parsing CSV, JSONL and JSON), pixels (from the
image header before decoding), characters of text and the time a body may take to arrive. JSON
is parsed by orjson (no recursion: nesting cannot exhaust the stack; ~8x faster than the json
module, so a 10 MB body holds the interpreter for ~80 ms, not ~0.6 s) and a row must be an object
of plain values, so nothing nested goes further than the parser. Past a limit: 413 (408 for a slow body) naming the limit and its flag.

The body limit alone bounds bytes, not work: a 197 KB Parquet file can declare 8 million rows,
a 481 KB PNG 169 megapixels, a 10 MB JSON body 690,000 records.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 10 * 2 ** 20     # --max-body-mb
    rows: int = 100_000                 # --max-rows
    pixels: int = 40_000_000            # --max-pixels
    text_chars: int = 100_000           # --max-text-chars, per value
    read_seconds: float = 30.0          # --read-timeout: the whole body, however slowly it trickles
    explain_rows: int = 1_000           # --max-explain-rows: rows explained per request (100 model passes a row)
    sound_seconds: float = 600.0        # a table's sound cells: seconds of sound one request may hold, from their headers


class RequestError(Exception):
    """A request the model cannot take: `status` and a message naming the field and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def too_many_rows(rows: int, limits: Limits) -> RequestError:
    return RequestError(413, f"the request holds {rows:,} rows, over the limit of {limits.rows:,} (--max-rows); "
                             "send them in several requests")


def check_text(value: str, column: str, limits: Limits) -> None:
    """A string the model can read: within the length limit, and encodable (no lone surrogates)."""
    if len(value) > limits.text_chars:
        raise RequestError(413, f"column '{column}': a text of {len(value):,} characters, over the limit of "
                                f"{limits.text_chars:,} (--max-text-chars)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(422, f"column '{column}': the text holds a lone surrogate (an invalid \\u escape) "
                                "that is not a character; send valid UTF-8") from None


def check_client_image(value, column: str, limits: Limits) -> None:
    """An image cell a client sent: the image itself (a data: URI, or bytes in a Parquet upload),
    never a path (the server would read its own files), declaring at most the pixel limit (its
    header read, nothing decoded). A cell that is no image at all is read as a missing image."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    from scaletrain.data.pixels import DATA_URI

    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip()):
        return
    if isinstance(value, str) and not value.startswith(DATA_URI):
        raise RequestError(422, f"column '{column}': send the image itself, as a data:image/png;base64,... URI; "
                                "the server reads no paths")
    try:
        data = value if isinstance(value, bytes) else base64.b64decode(value.split(",", 1)[-1], validate=True)
        with Image.open(io.BytesIO(data)) as img:
            pixels = img.width * img.height
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return
    if pixels > limits.pixels:
        raise RequestError(413, f"column '{column}': an image of {pixels / 1e6:,.0f} megapixels, over the limit of "
                                f"{limits.pixels / 1e6:,.0f} (--max-pixels)")


def check_client_sound(value, column: str, limits: Limits) -> float:
    """A sound cell a client sent: the clip itself (a data: URI, or bytes in a Parquet upload),
    never a path; its seconds, from its header (nothing decoded), which a request's cells may
    add up to at most `limits.sound_seconds` (compressed silence is tiny: bytes do not bound them).
    A cell that is no clip at all is read as a missing clip."""
    import base64
    import binascii
    import io

    import soundfile

    from scaletrain.data.sounds import SOUND_URI

    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip()):
        return 0.0
    if isinstance(value, str) and not value.startswith(SOUND_URI):
        raise RequestError(422, f"column '{column}': send the clip itself, as a data:audio/wav;base64,... URI; "
                                "the server reads no paths")
    try:
        data = value if isinstance(value, bytes) else base64.b64decode(value.split(",", 1)[-1], validate=True)
        info = soundfile.info(io.BytesIO(data))
    except (binascii.Error, ValueError, RuntimeError, soundfile.LibsndfileError):
        return 0.0
    return info.frames / max(info.samplerate, 1)


def sound_time_over(seconds: float, limits: Limits) -> RequestError:
    return RequestError(413, f"the request's sound clips last {seconds:,.0f} s together, over the limit of "
                             f"{limits.sound_seconds:,.0f} s; send fewer or shorter clips per request")


def check_frame_strings(frame, limits: Limits) -> None:
    """`check_text` over every string of an uploaded table."""
    for column in frame.columns:
        if frame[column].dtype == object:
            for value in frame[column]:
                if isinstance(value, str):
                    check_text(value, str(column), limits)
