"""``study`` command line: one subcommand per pipeline stage (dvc.yaml calls these)."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from study.errors import ConfigError, StudyError, user_message
from study.utils import write_text

log = logging.getLogger("study")


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "experiment",
        help="experiment name (experiments/<name>.yaml, e.g. fusion/asff) or a YAML path",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed of the run (= --set train.seed=K); a run is (experiment, seed)",
    )
    p.add_argument(
        "--profile", default=None, help="profile in params.yaml (default: its `profile`)"
    )
    p.add_argument("--params", default="params.yaml", help="params file with the profiles")
    _set_arg(p, "override a config key, e.g. --set train.epochs=2 (repeatable)")


def _set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def load_cfg(args: argparse.Namespace) -> dict[str, Any]:
    """The run's merged config: the experiment at ``--seed`` under the profile, with ``--set``."""
    from study.config import resolve_run
    from study.models.zoo import check_model_config
    from study.runs import experiment_path

    cfg = resolve_run(args.experiment, args.seed, args.profile, args.params, args.overrides)
    check_model_config(cfg, str(experiment_path(args.experiment)))
    return cfg


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from study.data.check import run_data_check

        text, ok = run_data_check(
            args.root, args.split, images=not args.no_images, decode=args.decode
        )
        print(text)
        return 0 if ok else 2
    from study.stages.data import make_data

    make_data(args.params, Path(args.out) if args.out else None)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from study.eval.verify import verify

    text, ok = verify(Path(args.results), args.runs, args.workers)
    print(text)
    return 0 if ok else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from study.report.compare import compare_results, comparison_text

    comparison = compare_results(args.a, args.b, args.reference)
    text = comparison_text(comparison, args.a, args.b)
    print(text)
    if args.out:
        write_text(Path(args.out), text + "\n")
    return 0 if comparison.holds else 1


def cmd_configure(args: argparse.Namespace) -> int:
    from study.stages.configure import configure

    written = configure(args.params, Path(args.out))
    print(f"{len(written)} config files under {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from study.stages.train import train

    train(load_cfg(args), max_iters=args.max_iters, force=args.force)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from study.config import resolve_pretrain
    from study.models.zoo import check_model_config
    from study.stages.pretrain import pretrain

    cfg, out = resolve_pretrain(args.params)
    check_model_config(cfg, cfg["name"])
    pretrain(cfg, out, force=args.force)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from study.stages.evaluate import evaluate

    metrics = evaluate(
        load_cfg(args),
        weights=args.weights,
        split=args.split,
        out_dir=args.out_dir,
        test_sizes=args.test_sizes,
    )
    print(
        " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in metrics.items()
            if k != "meta"
        )
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from study.stages.bench import bench

    if args.designs and args.experiments:
        raise ConfigError("study bench: give experiments or --designs, not both")
    paths = bench(
        args.params, args.experiments, args.profile, args.overrides, Path(args.out), args.designs
    )
    for path in paths:
        print(path)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from study.stages.analyze import analyze

    for path in analyze(load_cfg(args), args.params):
        print(path)
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from study.stages.notebooks import notebooks

    for path in notebooks(Path(args.notebooks), Path(args.results), Path(args.out)):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from study.stages.report import report

    for path in report(args.params, Path(args.results), args.designs):
        print(path)
    return 0


def cmd_import_official(args: argparse.Namespace) -> int:
    from study.stages.official import import_official

    out = import_official(
        Path(args.checkpoint),
        args.model,
        Path(args.out),
        args.num_classes,
        backbone_only=args.backbone_only,
        trust=args.trust,
    )
    print(f"wrote {out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from study.eval.bench import count_flops
    from study.models import available, build_model
    from study.models.fusions import FUSIONS

    for name in available():
        n = sum(p.numel() for p in build_model(name, num_classes=args.num_classes).parameters())
        print(f"{name:20s} {n:>12,d} parameters at {args.num_classes} classes")
    width, size = args.width, args.img_size
    print(
        f"\nfusion strategies (`model.fusion`) on yolov3-spp at width {width:g}, {size} px, "
        f"{args.num_classes} classes: the fusion module, then the whole detector"
    )
    print(f"{'':20s} {'fusion params':>14s} {'GFLOPs':>8s} {'detector params':>16s} {'GFLOPs':>8s}")
    for fusion in FUSIONS.names():
        model = build_model(
            "yolov3-spp", num_classes=args.num_classes, fusion=fusion, width=width
        ).eval()
        total = sum(p.numel() for p in model.parameters())
        own = sum(p.numel() for p in model.fusion.parameters())
        g_all = count_flops(model, size) / 1e9
        g_fusion = _fusion_flops(model, size) / 1e9
        print(f"{fusion:20s} {own:>14,d} {g_fusion:>8.3f} {total:>16,d} {g_all:>8.3f}")
    return 0


def _fusion_flops(model: Any, size: int) -> int:
    """FLOPs of the fusion module alone on the neck's outputs for one ``size`` image (the
    unit of :func:`study.eval.bench.count_flops`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        feats = model.features(torch.zeros(1, 3, size, size))
        with FlopCounterMode(display=False) as counter:
            model.fusion(feats)
    return int(counter.get_total_flops())


def _add_data(sub: Any) -> None:
    p = sub.add_parser(
        "data",
        help="generate the built-in synthetic dataset (COCO layout); `study data check ROOT` "
        "lists every problem of a COCO-layout dataset",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default=None, help="output folder (default: params `synthetic.out`)")
    p.set_defaults(func=cmd_data, data_command=None)
    data_sub = p.add_subparsers(dest="data_command", metavar="check")
    q = data_sub.add_parser(
        "check",
        help="check a COCO-layout dataset (annotations/instances_<split>.json + images): every "
        "problem at once, with counts; exit 2 if any is an error",
    )
    q.add_argument("root", help="dataset folder (with annotations/ and one folder per split)")
    q.add_argument("--split", default=None, help="check only this split (default: every one)")
    q.add_argument(
        "--no-images", action="store_true", help="check the annotation files only, not the images"
    )
    q.add_argument(
        "--decode",
        action="store_true",
        help="decode every image in full (slower): finds files truncated or damaged after their "
        "header, which the default header-only check passes",
    )


def _add_configure(sub: Any) -> None:
    p = sub.add_parser(
        "configure",
        help="resolve every run of the study (params fusions x seeds, table1 x table1_seeds) "
        "into configs/<experiment>/seed<k>/train.yaml (what can change the weights) and "
        "eval.yaml (what the evaluation reads): what DVC tracks for each run",
    )
    p.add_argument("--params", default="params.yaml", help="params file with the profiles")
    p.add_argument("--out", default="configs", help="folder of the resolved configs")
    p.set_defaults(func=cmd_configure)


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train one experiment (resumes from runs/<name>/last.pt; a run already complete "
        "with the same training config is left as it is)",
    )
    _experiment_args(p)
    p.add_argument("--max-iters", type=int, default=None, help="stop after N iterations (tests)")
    p.add_argument("--force", action="store_true", help="retrain a run that is already complete")
    p.set_defaults(func=cmd_train)


def _add_pretrain(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain",
        help="train the backbone the fusion runs start from (params `pretrain`: the run "
        "experiments/<experiment>.yaml at its seed) and write its backbone tensors to "
        "pretrain.out",
    )
    p.add_argument("--params", default="params.yaml", help="params file (`pretrain`, profiles)")
    p.add_argument("--force", action="store_true", help="retrain a run that is already complete")
    p.set_defaults(func=cmd_pretrain)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="COCO AP by object size -> results/<name>/metrics.json")
    _experiment_args(p)
    p.add_argument("--weights", default=None, help="weights file (default: models/<name>.pt)")
    p.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    p.add_argument(
        "--out-dir", default=None, help="folder for metrics.json (default: results/<name>)"
    )
    p.add_argument(
        "--test-sizes",
        action="store_true",
        help="also evaluate at every size of eval.test_sizes (the profile's) into "
        "<out-dir>/test_sizes/",
    )
    p.set_defaults(func=cmd_evaluate)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="latency (forward, decode, NMS), throughput, FLOPs of the study's models at the "
        "test sizes, interleaved, with the overhead ratios (params `bench`) -> results/bench.csv",
    )
    p.add_argument(
        "experiments",
        nargs="*",
        help="experiments to time with their trained weights (default: params `fusions` at "
        "bench.seed, then the trained `table1` rows)",
    )
    p.add_argument("--profile", default=None, help="profile in params.yaml (default: `profile`)")
    p.add_argument("--params", default="params.yaml", help="params file (`bench`, profiles)")
    _set_arg(
        p,
        "override a setting of params `bench`, e.g. --set bench.runs=500 or "
        "--set 'bench.random_models=[baseline,asff]' (repeatable)",
    )
    p.add_argument(
        "--designs",
        action="store_true",
        help="time the extended comparison instead: params `designs` at bench.seed, with "
        "fusion/none and fusion/asff in the same rounds (the speed-designs stage)",
    )
    p.add_argument(
        "--out",
        default="results/bench.csv",
        help="latency table; the overhead ratios go beside it (<stem>_overhead.csv)",
    )
    p.set_defaults(func=cmd_bench)


def _add_analyze(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="gradient consistency and fusion weights of a trained run (params `analysis`) "
        "-> results/<name>/analysis/",
    )
    _experiment_args(p)
    p.set_defaults(func=cmd_analyze)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="is a rerun (results folder B) consistent with the study (A)? Every fusion run "
        "in both, paired by strategy and seed: exact or not, the rerun spread, and each "
        "strategy's verdict against the reference in A and in B (exit 1 when one of A's "
        "verdicts does not hold in B)",
    )
    p.add_argument("a", help="results folder of the study (e.g. results)")
    p.add_argument("b", help="results folder of the rerun (e.g. ../fresh-clone/results)")
    p.add_argument("--reference", default="none", help="strategy the verdicts compare with")
    p.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    p.set_defaults(func=cmd_compare)


def _add_notebooks(sub: Any) -> None:
    p = sub.add_parser(
        "notebooks", help="execute notebooks/*.ipynb on a results folder (ipynb + html)"
    )
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks to execute")
    p.add_argument("--results", default="results", help="results folder the notebooks read")
    p.add_argument("--out", default="results/notebooks", help="executed notebooks and HTML")
    p.set_defaults(func=cmd_notebooks)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="re-score every committed detections file with plain pycocotools and compare with "
        "its metrics file, exactly (exit 1 on any difference)",
    )
    p.add_argument("--results", default="results", help="results folder to check")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that re-score files in parallel (default: one per core)",
    )
    p.add_argument(
        "runs",
        nargs="*",
        help="only these runs (e.g. fusion/asff or fusion/asff/seed0; default: every one)",
    )
    p.set_defaults(func=cmd_verify)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="comparison tables -> results/tables/")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--results", default="results")
    p.add_argument(
        "--designs",
        action="store_true",
        help="the extended comparison instead (params `designs` beside `fusions`, the "
        "report-designs stage) -> results/designs_report/",
    )
    p.set_defaults(func=cmd_report)


def _add_import_official(sub: Any) -> None:
    p = sub.add_parser(
        "import-official", help="load an official ASFF .pth into this project's model"
    )
    p.add_argument("checkpoint", help="official checkpoint (.pth)")
    p.add_argument("--model", required=True, help="baseline | asff | asff-star")
    p.add_argument("--out", required=True, help="where to write the converted weights (.pt)")
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument(
        "--backbone-only",
        action="store_true",
        help="the darknet53_feature_mx backbone checkpoint (Darknet-53 part only)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="allow a checkpoint that needs full unpickling (runs code: trusted files only)",
    )
    p.set_defaults(func=cmd_import_official)


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list registered model variants and their sizes")
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--width", type=float, default=1.0, help="width of the fusion table's models")
    p.add_argument("--img-size", type=int, default=416, help="input size of the FLOPs count")
    p.set_defaults(func=cmd_models)


COMMANDS = (
    _add_data,
    _add_configure,
    _add_train,
    _add_pretrain,
    _add_evaluate,
    _add_bench,
    _add_analyze,
    _add_notebooks,
    _add_verify,
    _add_compare,
    _add_report,
    _add_import_official,
    _add_models,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except StudyError as exc:
        print(f"study {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
            raise
        where = exc.filename or "an output file"
        print(f"study {args.command}: error: {where}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"study {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
