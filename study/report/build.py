"""``study report``, section by section: Table 3 and the pairwise table (``fusion_report``),
Table 1 (``table1_report``), the analysis tables and figures (``analysis_report``), then the
test-size tables, runs.csv, the scorecard, the compact metrics and the provenance of it all
(``build_report``). The validation annotations are read once, by the fusion section, and handed
on to the sections that need them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pycocotools.coco import COCO

from study.data import load_coco
from study.errors import StudyError
from study.eval.coco_eval import read_detections
from study.eval.resample import ImageWeightedAP
from study.provenance import provenance
from study.report.analysis import (
    agreement_table,
    analysis_dir,
    collect_analysis,
    gradient_checkpoint_table,
    gradient_table,
)
from study.report.anchors import anchor_usage, usage_report_data
from study.report.collect import AP_COLUMNS, collect_runs, detections_path, run_dir
from study.report.curves import (
    RULE as CONVERGENCE_RULE,
)
from study.report.curves import (
    budget_curve,
    budget_display,
    convergence,
    curve_table,
    read_curves,
)
from study.report.errors import errors_report
from study.report.figures import (
    budget_figure,
    gradient_measures_figure,
    learning_curves_figure,
    measures_vs_weight_figure,
    weight_maps_figure,
)
from study.report.scorecard import RULES, Evidence, scorecard, verdict_counts
from study.report.speed import attach_speed, read_bench, speed_report
from study.report.stats import paired_differences, seed_summary
from study.report.tables import (
    PAIRWISE,
    TABLE3,
    fusion_table,
    pairwise_table,
    table1_table,
    write_table,
)
from study.utils import write_json, write_text

log = logging.getLogger(__name__)
SUMMARY_COLUMNS = (*AP_COLUMNS, "params", "flops", "ms", "train_min")


# --- params and run metadata -------------------------------------------------------------------


def _seeds(params: Mapping[str, Any], key: str = "seeds") -> list[int]:
    return list(params.get(key) or [0])


def _report_settings(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """params.yaml ``report``: min_ap, bootstrap_replicates, bootstrap_seed, pairwise."""
    return params.get("report") or {}


def _min_ap(params: Mapping[str, Any]) -> float:
    return float(_report_settings(params).get("min_ap", 0.10))


def profile_of(runs: pd.DataFrame) -> str:
    """The profile the runs were trained on (from their metadata), '?' when none says."""
    return runs["profile"].dropna().iloc[0] if runs["profile"].notna().any() else "?"


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


# --- the validation annotations ----------------------------------------------------------------


def validation_annotations(runs: pd.DataFrame) -> COCO:
    """The annotation file every run was evaluated on, read (StudyError when they differ)."""
    ann_files = set(runs["ann_file"].dropna())
    if len(ann_files) != 1:
        raise StudyError(f"runs were evaluated on different annotation files: {sorted(ann_files)}")
    return load_coco(next(iter(ann_files)))


def scorers(
    results_dir: Path, runs: pd.DataFrame, coco_gt: COCO
) -> dict[tuple[str, int], ImageWeightedAP]:
    """An ImageWeightedAP per run, from its detections.json.gz and the annotations ``coco_gt``."""
    image_ids = sorted(coco_gt.imgs)[: int(runs["num_images"].iloc[0])]
    out = {}
    for exp, seed in zip(runs["experiment"], runs["seed"], strict=True):
        dets = read_detections(detections_path(results_dir, exp, seed))
        out[(exp, int(seed))] = ImageWeightedAP(coco_gt, dets, image_ids)
    return out


def category_names(coco_gt: COCO) -> list[str]:
    """The category names in label order (categories sorted by id)."""
    cats = coco_gt.cats
    return [cats[c]["name"] for c in sorted(cats)]


# --- Table 3 and the pairwise table ------------------------------------------------------------


@dataclass
class FusionStudy:
    """What the fusion section computed, for the later sections: the runs, their seed summary,
    the paired differences, the learning curves and convergence records, the validation
    annotations they were scored on, the paths written."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    deltas: pd.DataFrame
    annotations: COCO
    paths: list[Path]
    curves: pd.DataFrame
    converged: dict[str, dict[str, Any]]
    names: dict[str, str]


def fusion_experiments(params: Mapping[str, Any]) -> list[str]:
    """Table 3's experiments: params ``fusions`` (fusion/<name>)."""
    return [f"fusion/{f}" for f in params.get("fusions") or []]


def _comparisons(
    experiments: Sequence[str], pairwise: str | None
) -> tuple[str, str | None, dict[str, list[tuple[str, str]]]]:
    """(Table 3's reference, the pairwise table's strategy or None, the (experiment, reference)
    pairs of each table: one family each for the multiplicity adjustment). The second table
    (params.yaml report.pairwise, a strategy's name) sets one strategy against each other
    one."""
    by_name = {Path(e).name: e for e in experiments}
    reference = "fusion/none" if "fusion/none" in experiments else experiments[0]
    if pairwise is not None and pairwise not in by_name:
        raise StudyError(
            f"params.yaml report.pairwise: {pairwise!r} is not one of `fusions` (or "
            f"`designs`): {list(by_name)}"
        )
    pair_ref = by_name[pairwise] if pairwise and len(experiments) > 2 else None
    pair_ref = None if pair_ref == reference else pair_ref
    families = {TABLE3: [(e, reference) for e in experiments if e != reference]}
    if pair_ref:
        families[PAIRWISE] = [(pair_ref, e) for e in experiments if e != pair_ref]
    return reference, pair_ref, families


def _table3(
    params: Mapping[str, Any],
    out_dir: Path,
    runs: pd.DataFrame,
    shown: pd.DataFrame,
    numeric: pd.DataFrame,
    reference_name: str,
    table: str = "fusion",
    title: str = "Table 3 (fusion strategies)",
) -> list[Path]:
    """Table 3 (or the extended comparison, ``table``) with its caption and notes."""
    seeds, min_ap = _seeds(params), _min_ap(params)
    replicates = int(_report_settings(params).get("bootstrap_replicates", 500))
    caption = (
        f"**{title}**, profile `{profile_of(runs)}`, dataset "
        f"{_dataset_label(runs)}; {len(seeds)} seed(s) per strategy "
        f"({', '.join(map(str, seeds))}). COCO AP x 100, mean ± standard deviation over seeds."
    )
    m = max(1, len(numeric) - 1)
    notes = [
        f"Δ: paired difference to `{reference_name}` in AP points (mean over seeds), with a "
        f"seed interval: a Student t interval on the per-seed differences ({len(seeds) - 1} "
        f"df), Holm-adjusted over the {m} comparisons of each column (the k-th smallest p "
        f"tested at 0.05 / ({m} - k + 1)). 'within noise': the interval covers 0; only an "
        "interval that excludes 0 is 'beyond noise'. ΔAP > 0: seeds with a positive "
        "difference, of those compared.",
        f"ΔAP test set: the noise of the finite validation set alone, a 95 % bootstrap over the "
        f"images ({replicates} replicates, one draw shared by all runs, seeds fixed, COCO AP "
        "recomputed exactly on each sample); it does not decide 'beyond noise'.",
        f"converged: {CONVERGENCE_RULE} (results/tables/convergence.md); in brackets the mean "
        "gain over the last quarter. A comparison with a row that has not converged measures "
        "learning speed as much as the fusion.",
        "params and GFLOPs (torch.utils.flop_counter, multiply-add = 2) at the evaluation size; "
        "ms: median per image at batch 1, fp32, forward + decode + NMS, of the bench.seed "
        "weights on the machine that ran the `speed` stage (results/bench.csv; the ASFF "
        "overhead with its spread: results/bench_overhead.csv). The extended comparison's "
        "table (results/designs_report) times none, asff and the designs in their own rounds "
        "(its bench.csv) and shows no ms for the strategies only Table 3's bench timed.",
        "Paper column: COCO val2017 at 608 with the guided-anchoring head; ours: the profile's "
        "dataset and scale with the plain YOLOv3 head (experiments/fusion/_base.yaml).",
        f"A strategy whose mean AP is below {min_ap:.2f} did not learn within the profile's "
        "budget and is marked instead of compared.",
    ]
    return write_table(out_dir, table, shown, numeric, caption, notes)


def _pairwise_report(
    out_dir: Path,
    deltas: pd.DataFrame,
    pair_ref: str,
    names: Mapping[str, str],
    seeds: Sequence[int],
    profile: str,
) -> list[Path]:
    """The pairwise table: the strategy ``pair_ref`` against every other one."""
    pairwise = names[pair_ref]
    shown, numeric = pairwise_table(deltas, pair_ref, names, seeds)
    caption = (
        f"**{pairwise} against every other strategy**, profile `{profile}`, the runs of "
        f"Table 3 (fusion.md). Paired difference `{pairwise}` minus the other strategy in "
        "AP points (mean over seeds) with its seed interval: a Student t interval on the "
        "per-seed differences, Holm-adjusted over this table's comparisons (one family per "
        "column); the test-set interval is the image bootstrap of Table 3."
    )
    notes = [
        f"'within noise': the interval covers 0; a positive difference favours `{pairwise}`; "
        "ΔAP > 0: the seeds where it is positive.",
        "The paper's Table 3 claims ASFF beats sum and concat fusion on COCO (numbers for "
        "those two not published).",
    ]
    return write_table(out_dir, f"fusion_vs_{pairwise}", shown, numeric, caption, notes)


def fusion_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    bench: pd.DataFrame | None = None,
    experiments: Sequence[str] | None = None,
    table: str = "fusion",
    title: str = "Table 3 (fusion strategies)",
) -> FusionStudy:
    """Table 3 and the pairwise table (ms, params, FLOPs from ``bench``, results/bench.csv) of
    ``experiments`` (default: params ``fusions``), written as ``table``.md with ``title``."""
    seeds = _seeds(params)
    rep = _report_settings(params)
    experiments = list(experiments or fusion_experiments(params))
    runs = attach_speed(collect_runs(results_dir, experiments, seeds), bench)
    summary = seed_summary(runs, SUMMARY_COLUMNS)
    reference, pair_ref, families = _comparisons(experiments, rep.get("pairwise"))
    annotations = validation_annotations(runs)
    deltas = paired_differences(
        scorers(results_dir, runs, annotations),
        families,
        seeds,
        replicates=int(rep.get("bootstrap_replicates", 500)),
        rng_seed=int(rep.get("bootstrap_seed", 0)),
    )
    names = {e: Path(e).name for e in experiments}
    curves = read_curves(results_dir, experiments, seeds)
    converged = convergence(curves, min_ap=_min_ap(params))
    shown, numeric = fusion_table(
        summary, deltas, reference, names, _min_ap(params), seeds, converged
    )
    paths = _table3(params, out_dir, runs, shown, numeric, names[reference], table, title)
    if pair_ref:
        paths += _pairwise_report(out_dir, deltas, pair_ref, names, seeds, profile_of(runs))
    return FusionStudy(runs, summary, deltas, annotations, paths, curves, converged, names)


# --- the anchors ---------------------------------------------------------------------------------


def anchors_report(
    results_dir: Path, reference: str, seed: int, val: COCO, out_dir: Path
) -> list[Path]:
    """anchor_usage.md: the boxes each anchor of the reference run's set is assigned, train and
    val (``val``: the annotations Table 3 was scored on), at its training size (from the run's
    train_summary.json config)."""
    summary = run_dir(results_dir, reference, seed) / "train_summary.json"
    if not summary.is_file():
        return []
    cfg = json.loads(summary.read_text()).get("config") or {}
    try:
        anchors, size = cfg["model"]["anchors"], int(cfg["train"]["img_size"])
        data = cfg["data"]
        train_ann = Path(data["root"]) / "annotations" / f"instances_{data['train_split']}.json"
        sizes = usage_report_data(train_ann, val, size)
    except (KeyError, TypeError, OSError, StudyError) as exc:
        log.warning("anchor usage skipped: %s: %s", summary, exc)
        return []
    table = anchor_usage(sizes, anchors)
    name = anchors if isinstance(anchors, str) else "explicit"
    caption = (
        f"**Anchor usage**, anchor set `{name}` at the training size {size} px (the boxes after "
        "the square resize): the ground-truth boxes each anchor is assigned by YOLOv3's rule "
        "(the best IoU of the boxes centred on each other; one anchor per box), per split, "
        "with their mean IoU with it. An anchor no box picks trains nothing."
    )
    per_level = table.groupby("stride")["train boxes"].sum().to_dict()
    notes = [
        "Boxes per level (train): "
        + ", ".join(f"stride {k}: {v}" for k, v in sorted(per_level.items(), reverse=True))
        + ". The anchor comparison behind the default set: docs/default-profile.md."
    ]
    return write_table(out_dir, "anchor_usage", table, table, caption, notes)


# --- learning curves, convergence and the budget curve -----------------------------------------


def budget_comparisons(experiments: Sequence[str]) -> list[tuple[str, str]]:
    """Each strategy − none, then asff − each other strategy (those present)."""
    pairs = [(e, "fusion/none") for e in experiments if e != "fusion/none"]
    if "fusion/asff" in experiments:
        pairs += [
            ("fusion/asff", e) for e in experiments if e not in ("fusion/asff", "fusion/none")
        ]
    return [p for p in pairs if "fusion/none" in experiments or p[1] != "fusion/none"]


def curves_report(
    fusion: FusionStudy, out_dir: Path, figures: Path, profile: str
) -> tuple[list[Path], pd.DataFrame | None]:
    """convergence.md (AP at every curve point, the rule's verdict per strategy), budget.md
    and the two figures; (paths, the budget curve) or ([], None) when no run has a curve."""
    curves, names = fusion.curves, fusion.names
    if curves.empty:
        return [], None
    figures.mkdir(parents=True, exist_ok=True)
    images = int(curves["images"].iloc[0])
    table = curve_table(curves, names)
    table["last-quarter gain"] = [
        f"{fusion.converged[e]['gain']:+.1f}" for e in curves["experiment"].unique()
    ]
    table["converged"] = [
        "yes" if fusion.converged[e]["converged"] else "NO" for e in curves["experiment"].unique()
    ]
    caption = (
        f"**Learning curves and convergence**, profile `{profile}`: AP x 100 (mean ± standard "
        f"deviation over seeds) on the first {images} validation images at every training "
        "snapshot and at the end (columns: iterations)."
    )
    paths = write_table(
        out_dir, "convergence", table, table, caption, [f"Rule: {CONVERGENCE_RULE}."]
    )
    budget = budget_curve(curves, budget_comparisons(list(names)))
    shown = budget_display(budget, names)
    caption = (
        f"**The budget curve**, profile `{profile}`: ΔAP (points) between two strategies, paired "
        f"by seed, at every point of the learning curves (first {images} validation images), "
        "with its 95 % Student t interval over seeds and the number of seeds where it is "
        "positive. A gain that persists to the end is a better model; one that shrinks to 0 is "
        "faster early learning."
    )
    notes = [
        "Intervals are not adjusted for multiplicity: read a row as one curve. Claim C8 of the "
        "scorecard reads the last point of asff − none."
    ]
    numeric = budget.drop(columns=["per_seed"])
    paths += write_table(out_dir, "budget", shown, numeric, caption, notes)
    paths += learning_curves_figure(curves, names, figures)
    paths += budget_figure(budget, names, figures)
    return paths, budget


# --- Table 1 -----------------------------------------------------------------------------------


def table1_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    bench: pd.DataFrame | None = None,
) -> tuple[list[Path], pd.DataFrame]:
    """Table 1 (the component chain); returns (paths, runs)."""
    rows, not_run = list(params.get("table1") or []), list(params.get("table1_not_run") or [])
    seeds = _seeds(params, "table1_seeds")
    min_ap = _min_ap(params)
    runs = (
        attach_speed(collect_runs(results_dir, [f"table1/{r}" for r in rows], seeds), bench)
        if rows
        else pd.DataFrame(columns=["experiment", "seed", *SUMMARY_COLUMNS, "profile", "dataset"])
    )
    summary = seed_summary(runs, SUMMARY_COLUMNS) if rows else runs
    shown, numeric = table1_table(summary, rows, not_run, min_ap)
    if rows and runs["profile"].notna().any():
        profile, dataset = profile_of(runs), _dataset_label(runs)
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


# --- the analysis: gradient consistency, weight agreement, figures -----------------------------


def _analysed(results_dir: Path, experiments: Sequence[str], seeds: Sequence[int]) -> bool:
    """Whether ``study analyze`` has analysed the fusion runs: all of them (True), none (False);
    some only is a StudyError."""
    folders = [analysis_dir(results_dir, e, s) for e in experiments for s in seeds]
    present = [d.is_dir() for d in folders]
    if not any(present):
        return False
    if not all(present):
        missing = [str(d) for d, ok in zip(folders, present, strict=True) if not ok]
        raise StudyError(f"analysis missing for some runs: {', '.join(missing[:3])}")
    return True


GRADIENT_NOTES = [
    "Locations (the same at every checkpoint and for every strategy): cells of x^k where an "
    "object is assigned at level k (the level of its best predefined anchor, the cell of its "
    "centre) and no object is assigned at another level within one cell. Chosen from the "
    "ground truth alone, so a change over training or between strategies is the model's, not "
    "the set's.",
    "‖own‖ = ‖g^{k←k}‖, ‖cross‖ = ‖Σ_{j≠k} g^{k←j}‖ (channel norms at the location), divided "
    "by the batch's loss per image so checkpoints compare; shown ×10³. The paper's section 3.3 "
    "argues that ASFF's weights can scale the cross term to 0: ‖cross‖ is the measure of that "
    "claim (C5). cos < 0: share of locations where the cross term opposes the own one "
    "(PCGrad's definition of a conflict; 0.5 when the directions are unrelated). share = "
    "‖cross‖ / (‖own‖ + ‖cross‖) is kept for comparison: it is a ratio to the level's own "
    "gradient and rises when that gradient shrinks (a level whose own weight is near 0, a loss "
    "already fitted), with no change in what the other levels send.",
    "Gradients with BatchNorm in training mode (batch statistics), as training computes them; "
    "one backward per head level on the neck's three output maps (what the fusion reads). "
    "'weights detached': the fusion weights treated as constants in the backward pass, as "
    "the paper's argument does; for fusions without weights it is the full gradient.",
    "`none` has ‖cross‖ = 0 by construction: without fusion a level's loss does not reach the "
    "other levels' maps after the neck (the levels still meet in the neck's top-down path, "
    "before x^k, which this measure does not cover). w_others: the weight the other output "
    "levels give to input level k at the location (fusions with weights).",
]


def _gradient_tables(
    data: dict[str, pd.DataFrame], fusions: Sequence[str], out_dir: Path, where: str
) -> list[Path]:
    """``gradient_consistency`` (final weights, per level and size) and
    ``gradient_checkpoints`` (per level, over training)."""
    shown, numeric = gradient_table(data["gradients"], fusions)
    caption = (
        f"**Gradient consistency (paper section 3.3, measured)**, {where}, final weights, full "
        "gradient. At locations positive at level k and background at the other levels: the "
        "own level's and the other levels' gradient at x^k, their cosine, the share of "
        "locations where they oppose, the conflict share; per level and object size, mean over "
        "locations, mean ± std over seeds."
    )
    paths = write_table(out_dir, "gradient_consistency", shown, numeric, caption, GRADIENT_NOTES)
    shown, numeric = gradient_checkpoint_table(data["gradients"], fusions)
    caption = (
        f"**Gradient consistency over training**, {where}, full gradient, all sizes: the "
        "cross-level gradient, the share of locations where it opposes the own one and the "
        "conflict share at each checkpoint (init = the initial weights), per level; the same "
        "locations at every checkpoint. Mean ± std over seeds."
    )
    notes = GRADIENT_NOTES[:2]
    paths += write_table(out_dir, "gradient_checkpoints", shown, numeric, caption, notes)
    return paths


def _weight_agreement_table(
    data: dict[str, pd.DataFrame], fusions: Sequence[str], out_dir: Path, where: str
) -> list[Path]:
    """Claim C6's table; nothing when no fusion has weights."""
    shown, numeric = agreement_table(data["agreement"], fusions)
    if shown.empty:
        return []
    caption = (
        f"**Does the largest fusion weight pick the assigned level? (claim C6)**, {where}, "
        "final weights. For each ground-truth object assigned to level k, the weights at "
        "its centre cell on output level k: % of objects whose largest weight is on input "
        "level k (chance 33.3), mean ± std over seeds."
    )
    notes = [
        "Sizes by COCO's area thresholds in original-image pixels (32², 96²). Every object is "
        "counted at its assigned level (its best predefined anchor's) and centre cell. The "
        "weights are read in eval mode (running BatchNorm statistics), as inference computes "
        "them.",
        "`scalar` has one weight per level for all locations, so its rate per size is 100 % "
        "or 0 % by construction.",
    ]
    return write_table(out_dir, "weight_agreement", shown, numeric, caption, notes)


def _weighted_fusions(data: dict[str, pd.DataFrame], fusions: Sequence[str]) -> list[str]:
    """The fusions with weights (those with agreement rows), in the order of ``fusions``."""
    weighted = set(data["agreement"]["fusion"]) if not data["agreement"].empty else set()
    return [f for f in fusions if f in weighted]


def _weight_map_figures(
    results_dir: Path,
    weighted: Sequence[str],
    seed: int,
    figures_dir: Path,
    where: str,
    class_names: Sequence[str],
) -> list[Path]:
    """Per experiment with fusion weights, the weight maps of its ``seed`` run (when it wrote
    maps.npz)."""
    paths: list[Path] = []
    for experiment in weighted:
        fusion = Path(experiment).name
        maps = analysis_dir(results_dir, experiment, seed) / "maps.npz"
        if maps.is_file():
            paths += (
                weight_maps_figure(
                    maps,
                    f"weight_maps_{fusion}",
                    figures_dir,
                    f"{fusion} fusion weights, seed {seed}, final weights ({where})",
                    class_names,
                )
                or []
            )
    return paths


def analysis_report(
    params: Mapping[str, Any],
    results_dir: Path,
    out_dir: Path,
    figures_dir: Path,
    runs: pd.DataFrame,
    class_names: Sequence[str] = (),
    experiments: Sequence[str] | None = None,
) -> tuple[list[Path], dict[str, pd.DataFrame] | None]:
    """The gradient-consistency and agreement tables and the analysis figures of
    ``experiments`` (default: params ``fusions``), when their runs have been analysed
    (``study analyze``); (paths, long tables) or ([], None). ``class_names`` label the boxes
    of the weight maps."""
    experiments, seeds = list(experiments or fusion_experiments(params)), _seeds(params)
    fusions = [Path(e).name for e in experiments]
    if not _analysed(results_dir, experiments, seeds):
        log.info("no analysis results (study analyze): gradient tables and figures skipped")
        return [], None
    data = collect_analysis(results_dir, experiments, seeds)
    analysed = "/".join(str(n) for n in data["images"]["images"])
    where = (
        f"profile `{profile_of(runs)}`, dataset {_dataset_label(runs)} ({analysed} analysed), "
        f"seeds {', '.join(map(str, seeds))}"
    )
    paths = _gradient_tables(data, fusions, out_dir, where)
    paths += _weight_agreement_table(data, fusions, out_dir, where)
    paths += gradient_measures_figure(
        data["gradients"],
        fusions,
        figures_dir,
        f"Gradient measures over training per level, full gradient, all sizes, the same "
        f"locations at every checkpoint ({where}); points: seeds, lines: their mean. None's "
        "cross-level gradient is 0 (not drawn on the log scale).",
    )
    weighted = _weighted_fusions(data, fusions)
    paths += (
        measures_vs_weight_figure(
            data["bins"],
            weighted,
            figures_dir,
            "Cross-level gradient and conflict share against the weight the other levels give, "
            f"per level (final weights, full gradient; {where})",
        )
        or []
    )
    weighted_runs = [e for e in experiments if Path(e).name in weighted]
    paths += _weight_map_figures(
        results_dir, weighted_runs, seeds[0], figures_dir, where, class_names
    )
    return paths, data


# --- the whole report --------------------------------------------------------------------------


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


def _seeds_of(params: Mapping[str, Any]) -> dict[str, list[int]]:
    """Every experiment of the study (fusion, then Table 1) -> its seeds."""
    return {
        **{f"fusion/{f}": _seeds(params) for f in params.get("fusions") or []},
        **{f"table1/{r}": _seeds(params, "table1_seeds") for r in params.get("table1") or []},
    }


def _scorecard_report(params: Mapping[str, Any], evidence: Evidence, out_dir: Path) -> list[Path]:
    card = scorecard(evidence)
    shown = card[["claim", "statement", "paper", "measured", "spread", "verdict"]]
    caption = (
        f"**Replication scorecard**, profile `{params.get('profile', '?')}`, dataset "
        f"{params.get('dataset', '?')}: {verdict_counts(card)}. Each verdict follows the rule "
        "below, applied by `study report` to the tables beside it."
    )
    notes = [f"{k}: {v}" for k, v in RULES.items()]
    return write_table(out_dir, "scorecard", shown, card, caption, notes)


def build_report(
    params: Mapping[str, Any],
    results_dir: str | Path,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """What ``study report`` runs: Table 3, Table 1, runs.csv, the analysis tables and figures,
    the scorecard and the compact metrics file."""
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "tables"
    figures = results_dir / "figures"
    if not params.get("fusions") and not params.get("table1"):
        raise StudyError("params: neither `fusions` nor `table1` lists an experiment")
    paths: list[Path] = []
    fusion: FusionStudy | None = None
    analysis, budget = None, None
    bench, overhead = read_bench(results_dir)
    if params.get("fusions"):
        fusion = fusion_report(params, results_dir, out, bench)
        paths += fusion.paths
        names = category_names(fusion.annotations)
        p, analysis = analysis_report(params, results_dir, out, figures, fusion.runs, names)
        paths += p
        p, budget = curves_report(fusion, out, figures, profile_of(fusion.runs))
        paths += p
        seed = _seeds(params)[0]
        paths += anchors_report(results_dir, "fusion/none", seed, fusion.annotations, out)
        where = f"profile `{profile_of(fusion.runs)}`, dataset {_dataset_label(fusion.runs)}"
        paths += errors_report(results_dir, fusion.runs, fusion.annotations, out, figures, where)[0]
    p, table1_runs = table1_report(params, results_dir, out, bench)
    paths += p
    frames = [table1_runs] if fusion is None else [fusion.runs, table1_runs]
    all_runs = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    where = f"profile `{params.get('profile', '?')}`, dataset {_dataset_label(all_runs)}"
    paths += speed_report(dict(params), results_dir, out, figures, _seeds_of(params), where, bench)
    runs_csv = out / "runs.csv"
    write_text(runs_csv, all_runs.to_csv(index=False))
    paths.append(runs_csv)
    evidence = Evidence(
        None if fusion is None else fusion.summary,
        None if fusion is None else fusion.deltas,
        None if fusion is None else fusion.runs,
        table1_runs,
        None if analysis is None else analysis["gradients"],
        None if analysis is None else analysis["agreement"],
        _min_ap(params),
        overhead,
        None if fusion is None else fusion.converged,
        budget,
    )
    paths += _scorecard_report(params, evidence, out)
    metrics = results_dir / "metrics.json"
    write_json(metrics, compact_metrics(all_runs))
    paths.append(metrics)
    paths.append(write_provenance(out, params, "study report", paths))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths


def write_provenance(
    out_dir: Path, params: Mapping[str, Any], stage: str, paths: Sequence[Path]
) -> Path:
    """``out_dir/provenance.json``: the code and params that made the tables (each run's own
    files carry theirs in their meta) and the files written."""
    prov = out_dir / "provenance.json"
    written = sorted(str(p) for p in paths)
    write_json(prov, {**provenance(dict(params)), "stage": stage, "files": written})
    return prov
