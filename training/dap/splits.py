"""Repeated blocked temporal splits with an embargo.

The time axis (the complete frames of the period) is cut into contiguous *blocks*:

- ``gap``: runs of frames separated by gaps longer than ``gap`` (events);
- ``day``: UTC calendar days;
- ``fixed``: consecutive blocks of ``length`` counted from the first frame.

For each of R repetitions the blocks are shuffled (seeded by ``(seed, repetition)``) and dealt
round-robin into K folds; each fold is the test set of one split, the other blocks train.

A *window* of init time ``t`` spans ``[t - (n_in - 1) * cadence, t + n_out * cadence]``
(inputs and the verifying observations). Test init times are those whose window lies inside
one test block with all input frames present. Training init times (windows handed to
``training.api.fit``) lie inside a training block with all input frames present and keep
an *embargo* of at least ``(n_in + n_out) * cadence`` between their window and every test
block, so no training window overlaps or touches a test window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.dap.plan import PlanError, SplitSpec


@dataclass(frozen=True)
class Geometry:
    """Window geometry: input frames, output steps, cadence."""

    n_in: int
    n_out: int
    cadence: pd.Timedelta

    @property
    def before(self) -> pd.Timedelta:
        """Time from the first input frame to the init time."""
        return (self.n_in - 1) * self.cadence

    @property
    def after(self) -> pd.Timedelta:
        """Time from the init time to the last verifying frame."""
        return self.n_out * self.cadence

    @property
    def window(self) -> pd.Timedelta:
        """The input + output window, the minimum embargo."""
        return (self.n_in + self.n_out) * self.cadence


@dataclass(frozen=True)
class Split:
    """One split: test fold ``fold`` of repetition ``repetition``."""

    index: int
    repetition: int
    fold: int
    test_blocks: tuple[int, ...]
    train_blocks: tuple[int, ...]
    val_blocks: tuple[int, ...]
    test_starts: pd.DatetimeIndex
    train_times: pd.DatetimeIndex
    val_times: pd.DatetimeIndex

    def describe(self) -> dict[str, object]:
        """JSON-able summary (for the ledger)."""

        def rng(t: pd.DatetimeIndex) -> list[str] | None:
            return [t[0].isoformat(), t[-1].isoformat()] if len(t) else None

        return {
            "split": self.index,
            "repetition": self.repetition,
            "fold": self.fold,
            "test_blocks": list(self.test_blocks),
            "train_blocks": list(self.train_blocks),
            "val_blocks": list(self.val_blocks),
            "n_test_starts": len(self.test_starts),
            "n_train_times": len(self.train_times),
            "n_val_times": len(self.val_times),
            "test_range": rng(self.test_starts),
            "test_starts_hash": times_hash(self.test_starts),
        }


def times_hash(times: pd.DatetimeIndex) -> str:
    """SHA-256 of the int64 nanosecond values of ``times``."""
    import hashlib

    return hashlib.sha256(np.asarray(times.asi8, dtype="<i8").tobytes()).hexdigest()


def make_blocks(times: pd.DatetimeIndex, spec: SplitSpec) -> list[pd.DatetimeIndex]:
    """Cut sorted unique ``times`` into contiguous blocks according to ``spec.block``."""
    times = pd.DatetimeIndex(times).as_unit("ns").sort_values().unique()
    if len(times) == 0:
        return []
    if spec.block == "gap":
        gap = pd.Timedelta(spec.gap)
        cut = np.nonzero(np.diff(times.asi8) > gap.value)[0] + 1
        labels = np.zeros(len(times), dtype=np.int64)
        labels[cut] = 1
        labels = np.cumsum(labels)
    elif spec.block == "day":
        labels = times.floor("D").asi8
    else:
        length = pd.Timedelta(spec.length)
        labels = (times.asi8 - times.asi8[0]) // length.value
    _, first = np.unique(labels, return_index=True)
    bounds = list(np.sort(first)) + [len(times)]
    return [times[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _starts_in_block(block: pd.DatetimeIndex, present: set[int], geo: Geometry) -> pd.DatetimeIndex:
    """Init times whose window lies inside ``block`` with every input frame present."""
    lo, hi = block[0], block[-1]
    c = geo.cadence.value
    out = []
    for t in block:
        if t - geo.before < lo or t + geo.after > hi:
            continue
        if all((t.value - k * c) in present for k in range(geo.n_in)):
            out.append(t)
    return pd.DatetimeIndex(out).as_unit("ns")


def make_splits(
    times: pd.DatetimeIndex,
    spec: SplitSpec,
    geo: Geometry,
    seed: int,
    *,
    need_training: bool = False,
) -> tuple[list[pd.DatetimeIndex], list[Split]]:
    """Blocks and the K x R splits; raises PlanError when the data cannot satisfy ``spec``.

    ``times``: the complete frames of the period (sorted). ``need_training``: learned
    methods need training (and validation, when ``validation_fraction`` > 0) init times.
    """
    times = pd.DatetimeIndex(times).as_unit("ns").sort_values().unique()
    blocks = make_blocks(times, spec)
    k = spec.folds
    if len(blocks) < k:
        raise PlanError(
            f"split scheme needs at least {k} blocks for {k} folds but the data has {len(blocks)} "
            f"(block = {spec.block!r}{', gap ' + spec.gap if spec.block == 'gap' else ''}"
            f"{', length ' + spec.length if spec.block == 'fixed' else ''}); "
            "lower splits.folds, use a smaller block (block = 'fixed' with a shorter length, or a shorter gap) "
            "or widen data.start/data.end"
        )
    embargo = max(pd.Timedelta(spec.embargo) if spec.embargo else pd.Timedelta(0), geo.window)
    present = set(times.asi8.tolist())
    starts = [_starts_in_block(b, present, geo) for b in blocks]
    spans = [(b[0], b[-1]) for b in blocks]
    empty = [i for i, s in enumerate(starts) if len(s) == 0]
    if len(empty) == len(blocks):
        raise PlanError(
            f"no block is long enough for one window of {geo.n_in} input frames + {geo.n_out} lead steps "
            f"({geo.window}); use longer blocks or shorter scores.leads"
        )

    splits: list[Split] = []
    for r in range(spec.repetitions):
        rng = np.random.default_rng([seed, r])
        order = rng.permutation(len(blocks))
        folds = [sorted(int(b) for b in order[f::k]) for f in range(k)]
        for f, test_blocks in enumerate(folds):
            test_starts = _union([starts[b] for b in test_blocks], times.dtype)
            if spec.stride > 1:
                test_starts = test_starts[:: spec.stride]
            if len(test_starts) == 0:
                raise PlanError(
                    f"split {len(splits)} (repetition {r}, fold {f}): its test blocks {test_blocks} hold no "
                    f"complete window of {geo.window}; use fewer folds or longer blocks"
                )
            others = [b for b in range(len(blocks)) if b not in test_blocks]
            n_val = int(round(spec.validation_fraction * len(others))) if need_training else 0
            if need_training and spec.validation_fraction > 0 and len(others) > 1:
                n_val = max(1, min(n_val, len(others) - 1))
            val_blocks = sorted(int(b) for b in rng.permutation(others)[:n_val]) if n_val else []
            train_blocks = [b for b in others if b not in val_blocks]

            test_spans = [spans[b] for b in test_blocks]
            train_times = _embargoed([starts[b] for b in train_blocks], test_spans, geo, embargo)
            val_times = _embargoed([starts[b] for b in val_blocks], test_spans, geo, embargo)
            if need_training and len(train_times) == 0:
                raise PlanError(
                    f"split {len(splits)} (repetition {r}, fold {f}): no training window is left after the "
                    f"embargo of {embargo}; use more data, fewer folds or shorter blocks"
                )
            splits.append(
                Split(
                    index=len(splits),
                    repetition=r,
                    fold=f,
                    test_blocks=tuple(test_blocks),
                    train_blocks=tuple(train_blocks),
                    val_blocks=tuple(val_blocks),
                    test_starts=test_starts,
                    train_times=train_times,
                    val_times=val_times,
                )
            )
    return blocks, splits


def _embargoed(
    parts: list[pd.DatetimeIndex],
    test_spans: list[tuple[pd.Timestamp, pd.Timestamp]],
    geo: Geometry,
    embargo: pd.Timedelta,
) -> pd.DatetimeIndex:
    """Init times of ``parts`` whose window keeps ``embargo`` from every test block span."""
    idx = _union(parts, None)
    keep = np.ones(len(idx), dtype=bool)
    first = (idx - geo.before).asi8
    last = (idx + geo.after).asi8
    for lo, hi in test_spans:
        keep &= (last + embargo.value <= lo.value) | (first - embargo.value >= hi.value)
    return idx[keep]


def _union(parts: list[pd.DatetimeIndex], dtype: object) -> pd.DatetimeIndex:
    if not parts:
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    vals = np.unique(np.concatenate([p.as_unit("ns").asi8 for p in parts]))
    return pd.DatetimeIndex(vals.astype("datetime64[ns]"))


def embargo_of(spec: SplitSpec, geo: Geometry) -> pd.Timedelta:
    """The embargo actually applied: the plan's, but at least the input + output window."""
    return max(pd.Timedelta(spec.embargo) if spec.embargo else pd.Timedelta(0), geo.window)
