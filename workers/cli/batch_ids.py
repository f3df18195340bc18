"""How a bulk batch and its lines are named: the batch id (a digest of the file), each line's
command id, and line numbers as compact ranges (``1-3,5``). Shared by ``mailops bulk`` and ``mailops batch``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator


def batch_id_for(content: bytes) -> str:
    """The batch id of a file: a digest of its bytes, so a re-run finds the same batch."""
    return f"b-{hashlib.sha256(content).hexdigest()[:16]}"


def command_id_for(batch_id: str, line: int) -> str:
    return f"{batch_id}-{line}"


def encode_ranges(numbers: list[int]) -> str:
    """``1-3,5`` for [1, 2, 3, 5]: the line numbers of a batch, compactly."""
    parts: list[str] = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
        start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(parts)


def decode_ranges(text: str) -> Iterator[int]:
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield from range(int(first), int(last or first) + 1)
