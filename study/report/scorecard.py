"""The replication scorecard: each of the paper's claims C1-C8 with what this study measured,
its spread, the paper's value and a verdict by a rule written beside it (``RULES``).

Verdicts: ``replicated``, ``not replicated``, ``inconclusive`` (the measurement cannot tell), or
``not tested on this profile`` (with the reason: a run the profile does not train, or rows that
did not learn within its budget). A fusion claim (C2, C3, C5, C6, C8) gets a verdict only when
the reference strategy `none` converged by the rule of study/report/curves.py: a comparison with
a reference that is still learning measures start-up speed, not the fusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from study.report.analysis import LEVEL_NAMES, separated_below
from study.report.tables import lookup_delta

REPLICATED, NOT_REPLICATED, INCONCLUSIVE = "replicated", "not replicated", "inconclusive"
NOT_TESTED = "not tested on this profile"
NOT_COMPARABLE = "not comparable"
# C4's measurement is comparable with the paper's only on a GPU at the paper's 608 px (the
# README's 20 -> 22 ms: V100, batch 1, full width); elsewhere the ratio is reported, unjudged.
C4_COMPARABLE_SIZE = 608

CLAIMS = {
    "C1": "The bag of freebies raises AP (YOLOv3 33.0 -> 37.0 AP)",
    "C2": "ASFF's gain is mostly APs and APm, with APl flat",
    "C3": "Concat and sum fusion lower APl",
    "C4": "ASFF costs about 10 % latency (20 -> 22 ms)",
    "C5": "ASFF lowers the gradient the other levels send to a level's object locations "
    "(below sum and concat)",
    "C6": "ASFF's largest weight picks the level the object is assigned to",
    "C7": "ASFF* (RFB, DropBlock) adds about 1.8 AP over ASFF",
    "C8": "ASFF's gain over no fusion persists at convergence (not only faster early learning)",
}
PAPER = {
    "C1": "+4.0 AP (33.0 -> 37.0, COCO val2017, 608)",
    "C2": "+1.8 AP: APs +2.9, APm +2.9, APl about equal",
    "C3": "APl 'clearly lower' than the baseline (numbers not published)",
    "C4": "x1.10 (22 / 20 ms, V100)",
    "C5": "argued (section 3.3), not measured",
    "C6": "shown on example images (Fig. 3/4), not measured",
    "C7": "+1.8 AP (40.6 -> 42.4)",
    "C8": "implied (300-epoch schedule); outside reproductions report gains that fade late "
    "in training (ultralytics/yolov3 #934)",
}
RULES = {
    "C1": "bof − yolov3-original per seed: replicated if every seed > 0 (at least 2 seeds), "
    "not replicated if every seed <= 0, else inconclusive.",
    "C2": "asff − none, Holm-adjusted seed t intervals of Table 3: replicated if ΔAPs and "
    "ΔAPm are above 0 beyond noise and ΔAPl is within noise or below both; not replicated "
    "if ΔAPl is beyond noise and above both, or ΔAPs or ΔAPm is below 0 beyond noise; else "
    "inconclusive.",
    "C3": "sum − none and concat − none, ΔAPl with the Holm-adjusted seed t intervals of "
    "Table 3: replicated if both are below "
    "0 beyond noise, not replicated if either is above 0 beyond noise, else inconclusive.",
    "C4": "median latency asff / none at the evaluation size (batch 1, fp32, forward + decode + "
    "NMS), timed interleaved in rounds on the study's machine (study bench). Judged only when "
    "the measurement is comparable with the paper's (a CUDA device at 608 px; the paper: V100, "
    "batch 1, full width): replicated if the median of the rounds' ratios is within 1.10 ± "
    "0.05; not replicated if every round's ratio is outside that band on the same side; else "
    "inconclusive. On a CPU or at another size: 'not comparable', with the measured ratio.",
    "C5": "the cross-level gradient ‖Σ_{j≠k} g^{k←j}‖ / loss (the term the paper argues ASFF's "
    "weights can switch off; an absolute norm, which a shrinking own gradient cannot move, "
    "unlike the conflict share) at the fixed locations, final weights, full gradient, all "
    "sizes, per level and seed: replicated if at every level every asff seed is below every "
    "sum seed and every concat seed (3 vs 3 seeds: one-sided permutation p = 0.05 per level), "
    "not replicated if at no level asff's mean is below both, else inconclusive. The "
    "negative-cosine share (PCGrad's conflict) is reported beside it: near 0.5 the cross "
    "term does not oppose the own one systematically.",
    "C6": "asff, final weights, per size bucket (a fusion that picks one level everywhere "
    "scores 100 % on one bucket and 0 % on the others): replicated if in every bucket every "
    "seed's agreement rate is more than two binomial standard errors above chance (1/3); not "
    "replicated if in some bucket no seed is; else inconclusive.",
    "C7": "asff-star − asff per seed (Table 1 rows): replicated if every seed > 0 (at least 2 "
    "seeds), not replicated if every seed <= 0, else inconclusive.",
    "C8": "the budget curve's asff − none AP at the end of training (learning-curve subset, 95 % "
    "seed t interval; both strategies converged): replicated if the interval is above 0; not "
    "replicated if it is below 0, or if the mean end gain is under a third of the largest mean "
    "gain along the curve and the interval covers 0 (the gain faded); else inconclusive.",
}
GATED = ("C2", "C3", "C5", "C6", "C8")  # fusion claims: a verdict only if the reference converged


@dataclass
class Evidence:
    """What the report computed, for the scorecard (each part may be missing)."""

    fusion_summary: pd.DataFrame | None  # seed_summary of Table 3 (fractions)
    deltas: pd.DataFrame | None  # paired bootstrap rows (experiment, reference, metric, ...)
    fusion_runs: pd.DataFrame | None  # one row per fusion run (ms per run)
    table1_runs: pd.DataFrame | None
    gradients: pd.DataFrame | None  # long table of the analysis stage
    agreement: pd.DataFrame | None
    min_ap: float = 0.10
    overhead: pd.DataFrame | None = None  # results/bench_overhead.csv (study bench)
    converged: dict[str, dict[str, Any]] | None = None  # study/report/curves.convergence
    budget: pd.DataFrame | None = None  # study/report/curves.budget_curve (points)


def _pts(row: Mapping[str, Any]) -> str:
    return f"{100 * row['delta']:+.1f} [{100 * row['lo']:+.1f}, {100 * row['hi']:+.1f}]" + (
        " (within noise)" if row["within_noise"] else ""
    )


def _above(row: Mapping[str, Any]) -> bool:
    return row["lo"] > 0


def _below(row: Mapping[str, Any]) -> bool:
    return row["hi"] < 0


def _result(claim: str, measured: str, spread: str, verdict: str) -> dict[str, str]:
    return {
        "claim": claim,
        "statement": CLAIMS[claim],
        "paper": PAPER[claim],
        "measured": measured,
        "spread": spread,
        "verdict": verdict,
    }


def _not_tested(claim: str, reason: str) -> dict[str, str]:
    return _result(claim, "–", "–", f"{NOT_TESTED}: {reason}")


def _verdict(replicated: bool, not_replicated: bool) -> str:
    """A claim's verdict from its rule's two tests (the first decides when both hold)."""
    if replicated:
        return REPLICATED
    return NOT_REPLICATED if not_replicated else INCONCLUSIVE


def _learned_runs(runs: pd.DataFrame | None, exp: str, min_ap: float) -> pd.DataFrame | None:
    if runs is None or runs.empty:
        return None
    r = runs[runs["experiment"] == exp]
    return r if len(r) and r["AP"].mean() >= min_ap else None


def _chain_claim(claim: str, ev: Evidence, row: str, ref: str) -> dict[str, str]:
    runs = ev.table1_runs
    trained = set() if runs is None or runs.empty else set(runs["experiment"])
    missing = [r for r in (row, ref) if f"table1/{r}" not in trained]
    if missing:
        return _not_tested(
            claim, f"Table 1 row(s) {', '.join(missing)} not trained (params `table1`)"
        )
    a = _learned_runs(runs, f"table1/{row}", ev.min_ap)
    b = _learned_runs(runs, f"table1/{ref}", ev.min_ap)
    if a is None or b is None:
        return _not_tested(
            claim, f"a row's AP is below {ev.min_ap:.2f} (did not learn in the budget)"
        )
    merged = a.merge(b, on="seed", suffixes=("", "_ref"))
    diffs = 100 * (merged["AP"] - merged["AP_ref"]).to_numpy()
    measured = f"{diffs.mean():+.1f} AP ({row} − {ref})"
    spread = "per seed " + ", ".join(f"{d:+.1f}" for d in diffs)
    verdict = _verdict(len(diffs) >= 2 and (diffs > 0).all(), (diffs <= 0).all())
    if verdict == INCONCLUSIVE and len(diffs) < 2:
        verdict += " (one seed)"
    return _result(claim, measured, spread, verdict)


def claim_c2(ev: Evidence) -> dict[str, str]:
    rows = {
        m: lookup_delta(ev.deltas, "fusion/none", "fusion/asff", m)
        for m in ("AP", "APs", "APm", "APl")
    }
    if any(r is None for r in rows.values()):
        return _not_tested("C2", "needs the asff and none fusion runs")
    s, m, lg = rows["APs"], rows["APm"], rows["APl"]
    measured = f"ΔAP {_pts(rows['AP'])}; ΔAPs {_pts(s)}; ΔAPm {_pts(m)}; ΔAPl {_pts(lg)}"
    verdict = _verdict(
        _above(s)
        and _above(m)
        and (lg["within_noise"] or lg["delta"] < min(s["delta"], m["delta"])),
        (not lg["within_noise"] and lg["delta"] > max(s["delta"], m["delta"]))
        or _below(s)
        or _below(m),
    )
    return _result("C2", measured, "Holm-adjusted 95 % t intervals over seeds", verdict)


def claim_c3(ev: Evidence) -> dict[str, str]:
    rows = {
        f: lookup_delta(ev.deltas, "fusion/none", f"fusion/{f}", "APl") for f in ("sum", "concat")
    }
    if any(r is None for r in rows.values()):
        return _not_tested("C3", "needs the sum, concat and none runs")
    measured = "; ".join(f"{f} − none ΔAPl {_pts(r)}" for f, r in rows.items())
    verdict = _verdict(all(_below(r) for r in rows.values()), any(_above(r) for r in rows.values()))
    return _result("C3", measured, "Holm-adjusted 95 % t intervals over seeds", verdict)


def claim_c4(ev: Evidence) -> dict[str, str]:
    runs, over = ev.fusion_runs, ev.overhead
    if runs is None or runs.empty or not {"fusion/asff", "fusion/none"} <= set(runs["experiment"]):
        return _not_tested("C4", "needs the asff and none fusion runs")
    size = runs["img_size"].dropna()
    rows = (
        None
        if over is None or over.empty or size.empty
        else over[
            (over["model"] == "fusion/asff")
            & (over["reference"] == "fusion/none")
            & (over["size"] == int(size.iloc[0]))
            & (over["dtype"] == "fp32")
            & (over["mode"] == "eager")
        ]
    )
    if rows is None or rows.empty:
        return _not_tested("C4", "no interleaved timing (study bench)")
    r = rows.iloc[0]
    lo, hi = 1.05, 1.15
    mid, rmin, rmax = r["ratio_round_median"], r["ratio_round_min"], r["ratio_round_max"]
    measured = f"x{r['ratio']:.3f} (asff / none at {int(r['size'])} px, fp32, {r['device']})"
    spread = (
        f"{int(r['rounds'])} interleaved rounds: median x{mid:.3f}, range x{rmin:.3f} .. "
        f"x{rmax:.3f}; forward only x{r['ratio_forward']:.3f}"
    )
    device = str(r["device"])
    if not device.startswith("cuda") or int(r["size"]) != C4_COMPARABLE_SIZE:
        why = f"{device} at {int(r['size'])} px, not a GPU at {C4_COMPARABLE_SIZE} px"
        return _result("C4", measured, spread, f"{NOT_COMPARABLE}: {why}")
    verdict = _verdict(lo <= mid <= hi, rmin > hi or rmax < lo)
    return _result("C4", measured, spread, verdict)


def _per_seed(
    gradients: pd.DataFrame,
    fusion: str,
    column: str,
    level: int,
    mode: str = "full",
    checkpoint: str = "final",
) -> np.ndarray:
    """``column`` (all sizes) of ``fusion`` at ``level`` and ``checkpoint`` per seed, in seed
    order."""
    g = gradients[
        (gradients["fusion"] == fusion)
        & (gradients["checkpoint"] == checkpoint)
        & (gradients["mode"] == mode)
        & (gradients["bucket"] == "all")
        & (gradients["level"] == level)
    ]
    return g.sort_values("seed")[column].to_numpy(dtype=float)


C5_FUSIONS = ("asff", "sum", "concat")


def claim_c5(ev: Evidence) -> dict[str, str]:
    g = ev.gradients
    if g is None or g.empty or not set(C5_FUSIONS) <= set(g["fusion"]):
        return _not_tested("C5", "needs the analysis of asff, sum and concat")
    levels = sorted(int(k) for k in g["level"].unique())
    measured, spread, below, above = [], [], [], []
    for k in levels:
        cross = {f: _per_seed(g, f, "cross_norm_mean", k) for f in C5_FUSIONS}
        if not all(np.isfinite(v).any() for v in cross.values()):
            continue  # no locations at this level
        negative = _per_seed(g, "asff", "negative_cosine", k)
        measured.append(
            f"{LEVEL_NAMES[k]}: ‖cross‖ ×10³ "
            + ", ".join(f"{f} {1e3 * np.nanmean(v):.2f}" for f, v in cross.items())
            + f" (asff cos < 0: {np.nanmean(negative):.2f})"
        )
        spread.append(
            f"{LEVEL_NAMES[k]}: "
            + "; ".join(f"{f} " + ", ".join(f"{1e3 * x:.2f}" for x in v) for f, v in cross.items())
        )
        below.append(
            separated_below(cross["asff"], cross["sum"])
            and separated_below(cross["asff"], cross["concat"])
        )
        above.append(
            np.nanmean(cross["asff"]) >= min(np.nanmean(cross["sum"]), np.nanmean(cross["concat"]))
        )
    if not measured:
        return _not_tested("C5", "no analysed locations at any level")
    verdict = _verdict(all(below), all(above))
    return _result("C5", "; ".join(measured), " | ".join(spread), verdict)


def claim_c6(ev: Evidence) -> dict[str, str]:
    a = ev.agreement
    if a is None or a.empty or "asff" not in set(a["fusion"]):
        return _not_tested("C6", "needs the analysis of asff")
    final = a[(a["checkpoint"] == "final") & (a["bucket"] != "all")]
    asff = final[final["fusion"] == "asff"]
    above, at_chance = [], []
    for _bucket, rows in asff.groupby("bucket"):
        rates, n = rows["rate"].to_numpy(dtype=float), rows["objects"].to_numpy(dtype=float)
        bound = 1 / 3 + 2 * np.sqrt((1 / 3) * (2 / 3) / n)
        above.append(bool((rates > bound).all()))
        at_chance.append(bool((rates <= bound).all()))
    by = asff.groupby("bucket")["rate"].mean()
    overall = a[(a["fusion"] == "asff") & (a["checkpoint"] == "final") & (a["bucket"] == "all")]
    measured = (
        f"asff {100 * overall['rate'].mean():.1f} % of objects (chance 33.3 %): "
        + ", ".join(f"{b} {100 * by[b]:.1f} %" for b in ("small", "medium", "large") if b in by)
    )
    if "scalar" in set(final["fusion"]):  # one weight per level: the rate of a constant choice
        sc = final[final["fusion"] == "scalar"].groupby("bucket")["rate"].mean()
        measured += "; scalar (no per-location weights) " + ", ".join(
            f"{b} {100 * sc[b]:.1f} %" for b in ("small", "medium", "large") if b in sc
        )
    spread = "asff per seed, all sizes: " + ", ".join(
        f"{100 * r:.1f} %" for r in overall["rate"].to_numpy(dtype=float)
    )
    return _result("C6", measured, spread, _verdict(all(above), any(at_chance)))


def claim_c8(ev: Evidence) -> dict[str, str]:
    b = ev.budget
    if b is None or b.empty:
        return _not_tested("C8", "no learning curves (eval.curve_images, train.snapshots)")
    rows = b[(b["experiment"] == "fusion/asff") & (b["reference"] == "fusion/none")]
    if rows.empty:
        return _not_tested("C8", "needs the asff and none runs' learning curves")
    if not (ev.converged or {}).get("fusion/asff", {}).get("converged", False):
        return _not_tested("C8", "asff has not converged by the rule")
    rows = rows.sort_values("iteration")
    end, best = rows.iloc[-1], rows["delta"].max()
    measured = (
        f"asff − none at iteration {int(end['iteration'])}: {end['delta']:+.1f} AP "
        f"[{end['lo']:+.1f}, {end['hi']:+.1f}]; largest gain along the curve {best:+.1f} AP"
    )
    spread = "; ".join(
        f"it {int(r['iteration'])} {r['delta']:+.1f} ({int(r['positive'])}/{int(r['seeds'])})"
        for _, r in rows.iterrows()
    )
    faded = end["delta"] < best / 3 and end["lo"] <= 0 <= end["hi"]
    verdict = _verdict(end["lo"] > 0, end["hi"] < 0 or (best > 0 and faded))
    return _result("C8", measured, spread, verdict)


def _gate(row: dict[str, str], ev: Evidence) -> dict[str, str]:
    """A fusion claim's verdict stands only if the reference `none` converged by the rule."""
    if row["claim"] not in GATED or row["verdict"].startswith(NOT_TESTED):
        return row
    record = (ev.converged or {}).get("fusion/none")
    if record is None:
        reason = "no learning curve of the reference none: convergence unknown"
    elif not record.get("learned", True):
        reason = (
            f"the reference none did not learn (AP {record['final']:.1f} at the end of its "
            "curve): a flat curve at that level is no plateau"
        )
    elif not record["converged"]:
        reason = (
            f"the reference none has not converged (it gained {record['gain']:+.1f} AP over "
            "the last quarter of its run); the comparison measures start-up speed"
        )
    else:
        return row
    return {**row, "verdict": f"{NOT_TESTED}: {reason}"}


def scorecard(ev: Evidence) -> pd.DataFrame:
    """One row per claim: claim, statement, paper, measured, spread, verdict (and its rule)."""
    rows = [
        _chain_claim("C1", ev, "bof", "yolov3-original"),
        claim_c2(ev),
        claim_c3(ev),
        claim_c4(ev),
        claim_c5(ev),
        claim_c6(ev),
        _chain_claim("C7", ev, "asff-star", "asff"),
        claim_c8(ev),
    ]
    rows = [_gate(r, ev) for r in rows]
    frame = pd.DataFrame(rows)
    frame["rule"] = frame["claim"].map(RULES)
    return frame


def verdict_counts(card: pd.DataFrame) -> str:
    counts = card["verdict"].str.split(":").str[0].value_counts()
    return ", ".join(f"{int(v)} {k}" for k, v in counts.items())
