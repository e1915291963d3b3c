"""The quantile sketch: accuracy against exact percentiles, and merge laws."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from app.field.stats import percentile
from app.sketch import ALPHA, Sketch, bucket_bounds, bucket_of

values = st.floats(min_value=0.5, max_value=3_600_000, allow_nan=False, allow_infinity=False)


def close(got: float | None, want: float) -> bool:
    assert got is not None
    return abs(got - want) <= ALPHA * abs(want) + 1e-9


@given(st.lists(values, min_size=1, max_size=400), st.sampled_from([0.5, 0.75, 0.9, 0.95, 0.99]))
@settings(max_examples=300, deadline=None)
def test_quantile_is_within_alpha_of_the_exact_percentile(data: list[float], q: float) -> None:
    xs = sorted(data)
    exact = percentile(xs, q)
    assert close(Sketch.of(xs).quantile(q), exact), (exact, Sketch.of(xs).quantile(q))


def test_accuracy_on_realistic_lognormal_lcp() -> None:
    rng = random.Random(1)
    xs = sorted(rng.lognormvariate(7.6, 0.6) for _ in range(50_000))
    sketch = Sketch.of(xs)
    for q in (0.5, 0.75, 0.9, 0.95):
        exact = percentile(xs, q)
        assert abs(sketch.quantile(q) - exact) / exact < ALPHA  # type: ignore[operator]
    assert sketch.count == 50_000
    assert len(sketch.to_bytes()) < 2000  # a few hundred buckets at most


def test_cls_zeros_and_tiny_values_read_back_as_zero() -> None:
    sketch = Sketch.of([0.0] * 80 + [0.00005] * 5 + [0.2] * 15)
    assert sketch.zeros == 85
    assert sketch.quantile(0.5) == 0.0
    assert close(sketch.quantile(0.95), 0.2)


@given(st.lists(values, max_size=100), st.lists(values, max_size=100), st.lists(values, max_size=100))
@settings(max_examples=200, deadline=None)
def test_merge_is_associative_commutative_and_equals_one_big_sketch(
    a: list[float], b: list[float], c: list[float]
) -> None:
    def s(v: list[float]) -> Sketch:
        return Sketch.of(v)

    left = s(a).merge(s(b)).merge(s(c))
    right = s(a).merge(s(b).merge(s(c)))
    swapped = s(c).merge(s(a)).merge(s(b))
    whole = s(a + b + c)
    for other in (right, swapped, whole):
        assert (left.zeros, left.bins) == (other.zeros, other.bins)


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=200))
def test_serialisation_round_trips(data: list[float]) -> None:
    sketch = Sketch.of(data)
    back = Sketch.from_bytes(sketch.to_bytes())
    assert (back.zeros, back.bins, back.count) == (sketch.zeros, sketch.bins, len(data))


@given(values)
def test_every_value_lies_in_its_bucket(v: float) -> None:
    index = bucket_of(v)
    assert index is not None
    lo, hi = bucket_bounds(index)
    assert lo < v * (1 + 1e-12)
    assert v <= hi * (1 + 1e-12)


def test_count_at_most_matches_exact_counts_away_from_bucket_edges() -> None:
    xs = [100, 200, 2400, 2600, 3900, 4100, 9000]
    sketch = Sketch.of(xs)
    assert sketch.count_at_most(2500) == 3
    assert sketch.count_at_most(4000) == 5
    assert sketch.count_at_most(1e9) == 7
    assert sketch.count_at_most(50) == 0


def test_empty_sketch_has_no_quantile() -> None:
    assert Sketch().quantile(0.75) is None
    assert Sketch().count == 0
    assert math.isclose(Sketch.of([5]).quantile(0.75) or 0, 5, rel_tol=ALPHA)
