"""Paper-style tables: Table 3 (fusion strategies over seeds) and Table 1 (the component chain).

Each table is written as Markdown (for people, with a caption that names the profile, dataset
and method), LaTeX (booktabs, for papers) and CSV (unrounded numbers, for tools). AP values
are shown as COCO AP x 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from study.report.collect import AP_COLUMNS
from study.utils import write_text

MISSING = "–"
DELTA_METRICS = ("AP", "APs", "APm", "APl")

# The paper's numbers (shared/PAPER.md), COCO val2017 at 608 unless said; sources: [paper] the
# paper's text, [README] the official README, [reprint] the ASFF rows reprinted in the YOLOv4 and
# YOLOX papers. Times are the README's per-image milliseconds on a V100.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "yolov3-original": {"AP": 33.0, "ms": 20.0, "source": "paper (AP), README (ms)"},
    "bof": {"AP": 37.0, "ms": 20.0, "source": "README (AP, ms)"},
    "ga": {"source": "not reported"},
    "baseline": {"AP": 38.8, "ms": 20.0, "source": "paper (AP), README (ms)"},
    "asff": {"AP": 40.6, "ms": 22.0, "source": "paper (AP), README (ms)"},
}
# COCO test-dev, YOLOv3 (Darknet-53) + ASFF* at each test size [reprint]; FPS on a V100.
PAPER_ASFF_STAR: dict[int, dict[str, float]] = {
    320: {
        "FPS": 60.0,
        "AP": 38.1,
        "AP50": 57.4,
        "AP75": 42.1,
        "APs": 16.1,
        "APm": 41.6,
        "APl": 53.6,
    },
    416: {
        "FPS": 54.0,
        "AP": 40.6,
        "AP50": 60.6,
        "AP75": 45.1,
        "APs": 20.3,
        "APm": 44.2,
        "APl": 54.1,
    },
    608: {
        "FPS": 45.5,
        "AP": 42.4,
        "AP50": 63.0,
        "AP75": 47.4,
        "APs": 25.5,
        "APm": 45.7,
        "APl": 52.3,
    },
    800: {
        "FPS": 29.4,
        "AP": 43.9,
        "AP50": 64.1,
        "AP75": 49.2,
        "APs": 27.0,
        "APm": 46.6,
        "APl": 53.4,
    },
}
PAPER_TABLE1["asff-star"] = {
    **{k: v for k, v in PAPER_ASFF_STAR[608].items() if k != "FPS"},
    "ms": 22.0,
    "source": "reprint (test-dev), README (ms)",
}
# Table 3 of the paper (fusion on the strong baseline, val2017, 608): only ASFF has numbers.
PAPER_TABLE3: dict[str, str] = {
    "none": "38.8 AP (strong baseline)",
    "asff": "40.6 AP: +1.8; APs +2.9, APm +2.9, APl about equal",
    "sum": "APs, APm higher, APl clearly lower (numbers not published)",
    "concat": "APs, APm higher, APl clearly lower (numbers not published)",
    "scalar": "not in the paper (BiFPN's fusion)",
}
# What each later design's own paper reports, on its own detector and schedule (issue 19): not
# comparable with this study's numbers or with each other, shown so a reader knows the claim.
LITERATURE: dict[str, str] = {
    "asff": "YOLOX-PAI (EasyCV): 41.4 -> 42.8 AP; RetinaNet (mmdet, ASFF issue #78): 35.4 -> 35.1",
    "afpn": "AFPN paper: Faster R-CNN 37.4 -> 39.0 AP; YOLOv5-n 28.0 -> 29.1",
    "pan": "mmdetection, Faster R-CNN R50 1x: 37.5 vs FPN 37.4",
    "bifpn": "EfficientDet Table 5: 44.39 (weighted) vs FPN+PANet 44.08, repeated FPN 42.29",
    "scalar": "EfficientDet Table 5: BiFPN without weights 43.94, with 44.39",
    "gd": "Gold-YOLO-N 39.9 vs YOLOv6-3.0-N 37.5 (other changes too)",
    "none": "Independent Hierarchy Pyramid (ECCV 2024): no fusion as a design",
    "none_matched": "not reported (this study's parameter-matched control)",
}


def pct(value: float) -> float:
    return math.nan if value is None or pd.isna(value) else 100.0 * float(value)


def _num(value: float, digits: int = 1, sign: bool = False) -> str:
    if value is None or pd.isna(value):
        return MISSING
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return MISSING
    return _num(pct(mean)) if pd.isna(std) else f"{pct(mean):.1f} ± {pct(std):.1f}"


def delta_cell(row: Mapping[str, Any] | None) -> str:
    """'+1.2 [+0.4, +2.0]' in points (the Holm-adjusted seed interval), with 'within noise' when
    the interval covers 0: a difference as Table 3 prints it (``row``: ``delta``, ``lo``,
    ``hi``, ``within_noise``)."""
    if row is None or pd.isna(row["delta"]):
        return MISSING
    if pd.isna(row["lo"]):
        return f"{pct(row['delta']):+.1f} (one seed: no interval)"
    text = f"{pct(row['delta']):+.1f} [{pct(row['lo']):+.1f}, {pct(row['hi']):+.1f}]"
    return text + (" within noise" if row["within_noise"] else "")


def _test_set(row: Mapping[str, Any] | None) -> str:
    """'[+0.1, +2.3]': the image-bootstrap interval (test-set noise, seeds fixed), points."""
    if row is None or pd.isna(row["boot_lo"]):
        return MISSING
    return f"[{pct(row['boot_lo']):+.1f}, {pct(row['boot_hi']):+.1f}]"


def _signs(row: Mapping[str, Any] | None) -> str:
    """'3/3': seeds in which the difference is positive, of the seeds compared."""
    return MISSING if row is None else f"{int(row['positive'])}/{int(row['seeds'])}"


def fusion_table(
    summary: pd.DataFrame,
    deltas: pd.DataFrame,
    reference: str,
    names: Mapping[str, str],
    min_ap: float,
    seeds: Sequence[int],
    converged: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table, numeric table) of Table 3: one row per strategy; ``converged`` maps an
    experiment to its convergence record (study/report/curves.py), if the runs have curves."""
    shown, numeric = [], []
    for _, row in summary.iterrows():
        exp = row["experiment"]
        strategy = names[exp]
        d = {m: lookup_delta(deltas, reference, exp, m) for m in DELTA_METRICS}
        learned = not pd.isna(row["AP"]) and row["AP"] >= min_ap
        shown.append(
            {
                "strategy": strategy,
                **{m: _mean_std(row[m], row[f"{m}_std"]) for m in AP_COLUMNS},
                **{
                    f"Δ{m} vs {names[reference]}": (
                        "reference" if exp == reference else delta_cell(d[m])
                    )
                    for m in d
                },
                "ΔAP per seed": MISSING if exp == reference else _per_seed(d["AP"]),
                "ΔAP > 0": MISSING if exp == reference else _signs(d["AP"]),
                "ΔAP test set": MISSING if exp == reference else _test_set(d["AP"]),
                "converged": _converged_text(converged, exp),
                "params M": _num(row["params"] / 1e6, 2),
                "GFLOPs": _num(row["flops"] / 1e9, 2),
                "ms": _num(row["ms"]),
                "seeds": str(int(row["seeds"])),
                "paper (COCO, GA head, 608)": PAPER_TABLE3.get(strategy, MISSING),
                "literature (their detector)": LITERATURE.get(strategy, MISSING),
                "note": "" if learned else f"AP < {min_ap:.2f}: did not learn within the budget",
            }
        )
        num = {"strategy": strategy, "experiment": exp, "seeds": int(row["seeds"])}
        for m in AP_COLUMNS:
            num[m] = pct(row[m])
            num[f"{m}_std"] = pct(row[f"{m}_std"])
        num.update(_delta_columns(d, seeds))
        num.update(params=row["params"], flops=row["flops"], ms=row["ms"], learned=learned)
        record = (converged or {}).get(exp)
        num["converged"] = None if record is None else bool(record["converged"])
        num["last_quarter_gain"] = None if record is None else record["gain"]
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def _converged_text(converged: Mapping[str, Mapping[str, Any]] | None, exp: str) -> str:
    """'yes (+0.4)' / 'no (+2.1)': the convergence rule and the last quarter's AP gain."""
    record = (converged or {}).get(exp)
    if record is None or pd.isna(record["gain"]):
        return MISSING
    return f"{'yes' if record['converged'] else 'NO'} ({record['gain']:+.1f})"


# The comparison families (one Holm adjustment each): Table 3 (each strategy - the reference)
# and the pairwise table (one strategy - each other).
TABLE3, PAIRWISE = "table3", "pairwise"


def lookup_delta(
    deltas: pd.DataFrame | None, reference: str, exp: str, metric: str, family: str = TABLE3
) -> dict[str, Any] | None:
    """The difference row of ``exp`` against ``reference`` for ``metric`` in ``family`` (None if
    absent)."""
    if deltas is None or deltas.empty:
        return None
    hit = deltas[
        (deltas["reference"] == reference)
        & (deltas["experiment"] == exp)
        & (deltas["metric"] == metric)
        & (deltas["family"] == family)
    ]
    return None if hit.empty else hit.iloc[0].to_dict()


def pairwise_table(
    deltas: pd.DataFrame, strategy: str, names: Mapping[str, str], seeds: Sequence[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric): ``strategy`` minus every other strategy, paired intervals as in
    Table 3 (the paper's claim is ASFF against sum and concat, not only against none)."""
    shown, numeric = [], []
    for other in names:
        if other == strategy:
            continue
        d = {m: lookup_delta(deltas, other, strategy, m, PAIRWISE) for m in DELTA_METRICS}
        if d["AP"] is None:
            continue
        label = f"{names[strategy]} − {names[other]}"
        shown.append(
            {
                "comparison": label,
                **{f"Δ{m}": delta_cell(d[m]) for m in DELTA_METRICS},
                "ΔAP per seed": _per_seed(d["AP"]),
                "ΔAP > 0": _signs(d["AP"]),
                "ΔAP test set": _test_set(d["AP"]),
            }
        )
        numeric.append(
            {"comparison": label, "reference": strategy, "other": other} | _delta_columns(d, seeds)
        )
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def _per_seed(row: Mapping[str, Any] | None) -> str:
    """'+1.2, -0.3, +0.8': a difference row's per-seed values in points."""
    if row is None:
        return MISSING
    return ", ".join(_num(pct(v), sign=True) for v in row["per_seed"])


def _delta_columns(
    d: Mapping[str, Mapping[str, Any] | None], seeds: Sequence[int]
) -> dict[str, Any]:
    """CSV columns d<metric>_{delta,lo,hi,within_noise,seed<k>} of difference rows (points)."""
    num: dict[str, Any] = {}
    for m, row in d.items():
        for key in ("delta", "lo", "hi", "boot_lo", "boot_hi"):
            num[f"d{m}_{key}"] = pct(row[key]) if row is not None else math.nan
        for key in ("p", "level", "positive", "within_noise"):
            num[f"d{m}_{key}"] = row[key] if row is not None else None
        for seed, value in zip(seeds, row["per_seed"] if row is not None else [], strict=False):
            num[f"d{m}_seed{seed}"] = pct(value)
    return num


def table1_table(
    summary: pd.DataFrame, rows: Sequence[str], not_run: Sequence[str], min_ap: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric) Table 1: trained rows with their metrics, the paper's AP beside them;
    rows below ``min_ap`` or not run on this profile marked so instead of shown as numbers."""
    by_exp = {r["experiment"]: r for _, r in summary.iterrows()}
    shown, numeric = [], []
    for name in [*rows, *not_run]:
        exp = f"table1/{name}"
        paper = PAPER_TABLE1.get(name, {})
        row = by_exp.get(exp)
        learned = row is not None and not pd.isna(row["AP"]) and row["AP"] >= min_ap
        if row is None:
            note = "not trained on this profile (params.yaml `table1_not_run`)"
        elif not learned:
            note = f"AP {pct(row['AP']):.1f} < {100 * min_ap:.0f}: did not learn within the budget"
        else:
            note = ""
        cells = {
            m: (_mean_std(row[m], row[f"{m}_std"]) if learned else MISSING) for m in AP_COLUMNS
        }
        shown.append(
            {
                "row": name,
                **cells,
                "ms": _num(row["ms"]) if row is not None else MISSING,
                "params M": _num(row["params"] / 1e6, 2) if row is not None else MISSING,
                "paper AP": _num(paper.get("AP", math.nan)),
                "paper ms (V100)": _num(paper.get("ms", math.nan)),
                "paper source": paper.get("source", MISSING),
                "note": note,
            }
        )
        num = {"row": name, "learned": learned}
        for m in AP_COLUMNS:
            num[m] = pct(row[m]) if row is not None else math.nan
        num.update(paper_AP=paper.get("AP", math.nan))
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def to_markdown(table: pd.DataFrame, caption: str, notes: Sequence[str] = ()) -> str:
    """GitHub Markdown: the caption, the table, then notes as a list."""
    left = {
        "strategy",
        "row",
        "comparison",
        "paper source",
        "note",
        "paper (COCO, GA head, 608)",
        "literature (their detector)",
        "claim",
        "statement",
        "paper",
        "measured",
        "spread",
        "verdict",
    }
    align = ["left" if c in left else "right" for c in table.columns]
    body = table.to_markdown(index=False, disable_numparse=True, colalign=align)
    text = f"{caption}\n\n{body}\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "Σ": r"$\Sigma$",
    "≠": r"$\neq$",
    "←": r"$\leftarrow$",
    "−": "-",
    "²": r"$^2$",
}


def latex_escape(text: str) -> str:
    text = str(text).replace("**", "").replace("`", "")
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: pd.DataFrame, caption: str, notes: Sequence[str] = ()) -> str:
    """A booktabs ``table`` environment: caption (with the notes appended), header, rows."""
    left = {"strategy", "row", "comparison", "claim", "statement", "note", "verdict"}
    spec = "".join("l" if c in left else "r" for c in table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(caption + (' ' + ' '.join(notes) if notes else ''))}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for _, row in table.iterrows():
        lines.append(" & ".join(latex_escape(v) for v in row.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(
    out_dir: Path, name: str, shown: pd.DataFrame, numeric: pd.DataFrame, caption: str, notes=()
) -> list[Path]:
    """``<name>.md`` (people), ``<name>.tex`` (booktabs, papers) and ``<name>.csv`` (tools,
    unrounded) under ``out_dir``, atomically."""
    md, tex, csv = (Path(out_dir) / f"{name}.{ext}" for ext in ("md", "tex", "csv"))
    write_text(md, to_markdown(shown, caption, notes))
    write_text(tex, to_latex(shown, caption, notes))
    write_text(csv, numeric.to_csv(index=False))
    return [md, tex, csv]
