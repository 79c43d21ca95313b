"""Blocked temporal splits: blocks, folds, embargo (property-based over plans and time axes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.dap.plan import PlanError, SplitSpec
from training.dap.splits import Geometry, embargo_of, make_blocks, make_splits

C = pd.Timedelta("5min")
T0 = pd.Timestamp("2024-05-01T00:00")


def _axis(runs: list[tuple[int, int]]) -> pd.DatetimeIndex:
    """Runs of (frames, following gap in slots) -> a 5-min time axis."""
    out, t = [], T0
    for n, gap in runs:
        out.extend(t + i * C for i in range(n))
        t = t + (n + gap) * C
    return pd.DatetimeIndex(out)


def test_gap_blocks_and_day_blocks() -> None:
    times = _axis([(10, 0), (12, 7), (5, 2)])  # gap of 7 missing slots = 40 min between frames
    spec = SplitSpec(block="gap", gap="30min")
    blocks = make_blocks(times, spec)
    assert [len(b) for b in blocks] == [22, 5]  # a 2-slot hole (15 min) does not split
    days = make_blocks(
        pd.date_range("2024-01-01T22:00", periods=48, freq="5min"), SplitSpec(block="day")
    )
    assert [len(b) for b in days] == [24, 24]
    fixed = make_blocks(
        pd.date_range("2024-01-01", periods=30, freq="5min"), SplitSpec(block="fixed", length="1h")
    )
    assert [len(b) for b in fixed] == [12, 12, 6]


def test_too_few_blocks_for_k_says_what_to_change() -> None:
    times = _axis([(30, 10), (30, 0)])
    with pytest.raises(
        PlanError, match=r"at least 3 blocks for 3 folds but the data has 2.*lower splits.folds"
    ):
        make_splits(times, SplitSpec(folds=3), Geometry(2, 3, C), seed=0)


def test_blocks_too_short_for_a_window() -> None:
    times = _axis([(4, 10), (4, 10), (4, 0)])
    with pytest.raises(PlanError, match="long enough"):
        make_splits(times, SplitSpec(folds=2), Geometry(3, 3, C), seed=0)


def test_repetitions_differ_and_are_seeded() -> None:
    times = _axis([(20, 10)] * 8)
    spec = SplitSpec(folds=2, repetitions=3)
    _, a = make_splits(times, spec, Geometry(2, 2, C), seed=1)
    _, b = make_splits(times, spec, Geometry(2, 2, C), seed=1)
    assert [s.test_blocks for s in a] == [s.test_blocks for s in b]
    assert len({s.test_blocks for s in a}) > 2  # different assignments across repetitions
    _, c = make_splits(times, spec, Geometry(2, 2, C), seed=2)
    assert [s.test_blocks for s in a] != [s.test_blocks for s in c]


runs = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 30)), min_size=1, max_size=12)
specs = st.builds(
    SplitSpec,
    block=st.sampled_from(["gap", "day", "fixed"]),
    gap=st.sampled_from(["10min", "30min", "1h"]),
    length=st.sampled_from(["30min", "1h", "2h"]),
    folds=st.integers(2, 5),
    repetitions=st.integers(1, 3),
    embargo=st.sampled_from([None, "5min", "1h"]),
    validation_fraction=st.sampled_from([0.0, 0.3]),
    stride=st.integers(1, 3),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=runs,
    spec=specs,
    n_in=st.integers(1, 4),
    n_out=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    holes=st.integers(0, 3),
)
def test_no_training_window_overlaps_a_test_window(runs, spec, n_in, n_out, seed, holes) -> None:
    times = _axis(runs)
    if holes and len(times) > 3:  # random single missing frames inside runs
        drop = np.random.default_rng(seed).choice(
            len(times), size=min(holes, len(times) - 1), replace=False
        )
        times = times.delete(sorted(drop))
    geo = Geometry(n_in, n_out, C)
    try:
        blocks, splits = make_splits(times, spec, geo, seed, need_training=True)
    except PlanError:
        return  # the data cannot satisfy the plan: refused before any work, which is allowed
    emb = embargo_of(spec, geo)
    assert emb >= geo.window
    present = set(times)
    spans = [(b[0], b[-1]) for b in blocks]
    for s in splits:
        assert set(s.test_blocks).isdisjoint(s.train_blocks) and set(s.test_blocks).isdisjoint(
            s.val_blocks
        )
        for t in s.test_starts:  # each test window inside one test block, inputs present
            assert any(
                spans[b][0] <= t - geo.before and t + geo.after <= spans[b][1]
                for b in s.test_blocks
            )
            assert all(t - k * C in present for k in range(n_in))
        test_windows = [(t - geo.before, t + geo.after) for t in s.test_starts]
        for t in s.train_times.append(s.val_times):
            lo, hi = t - geo.before, t + geo.after
            assert all(t - k * C in present for k in range(n_in))
            for b in s.test_blocks:  # embargo between each training window and each test block
                assert hi + emb <= spans[b][0] or lo - emb >= spans[b][1]
            for tlo, thi in test_windows:  # hence no overlap with any test window
                assert hi < tlo or lo > thi
    for r in range(spec.repetitions):  # folds of one repetition partition the test blocks
        rep = [s for s in splits if s.repetition == r]
        assert sorted(b for s in rep for b in s.test_blocks) == list(range(len(blocks)))
