"""Where a run keeps its files, and how experiments are named: the one module every stage and
the command line ask, below all of them.

A run is one (experiment, seed); the experiment is named by its path below ``experiments/``
(``fusion/asff``, ``table1/baseline``). Layout of a study (relative to the repository root):
    data/synthetic/                         the built-in dataset (COCO layout), `study data`
    configs/<experiment>/seed<k>/           the run's resolved config, split by what it can
                                            affect: train.yaml, eval.yaml (`study configure`)
    runs/<experiment>/seed<k>/last.pt       resumable training state (not tracked)
    models/<experiment>/seed<k>.pt          final weights + how to rebuild the model (DVC out)
    models/<experiment>/snapshots/seed<k>/  weights during training (`train.snapshots`; DVC out)
    results/<experiment>/seed<k>/           train_summary.json, live/ (dvclive), metrics.json,
                                            detections.json.gz, curve.json, test_sizes/,
                                            analysis/
    results/bench.csv                       latency / throughput of every model (`study bench`)
    results/tables/                         paper-style tables from `study report`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.errors import ConfigError

EXPERIMENTS = Path("experiments")
CONFIGS, RUNS, MODELS, RESULTS = Path("configs"), Path("runs"), Path("models"), Path("results")
CURVE = (
    "curve.json"  # results/<experiment>/seed<k>/: the run's learning curve (study/eval/curve.py)
)

_SNAPSHOT = re.compile(r"at(\d\.\d{4})\.pt")


def snapshot_name(fraction: float) -> str:
    """A training snapshot's file name: ``at<fraction>.pt`` (``at0.7500.pt``: 75 % of the
    run's iterations; ``at0.0000.pt``: the initial weights)."""
    return f"at{fraction:.4f}.pt"


def snapshot_files(folder: Path) -> list[tuple[float, Path]]:
    """(fraction of the run, file) of every snapshot in ``folder``, in training order."""
    if not folder.is_dir():
        return []
    found = [(float(m.group(1)), p) for p in folder.iterdir() if (m := _SNAPSHOT.fullmatch(p.name))]
    return sorted(found)


@dataclass(frozen=True)
class RunPaths:
    """Where one (experiment, seed) run keeps its files."""

    run_dir: Path  # runs/<experiment>/seed<k>: resumable state
    model: Path  # models/<experiment>/seed<k>.pt: final weights
    results: Path  # results/<experiment>/seed<k>: metrics, training summary, analysis
    snapshots: Path  # models/<experiment>/snapshots/seed<k>: weights during training
    config: Path  # configs/<experiment>/seed<k>: the resolved train.yaml and eval.yaml

    @property
    def analysis(self) -> Path:
        """results/<experiment>/seed<k>/analysis: gradient consistency, fusion weights."""
        return self.results / "analysis"

    @property
    def train_config(self) -> Path:
        """configs/<experiment>/seed<k>/train.yaml: what can change the trained weights."""
        return self.config / "train.yaml"

    @property
    def eval_config(self) -> Path:
        """configs/<experiment>/seed<k>/eval.yaml: what can change the evaluation."""
        return self.config / "eval.yaml"


def paths_of(name: str, seed: int) -> RunPaths:
    """The paths of the run (``name``, ``seed``)."""
    sub = Path(name) / f"seed{int(seed)}"
    return RunPaths(
        RUNS / sub,
        MODELS / sub.parent / f"{sub.name}.pt",
        RESULTS / sub,
        MODELS / sub.parent / "snapshots" / sub.name,
        CONFIGS / sub,
    )


def run_paths(cfg: dict[str, Any]) -> RunPaths:
    """The paths of the run ``cfg`` describes (its ``name`` and ``train.seed``)."""
    return paths_of(cfg["name"], cfg["train"]["seed"])


def experiment_name(path: Path) -> str:
    """``experiments/fusion/asff.yaml`` -> ``fusion/asff``; a file elsewhere -> its stem."""
    try:
        return path.resolve().relative_to(EXPERIMENTS.resolve()).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def experiment_path(name: str) -> Path:
    """The YAML file of experiment ``name`` (or ``name`` itself when it is a YAML path)."""
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
