"""Entropy coding of integer symbols with integer probability tables (constriction range coder).

The coding face of every entropy model in :mod:`vaecodec.priors` is a :class:`PmfTable`: a list
of rows, each a discrete distribution over a contiguous range of integer symbols
``[lo, lo + len - 2]`` plus one *escape* entry (the last) that stands for every value outside
the range. Probabilities are integers that sum to ``2**PMF_BITS`` per row, every entry at least
1, so any symbol can be coded. A row's probabilities are computed once, deterministically (see
:mod:`vaecodec.coding.detmath`), so the encoder and the decoder hold the same integers.

Symbols are coded with ``constriction``'s range coder (a queue: first in, first out) and its
``Categorical`` model built from ``pmf / 2**PMF_BITS`` (exact binary fractions, so the model
constriction builds from them is the same on both sides). A symbol outside its row's range is
coded as the escape entry followed by its value in an Elias-gamma-style bypass code: with
``u = 2 * distance_beyond_range + side`` and ``n = bitlength(u + 1) - 1``, ``n`` is coded
uniformly over ``[0, 32)`` and the ``n`` low bits of ``u + 1`` uniformly in at most two chunks.

Typical use::

    enc = SymbolEncoder()
    enc.encode(symbols_row0, table, row=0)   # 1-D int arrays
    enc.encode(symbols_row1, table, row=1)
    data = enc.finish()                      # bytes
    dec = SymbolDecoder(data)
    a = dec.decode(table, row=0, count=len(symbols_row0))
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from vaecodec.errors import FormatError

__all__ = ["PMF_BITS", "PmfTable", "SymbolDecoder", "SymbolEncoder", "quantize_pmf"]

PMF_BITS = 16
"""Fixed-point precision of the probability tables: each row sums to ``2**PMF_BITS``."""

_MAX_ESCAPE_BITS = 32  # escape values are < 2**31 beyond the range
_CHUNK = 16


def quantize_pmf(pmf: np.ndarray, bits: int = PMF_BITS) -> np.ndarray:
    """Integer probabilities (each >= 1, summing to ``2**bits``) from a float pmf.

    ``max(1, round(p * 2**bits))`` for each entry, then the sum is corrected to ``2**bits``:
    a shortfall is added to the most probable entry; an excess is taken one unit at a time
    from the largest entries (stable order, never below 1). Pure integer arithmetic after one
    float multiply-and-round, so it is deterministic given the same float input.

    Args:
        pmf: float64 ``[L]``, non-negative, summing to about 1 (the escape entry included).

    Returns:
        int64 ``[L]``.

    Raises:
        ValueError: if ``L`` is too large for ``bits`` or ``pmf`` is not finite and >= 0.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    n = pmf.shape[-1]
    total = 1 << bits
    if n < 2 or n >= total // 2:
        raise ValueError(f"a table row needs 2 <= length < {total // 2} entries, got {n}")
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise ValueError("pmf must be finite and non-negative")
    q = np.maximum(1, np.floor(pmf * float(total) + 0.5)).astype(np.int64)
    excess = int(q.sum()) - total
    while excess > 0:  # take from the largest entries, at most down to 1
        order = np.argsort(-q, kind="stable")
        take = order[q[order] > 1][:excess]
        q[take] -= 1
        excess -= len(take)
    q[int(np.argmax(q))] -= excess  # excess <= 0 here: give the shortfall to the mode
    return q


class PmfTable:
    """A list of integer probability rows over contiguous symbol ranges, with escape entries.

    Args:
        pmfs: one int array per row, ``[L_r]``, summing to ``2**PMF_BITS``; the last entry of
            each row is the escape entry.
        offsets: the symbol value of entry 0 of each row (``lo``).

    Attributes:
        lo, hi: int arrays of each row's coded range (inclusive).
    """

    def __init__(self, pmfs: list[np.ndarray], offsets) -> None:
        self.pmfs = [np.asarray(p, dtype=np.int64) for p in pmfs]
        self.lo = np.asarray(offsets, dtype=np.int64).reshape(-1)
        if len(self.pmfs) != len(self.lo):
            raise ValueError("one offset per row is needed")
        self.hi = self.lo + np.array([len(p) - 2 for p in self.pmfs], dtype=np.int64)
        for p in self.pmfs:
            if int(p.sum()) != 1 << PMF_BITS or int(p.min()) < 1:
                raise ValueError("each row must hold entries >= 1 summing to 2**PMF_BITS")
        self._models: list = [None] * len(self.pmfs)

    def __len__(self) -> int:
        return len(self.pmfs)

    def model(self, row: int):
        """The constriction ``Categorical`` model of row ``row`` (built once, then cached)."""
        m = self._models[row]
        if m is None:
            probs = self.pmfs[row].astype(np.float64) / float(1 << PMF_BITS)
            m = constriction.stream.model.Categorical(probs, perfect=False)
            self._models[row] = m
        return m

    def bits(self, symbols: np.ndarray, row: int) -> float:
        """Information content in bits of coding ``symbols`` with row ``row`` (escapes
        included): what the range coder will spend, up to its small constant overhead."""
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        lo, hi = int(self.lo[row]), int(self.hi[row])
        pmf = self.pmfs[row]
        esc = (symbols < lo) | (symbols > hi)
        idx = np.where(esc, len(pmf) - 1, symbols - lo)
        total = float(np.sum(PMF_BITS - np.log2(pmf[idx].astype(np.float64))))
        if esc.any():
            u = _escape_u(symbols[esc], lo, hi)
            n = _floor_log2(u + 1)
            total += float(np.sum(n + math.log2(_MAX_ESCAPE_BITS)))
        return total


def _floor_log2(v: np.ndarray) -> np.ndarray:
    """Exact ``floor(log2(v))`` of positive int64 values below 2**32."""
    n = np.zeros(v.shape, dtype=np.int64)
    for b in range(1, _MAX_ESCAPE_BITS):
        n += (v >> b) > 0
    return n


def _escape_u(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    above = values > hi
    dist = np.where(above, values - hi - 1, lo - 1 - values)
    return 2 * dist + (~above).astype(np.int64)


class SymbolEncoder:
    """Range-encode 1-D integer symbol arrays row by row; :meth:`finish` returns the bytes."""

    def __init__(self) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, table: PmfTable, row: int) -> None:
        """Append ``symbols`` (int ``[n]``) coded with row ``row`` of ``table``.

        Raises:
            ValueError: if a symbol is more than 2**30 beyond the row's range.
        """
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if symbols.size == 0:
            return
        lo, hi = int(table.lo[row]), int(table.hi[row])
        esc_idx = len(table.pmfs[row]) - 1
        esc = (symbols < lo) | (symbols > hi)
        idx = np.where(esc, esc_idx, symbols - lo).astype(np.int32)
        self._enc.encode(idx, table.model(row))
        if esc.any():
            self._encode_escapes(_escape_u(symbols[esc], lo, hi))

    def _encode_escapes(self, u: np.ndarray) -> None:
        if int(u.max()) >= 1 << 31:
            raise ValueError("a symbol is too far outside its entropy model's range to code")
        v = u + 1
        n = _floor_log2(v)
        self._enc.encode(n.astype(np.int32), constriction.stream.model.Uniform(_MAX_ESCAPE_BITS))
        for shift in (0, _CHUNK):
            width = np.clip(n - shift, 0, _CHUNK)
            sel = width > 0
            if sel.any():
                chunk = (v[sel] >> shift) & ((1 << width[sel]) - 1)
                self._enc.encode(
                    chunk.astype(np.int32),
                    constriction.stream.model.Uniform(),
                    (1 << width[sel]).astype(np.int32),
                )

    def finish(self) -> bytes:
        """The compressed bytes (little-endian 32-bit words)."""
        return self._enc.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Decode what :class:`SymbolEncoder` wrote, in the same order with the same tables.

    Raises:
        FormatError: if ``data`` is not a whole number of 32-bit words, or decoding fails.
    """

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupt payload: entropy-coded data is not a whole number of words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)

    def decode(self, table: PmfTable, row: int, count: int) -> np.ndarray:
        """Decode ``count`` symbols coded with row ``row`` of ``table``; int64 ``[count]``."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        lo, hi = int(table.lo[row]), int(table.hi[row])
        esc_idx = len(table.pmfs[row]) - 1
        try:
            idx = np.asarray(self._dec.decode(table.model(row), int(count)), dtype=np.int64)
            out = idx + lo
            esc = idx == esc_idx
            if esc.any():
                u = self._decode_escapes(int(esc.sum()))
                side_below = (u & 1).astype(bool)
                dist = u >> 1
                out[esc] = np.where(side_below, lo - 1 - dist, hi + 1 + dist)
        except FormatError:
            raise
        except Exception as e:  # constriction reports exhausted / invalid data as exceptions
            raise FormatError(f"corrupt payload: entropy decoding failed ({e})") from None
        return out

    def finish(self) -> None:
        """Check that the payload ends where its last symbol does: a range decoder that still
        holds data after every symbol was decoded was fed a damaged or crafted payload (a valid
        file's payload is exactly what the encoder wrote). FormatError otherwise."""
        if not self._dec.maybe_exhausted():
            raise FormatError(
                "corrupt payload: data left after the last symbol (the file is damaged or "
                "was not written by vaecodec)"
            )

    def _decode_escapes(self, k: int) -> np.ndarray:
        n = np.asarray(
            self._dec.decode(constriction.stream.model.Uniform(_MAX_ESCAPE_BITS), k),
            dtype=np.int64,
        )
        v = np.ones(k, dtype=np.int64) << n
        for shift in (0, _CHUNK):
            width = np.clip(n - shift, 0, _CHUNK)
            sel = width > 0
            if sel.any():
                sizes = (1 << width[sel]).astype(np.int32)
                chunk = np.asarray(
                    self._dec.decode(constriction.stream.model.Uniform(), sizes), dtype=np.int64
                )
                v[sel] |= chunk << shift
        return v - 1
