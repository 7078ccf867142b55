"""JSON text of many rows at once, built with numpy instead of a Python string per row.

Each row is laid out in a fixed-width byte matrix, NUL wherever a field is shorter than its
column; dropping the NULs leaves the rows' text back to back, and a cumulative sum of the kept
bytes per row says where each starts. A commit's trades (tens of thousands) cost one matrix pass
this way, where an f-string per trade cost more than Redis spent on them. JSON text never holds
a NUL, so the padding cannot clash with content.

A block of fewer than _SMALL rows is a list of bytes instead (a string per value): numpy's cost
per call would outweigh the rows. Every function here takes and gives either kind, by row count.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Block = np.ndarray | list[bytes]  # (rows, width) uint8, NUL-padded; or, for a few rows, their bytes
Part = bytes | Block  # a constant, or a block

_ZERO, _DOT, _MINUS = ord("0"), ord("."), ord("-")
# Below this many rows a Python string per value is cheaper than numpy's cost per call (a live
# commit of a few trades paid ~0.25 ms for the digit loops alone, 0.13 ms for its matrices)
_SMALL = 128


def table(texts: Sequence[str]) -> np.ndarray:
    """Texts as a (len, width) uint8 table, NUL-padded: ``table(t)[codes]`` is a column block."""
    raw = [t.encode() for t in texts]
    width = max(1, *map(len, raw)) if raw else 1
    buf = b"".join(r.ljust(width, b"\0") for r in raw)
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(raw), width)


def lookup(texts: Sequence[str], codes: np.ndarray) -> Block:
    """``texts[code]`` for each row."""
    if codes.size < _SMALL:
        raw = [t.encode() for t in texts]
        return [raw[c] for c in codes.tolist()]
    return table(texts)[codes]


def integers(values: np.ndarray) -> Block:
    """Decimal text of integers (``-`` first for a negative one), as str() writes them."""
    v = np.asarray(values, dtype=np.int64)
    if v.size < _SMALL:
        return [b"%d" % x for x in v.tolist()]
    a = np.abs(v)
    width = len(str(int(a.max())))
    out = _digits(a, width, leading=False)
    negative = v < 0
    if negative.any():
        out = np.hstack([np.where(negative, _MINUS, 0).astype(np.uint8)[:, None], out])
    return out


def fraction(values: np.ndarray, digits: int) -> Block:
    """``.`` and the digits of ``values / 10**digits`` (each in [0, 10**digits)) without trailing
    zeros, nothing at all for 0: ``500000, 6 -> .5``."""
    v = np.asarray(values, dtype=np.int64)
    if v.size < _SMALL:
        return [("." + f"{x:0{digits}d}".rstrip("0")).encode() if x else b"" for x in v.tolist()]
    out = np.empty((v.size, digits + 1), dtype=np.uint8)
    out[:, 1:] = _digits(v, digits)
    # a digit stays while one after it is not 0
    out[:, 1:][~np.logical_or.accumulate(out[:, :0:-1] != _ZERO, axis=1)[:, ::-1]] = 0
    out[:, 0] = np.where(v != 0, _DOT, 0)
    return out


def _digits(values: np.ndarray, width: int, leading: bool = True) -> np.ndarray:
    """The last ``width`` decimal digits of non-negative integers; leading zeros as NUL unless
    ``leading`` (the units digit always stays). One division by the scalar 10 per digit: numpy
    divides by a scalar fast, by an array of powers ten times slower."""
    out = np.empty((values.size, width), dtype=np.uint8)
    rest = values
    for j in range(width - 1, -1, -1):
        q = rest // 10
        digit = rest - q * 10 + _ZERO
        out[:, j] = digit if leading or j == width - 1 else np.where(rest == 0, 0, digit)
        rest = q
    return out


def quantity(units: np.ndarray, decimals: int) -> Block:
    """Quantity units as exact decimal text (commit.qty_text, for a whole column)."""
    if decimals == 0:
        return integers(units)
    u = np.asarray(units, dtype=np.int64)
    whole, frac = np.divmod(np.abs(u), 10**decimals)
    negative = u < 0
    if u.size < _SMALL:
        signs = [b"-" if x else b"" for x in negative.tolist()]
        return [b"".join(t) for t in zip(signs, integers(whole), fraction(frac, decimals), strict=True)]
    blocks = [integers(whole), fraction(frac, decimals)]
    if negative.any():
        blocks.insert(0, np.where(negative, _MINUS, 0).astype(np.uint8)[:, None])
    return np.hstack(blocks)


def matrix(n: int, parts: Sequence[Part]) -> Block:
    """The rows' parts side by side: (n, total width) uint8, NUL-padded (or each row's bytes)."""
    if n < _SMALL:
        columns = [itertools.repeat(p, n) if isinstance(p, bytes) else p for p in parts]
        return [b"".join(row) for row in zip(*columns, strict=False)]
    widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
    out = np.empty((n, sum(widths)), dtype=np.uint8)
    at = 0
    for part, width in zip(parts, widths, strict=True):
        out[:, at : at + width] = np.frombuffer(part, dtype=np.uint8) if isinstance(part, bytes) else part
        at += width
    return out


def join(rows: Block, order: np.ndarray | None = None) -> tuple[bytes, list[int]]:
    """The rows' text back to back (in ``order`` when given), and the n + 1 offsets where each
    row starts and the last ends."""
    if isinstance(rows, list):
        if order is not None:
            rows = [rows[i] for i in order.tolist()]
        return b"".join(rows), [0, *itertools.accumulate(map(len, rows))]
    if order is not None:
        rows = rows[order]
    kept = rows != 0
    ends = np.cumsum(np.count_nonzero(kept, axis=1))
    return rows[kept].tobytes(), [0, *ends.tolist()]


def split(text: bytes, offsets: list[int], strip: int = 0) -> list[bytes]:
    """Each row's text, less its last ``strip`` bytes (a separator)."""
    return [text[a : b - strip] for a, b in itertools.pairwise(offsets)]
