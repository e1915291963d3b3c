"""A mergeable quantile sketch with bounded relative error (log-spaced buckets, the idea of
DDSketch: Masson, Rim and Lee, VLDB 2019).

A value v > 0 goes to bucket ``ceil(log(v) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``;
every value in a bucket is within a relative error ``a`` of the bucket's midpoint, so any
quantile read back is within ``a`` of a value of the right rank. Values at or below ``floor``
(CLS is often exactly 0) are counted apart and read back as 0. Merging is adding counts, so
hours merge into days and segments into totals without ever averaging percentiles.

Reading is the hot path (a 30-day hourly series decodes and reads 720 or more sketches per
request), so a decoded sketch keeps the count array it was stored as and reads quantiles by a
running sum and a binary search over it; the dict of buckets is built only when a sketch is added
to or merged into. The stored form is dense (first bucket index, then a count per bucket) when
the buckets are mostly filled, as a web-vitals distribution's are: no keys to store or decode,
about a third of the bytes of (key, count) pairs. Scattered buckets are stored as pairs.

ALPHA is a little under 1 % so that a percentile, after the API rounds it for display, still
lies within 1 % of the exact one. Changing it changes every bucket index: stored sketches of
another ALPHA cannot be merged with new ones (migration 0004 rebuilds the rollups for that).

Pure and I/O-free; serialised with msgpack into a few hundred bytes at most.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate

import msgspec

ALPHA = 0.0095
_GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
FLOOR = 1e-4  # CLS below this is noise; LCP/INP/... are whole milliseconds and far above it


class _Wire(msgspec.Struct, array_like=True, omit_defaults=True):
    """Dense when the buckets are mostly filled (counts of offset, offset+1, ...: no keys to
    store or decode), sparse when they are scattered (``keys`` given, ``offset`` unused)."""

    zeros: int
    offset: int
    counts: list[int]
    keys: list[int] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Wire)


def bucket_of(value: float) -> int | None:
    """Bucket index of a value, None for the zero bucket."""
    if value <= FLOOR:
        return None
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket reads back as: within ALPHA of everything in it."""
    return 2 * _GAMMA**index / (_GAMMA + 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """(lower, upper] of a bucket."""
    return _GAMMA ** (index - 1), _GAMMA**index


class Sketch:
    """Bucket counts held as a dict while written, as arrays while read (``_counts`` with
    either ``_keys`` or, dense, the first key ``_offset``); whichever form is missing is derived
    on demand, and the arrays are dropped when the dict changes."""

    __slots__ = ("_bins", "_counts", "_keys", "_offset", "zeros")

    def __init__(self) -> None:
        self._bins: dict[int, int] | None = {}
        self._counts: list[int] | None = None
        self._keys: list[int] | None = None  # None with _counts set: dense from _offset
        self._offset = 0
        self.zeros = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        sketch = cls()
        for v in values:
            sketch.add(v)
        return sketch

    @property
    def bins(self) -> dict[int, int]:
        """Bucket index -> count (a copy; add and merge change a sketch)."""
        return dict(self._writable())

    def _items(self) -> Iterable[tuple[int, int]]:
        if self._bins is not None:
            return self._bins.items()
        counts = self._counts or []
        keys = self._keys if self._keys is not None else range(self._offset, self._offset + len(counts))
        return ((k, n) for k, n in zip(keys, counts, strict=True) if n)

    def _writable(self) -> dict[int, int]:
        if self._bins is None:
            self._bins = dict(self._items())
        self._counts = self._keys = None
        return self._bins

    def _readable(self) -> list[int]:
        """The counts array (building it from the dict if need be), keys per _keys/_offset."""
        if self._counts is None:
            bins = self._bins or {}
            keys = sorted(bins)
            if keys and keys[-1] - keys[0] < 2 * len(keys) + 8:
                self._offset, self._keys = keys[0], None
                self._counts = [bins.get(k, 0) for k in range(keys[0], keys[-1] + 1)]
            else:
                self._keys, self._counts = keys, [bins[k] for k in keys]
        return self._counts

    def _key_at(self, position: int) -> int:
        return self._keys[position] if self._keys is not None else self._offset + position

    @property
    def count(self) -> int:
        counts = self._counts if self._counts is not None else (self._bins or {}).values()
        return self.zeros + sum(counts)

    def add(self, value: float, times: int = 1) -> None:
        index = bucket_of(value)
        if index is None:
            self.zeros += times
        else:
            bins = self._writable()
            bins[index] = bins.get(index, 0) + times

    def merge(self, other: Sketch) -> Sketch:
        """Add ``other`` into this sketch (in place) and return it."""
        self.zeros += other.zeros
        bins = self._writable()
        for index, n in other._items():
            bins[index] = bins.get(index, 0) + n
        return self

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated between closest ranks like ``app.field.percentile``."""
        # The hot path of every series point: one pass for the running totals, and a second
        # binary search only when the two closest ranks fall in different buckets.
        cumulative = list(accumulate(self._readable()))
        n = self.zeros + (cumulative[-1] if cumulative else 0)
        if n == 0:
            return None
        pos = (n - 1) * q
        lo = math.floor(pos)
        rank = lo - self.zeros  # among the values above the zero bucket
        if rank < 0:
            low, position = 0.0, -1
        else:
            position = bisect_right(cumulative, rank)
            low = bucket_value(self._key_at(position))
        if pos == lo or lo + 1 >= n:
            return low
        if rank + 1 < 0:
            return low  # both closest ranks are zeros
        if position >= 0 and cumulative[position] > rank + 1:
            return low  # the next rank is in the same bucket
        high = bucket_value(self._key_at(bisect_right(cumulative, rank + 1)))
        return low + (high - low) * (pos - lo)

    def count_at_most(self, limit: float) -> int:
        """How many values are ≤ limit, to bucket precision (bands, histograms)."""
        below = self.zeros if limit >= 0 else 0
        edge = bucket_of(limit)
        if edge is None:
            return below
        counts = self._readable()
        if self._keys is not None:
            upto = bisect_right(self._keys, edge)
        else:
            upto = min(max(edge - self._offset + 1, 0), len(counts))
        return below + sum(counts[:upto])

    def to_bytes(self) -> bytes:
        counts = self._readable()
        if self._keys is not None:
            return _encoder.encode(_Wire(self.zeros, 0, counts, self._keys))
        return _encoder.encode(_Wire(self.zeros, self._offset, counts))

    @classmethod
    def from_bytes(cls, data: bytes) -> Sketch:
        wire = _decoder.decode(data)
        sketch = cls.__new__(cls)  # no empty dict to build and drop: thousands per series
        sketch.zeros = wire.zeros
        # Written sorted by to_bytes (the only writer), so reading needs no sort.
        sketch._bins, sketch._counts, sketch._offset = None, wire.counts, wire.offset
        sketch._keys = wire.keys if wire.keys else None
        return sketch
