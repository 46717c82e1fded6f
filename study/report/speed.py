"""Speed and accuracy together: the latency of ``study bench`` (results/bench.csv) beside the AP
at every test size (``study evaluate --test-sizes``).

Writes the test-size table (``test_sizes``: AP by size and latency per model and size), the
test-dev-style ASFF* table (``asff_star``: the paper's rows at 320/416/608/800 beside ours) and
the speed-accuracy figure (``speed_accuracy``, like the paper's Fig. 1: AP against ms per image,
one line per model, points labelled by size). Latency is the bench's median total (forward +
decode + NMS) at batch 1, fp32, eager, on the machine that ran the ``speed`` stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from study.eval.sizes import read_test_sizes
from study.report.collect import AP_COLUMNS, read_csv, run_dir
from study.report.figures import speed_accuracy_figure
from study.report.tables import MISSING, PAPER_ASFF_STAR, _mean_std, _num, pct, write_table

BENCH_FILE, OVERHEAD_FILE = "bench.csv", "bench_overhead.csv"
BENCH_COLUMNS = ("model", "size", "dtype", "mode", "total_ms_median", "params", "flops")
# The latency the tables and the figure use (the other settings stay in bench.csv).
REFERENCE_SETTING = {"dtype": "fp32", "mode": "eager"}


def read_bench(results_dir: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(bench.csv, bench_overhead.csv) of ``study bench``, None where absent."""
    bench = read_csv(Path(results_dir) / BENCH_FILE, BENCH_COLUMNS)
    return bench, read_csv(Path(results_dir) / OVERHEAD_FILE)


def latency(bench: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of the reference setting (fp32, eager): model, size, ms, params, flops."""
    cols = ["model", "size", "ms", "params", "flops"]
    if bench is None or bench.empty:
        return pd.DataFrame(columns=cols)
    b = bench
    for key, value in REFERENCE_SETTING.items():
        b = b[b[key] == value]
    return b.rename(columns={"total_ms_median": "ms"})[cols].reset_index(drop=True)


def attach_speed(runs: pd.DataFrame, bench: pd.DataFrame | None) -> pd.DataFrame:
    """``runs`` with ms, params and flops of each experiment at its evaluation size (NaN where
    the bench did not time it)."""
    lat = latency(bench).set_index(["model", "size"])
    out = runs.copy()
    for col in ("ms", "params", "flops"):
        out[col] = [
            float(lat.at[(e, int(s)), col])
            if not pd.isna(s) and (e, int(s)) in lat.index
            else math.nan
            for e, s in zip(out["experiment"], out["img_size"], strict=True)
        ]
    return out


def collect_test_sizes(results_dir: Path, seeds_of: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """Long table: experiment, seed, size and the AP columns (fractions), from the metrics.json
    and test_sizes/ of each experiment's runs (``seeds_of``: experiment -> its seeds)."""
    rows = []
    for exp, seeds in seeds_of.items():
        for seed in seeds:
            for size, m in read_test_sizes(run_dir(results_dir, exp, seed)).items():
                rows.append(
                    {"experiment": exp, "seed": int(seed), "size": size}
                    | {k: (math.nan if m.get(k) is None else float(m[k])) for k in AP_COLUMNS}
                )
    return pd.DataFrame(rows, columns=["experiment", "seed", "size", *AP_COLUMNS])


def size_summary(sizes: pd.DataFrame, bench: pd.DataFrame | None) -> pd.DataFrame:
    """Per (experiment, size): mean and std over seeds of each AP column, seeds, and ms."""
    if sizes.empty:
        return pd.DataFrame()
    g = sizes.groupby(["experiment", "size"], sort=False)
    out = g[list(AP_COLUMNS)].mean()
    std = g[list(AP_COLUMNS)].std(ddof=1).add_suffix("_std")
    out = out.join(std)
    out["seeds"] = g["seed"].nunique()
    out = out.reset_index()
    lat = latency(bench).rename(columns={"model": "experiment"})
    out = out.merge(lat[["experiment", "size", "ms"]], on=["experiment", "size"], how="left")
    order = {e: i for i, e in enumerate(dict.fromkeys(sizes["experiment"]))}
    return out.sort_values(
        ["experiment", "size"], key=lambda c: c.map(order) if c.name == "experiment" else c
    ).reset_index(drop=True)


def inversions(summary: pd.DataFrame) -> list[str]:
    """Per row of ``summary``: '' or 'INVERTED: slower than at 96, 128 px' when the model was
    timed slower at this size than at a larger one (more pixels cannot cost less: the timing
    is within the machine's noise there)."""
    flags = []
    for _, r in summary.iterrows():
        same = summary[(summary["experiment"] == r["experiment"]) & (summary["size"] > r["size"])]
        faster = [int(s) for s, ms in zip(same["size"], same["ms"], strict=True) if ms < r["ms"]]
        flags.append(f"INVERTED: slower than at {', '.join(map(str, faster))} px" if faster else "")
    return flags


def test_size_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric) test-size table: one row per model and size, with the timing
    inversions flagged (:func:`inversions`)."""
    shown, numeric = [], []
    for (_, r), flag in zip(summary.iterrows(), inversions(summary), strict=True):
        shown.append(
            {"model": r["experiment"], "size": str(int(r["size"]))}
            | {m: _mean_std(r[m], r[f"{m}_std"]) for m in AP_COLUMNS}
            | {"ms": _num(r["ms"], 2), "FPS": _num(1000.0 / r["ms"]) if r["ms"] > 0 else MISSING}
            | {"timing": flag}
        )
        numeric.append(
            {"model": r["experiment"], "size": int(r["size"]), "seeds": int(r["seeds"])}
            | {m: pct(r[m]) for m in AP_COLUMNS}
            | {f"{m}_std": pct(r[f"{m}_std"]) for m in AP_COLUMNS}
            | {"ms": r["ms"], "inverted": bool(flag)}
        )
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def asff_star_model(experiments: Sequence[str]) -> tuple[str, str]:
    """(experiment, how it relates to ASFF*): table1/asff-star when trained, else the closest
    trained ASFF model."""
    for exp, note in (
        ("table1/asff-star", "ASFF* (Table 1 row: RFB, DropBlock)"),
        ("table1/asff", "ASFF without the RFB and DropBlock of ASFF* (Table 1 row)"),
        (
            "fusion/asff",
            "ASFF fusion on the fusion study's YOLOv3-SPP (no RFB, DropBlock, or "
            "guided-anchoring head): the closest model this profile trains",
        ),
    ):
        if exp in experiments:
            return exp, note
    return "", ""


def asff_star_table(summary: pd.DataFrame, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's ASFF* test-dev rows (320/416/608/800) and ours at the profile's sizes."""
    shown, numeric = [], []
    for size, p in PAPER_ASFF_STAR.items():
        shown.append(
            {"source": "paper (COCO test-dev, V100)", "size": str(size), "FPS": _num(p["FPS"])}
            | {m: _num(p[m]) for m in AP_COLUMNS}
            | {"timing": ""}
        )
        numeric.append(
            {"source": "paper", "size": size, "FPS": p["FPS"]}
            | {m: p[m] for m in AP_COLUMNS}
            | {"inverted": False}
        )
    ours = summary[summary["experiment"] == experiment] if experiment else summary.iloc[0:0]
    for (_, r), flag in zip(ours.iterrows(), inversions(ours), strict=True):
        fps = 1000.0 / r["ms"] if r["ms"] > 0 else math.nan
        shown.append(
            {"source": f"ours ({experiment})", "size": str(int(r["size"])), "FPS": _num(fps)}
            | {m: _mean_std(r[m], r[f"{m}_std"]) for m in AP_COLUMNS}
            | {"timing": flag}
        )
        numeric.append(
            {"source": experiment, "size": int(r["size"]), "FPS": fps}
            | {m: pct(r[m]) for m in AP_COLUMNS}
            | {"inverted": bool(flag)}
        )
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def _device(bench: pd.DataFrame | None) -> str:
    if bench is None or bench.empty or "device" not in bench:
        return "?"
    return str(bench["device"].iloc[0])


def speed_report(
    params: dict[str, Any],
    results_dir: Path,
    out_dir: Path,
    figures_dir: Path,
    seeds_of: Mapping[str, Sequence[int]],
    where: str,
    bench: pd.DataFrame | None,
) -> list[Path]:
    """The test-size table, the ASFF* table and the speed-accuracy figure (paths written) of
    the runs ``seeds_of`` names (experiment -> seeds), with the latency of ``bench``
    (results/bench.csv); nothing when no run has been evaluated at several sizes."""
    sizes = collect_test_sizes(results_dir, seeds_of)
    if sizes.empty or sizes["size"].nunique() < 2:
        return []
    summary = size_summary(sizes, bench)
    device = _device(bench)
    setting = "batch 1, fp32, eager, forward + decode + NMS"
    paths: list[Path] = []
    shown, numeric = test_size_table(summary)
    caption = (
        f"**Accuracy and latency at several test sizes**, {where}. COCO AP x 100 (mean ± std "
        f"over seeds) of each model evaluated at each square test size; ms: median latency per "
        f"image ({setting}) of the seed-{params.get('bench', {}).get('seed', 0)} weights on "
        f"{device} (`study bench`, results/bench.csv)."
    )
    notes = [
        "Only the input size changes between rows of a model; the weights are the same (trained "
        "at the profile's train.img_size). The paper's sizes are 320/416/608/800 for a model "
        "trained at 608; the profile's are scaled alike.",
        "bench.csv has the forward / decode / NMS split, p90, throughput and FLOPs of every row.",
        "timing: INVERTED where a model was timed slower at this size than at a larger one, which "
        "more pixels cannot explain. The bench times every size and model in the same "
        "interleaved rounds, so drift hits them alike: an inversion is the machine's noise (or "
        "a latency floor at small sizes), and those latencies are equal within it.",
    ]
    paths += write_table(out_dir, "test_sizes", shown, numeric, caption, notes)
    exp, relation = asff_star_model(list(seeds_of))
    sshown, snumeric = asff_star_table(summary, exp)
    ours = (
        f"ours is `{exp}`, {relation}; {where}; FPS = 1000 / median ms ({setting}) on {device}"
        if exp
        else "no ASFF model is trained in this study, so only the paper's rows are shown"
    )
    scaption = f"**ASFF* at several test sizes, the paper's test-dev rows beside ours**: {ours}."
    snotes = [
        "The paper's rows: COCO test-dev, Darknet-53 + ASFF* trained at 608 for 300 epochs, "
        "FPS on a V100 (shared/PAPER.md). Ours: a different dataset, scale and machine; "
        "compare how AP and speed move with the size, not the absolute numbers.",
        "timing: INVERTED where ours was timed slower at this size than at a larger one (noise "
        "of the machine; test_sizes.md).",
    ]
    paths += write_table(out_dir, "asff_star", sshown, snumeric, scaption, snotes)
    if summary["ms"].notna().any():
        paths += speed_accuracy_figure(
            summary,
            figures_dir,
            f"AP against latency at each test size ({where}; {setting}, {device})",
        )
    return paths
