"""Recompute one split recorded in a ledger and check that the numbers are identical.

The plan is taken from the ledger (its hash re-checked), the split re-derived from the store
(its test start times must hash the same), the split re-run and compared with the recorded
data fingerprint, streaming states (exact equality of every count and float64 sum) and, for
learned methods, checkpoint hashes. On CPU the numbers must be bit-identical.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nowcast.metrics import ScoreSuite
from training.dap.ledger import Ledger, LedgerError
from training.dap.plan import Plan, plan_hash
from training.dap.runner import SplitTask, prepare, run_split


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`: ``identical`` and a one-line ``summary``; ``differences`` lists all."""

    split: int
    identical: bool
    summary: str
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify(ledger_path: str | Path, split_index: int, *, device: str | None = None) -> VerifyResult:
    """Recompute split ``split_index`` of the latest run in ``ledger_path`` and compare."""
    ledger = Ledger(ledger_path)
    plan_rec, split_recs, _ = ledger.last_run()
    if split_index not in split_recs:
        have = sorted(split_recs)
        raise LedgerError(
            f"{ledger.path}: no record of split {split_index}; recorded splits: {have or 'none'}"
        )
    rec = split_recs[split_index]
    plan = Plan.model_validate(plan_rec["plan"])
    ph = plan_hash(plan)
    if ph != plan_rec["plan_hash"]:
        raise LedgerError(
            f"{ledger.path}: the recorded plan hashes to {ph[:12]}, not {plan_rec['plan_hash'][:12]}"
        )
    prepared = prepare(plan)
    diffs: list[str] = []
    split = next((s for s in prepared.splits if s.index == split_index), None)
    if split is None:
        return VerifyResult(
            split_index,
            False,
            f"split {split_index}: DIFFERS: the data now yields {len(prepared.splits)} splits",
            ["splits"],
        )
    if split.describe()["test_starts_hash"] != rec["definition"]["test_starts_hash"]:
        diffs.append("test start times")
    dev = device or plan_rec.get("run", {}).get("device", "cpu")
    with tempfile.TemporaryDirectory(prefix="nowcast-verify-") as tmp:
        task = SplitTask(
            plan.model_dump_json(),
            split,
            prepared.geometry,
            prepared.lead_steps,
            tmp,
            dev,
            keep_example=False,
        )
        new = run_split(task)
    if new["data_fingerprint"] != rec["data_fingerprint"]:
        diffs.append(
            f"data fingerprint {rec['data_fingerprint'][:12]} -> {new['data_fingerprint'][:12]}"
        )
    for label, old_state in rec["states"].items():
        if label not in new["states"]:
            diffs.append(f"{label}: missing")
            continue
        d = ScoreSuite.from_dict(new["states"][label]).diff(ScoreSuite.from_dict(old_state))
        diffs.extend(f"{label}: {x}" for x in d)
    notes: list[str] = []
    for label, ck in rec.get("checkpoints", {}).items():
        new_ck = new["checkpoints"].get(label, {})
        if new_ck.get("sha256") != ck.get("sha256"):
            # checkpoint files may carry timestamps/paths; the scores decide, this is a note
            notes.append(
                f"{label}: checkpoint file {str(ck.get('sha256'))[:12]} -> {str(new_ck.get('sha256'))[:12]}"
            )
    n_methods = len(rec["states"])
    if diffs:
        shown = "; ".join(diffs[:6]) + (
            f"; ... ({len(diffs)} differences)" if len(diffs) > 6 else ""
        )
        summary = f"split {split_index}: DIFFERS ({shown})"
    else:
        summary = (
            f"split {split_index}: identical ({n_methods} methods, {new['n_forecasts']} forecasts, "
            f"data {new['data_fingerprint'][:12]}, plan {ph[:12]})"
        )
    return VerifyResult(split_index, not diffs, summary, diffs, notes)
