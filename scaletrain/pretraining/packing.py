"""Token ids packed into fixed-length blocks with numpy alone (no torch), so that a process
that only tokenizes a corpus (pretraining/pieces.py) starts in a fraction of a second.

Packing: each block starts with [CLS]; documents follow one another, each closed by [SEP],
and a document longer than the room left continues in the next block (pretraining/blocks.py
numbers the segments and masks the tokens).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4  # data/text.SPECIAL's order
FIRST_ORDINARY = 5


def iter_blocks(documents: Iterable[list[int]], length: int, chunk: int = 8192) -> Iterator[np.ndarray]:
    """Packed blocks as uint16 arrays of up to `chunk` rows: the documents, each closed by
    [SEP], as one stream cut into pieces of length - 1 tokens, each piece after a [CLS]; the
    last block padded. uint16 holds every id (vocabularies stop at 30,000) at half int32's
    size. Cut with numpy, not token by token: 1 GB of text is some 250 million tokens."""
    body, parts, held = length - 1, [], 0
    closer = np.array([SEP], np.uint16)
    for doc in documents:
        parts += [np.asarray(doc, np.uint16), closer]
        held += len(doc) + 1
        if held >= chunk * body:
            stream = np.concatenate(parts)
            rows = stream[: chunk * body].reshape(chunk, body)
            yield np.concatenate([np.full((chunk, 1), CLS, np.uint16), rows], axis=1)
            parts, held = [stream[chunk * body:]], len(stream) - chunk * body
    if held:
        stream = np.concatenate(parts)
        n = -(-len(stream) // body)
        rows = np.zeros(n * body, np.uint16)
        rows[: len(stream)] = stream
        yield np.concatenate([np.full((n, 1), CLS, np.uint16), rows.reshape(n, body)], axis=1)
