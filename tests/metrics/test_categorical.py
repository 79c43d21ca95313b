"""Contingency tables: hand-computed values, NaN masking, degenerate cases, pysteps agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nowcast.metrics import ContingencyTable, scores_from_counts


def _fields(h: int, m: int, f: int, r: int, thr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One lead, 1 x N fields producing the table (h, m, f, r) at ``thr``."""
    hi, lo = thr + 1.0, thr - 0.5
    fc = np.array([hi] * h + [lo] * m + [hi] * f + [lo] * r)
    ob = np.array([hi] * h + [hi] * m + [lo] * f + [lo] * r)
    return fc[None, None, :], ob[None, None, :]


def test_hand_computed_2x2_table() -> None:
    fc, ob = _fields(50, 20, 30, 900)
    t = ContingencyTable.init([1.0], n_leads=1)
    t.accumulate(fc, ob)
    assert (t.hits[0, 0], t.misses[0, 0], t.false_alarms[0, 0], t.correct_negatives[0, 0]) == (
        50,
        20,
        30,
        900,
    )
    s = {k: float(v[0, 0]) for k, v in t.compute().items()}
    assert s["csi"] == pytest.approx(0.5)
    assert s["pod"] == pytest.approx(50 / 70)
    assert s["far"] == pytest.approx(0.375)
    assert s["bias"] == pytest.approx(80 / 70)
    # HSS = 2(HR - FM) / ((H+M)(M+R) + (H+F)(F+R)) = 2(45000 - 600) / (70*920 + 80*930)
    assert s["hss"] == pytest.approx(88800 / 138800)
    # random hits = 70*80/1000 = 5.6 -> ETS = 44.4 / 94.4
    assert s["ets"] == pytest.approx(44.4 / 94.4)
    assert s["mcc"] == pytest.approx(44400 / math.sqrt(80 * 70 * 930 * 920))


def test_perfect_forecast_scores_one() -> None:
    s = scores_from_counts(10, 0, 0, 90)
    for k in ("csi", "pod", "bias", "hss", "ets", "mcc"):
        assert float(s[k]) == pytest.approx(1.0), k
    assert float(s["far"]) == 0.0


def test_no_events_gives_nan_not_zero() -> None:
    t = ContingencyTable.init([5.0], n_leads=2)
    dry = np.zeros((2, 4, 4))
    t.accumulate(dry, dry)
    s = t.compute()
    for k in ("csi", "pod", "far", "bias", "hss", "ets", "mcc"):
        assert np.all(np.isnan(s[k])), k
    assert t.correct_negatives.tolist() == [[16], [16]]


def test_empty_table_is_nan() -> None:
    s = ContingencyTable.init([1.0, 2.0], n_leads=3).compute()
    assert s["csi"].shape == (3, 2) and np.isnan(s["csi"]).all()


def test_nan_observations_are_masked_not_dry() -> None:
    fc = np.full((1, 2, 2), 3.0)
    ob = np.array([[[np.nan, np.nan], [3.0, 0.0]]])
    t = ContingencyTable.init([1.0], n_leads=1)
    t.accumulate(fc, ob)
    assert (t.hits[0, 0], t.false_alarms[0, 0], t.misses[0, 0], t.correct_negatives[0, 0]) == (
        1,
        1,
        0,
        0,
    )
    fc2 = np.array([[[np.nan, 0.0], [0.0, 0.0]]])
    t2 = ContingencyTable.init([1.0], n_leads=1)
    t2.accumulate(fc2, np.full((1, 2, 2), 2.0))
    assert int(t2.misses[0, 0]) == 3  # the NaN forecast cell is not a miss


def test_merge_equals_pooled_accumulation() -> None:
    rng = np.random.default_rng(1)
    cases = [(rng.gamma(0.5, 3.0, (3, 8, 8)), rng.gamma(0.5, 3.0, (3, 8, 8))) for _ in range(6)]
    pooled = ContingencyTable.init([0.5, 2.0], 3)
    parts = [ContingencyTable.init([0.5, 2.0], 3) for _ in range(3)]
    for i, (f, o) in enumerate(cases):
        pooled.accumulate(f, o)
        parts[i % 3].accumulate(f, o)
    merged = parts[2]
    merged.merge(parts[0])
    merged.merge(parts[1])
    assert merged == pooled
    rt = ContingencyTable.from_dict(pooled.to_dict())
    assert rt == pooled


def test_merge_rejects_other_thresholds() -> None:
    a = ContingencyTable.init([1.0], 2)
    with pytest.raises(ValueError, match="thresholds"):
        a.merge(ContingencyTable.init([2.0], 2))


def test_shape_mismatch_is_an_error() -> None:
    t = ContingencyTable.init([1.0], 2)
    with pytest.raises(ValueError, match="shape"):
        t.accumulate(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


def test_scores_not_averaged_per_case() -> None:
    """Pooled CSI differs from the mean of per-case CSIs: the table is what gets pooled."""
    a = ContingencyTable.init([1.0], 1)
    fa, oa = _fields(1, 0, 0, 1)
    fb, ob = _fields(1, 9, 0, 0)
    a.accumulate(fa, oa)
    a.accumulate(fb, ob)
    assert float(a.compute()["csi"][0, 0]) == pytest.approx(2 / 11)


def test_agrees_with_pysteps_detcat() -> None:
    from pysteps.verification.detcatscores import (
        det_cat_fct_accum,
        det_cat_fct_compute,
        det_cat_fct_init,
        det_cat_fct_merge,
    )

    rng = np.random.default_rng(42)
    thresholds = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0]
    n_leads = 2
    cases = []
    for _ in range(4):
        f = rng.gamma(0.6, 4.0, (n_leads, 20, 24))
        o = rng.gamma(0.6, 4.0, (n_leads, 20, 24))
        o[:, :3] = np.nan  # outside coverage
        f[:, -1, :5] = np.nan
        cases.append((f, o))
    ours = ContingencyTable.init(thresholds, n_leads)
    for f, o in cases:
        ours.accumulate(f, o)
    got = ours.compute()
    names = ["CSI", "POD", "FAR", "BIAS", "HSS", "ETS", "MCC"]
    for j, thr in enumerate(thresholds):
        for k in range(n_leads):
            tabs = []
            for f, o in cases:
                tab = det_cat_fct_init(thr)
                # pysteps counts NaN as "no event" (a correct negative): give it the valid cells only
                ok = np.isfinite(f[k]) & np.isfinite(o[k])
                det_cat_fct_accum(tab, f[k][ok], o[k][ok])
                tabs.append(tab)
            pooled = tabs[0]
            for other in tabs[1:]:
                pooled = det_cat_fct_merge(pooled, other)
            ref = det_cat_fct_compute(pooled, names)
            assert int(ours.hits[k, j]) == int(pooled["hits"])
            assert int(ours.correct_negatives[k, j]) == int(pooled["correct_negatives"])
            for name in names:
                r = float(ref[name])
                if np.isfinite(r):
                    assert got[name.lower()][k, j] == pytest.approx(r), (name, thr)
                elif name != "ETS":  # pysteps gives inf or nan for a zero denominator; ours NaN
                    # (pysteps' ETS goes through POD and is NaN with no observed events even when
                    # the definition (H - Hr) / (H + M + F - Hr) = 0 / F is defined: ours gives 0)
                    assert np.isnan(got[name.lower()][k, j]), (name, thr)


def test_pysteps_would_count_nan_as_dry_we_do_not() -> None:
    from pysteps.verification.detcatscores import det_cat_fct_accum, det_cat_fct_init

    f = np.zeros((1, 10, 10))
    o = np.full((1, 10, 10), np.nan)
    o[0, 0, 0] = 0.0
    tab = det_cat_fct_init(1.0)
    det_cat_fct_accum(tab, f[0], o[0])
    ours = ContingencyTable.init([1.0], 1)
    ours.accumulate(f, o)
    assert int(tab["correct_negatives"]) == 100
    assert int(ours.correct_negatives[0, 0]) == 1
