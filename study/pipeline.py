"""The pipeline stages behind the CLI: where each stage reads and writes.

A run is one (experiment, seed); the experiment is named by its path below ``experiments/``
(``fusion/asff``, ``table1/baseline``). Layout of a study (relative to the repository root):
    data/synthetic/                         the built-in dataset (COCO layout), `study data`
    runs/<experiment>/seed<k>/last.pt       resumable training state (not tracked)
    models/<experiment>/seed<k>.pt          final weights + how to rebuild the model (DVC out)
    models/<experiment>/snapshots/seed<k>/  weights during training (`train.snapshots`; DVC out)
    results/<experiment>/seed<k>/           train_summary.json, live/ (dvclive), metrics.json,
                                            detections.json, test_sizes/, analysis/
    results/bench.csv                       latency / throughput of every model (`study bench`)
    results/tables/                         paper-style tables from `study report`
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from study.config import load_params
from study.errors import CheckpointError, ConfigError, StudyError
from study.utils import ensure_writable, pick_device, provenance, swap_in, write_json

if TYPE_CHECKING:
    from study.data import CocoDetection

log = logging.getLogger(__name__)
EXPERIMENTS = Path("experiments")
RUNS, MODELS, RESULTS = Path("runs"), Path("models"), Path("results")


@dataclass(frozen=True)
class RunPaths:
    """Where one (experiment, seed) run keeps its files."""

    run_dir: Path  # runs/<experiment>/seed<k>: resumable state
    model: Path  # models/<experiment>/seed<k>.pt: final weights
    results: Path  # results/<experiment>/seed<k>: metrics, training summary, analysis
    snapshots: Path  # models/<experiment>/snapshots/seed<k>: weights during training

    @property
    def analysis(self) -> Path:
        """results/<experiment>/seed<k>/analysis: gradient consistency, fusion weights."""
        return self.results / "analysis"


def run_paths(cfg: dict[str, Any]) -> RunPaths:
    """The paths of the run ``cfg`` describes (its ``name`` and ``train.seed``)."""
    sub = Path(cfg["name"]) / f"seed{int(cfg['train']['seed'])}"
    return RunPaths(
        RUNS / sub,
        MODELS / sub.parent / f"{sub.name}.pt",
        RESULTS / sub,
        MODELS / sub.parent / "snapshots" / sub.name,
    )


def experiment_name(path: Path) -> str:
    """``experiments/fusion/asff.yaml`` -> ``fusion/asff``; a file elsewhere -> its stem."""
    try:
        return path.resolve().relative_to(EXPERIMENTS.resolve()).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def experiment_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: experiment file not found")
        return path
    path = EXPERIMENTS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(experiment_name(p) for p in EXPERIMENTS.rglob("[!_]*.yaml"))
        raise ConfigError(f"{path}: no experiment {name!r}; known: {', '.join(known)}")
    return path


def check_dataset_param(cfg: dict[str, Any], params_path: str, explicit_profile: bool) -> None:
    """params.yaml's top-level ``dataset`` (what dvc.yaml declares as the data dependency) must
    be the folder the active profile reads, or DVC would track the wrong data."""
    if explicit_profile or not Path(params_path).is_file():
        return
    dataset = load_params(params_path).get("dataset")
    if dataset is not None and Path(dataset) != Path(cfg["data"]["root"]):
        raise ConfigError(
            f"{params_path}: profile {cfg['profile']!r} reads data.root={cfg['data']['root']!r} "
            f"but `dataset` is {dataset!r}; set both, e.g. "
            f"dvc exp run -S profile={cfg['profile']} -S dataset={cfg['data']['root']}"
        )


def make_data(params_path: str, out: Path | None = None) -> dict[str, Any]:
    from study.data.synthetic import generate

    params = load_params(params_path)
    syn = dict(params.get("synthetic") or {})
    if not syn:
        raise ConfigError(f"{params_path}: no `synthetic` section")
    default_out = syn.pop("out", "data/synthetic")
    out = out or Path(default_out)
    known = {"num_train", "num_val", "img_size", "seed", "image_format", "version"}
    if set(syn) - known:
        raise ConfigError(
            f"{params_path}: unknown keys in `synthetic`: {sorted(set(syn) - known)}; "
            f"valid: out, {', '.join(sorted(known))}"
        )
    try:
        stats = generate(out, **syn)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{params_path}: `synthetic`: {exc}") from None
    log.info("wrote %s: %s", out, {k: stats[k] for k in stats if k != "params"})
    print(
        f"generated {sum(stats['images'].values())} images at "
        f"{stats['images_per_s']:.1f} images/s into {out}"
    )
    return stats


def eval_dataset(cfg: dict[str, Any], split: str | None = None) -> CocoDetection:
    """The run's validation split (or ``split``) with the test-time transforms."""
    from study.data import CocoDetection, build_eval_transforms

    ev, dc = cfg["eval"], cfg["data"]
    return CocoDetection(
        dc["root"],
        split or dc["val_split"],
        transforms=build_eval_transforms(ev["img_size"], ev["protocol"]),
        max_images=dc["max_images"],
    )


def train(cfg: dict[str, Any], max_iters: int | None = None) -> dict[str, Any]:
    """``study train``: train one run. Its logs (``live/``) and snapshots are written beside the
    previous run's and swapped in with the weights at the end, so a run that fails (or diverges)
    leaves the previous run's files matching each other."""
    from study.engine.trainer import Trainer, save_weights
    from study.eval.coco_eval import evaluate as coco_evaluate

    name, paths = cfg["name"], run_paths(cfg)
    ensure_writable(paths.run_dir, paths.model.parent, paths.results, paths.snapshots.parent)
    live_new = paths.results / ".live.new"
    snapshots_new = paths.snapshots.with_name(f".{paths.snapshots.name}.new")
    val = None

    def periodic_eval(model: torch.nn.Module, epoch: int) -> dict[str, Any]:
        nonlocal val
        val = val or eval_dataset(cfg)
        metrics = coco_evaluate(model, val, cfg, next(model.parameters()).device)
        return {k: metrics[k] for k in ("AP", "AP50", "APs", "APm", "APl")}

    trainer = Trainer(
        cfg,
        paths.run_dir,
        live_dir=live_new,
        evaluate_fn=periodic_eval,
        max_iters=max_iters,
        snapshot_dir=snapshots_new,
    )
    summary = trainer.fit()
    if trainer.dist.is_main:
        save_weights(trainer.final_model, trainer.dataset, cfg, paths.model)
        write_json(
            paths.results / "train_summary.json",
            {
                **summary,
                "config": cfg,
                "model_spec": trainer.model.spec,
                "params": sum(p.numel() for p in trainer.model.parameters()),
                "provenance": provenance(cfg, trainer.device),
            },
        )
        if live_new.is_dir():
            swap_in(live_new, paths.results / "live")
        snapshots_new.mkdir(parents=True, exist_ok=True)
        swap_in(snapshots_new, paths.snapshots)
        log.info(
            "%s seed %d: trained %d iterations in %.0f s (%.1f images/s)",
            name,
            cfg["train"]["seed"],
            summary["iterations"],
            summary["wall_seconds"],
            summary["images_per_s"],
        )
    from study.engine.distributed import cleanup

    cleanup(trainer.dist)
    return summary


def default_weights(cfg: dict[str, Any], weights: str | None) -> Path:
    """The weights file a stage reads: ``--weights`` if given, else the run's model file."""
    return Path(weights) if weights else run_paths(cfg).model


def load_weights(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from a weights file written by ``study train`` or ``import-official``."""
    from study.models import build_model

    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found (train the experiment first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise CheckpointError(f"{path}: cannot read weights: {exc}") from None
    if not isinstance(blob, dict) or "model" not in blob or "spec" not in blob:
        raise CheckpointError(f"{path}: not a study weights file (expected keys model, spec)")
    spec = dict(blob["spec"])
    name, num_classes = spec.pop("name"), spec.pop("num_classes")
    try:
        model = build_model(name, num_classes=num_classes, **spec)
        model.load_state_dict(blob["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: the weights do not fit their model spec ({first})"
        ) from None
    return model.to(device).eval(), blob


def check_classes(blob: dict[str, Any], weights_path: Path, dataset: CocoDetection) -> None:
    """The weights must have been trained on the dataset's classes, in the same order: otherwise
    every detection would be scored under another class's name without a word."""
    num_classes = blob["spec"].get("num_classes")
    if num_classes != dataset.num_classes:
        raise StudyError(
            f"{weights_path}: the weights have {num_classes} classes, the dataset "
            f"{dataset.ann_file} has {dataset.num_classes}"
        )
    names = blob.get("class_names")
    if names is not None and list(names) != list(dataset.class_names):
        pairs = enumerate(zip(names, dataset.class_names, strict=True))
        i = next(i for i, (ours, theirs) in pairs if ours != theirs)
        raise StudyError(
            f"{weights_path}: trained on other classes than {dataset.ann_file} has (class "
            f"{i}: {names[i]!r} in the weights, {dataset.class_names[i]!r} in the dataset; "
            f"categories sorted by id). Evaluate on the dataset the weights were trained on, "
            "or one with the same category names and ids"
        )


def evaluate(
    cfg: dict[str, Any],
    weights: str | None = None,
    split: str | None = None,
    out_dir: str | None = None,
    test_sizes: bool = False,
) -> dict[str, Any]:
    """``study evaluate``: COCO AP of the run's weights at eval.img_size (metrics.json,
    detections.json.gz); with ``test_sizes`` also at every eval.test_sizes (study/eval/sizes.py).
    Everything is checked (sizes, weights, classes, output folder) before any inference."""
    from study.eval.sizes import evaluate_run

    device = pick_device(cfg["eval"]["device"])
    out = Path(out_dir) if out_dir else run_paths(cfg).results
    weights_path = default_weights(cfg, weights)
    model, blob = load_weights(weights_path, device)
    dataset = eval_dataset(cfg, split)
    check_classes(blob, weights_path, dataset)
    source = {"path": str(weights_path), "source": blob.get("source", "study train")}
    return evaluate_run(
        model,
        cfg,
        lambda c: eval_dataset(c, split),
        dataset,
        device,
        out,
        extra_meta={"weights": source},
        test_sizes=test_sizes,
    )


def bench(
    params_path: str,
    experiments: list[str],
    profile: str | None = None,
    overrides: list[str] | None = None,
    out: Path = RESULTS / "bench.csv",
) -> list[Path]:
    """``study bench``: latency breakdown, throughput and FLOPs (study/eval/bench.py)."""
    from study.eval.bench import run_bench

    return run_bench(params_path, experiments, profile, overrides or [], out)


def analyze(cfg: dict[str, Any], params_path: str) -> list[Path]:
    """``study analyze``: the run's gradient consistency and fusion weights (study/analysis),
    at its snapshots and its final weights; settings from params.yaml ``analysis``."""
    from study.analysis import analyze_run

    settings = load_params(params_path).get("analysis") if Path(params_path).is_file() else None
    device = pick_device(cfg["eval"]["device"])
    return analyze_run(cfg, settings or {}, run_paths(cfg), device, source=params_path)


def notebooks(source: Path, results: Path, out: Path) -> list[Path]:
    """``study notebooks``: execute every notebook of ``source`` on ``results`` into ``out``."""
    from study.report.notebooks import execute_notebooks

    return execute_notebooks(source, results, out)


def report(params_path: str, results: Path) -> list[Path]:
    from study.report import build_report

    return build_report(load_params(params_path), results, results / "tables")


def import_official(
    checkpoint: Path,
    model_name: str,
    out: Path,
    num_classes: int = 80,
    backbone_only: bool = False,
    trust: bool = False,
) -> Path:
    from study.models import build_model
    from study.models.official import load_official
    from study.utils import torch_save

    model = build_model(model_name, num_classes=num_classes, anchors="official")
    load_official(model, checkpoint, model_name, backbone_only=backbone_only, trust=trust)
    torch_save(
        {
            "model": model.state_dict(),
            "spec": model.spec,
            "config": None,
            "source": str(checkpoint),
        },
        out,
    )
    return out
