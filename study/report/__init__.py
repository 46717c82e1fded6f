"""Paper-style tables and figures from ``results/<experiment>/seed<k>/``: what ``study report``
writes. ``results/tables/``: Table 3 (fusion), the pairwise table, Table 1, the gradient
consistency and weight agreement tables, the test-size and ASFF* tables, the replication
scorecard (each as Markdown, LaTeX and CSV) and runs.csv; ``results/figures/``: the analysis
figures and the speed-accuracy figure; ``results/metrics.json``: the
compact metrics file that ``dvc exp show`` reads (AP, APs, APm, APl per experiment and seed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import StudyError
from study.report.collect import AP_COLUMNS, collect_runs, detections_path
from study.report.speed import attach_speed, read_bench, speed_report
from study.report.stats import paired_bootstrap, seed_summary
from study.report.tables import fusion_table, pairwise_table, table1_table, write_table
from study.utils import provenance, write_json

log = logging.getLogger(__name__)
SUMMARY_COLUMNS = (*AP_COLUMNS, "params", "flops", "ms", "train_min")


def _dataset_label(runs: pd.DataFrame) -> str:
    """'data/synthetic (built-in benchmark v2), 500 val images' from the runs' metadata."""
    root = runs["dataset"].dropna().iloc[0] if runs["dataset"].notna().any() else "?"
    label = str(root)
    stats = Path(root) / "stats.json"
    if stats.is_file():
        version = json.loads(stats.read_text()).get("params", {}).get("version", 1)
        label += f" (built-in benchmark v{version})"
    n = runs["num_images"].dropna()
    return label + (f", {int(n.iloc[0])} val images" if len(n) else "")


def _scorers(results_dir: Path, runs: pd.DataFrame) -> dict[tuple[str, int], Any]:
    """An ImageWeightedAP per run, from its detections.json.gz and the annotation file."""
    from study.data import load_coco
    from study.eval.coco_eval import read_detections
    from study.eval.resample import ImageWeightedAP

    ann_files = set(runs["ann_file"].dropna())
    if len(ann_files) != 1:
        raise StudyError(f"runs were evaluated on different annotation files: {sorted(ann_files)}")
    coco_gt = load_coco(next(iter(ann_files)))
    image_ids = sorted(coco_gt.imgs)[: int(runs["num_images"].iloc[0])]
    scorers = {}
    for exp, seed in zip(runs["experiment"], runs["seed"], strict=True):
        dets = read_detections(detections_path(results_dir, exp, seed))
        scorers[(exp, int(seed))] = ImageWeightedAP(coco_gt, dets, image_ids)
    return scorers


def fusion_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    bench: pd.DataFrame | None = None,
) -> tuple[list[Path], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Table 3 and the pairwise table (ms, params, FLOPs from ``bench``, results/bench.csv);
    returns (paths, runs, seed summary, paired deltas)."""
    fusions, seeds = list(params.get("fusions") or []), list(params.get("seeds") or [0])
    rep = params.get("report") or {}
    min_ap = float(rep.get("min_ap", 0.10))
    experiments = [f"fusion/{f}" for f in fusions]
    runs = attach_speed(collect_runs(results_dir, experiments, seeds), bench)
    summary = seed_summary(runs, SUMMARY_COLUMNS)
    reference = "fusion/none" if "none" in fusions else experiments[0]
    # the second comparison (params.yaml report.pairwise): one strategy against each other one
    pairwise = rep.get("pairwise")
    if pairwise is not None and pairwise not in fusions:
        raise StudyError(
            f"params.yaml report.pairwise: {pairwise!r} is not one of `fusions` ({fusions})"
        )
    pair_ref = f"fusion/{pairwise}" if pairwise and len(fusions) > 2 else None
    pair_ref = None if pair_ref == reference else pair_ref
    pairs = [(e, reference) for e in experiments if e != reference]
    if pair_ref:
        pairs += [(pair_ref, e) for e in experiments if e != pair_ref]
    deltas = paired_bootstrap(
        _scorers(results_dir, runs),
        pairs,
        seeds,
        replicates=int(rep.get("bootstrap_replicates", 500)),
        rng_seed=int(rep.get("bootstrap_seed", 0)),
    )
    names = dict(zip(experiments, fusions, strict=True))
    shown, numeric = fusion_table(summary, deltas, reference, names, min_ap, seeds)
    profile = runs["profile"].dropna().iloc[0] if runs["profile"].notna().any() else "?"
    caption = (
        f"**Table 3 (fusion strategies)**, profile `{profile}`, dataset {_dataset_label(runs)}; "
        f"{len(seeds)} seed(s) per strategy ({', '.join(map(str, seeds))}). COCO AP x 100, "
        "mean ± standard deviation over seeds."
    )
    notes = [
        f"Δ: paired difference to `{names[reference]}` in AP points (mean over seeds), with a "
        f"95 % interval from a two-stage bootstrap ({int(rep.get('bootstrap_replicates', 500))} "
        "replicates): each replicate resamples the validation images (one draw shared by all "
        "runs) and the seeds, with replacement, and recomputes COCO AP exactly on that sample. "
        "'within noise': the interval covers 0.",
        "params and GFLOPs (torch.utils.flop_counter, multiply-add = 2) at the evaluation size; "
        "ms: median per image at batch 1, fp32, forward + decode + NMS, of the bench.seed "
        "weights on the machine that ran the `speed` stage (results/bench.csv; the ASFF "
        "overhead with its spread: results/bench_overhead.csv).",
        "Paper column: COCO val2017 at 608 with the guided-anchoring head; ours: the profile's "
        "dataset and scale with the plain YOLOv3 head (experiments/fusion/_base.yaml).",
        f"A strategy whose mean AP is below {min_ap:.2f} did not learn within the profile's "
        "budget and is marked instead of compared.",
    ]
    paths = write_table(out_dir, "fusion", shown, numeric, caption, notes)
    if pair_ref:
        pshown, pnumeric = pairwise_table(deltas, pair_ref, names, seeds)
        pcaption = (
            f"**{pairwise} against every other strategy**, profile `{profile}`, the runs of "
            f"Table 3 (fusion.md). Paired difference `{pairwise}` minus the other strategy in "
            "AP points (mean over seeds) with its 95 % interval, from the same bootstrap "
            "replicates as Table 3."
        )
        pnotes = [
            f"'within noise': the interval covers 0; a positive difference favours `{pairwise}`.",
            "The paper's Table 3 claims ASFF beats sum and concat fusion on COCO (numbers for "
            "those two not published).",
        ]
        paths += write_table(out_dir, f"fusion_vs_{pairwise}", pshown, pnumeric, pcaption, pnotes)
    return paths, runs, summary, deltas


def table1_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    bench: pd.DataFrame | None = None,
) -> tuple[list[Path], pd.DataFrame]:
    rows, not_run = list(params.get("table1") or []), list(params.get("table1_not_run") or [])
    seeds = list(params.get("table1_seeds") or [0])
    min_ap = float((params.get("report") or {}).get("min_ap", 0.10))
    runs = (
        attach_speed(collect_runs(results_dir, [f"table1/{r}" for r in rows], seeds), bench)
        if rows
        else pd.DataFrame(columns=["experiment", "seed", *SUMMARY_COLUMNS, "profile", "dataset"])
    )
    summary = seed_summary(runs, SUMMARY_COLUMNS) if rows else runs
    shown, numeric = table1_table(summary, rows, not_run, min_ap)
    if rows and runs["profile"].notna().any():
        profile, dataset = runs["profile"].dropna().iloc[0], _dataset_label(runs)
    else:  # nothing trained: say which profile left the rows out
        profile, dataset = params.get("profile", "?"), str(params.get("dataset", "?"))
    caption = (
        f"**Table 1 (components)**, profile `{profile}`, dataset {dataset}; seed(s) "
        f"{', '.join(map(str, seeds))}. COCO AP x 100 (mean ± std over seeds where several)."
    )
    notes = [
        "Each row adds one component to the row above (experiments/table1); the paper's "
        "numbers are COCO val2017 at 608 (ASFF*: test-dev).",
        f"Rows below {min_ap:.2f} AP, or not trained on this profile, are marked instead of "
        "shown as noise.",
    ]
    return write_table(out_dir, "table1", shown, numeric, caption, notes), runs


def analysis_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    figures_dir: Path,
    runs: pd.DataFrame,
) -> tuple[list[Path], dict[str, pd.DataFrame] | None]:
    """The gradient-consistency and agreement tables and the analysis figures, when the fusion
    runs have been analysed (``study analyze``); (paths, long tables) or ([], None)."""
    from study.report.analysis import (
        agreement_table,
        analysis_dir,
        collect_analysis,
        gradient_table,
    )
    from study.report.figures import (
        conflict_share_figure,
        share_vs_weight_figure,
        weight_maps_figure,
    )

    fusions, seeds = list(params.get("fusions") or []), list(params.get("seeds") or [0])
    folders = [analysis_dir(results_dir, f"fusion/{f}", s) for f in fusions for s in seeds]
    present = [d.is_dir() for d in folders]
    if not any(present):
        log.info("no analysis results (study analyze): gradient tables and figures skipped")
        return [], None
    if not all(present):
        missing = [str(d) for d, ok in zip(folders, present, strict=True) if not ok]
        raise StudyError(f"analysis missing for some runs: {', '.join(missing[:3])}")
    data = collect_analysis(results_dir, fusions, seeds)
    profile = runs["profile"].dropna().iloc[0] if runs["profile"].notna().any() else "?"
    analysed = "/".join(str(n) for n in data["images"]["images"])
    where = (
        f"profile `{profile}`, dataset {_dataset_label(runs)} ({analysed} analysed), "
        f"seeds {', '.join(map(str, seeds))}"
    )
    paths: list[Path] = []
    shown, numeric = gradient_table(data["gradients"], fusions)
    caption = (
        f"**Gradient consistency (paper section 3.3, measured)**, {where}. Conflict share at "
        "locations of x^k positive at level k and background at the other levels: the part of "
        "the gradient at x^k that comes from the other levels' losses, |Σ_{j≠k} g^{k←j}| / "
        "(|g^{k←k}| + |Σ_{j≠k} g^{k←j}|), mean over locations, mean ± std over seeds."
    )
    notes = [
        "Checkpoints: the run's snapshots (`train.snapshots`: init = the initial weights) and "
        "its final weights. Gradients with BatchNorm in training mode (batch statistics), as "
        "training computes them; one backward per head level on the neck's three output maps "
        "(what the fusion reads).",
        "'weights detached': the fusion weights treated as constants in the backward pass, as "
        "the paper's argument does; for fusions without weights it is the full gradient.",
        "`none` is 0 by construction: without fusion a level's loss does not reach the other "
        "levels' maps after the neck (the levels still meet in the neck's top-down path, "
        "before x^k, which this measure does not cover).",
        "cosine: between g^{k←k} and Σ_{j≠k} g^{k←j} at the same locations (negative = the "
        "other levels push the other way). w_others: the weight the other output levels give "
        "to input level k at those locations (fusions with weights).",
    ]
    paths += write_table(out_dir, "gradient_consistency", shown, numeric, caption, notes)
    ashown, anumeric = agreement_table(data["agreement"], fusions)
    if not ashown.empty:
        acaption = (
            f"**Does the largest fusion weight pick the assigned level? (claim C6)**, {where}, "
            "final weights. For each ground-truth object positive at level k, the weights at "
            "its centre cell on output level k: % of objects whose largest weight is on input "
            "level k (chance 33.3), mean ± std over seeds."
        )
        anotes = [
            "Sizes by COCO's area thresholds in original-image pixels (32², 96²). An object "
            "that lost its cell to another one (the loss's last-target-wins rule) is not counted.",
            "`scalar` has one weight per level for all locations, so its rate per size is 100 % "
            "or 0 % by construction.",
        ]
        paths += write_table(out_dir, "weight_agreement", ashown, anumeric, acaption, anotes)
    paths += conflict_share_figure(
        data["gradients"],
        fusions,
        figures_dir,
        f"Conflict share over training ({where}); points: seeds, lines: their mean",
    )
    weighted = sorted(set(data["agreement"]["fusion"])) if not data["agreement"].empty else []
    weighted = [f for f in fusions if f in weighted]
    paths += (
        share_vs_weight_figure(
            data["bins"],
            weighted,
            figures_dir,
            f"Conflict share against the weight the other levels give (final weights; {where})",
        )
        or []
    )
    class_names = _class_names(runs)
    for fusion in weighted:
        maps = analysis_dir(results_dir, f"fusion/{fusion}", seeds[0]) / "maps.npz"
        if maps.is_file():
            paths += (
                weight_maps_figure(
                    maps,
                    f"weight_maps_{fusion}",
                    figures_dir,
                    f"{fusion} fusion weights, seed {seeds[0]}, final weights ({where})",
                    class_names,
                )
                or []
            )
    return paths, data


def _class_names(runs: pd.DataFrame) -> list[str]:
    from study.data import load_coco

    ann = runs["ann_file"].dropna()
    if ann.empty or not Path(ann.iloc[0]).is_file():
        return []
    cats = load_coco(ann.iloc[0]).cats
    return [cats[c]["name"] for c in sorted(cats)]


def compact_metrics(runs: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{experiment: {seed<k>: {AP, APs, APm, APl}}}`` (fractions, 4 digits): what
    ``dvc exp show`` / ``dvc exp diff`` compare."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for _, row in runs.iterrows():
        values = {
            m: (None if pd.isna(row[m]) else round(float(row[m]), 4))
            for m in ("AP", "APs", "APm", "APl")
        }
        out.setdefault(row["experiment"], {})[f"seed{int(row['seed'])}"] = values
    return out


def build_report(
    params: Mapping[str, Any],
    results_dir: str | Path,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """What ``study report`` runs: Table 3, Table 1, runs.csv, the analysis tables and figures,
    the scorecard and the compact metrics file."""
    from study.report.scorecard import RULES, Evidence, scorecard, verdict_counts

    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "tables"
    figures = results_dir / "figures"
    if not params.get("fusions") and not params.get("table1"):
        raise StudyError("params: neither `fusions` nor `table1` lists an experiment")
    paths: list[Path] = []
    frames = []
    fusion_runs = summary = deltas = None
    analysis = None
    min_ap = float((params.get("report") or {}).get("min_ap", 0.10))
    bench, overhead = read_bench(results_dir)
    if params.get("fusions"):
        p, fusion_runs, summary, deltas = fusion_report(params, results_dir, out, bench)
        paths += p
        frames.append(fusion_runs)
        p, analysis = analysis_report(params, results_dir, out, figures, fusion_runs)
        paths += p
    p, table1_runs = table1_report(params, results_dir, out, bench)
    paths += p
    frames.append(table1_runs)
    all_runs = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    seeds_of = {
        **{f"fusion/{f}": list(params.get("seeds") or [0]) for f in params.get("fusions") or []},
        **{
            f"table1/{r}": list(params.get("table1_seeds") or [0])
            for r in params.get("table1") or []
        },
    }
    where = f"profile `{params.get('profile', '?')}`, dataset {_dataset_label(all_runs)}"
    paths += speed_report(dict(params), results_dir, out, figures, seeds_of, where, bench)
    from study.utils import write_text

    runs_csv = out / "runs.csv"
    write_text(runs_csv, all_runs.to_csv(index=False))
    paths.append(runs_csv)

    evidence = Evidence(
        summary,
        deltas,
        fusion_runs,
        table1_runs,
        None if analysis is None else analysis["gradients"],
        None if analysis is None else analysis["agreement"],
        min_ap,
        overhead,
    )
    card = scorecard(evidence)
    profile = params.get("profile", "?")
    shown = card[["claim", "statement", "paper", "measured", "spread", "verdict"]]
    caption = (
        f"**Replication scorecard**, profile `{profile}`, dataset {params.get('dataset', '?')}: "
        f"{verdict_counts(card)}. Each verdict follows the rule below, applied by "
        "`study report` to the tables beside it."
    )
    notes = [f"{k}: {v}" for k, v in RULES.items()]
    paths += write_table(out, "scorecard", shown, card, caption, notes)
    metrics = results_dir / "metrics.json"
    write_json(metrics, compact_metrics(all_runs))
    paths.append(metrics)
    # the tables' provenance: the code and params that made them (each run's own files carry
    # theirs in their meta)
    prov = out / "provenance.json"
    written = sorted(str(p) for p in paths)
    write_json(prov, {**provenance(dict(params)), "stage": "study report", "files": written})
    paths.append(prov)
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths
