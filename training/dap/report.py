"""The skill report: ``OUT/report/index.html`` with PNG figures beside it (self-contained, no CDN).

Sections: plan (canonical JSON + hash), data used, CSI and MCC vs lead time per threshold with
interval bands for every method, FSS, MAE/RMSE, the paired-difference table against the
baseline, example forecast panels next to the observations (radar rain colour scale of
:mod:`nowcast.plotting`), lightning scores and reliability, and the ledger summary. Every
figure and the page carry the plan hash.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast import dims
from training.dap.plan import canonical_json

log = logging.getLogger(__name__)

#: valid range of a score, for clipping interval bands and axes
RANGES = {
    "mae": (0.0, np.inf),
    "rmse": (0.0, np.inf),
    "csi": (0.0, 1.0),
    "pod": (0.0, 1.0),
    "far": (0.0, 1.0),
    "ets": (-1 / 3, 1.0),
    "hss": (-1.0, 1.0),
    "mcc": (-1.0, 1.0),
    "fss": (0.0, 1.0),
    "lightning_csi": (0.0, 1.0),
    "brier": (0.0, 1.0),
}

COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
)


def _lead_minutes(ds: xr.Dataset) -> np.ndarray:
    return ds[dims.LEAD_TIME].values / np.timedelta64(1, "m")


def _save(fig: Any, path: Path, plan_hash: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.text(
        0.995, 0.003, f"plan {plan_hash[:12]}", ha="right", va="bottom", fontsize=6, color="#888888"
    )
    fig.savefig(path, format="png", dpi=100, metadata={"Comment": f"nowcast DAP plan {plan_hash}"})
    return path.name


def _line_band(
    ax: Any, lm: np.ndarray, s: xr.DataArray, color: str, label: str, score: str
) -> None:
    """Mean line and interval band, both clipped to the score's valid range."""
    lo_b, hi_b = RANGES.get(score, (-np.inf, np.inf))
    mean = s.sel(stat="mean").values
    ax.plot(lm, mean, "-o", ms=3, color=color, label=label)
    lo = np.clip(s.sel(stat="lo").values, lo_b, hi_b)
    hi = np.clip(s.sel(stat="hi").values, lo_b, hi_b)
    ax.fill_between(lm, lo, hi, color=color, alpha=0.18, lw=0)
    if np.isfinite(hi_b):
        ax.set_ylim(lo_b - 0.02 * (hi_b - lo_b), hi_b + 0.02 * (hi_b - lo_b))


def skill_figure(ds: xr.Dataset, score: str, out: Path) -> str:
    """``score`` (categorical) vs lead time, one panel per threshold, mean + interval band per method."""
    from matplotlib.figure import Figure

    thr = ds["threshold"].values
    ncol = min(3, len(thr))
    nrow = int(np.ceil(len(thr) / ncol))
    fig = Figure(figsize=(4.2 * ncol, 3.0 * nrow))
    lm = _lead_minutes(ds)
    summ = ds[f"{score}_summary"]
    for i, t in enumerate(thr):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for j, m in enumerate(ds["method"].values):
            s = summ.sel({"method": m}).sel(threshold=t)
            c = COLORS[j % len(COLORS)]
            _line_band(ax, lm, s, c, str(m), score)
        ax.set_title(f"{score.upper()} >= {t:g} mm/h", fontsize=10)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"{score.upper()}: mean over {ds.sizes['split']} splits, {ds.attrs['interval']:.0%} interval",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, out / f"skill_{score}.png", ds.attrs["plan_hash"])


def fss_figure(ds: xr.Dataset, out: Path) -> str:
    """FSS vs lead time per FSS threshold (one line per method and scale)."""
    from matplotlib.figure import Figure

    thr = ds["fss_threshold"].values
    fig = Figure(figsize=(4.2 * len(thr), 3.0))
    lm = _lead_minutes(ds)
    styles = ("-", "--", ":", "-.")
    for i, t in enumerate(thr):
        ax = fig.add_subplot(1, len(thr), i + 1)
        for j, m in enumerate(ds["method"].values):
            for k, sc in enumerate(ds["scale"].values):
                v = ds["fss_summary"].sel(
                    {"stat": "mean", "method": m, "fss_threshold": t, "scale": sc}
                )
                ax.plot(
                    lm, v, styles[k % 4], color=COLORS[j % len(COLORS)], label=f"{m}, {sc} cells"
                )
        ax.set_title(f"FSS >= {t:g} mm/h", fontsize=10)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, out / "skill_fss.png", ds.attrs["plan_hash"])


def error_figure(ds: xr.Dataset, out: Path) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 3.0))
    lm = _lead_minutes(ds)
    for i, score in enumerate(("mae", "rmse")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, m in enumerate(ds["method"].values):
            s = ds[f"{score}_summary"].sel({"method": m})
            c = COLORS[j % len(COLORS)]
            _line_band(ax, lm, s, c, str(m), score)
        ax.set_title(f"{score.upper()} (mm/h)", fontsize=10)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "skill_errors.png", ds.attrs["plan_hash"])


def lightning_figure(ds: xr.Dataset, out: Path) -> str | None:
    """Lightning: reliability diagram (all leads pooled) and CSI/MCC/Brier vs lead time."""
    from matplotlib.figure import Figure

    if "reliability_count" not in ds:
        return None
    fig = Figure(figsize=(12.6, 3.4))
    ax = fig.add_subplot(1, 3, 1)
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8)
    for j, m in enumerate(ds["method"].values):
        cnt = ds["reliability_count"].sel({"method": m}).values
        fsum = np.nansum(ds["reliability_forecast"].sel({"method": m}).values * cnt, axis=0)
        osum = np.nansum(ds["reliability_observed"].sel({"method": m}).values * cnt, axis=0)
        n = cnt.sum(axis=0)
        ok = n > 0
        ax.plot(
            fsum[ok] / n[ok],
            osum[ok] / n[ok],
            "-o",
            ms=3,
            color=COLORS[j % len(COLORS)],
            label=str(m),
        )
    ax.set_xlabel("forecast probability", fontsize=8)
    ax.set_ylabel("observed frequency", fontsize=8)
    ax.set_title(
        f"lightning reliability (>= {ds.attrs['lightning_occurrence']:g} flash)", fontsize=10
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    lm = _lead_minutes(ds)
    for k, score in enumerate(("lightning_csi", "brier")):
        ax = fig.add_subplot(1, 3, k + 2)
        for j, m in enumerate(ds["method"].values):
            s = ds[f"{score}_summary"].sel({"method": m})
            c = COLORS[j % len(COLORS)]
            _line_band(ax, lm, s, c, str(m), score)
        ax.set_title(score.replace("_", " ").upper(), fontsize=10)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / "lightning.png", ds.attrs["plan_hash"])


def example_figure(example: dict[str, Any], split: int, out: Path, plan_hash: str) -> str:
    """Observed and forecast rain-rate panels (rows: observed + methods; columns: leads)."""
    from matplotlib.figure import Figure

    from nowcast.plotting import mpl_colormap

    cmap, norm = mpl_colormap("rain")
    rows = [("observed", example["observed"])] + list(example["forecasts"].items())
    ncol = len(example["leads_min"]) + 1
    fig = Figure(figsize=(2.3 * ncol, 2.3 * len(rows) + 0.4))
    im = None
    for r, (name, arr) in enumerate(rows):
        for c in range(ncol):
            ax = fig.add_subplot(len(rows), ncol, r * ncol + c + 1)
            if c == 0:
                field = example["init"] if r == 0 else None
                title = f"init {example['init_time'][:16]}" if r == 0 else ""
            else:
                field = arr[c - 1]
                title = f"+{example['leads_min'][c - 1]} min" if r == 0 else ""
            if field is not None:
                ax.imshow(
                    np.where(np.isnan(field), 1.0, np.nan),
                    cmap="Greys",
                    vmin=0,
                    vmax=4,
                    interpolation="nearest",
                )
                im = ax.imshow(field, cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if title:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if field is None:
                ax.axis("off")
                ax.text(
                    0.5, 0.5, name, ha="center", va="center", fontsize=9, transform=ax.transAxes
                )
    if im is not None:
        cb = fig.colorbar(im, ax=fig.axes, fraction=0.02, pad=0.01)
        cb.set_label("rain rate (mm/h)", fontsize=8)
        cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"split {split}: wettest test case (grey: no coverage)", fontsize=9)
    return _save(fig, out / f"example_split{split:03d}.png", plan_hash)


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def paired_table(ds: xr.Dataset, scores: tuple[str, ...] = ("csi", "mcc")) -> str:
    """HTML table: method - baseline difference, its interval and wins, per score/threshold/lead."""
    base = ds.attrs["baseline"]
    lm = _lead_minutes(ds)
    want = [i for i, m in enumerate(lm) if m in (15, 30, 60) or i in (0, len(lm) - 1)]
    head = "".join(f"<th>+{lm[i]:g} min</th>" for i in want)
    rows = []
    for m in ds["method"].values:
        if m == base:
            continue
        for score in scores:
            for t in ds["threshold"].values:
                p = ds[f"{score}_paired"].sel({"method": m}).sel(threshold=t)
                cells = []
                for i in want:
                    q = p.isel({dims.LEAD_TIME: i})
                    d, lo, hi = (float(q.sel(paired=k)) for k in ("diff", "lo", "hi"))
                    wins, n = int(q.sel(paired="wins")), int(q.sel(paired="n"))
                    cls = "pos" if lo > 0 else "neg" if hi < 0 else ""
                    cells.append(
                        f"<td class='{cls}'>{_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]<br><small>won {wins}/{n}</small></td>"
                    )
                rows.append(
                    f"<tr><td>{html.escape(str(m))}</td><td>{score.upper()}</td><td>{t:g}</td>{''.join(cells)}</tr>"
                )
    if not rows:
        return "<p>Only the baseline was evaluated.</p>"
    return (
        f"<table><tr><th>method</th><th>score</th><th>threshold (mm/h)</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def write_report(
    out_dir: Path,
    prepared: Any,
    ds: xr.Dataset,
    split_results: list[dict[str, Any]],
    *,
    ledger_path: Path,
    wall_s: float,
    mode: str,
) -> Path:
    """Write ``out_dir/report/index.html`` and its PNG figures; returns the HTML path."""
    out = Path(out_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    plan = prepared.plan
    ph = prepared.plan_hash
    figs: list[tuple[str, str]] = []
    figs.append(("CSI vs lead time", skill_figure(ds, "csi", out)))
    figs.append(("MCC vs lead time", skill_figure(ds, "mcc", out)))
    figs.append(("FSS vs lead time", fss_figure(ds, out)))
    figs.append(("MAE and RMSE vs lead time", error_figure(ds, out)))
    light = lightning_figure(ds, out) if plan.scores.lightning else None
    examples = []
    for res in split_results[: plan.run.examples]:
        if res.get("example"):
            examples.append(example_figure(res["example"], res["split"], out, ph))

    info = prepared.store_info
    blocks = "".join(
        f"<tr><td>{i}</td><td>{b[0]}</td><td>{b[1]}</td><td>{b[2]}</td></tr>"
        for i, b in enumerate(info["blocks"])
    )
    split_rows = "".join(
        "<tr>"
        f"<td>{r['split']}</td><td>{r['repetition']}</td><td>{r['fold']}</td>"
        f"<td>{','.join(map(str, r['definition']['test_blocks']))}</td>"
        f"<td>{r['n_forecasts']}</td><td>{r['definition']['n_train_times']}</td>"
        f"<td><code>{r['data_fingerprint'][:16]}</code></td>"
        f"<td>{r['timings']['total_s']:.1f}</td><td>{sum(r['timings']['train_s'].values()):.1f}</td>"
        "</tr>"
        for r in split_results
    )
    method_rows = "".join(
        f"<tr><td>{html.escape(m.label)}</td><td>{html.escape(m.model)}</td><td><code>{html.escape(json.dumps(m.options))}</code></td>"
        f"<td>{'yes' if m.train else 'no'}</td></tr>"
        for m in plan.methods
    )
    fig_html = "".join(
        f"<h3>{html.escape(t)}</h3><img src='{f}' alt='{html.escape(t)}'>" for t, f in figs
    )
    ex_html = (
        "".join(f"<img src='{f}' alt='example forecast'>" for f in examples) or "<p>No example.</p>"
    )
    light_html = f"<img src='{light}' alt='lightning'>" if light else "<p>Lightning not scored.</p>"
    plan_json = json.dumps(json.loads(canonical_json(plan)), indent=2)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DAP evaluation {html.escape(plan.name)}</title>
<meta name="plan-hash" content="{ph}">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1300px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
th {{ background: #f3f3f3; }} td.pos {{ background: #e3f4e3; }} td.neg {{ background: #f8e1e1; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }}
pre {{ background: #f7f7f7; padding: 0.8em; font-size: 0.8em; overflow-x: auto; }}
</style></head><body>
<h1>DAP evaluation: {html.escape(plan.name)}</h1>
<p>{html.escape(plan.description)}</p>
<p>Plan hash <code>{ph}</code> &middot; {ds.sizes["split"]} splits ({plan.splits.folds} folds &times; {plan.splits.repetitions}
repetitions, blocks: {plan.splits.block}) &middot; baseline <b>{html.escape(ds.attrs["baseline"])}</b> &middot; {html.escape(mode)},
{wall_s:.1f} s before the report.</p>

<h2>Methods</h2>
<table><tr><th>label</th><th>model</th><th>options</th><th>trained per split</th></tr>{method_rows}</table>

<h2>Data used</h2>
<p>Store <code>{html.escape(str(info["store"]))}</code> (covers {info["store_range"][0]} .. {info["store_range"][1]}); period
{info["period"][0]} .. {info["period"][1]}, {info["n_frames"]} frames at {info["cadence"]}, grid {info["grid_shape"]}
(scored area {info["crop_shape"]}). Window: {info["window"]["n_inputs"]} input frames + {info["window"]["n_lead_steps"]} lead
steps; embargo {info["embargo"]}. NaN observations (no coverage) are masked, never scored as dry.</p>
<table><tr><th>block</th><th>first frame</th><th>last frame</th><th>frames</th></tr>{blocks}</table>

<h2>Skill</h2>
<p>Scores of each split come from that split's pooled contingency tables / sums; lines are the mean across splits,
bands the {ds.attrs["interval"]:.0%} Student-t interval of that mean.</p>
{fig_html}

<h2>Paired difference against {html.escape(ds.attrs["baseline"])}</h2>
<p>Mean over splits of (method &minus; baseline), its {ds.attrs["interval"]:.0%} interval, and in how many splits the method
did better. Green: interval above 0; red: below 0.</p>
{paired_table(ds)}

<h2>Example forecasts</h2>
{ex_html}

<h2>Lightning</h2>
{light_html}

<h2>Ledger summary</h2>
<p>Ledger <code>{html.escape(str(ledger_path))}</code>. Verify one split with
<code>nowcast evaluate --verify {html.escape(str(ledger_path))} --split N</code>.</p>
<table><tr><th>split</th><th>repetition</th><th>fold</th><th>test blocks</th><th>forecasts</th><th>training windows</th>
<th>data fingerprint</th><th>time (s)</th><th>training (s)</th></tr>{split_rows}</table>

<h2>Plan</h2>
<pre>{html.escape(plan_json)}</pre>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
