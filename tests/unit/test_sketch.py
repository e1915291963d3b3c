"""The quantile sketch: accuracy against exact percentiles, and merge laws."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from app.field.stats import percentile
from app.sketch import ALPHA, Sketch, bucket_bounds, bucket_of, bucket_value

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


@given(st.lists(values, max_size=300), st.lists(values, max_size=300))
@settings(max_examples=200, deadline=None)
def test_a_decoded_sketch_reads_and_merges_like_the_one_it_was_built_from(
    a: list[float], b: list[float]
) -> None:
    """Decoded sketches keep their stored sorted arrays; every read and merge must agree with
    the dict form, in any mix of the two."""
    built_a, built_b = Sketch.of(a), Sketch.of(b)
    decoded_a, decoded_b = Sketch.from_bytes(built_a.to_bytes()), Sketch.from_bytes(built_b.to_bytes())
    for q in (0.0, 0.5, 0.75, 0.95, 1.0):
        assert decoded_a.quantile(q) == built_a.quantile(q)
    for limit in (-1.0, 0.0, 100.0, 2500.0, 1e7):
        assert decoded_a.count_at_most(limit) == built_a.count_at_most(limit)
    assert decoded_a.count == built_a.count == len(a)
    whole = Sketch.of(a + b)
    for merged in (
        Sketch.from_bytes(built_a.to_bytes()).merge(decoded_b),
        Sketch.from_bytes(built_a.to_bytes()).merge(built_b),
        Sketch.of(a).merge(Sketch.from_bytes(built_b.to_bytes())),
    ):
        assert (merged.zeros, merged.bins, merged.count) == (whole.zeros, whole.bins, len(a) + len(b))
        assert merged.quantile(0.75) == whole.quantile(0.75)
        assert merged.to_bytes() == whole.to_bytes()
    decoded_a.add(1234.5)  # writing into a decoded sketch
    assert decoded_a.count == len(a) + 1
    assert decoded_a.bins == Sketch.of([*a, 1234.5]).bins


def test_percentiles_stay_within_one_percent_after_display_rounding() -> None:
    """The API rounds ms percentiles to 0.1: ALPHA leaves room for that at web-vitals sizes."""
    rng = random.Random(7)
    worst = 0.0
    for _ in range(200):
        xs = sorted(rng.lognormvariate(rng.uniform(5, 9), rng.uniform(0.2, 1.0)) for _ in range(300))
        exact = percentile(xs, 0.75)
        got = round(Sketch.of(xs).quantile(0.75) or 0.0, 1)
        worst = max(worst, abs(got - exact) / exact)
    assert worst < 0.01, worst


def test_filled_buckets_are_stored_dense_and_scattered_ones_as_pairs() -> None:
    rng = random.Random(3)
    filled = Sketch.of(rng.lognormvariate(7.6, 0.6) for _ in range(3000))
    pairs = 2 * len(filled.bins)  # a key and a count per bucket, at least one byte each
    assert len(filled.to_bytes()) < pairs
    scattered = Sketch.of([0.001, 1.0, 1e3, 1e6])
    back = Sketch.from_bytes(scattered.to_bytes())
    assert len(scattered.to_bytes()) < 40
    assert back.bins == scattered.bins
    assert back.count_at_most(1e3) == 3
    assert math.isclose(back.quantile(1.0) or 0, 1e6, rel_tol=ALPHA)


@given(
    st.lists(st.one_of(st.just(0.0), values), min_size=1, max_size=300),
    st.floats(min_value=0, max_value=1, allow_nan=False),
)
@settings(max_examples=300, deadline=None)
def test_quantile_is_the_percentile_of_the_bucket_values(data: list[float], q: float) -> None:
    """The quantile is exactly the interpolated percentile of the values as the sketch holds
    them (each replaced by its bucket's value, zeros by 0), from either stored form."""
    sketch = Sketch.of(data)
    held = sorted(0.0 if bucket_of(v) is None else bucket_value(bucket_of(v)) for v in data)  # type: ignore[arg-type]
    want = percentile(held, q)
    for form in (sketch, Sketch.from_bytes(sketch.to_bytes())):
        assert math.isclose(form.quantile(q) or 0.0, want, rel_tol=1e-12, abs_tol=1e-12)
