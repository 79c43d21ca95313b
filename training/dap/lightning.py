"""Lightning targets of a DAP run: CSI against a persistence baseline, reliability, Brier skill.

Reads the ``results.json`` of a run (:mod:`training.dap.results`; the ``*_pooled`` lightning
scores are those of the contingency tables and Brier sums pooled over the test folds of the
first repetition, every test case once) and writes ``lightning-summary.json`` beside it:

- ``csi``: lightning CSI per method and lead (event: >= ``lightning_occurrence`` flashes in a
  cell during the interval ending at the lead; forecast "yes": probability >= the plan's
  ``lightning_probability``) and the relative improvement of ``model`` over ``baseline`` at
  ``lead`` minutes (target: >= ``TARGET_CSI_GAIN``);
- ``reliability``: per lead, the bins of the reliability diagram that hold at least
  ``min_share`` of that lead's cases, with |mean forecast - observed frequency|; the maximum
  over leads (target: <= ``TARGET_RELIABILITY``);
- ``bss``: Brier skill score per lead against the climatology of the evaluated cases
  (the base rate of each lead).

    python -m training.dap.lightning results/synthetic-lightning [--model convlstm --baseline persistence]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: issue 12: lightning CSI at 30 min at least 75 % above Eulerian persistence
TARGET_CSI_GAIN = 0.75
#: issue 12: maximum reliability error for bins holding >= 1 % of the samples
TARGET_RELIABILITY = 0.03
SUMMARY_NAME = "lightning-summary.json"


def _var(doc: dict[str, Any], name: str) -> np.ndarray:
    try:
        return np.asarray(doc["data_vars"][name]["data"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"results have no {name!r}: run the plan with scores.lightning = true (and a current harness)") from exc


def lightning_summary(doc: dict[str, Any], *, model: str = "convlstm", baseline: str = "persistence", lead: float = 30.0, min_share: float = 0.01) -> dict[str, Any]:
    """The summary of one results.json document (see the module docstring)."""
    coords = doc["coords"]
    methods = list(coords["method"]["data"])
    leads = [float(v) for v in coords["lead_time"]["data"]]
    for m in (model, baseline):
        if m not in methods:
            raise ValueError(f"method {m!r} is not in the results; methods: {', '.join(methods)}")
    if lead not in leads:
        raise ValueError(f"lead {lead:g} min is not scored; leads: {leads}")
    mi, bi, li = methods.index(model), methods.index(baseline), leads.index(lead)
    csi = _var(doc, "lightning_csi_pooled")
    bss = _var(doc, "bss_pooled")
    brier = _var(doc, "brier_pooled")
    fc, ob, n = _var(doc, "reliability_forecast"), _var(doc, "reliability_observed"), _var(doc, "reliability_count")
    base_rate = _var(doc, "lightning_base_rate")
    # relative gain; undefined (None) when the baseline's CSI is 0: then the target is met when
    # the model's CSI is positive (any positive CSI is more than 75 % above 0)
    gain = float(csi[mi, li] / csi[bi, li] - 1.0) if csi[bi, li] > 0 else None
    gain_met = bool(gain >= TARGET_CSI_GAIN) if gain is not None else bool(csi[mi, li] > 0)
    bins = np.asarray(coords["prob_bin"]["data"], dtype=np.float64)
    width = 1.0 / len(bins)
    rel_rows, worst = [], 0.0
    for k, lt in enumerate(leads):
        total = n[mi, k].sum()
        for b in range(len(bins)):
            if total > 0 and n[mi, k, b] >= min_share * total:
                err = abs(fc[mi, k, b] - ob[mi, k, b])
                worst = max(worst, float(err))
                rel_rows.append({"lead_minutes": lt, "bin": [round(b * width, 6), round((b + 1) * width, 6)], "share": float(n[mi, k, b] / total), "forecast": float(fc[mi, k, b]), "observed": float(ob[mi, k, b]), "error": float(err)})

    def per_lead(a: np.ndarray) -> dict[str, list[float | None]]:
        return {m: [None if not np.isfinite(v) else float(v) for v in a[i]] for i, m in enumerate(methods)}

    attrs = doc.get("attrs", {})
    return {
        "plan": attrs.get("plan_name"),
        "plan_hash": attrs.get("plan_hash"),
        "store": attrs.get("store"),
        "period": attrs.get("period"),
        "n_splits": attrs.get("n_splits"),
        "event": f">= {attrs.get('lightning_occurrence', 1.0):g} flash in a grid cell during the store interval ending at the lead time",
        "probability_threshold": attrs.get("lightning_probability_threshold"),
        "model": model,
        "baseline": baseline,
        "lead_minutes": leads,
        "csi": per_lead(csi),
        "brier": per_lead(brier),
        "bss": per_lead(bss),
        "base_rate": [float(v) for v in base_rate[mi]],
        "reliability_table": [
            {"lead_minutes": lt, "bins": [{"bin": [round(b * width, 6), round((b + 1) * width, 6)], "count": int(n[mi, k, b]), "forecast": float(fc[mi, k, b]), "observed": float(ob[mi, k, b])} for b in range(len(bins)) if n[mi, k, b] > 0]}
            for k, lt in enumerate(leads)
        ],
        "targets": {
            "csi_gain_at_lead": {"lead_minutes": lead, "model": float(csi[mi, li]), "baseline": float(csi[bi, li]), "gain": gain, "target": TARGET_CSI_GAIN, "met": gain_met},
            "max_reliability_error": {"min_share": min_share, "value": worst, "target": TARGET_RELIABILITY, "met": bool(worst <= TARGET_RELIABILITY), "bins": rel_rows},
        },
    }


def write_summary(results_dir: Path, **kwargs: Any) -> Path:
    """Read ``results_dir/results.json``, write ``results_dir/lightning-summary.json``; returns its path."""
    doc = json.loads((Path(results_dir) / "results.json").read_text())
    out = Path(results_dir) / SUMMARY_NAME
    out.write_text(json.dumps(lightning_summary(doc, **kwargs), indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.lightning", description=__doc__.split("\n\n")[0])
    p.add_argument("results_dir", type=Path)
    p.add_argument("--model", default="convlstm")
    p.add_argument("--baseline", default="persistence")
    p.add_argument("--lead", type=float, default=30.0, help="minutes")
    args = p.parse_args(argv)
    path = write_summary(args.results_dir, model=args.model, baseline=args.baseline, lead=args.lead)
    t = json.loads(path.read_text())["targets"]
    c = t["csi_gain_at_lead"]
    gain = "undefined (baseline CSI 0)" if c["gain"] is None else f"{c['gain']:+.0%}"
    sys.stdout.write(
        f"{path}: CSI at {c['lead_minutes']:g} min {c['model']:.3f} vs {c['baseline']:.3f}, gain {gain} (target >= +{TARGET_CSI_GAIN:.0%}, met: {c['met']}), "
        f"max reliability error {t['max_reliability_error']['value']:.4f} (target <= {TARGET_RELIABILITY})\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
