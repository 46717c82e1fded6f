"""``study bench``: latency the way detection papers are judged, measured so it can be trusted.

For every model (the study's trained runs, or registered variants with random weights) and every
test size (``eval.test_sizes`` and ``eval.img_size``, or ``bench.sizes``), dtype and mode, on the
same real validation images:

* **latency at batch 1, split into forward, decode and NMS**, each interval closed by a CUDA
  synchronisation on a GPU; warm-up excluded; median and p90 over ``runs`` timed images;
* **throughput** (images/s) at ``throughput_batch``, forward + decode + NMS;
* **parameters and FLOPs** (``torch.utils.flop_counter``: FLOPs of one forward pass at batch 1,
  a multiply-add counting 2);
* modes: ``eager``, and ``fast`` (``torch.compile``; on CUDA with CUDA graphs, mode
  ``reduce-overhead``; one batched NMS call, :func:`postprocess_batched`) reported beside eager;
* dtypes: fp32 everywhere, fp16 and bf16 (autocast) on CUDA only.

The models are timed **interleaved**: the runs are split into ``rounds``, and in every round each
size, and within it each model, times its share of images in turn (both orders rotating), so
that drift on a shared machine (another job, frequency scaling) hits every model and every size
alike. The overhead table divides each model's
median total latency by the reference model's, round by round: its spread over the rounds says
how far the ratio can be trusted.

NMS time depends on how many boxes pass the confidence threshold, which depends on the weights.
Trained weights run NMS on their own predictions (the number of candidates is in the table).
With random weights nearly every box would pass, so NMS then runs on one fixed, shared set of
``candidates`` boxes per image built around the image's true boxes (:func:`fixed_candidates`).

Output: ``results/bench.csv`` (one row per model, size, dtype, mode) and
``results/bench_overhead.csv``, each row with the device, torch / CUDA versions, threads and git
revision.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from study.config import (
    check_size_list,
    deep_merge,
    load_experiment,
    load_params,
    parse_override,
    resolve_run,
)
from study.data import collate, eval_dataset
from study.errors import ConfigError, StudyError
from study.eval.coco_eval import autocast_context, decoder_of
from study.eval.postprocess import nms_settings, num_candidates, postprocess, postprocess_batched
from study.models import available, build_model
from study.models.weights import load_weights
from study.provenance import provenance
from study.runs import EXPERIMENTS, run_paths
from study.utils import atomic_path, pick_device

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "sizes": None,
    "dtypes": ["fp32", "fp16", "bf16"],
    "modes": ["eager"],
    "runs": 200,
    "rounds": 10,
    "warmup": 10,
    "images": 50,
    "throughput_batch": 16,
    "throughput_runs": 5,
    "reference": "fusion/none",
    "random_models": [],
    "candidates": 1000,
}
DTYPES = {"fp32": None, "fp16": "fp16", "bf16": "bf16"}
MODES = ("eager", "fast")
FLOPS_UNIT = "FLOPs of one forward pass at batch 1 (torch.utils.flop_counter; multiply-add = 2)"


# --------------------------------------------------------------------------- settings


def bench_settings(params: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """params.yaml ``bench`` over :data:`DEFAULTS`, then ``--set bench.KEY=VALUE`` overrides;
    every key and value checked (ConfigError naming it)."""

    settings = dict(DEFAULTS)
    given = params.get("bench") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"params `bench`: expected a mapping, got {given!r}")
    settings.update(given)
    for text in overrides:
        node = parse_override(text)
        if set(node) != {"bench"} or not isinstance(node["bench"], dict):
            raise ConfigError(f"--set {text!r}: study bench takes only bench.KEY=VALUE")
        settings = deep_merge(settings, node["bench"])
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"params `bench`: unknown keys {unknown}; valid: {sorted(DEFAULTS)}")
    for key in ("runs", "rounds", "images", "throughput_batch", "throughput_runs", "candidates"):
        _int_at_least(key, settings[key], 1)
    _int_at_least("warmup", settings["warmup"], 0)
    if settings["rounds"] > settings["runs"]:
        raise ConfigError("params bench.rounds: cannot exceed bench.runs")
    for key, valid in (("dtypes", DTYPES), ("modes", MODES)):
        values = settings[key]
        if not isinstance(values, list) or not values or any(v not in valid for v in values):
            raise ConfigError(
                f"params bench.{key}: expected a list of {' | '.join(valid)}, got {values!r}"
            )
    if settings["sizes"] is not None:
        settings["sizes"] = check_size_list(settings["sizes"], "bench.sizes", "params")
    if not isinstance(settings["random_models"], list):
        raise ConfigError(
            f"params bench.random_models: expected a list, got {settings['random_models']!r}"
        )
    return settings


def _int_at_least(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"params bench.{key}: expected an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------- models


@dataclass
class Subject:
    """One model to time."""

    name: str  # the experiment (fusion/asff) or the variant with random weights (asff)
    model: nn.Module
    weights: str  # the weights file, or "random"
    seed: int | None
    fixed_nms_input: bool  # NMS on the shared candidate set instead of the model's own boxes
    fns: dict[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.model.spec.get("name", "?")) if hasattr(self.model, "spec") else "?"


def default_experiments(params: dict[str, Any], designs: bool = False) -> list[tuple[str, int]]:
    """(experiment, seed) pairs the ``speed`` stage times: every fusion strategy at bench.seed,
    then every trained Table 1 row at its first seed. ``designs``: the ``speed-designs`` stage's
    instead, the extended comparison (params ``designs``) with Table 3's ``none`` and ``asff``
    timed in the same rounds, so that its ratios and milliseconds compare with theirs."""
    seed = int((params.get("bench") or {}).get("seed", DEFAULTS["seed"]))
    fusions = params.get("fusions") or []
    if designs:
        pairs = [(f"fusion/{f}", seed) for f in ("none", "asff") if f in fusions]
        return pairs + [(f"designs/{d}", seed) for d in params.get("designs") or []]
    pairs = [(f"fusion/{f}", seed) for f in fusions]
    t1_seed = int((params.get("table1_seeds") or [0])[0])
    pairs += [(f"table1/{r}", t1_seed) for r in params.get("table1") or []]
    return pairs


def load_subjects(
    params_path: str,
    experiments: Sequence[str],
    profile: str | None,
    settings: dict[str, Any],
    device: torch.device,
) -> tuple[list[Subject], dict[str, Any]]:
    """The models to time, on ``device`` in eval mode, and the config the images come from
    (:func:`run_bench` loads them on the CPU and moves them once, to ``eval.device``)."""

    params = load_params(params_path) if Path(params_path).is_file() else {}
    subjects: list[Subject] = []
    if settings["random_models"]:
        cfg = load_experiment(EXPERIMENTS / "_base.yaml", profile, params_path, name="bench")
        for name in settings["random_models"]:
            if name not in available():
                raise ConfigError(
                    f"params bench.random_models: {name!r} is not a registered variant; "
                    f"available: {', '.join(available())}"
                )
            torch.manual_seed(0)
            model = build_model(
                name, num_classes=80, width=cfg["model"]["width"], depth=cfg["model"]["depth"]
            )
            subjects.append(Subject(name, model.to(device).eval(), "random", None, True))
        return subjects, cfg
    seed = int(settings["seed"])
    pairs = (
        [(e, seed) for e in experiments]
        if experiments
        else default_experiments({**params, "bench": {**(params.get("bench") or {}), "seed": seed}})
    )
    if not pairs:
        raise ConfigError(f"{params_path}: no experiments to time (`fusions` and `table1` empty)")
    cfg = None
    for name, run_seed in pairs:
        run_cfg = resolve_run(name, run_seed, profile, params_path)
        cfg = cfg or run_cfg
        path = run_paths(run_cfg).model
        model, _ = load_weights(path, device)
        subjects.append(Subject(run_cfg["name"], model, str(path), run_seed, False))
    assert cfg is not None
    return subjects, cfg


# --------------------------------------------------------------------------- inputs


def bench_images(cfg: dict[str, Any], size: int, count: int) -> tuple[Tensor, list[dict[str, Any]]]:
    """The first ``count`` validation images at ``size`` (the eval transform) and targets."""

    cfg_s = copy.deepcopy(cfg)
    cfg_s["eval"]["img_size"] = size
    dataset = eval_dataset(cfg_s)
    if len(dataset) == 0:
        raise StudyError(f"{dataset.ann_file}: no validation images to time on")
    return collate([dataset[i] for i in range(min(count, len(dataset)))])


def fixed_candidates(
    targets: Sequence[dict[str, Any]], size: int, num_classes: int, per_image: int, seed: int = 0
) -> list[Tensor]:
    """One (1, per_image, 5 + C) decoded-prediction tensor per image, the same for every model:
    20 % of the boxes jittered around the image's true boxes with high objectness, the rest
    spread over the image with low objectness; every score above 0.001."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in targets:
        boxes = t["boxes"].float()
        if len(boxes) == 0:
            boxes = torch.tensor([[size * 0.25, size * 0.25, size * 0.75, size * 0.75]])
        near = per_image // 5
        pick = torch.randint(len(boxes), (near,), generator=gen)
        b = boxes[pick]
        cxcy, wh = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]).clamp(min=2.0)
        cxcy = cxcy + torch.randn(near, 2, generator=gen) * wh * 0.1
        wh = wh * torch.exp(torch.randn(near, 2, generator=gen) * 0.1)
        far = per_image - near
        cxcy = torch.cat([cxcy, torch.rand(far, 2, generator=gen) * size])
        wh = torch.cat([wh, torch.rand(far, 2, generator=gen) * size / 3 + 4])
        obj = torch.cat(
            [
                torch.rand(near, generator=gen) * 0.7 + 0.3,
                torch.rand(far, generator=gen) * 0.05 + 0.01,
            ]
        )
        cls = torch.rand(per_image, num_classes, generator=gen) * 0.02
        label = torch.randint(num_classes, (per_image,), generator=gen)
        cls[torch.arange(per_image), label] = torch.rand(per_image, generator=gen) * 0.5 + 0.5
        pred = torch.cat([cxcy, wh, obj[:, None], cls], dim=1)
        out.append(pred[None])
    return out


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mark_step(device: torch.device) -> None:
    """A new CUDA-graph step (a compiled ``reduce-overhead`` function may reuse its outputs)."""
    if device.type == "cuda" and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        torch.compiler.cudagraph_mark_step_begin()


def _to_input(x: Tensor, device: torch.device) -> Tensor:
    """A batch of images on ``device``, channels_last on CUDA (as the models are there)."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), as numpy's default."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def count_flops(model: nn.Module, size: int) -> int:
    """FLOPs of one forward pass at batch 1 and ``size`` (:data:`FLOPS_UNIT`)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def prepare(subject: Subject, mode: str, device: torch.device) -> None:
    """The forward, decode and NMS functions of ``subject`` for ``mode``."""
    model, decoder = subject.model, decoder_of(subject.model)
    if mode == "eager":
        subject.fns = {"forward": model, "decode": decoder.decode, "nms": postprocess}
        return
    compile_mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs
    subject.fns = {
        "forward": torch.compile(model, mode=compile_mode),
        "decode": torch.compile(decoder.decode, mode=compile_mode),
        "nms": postprocess_batched,
    }


def time_image(
    subject: Subject,
    x: Tensor,
    nms_input: Tensor | None,
    device: torch.device,
    amp: str | None,
    ev: dict[str, Any],
) -> tuple[float, float, float]:
    """(forward, decode, NMS) milliseconds for one batch-1 image."""
    fns, nms_kw = subject.fns, nms_settings(ev)  # read before the clock starts
    _mark_step(device)
    _sync(device)
    t0 = time.perf_counter()
    with autocast_context(device, amp):
        raw = fns["forward"](x)
    _sync(device)
    t1 = time.perf_counter()
    with autocast_context(device, amp):
        pred = fns["decode"](raw)
    _sync(device)
    t2 = time.perf_counter()
    fns["nms"](pred if nms_input is None else nms_input, **nms_kw)
    _sync(device)
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def _candidates(
    subject: Subject,
    x: Tensor,
    nms_input: Tensor | None,
    ev: dict[str, Any],
    amp: str | None,
    device: torch.device,
) -> tuple[int, int]:
    """(boxes reaching NMS, detections kept) for one image, untimed."""
    with torch.inference_mode(), autocast_context(device, amp):
        pred = decoder_of(subject.model).decode(subject.model(x))
    src = pred if nms_input is None else nms_input
    (dets,) = postprocess(src, **nms_settings(ev))
    return int(num_candidates(src, ev["conf_thresh"])[0]), len(dets["scores"])


def throughput(
    subject: Subject,
    images: Tensor,
    batch: int,
    runs: int,
    device: torch.device,
    amp: str | None,
    ev: dict[str, Any],
    nms_inputs: list[Tensor] | None,
) -> float:
    """Images per second at ``batch``: forward + decode + NMS, after one untimed batch."""
    reps = math.ceil(batch / len(images))
    x = _to_input(images.repeat(reps, 1, 1, 1)[:batch], device)
    nms_batch = None if nms_inputs is None else torch.cat(nms_inputs * reps)[:batch].to(device)
    fns = subject.fns  # the mode's functions (a compiled one compiles for the batch shape once)
    nms_kw = nms_settings(ev)
    elapsed = 0.0
    with torch.inference_mode():
        for i in range(runs + 1):
            _mark_step(device)
            _sync(device)
            t0 = time.perf_counter()
            with autocast_context(device, amp):
                pred = fns["decode"](fns["forward"](x))
            fns["nms"](pred if nms_batch is None else nms_batch, **nms_kw)
            _sync(device)
            if i:
                elapsed += time.perf_counter() - t0
    return batch * runs / elapsed


def bench_setting(
    subjects: list[Subject],
    images: Tensor,
    nms_inputs: list[Tensor] | None,
    device: torch.device,
    dtype: str,
    mode: str,
    settings: dict[str, Any],
    ev: dict[str, Any],
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float]]]:
    """Interleaved timing of every subject at one (size, dtype, mode): :func:`bench_sizes`
    with one size."""
    return bench_sizes(subjects, {0: images}, {0: nms_inputs}, device, dtype, mode, settings, ev)[0]


def bench_sizes(
    subjects: list[Subject],
    images: dict[int, Tensor],
    nms_inputs: dict[int, list[Tensor] | None],
    device: torch.device,
    dtype: str,
    mode: str,
    settings: dict[str, Any],
    ev: dict[str, Any],
) -> dict[int, tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float]]]]:
    """Interleaved timing of every subject at every size of ``images`` (size -> batch of
    images) at one (dtype, mode): in each round every size and every model times its share of
    the runs in turn (both orders rotating from round to round), so that drift of the machine
    hits every model and every size alike.

    Returns per size: per subject the lists ``forward``, ``decode``, ``nms``, ``total`` (ms per
    image) and ``round`` (the round of each run), and per subject the untimed counts
    (``candidates``, ``detections``) and the throughput."""
    amp = DTYPES[dtype]
    per_round = math.ceil(settings["runs"] / settings["rounds"])
    sizes = list(images)
    xs = {
        z: [_to_input(images[z][i : i + 1], device) for i in range(len(images[z]))] for z in sizes
    }
    nms_dev = {
        z: None if nms_inputs.get(z) is None else [c.to(device) for c in nms_inputs[z]]
        for z in sizes
    }
    times = {
        z: {
            s.name: {"forward": [], "decode": [], "nms": [], "total": [], "round": []}
            for s in subjects
        }
        for z in sizes
    }
    extra: dict[int, dict[str, dict[str, float]]] = {z: {} for z in sizes}
    with torch.inference_mode():
        for s in subjects:
            prepare(s, mode, device)
            for z in sizes:
                nms = nms_dev[z]
                counts = [
                    _candidates(s, x, None if nms is None else nms[i], ev, amp, device)
                    for i, x in enumerate(xs[z])
                ]
                extra[z][s.name] = {
                    "candidates": statistics.fmean(c for c, _ in counts),
                    "detections": statistics.fmean(d for _, d in counts),
                }
                n = len(xs[z])
                for i in range(max(settings["warmup"], 3 if mode == "fast" else 0)):
                    time_image(
                        s, xs[z][i % n], None if nms is None else nms[i % n], device, amp, ev
                    )
        for r in range(settings["rounds"]):
            size_order = sizes[r % len(sizes) :] + sizes[: r % len(sizes)]
            for z in size_order:
                n, nms = len(xs[z]), nms_dev[z]
                order = subjects[r % len(subjects) :] + subjects[: r % len(subjects)]
                for s in order:
                    for k in range(per_round):
                        i = (r * per_round + k) % n
                        f, d, m = time_image(
                            s, xs[z][i], None if nms is None else nms[i], device, amp, ev
                        )
                        t = times[z][s.name]
                        t["forward"].append(f)
                        t["decode"].append(d)
                        t["nms"].append(m)
                        t["total"].append(f + d + m)
                        t["round"].append(r)
    for z in sizes:
        for s in subjects:
            extra[z][s.name]["throughput"] = throughput(
                s,
                images[z],
                settings["throughput_batch"],
                settings["throughput_runs"],
                device,
                amp,
                ev,
                nms_inputs.get(z),
            )
    return {z: (times[z], extra[z]) for z in sizes}


# --------------------------------------------------------------------------- results


def bench_provenance(device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    """What the figures depend on besides the model (study.utils.provenance: git revision, the
    settings' hash, versions, threads), plus the CPU, CUDA/cuDNN and the machine's load when
    timing began (another job on the same cores distorts every figure: on 2 cores a concurrent
    2-thread job made batch-1 CPU latency 60 times slower)."""
    return {
        **provenance(settings, device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None,
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def latency_row(subject: Subject, t: dict[str, list[float]], extra: dict[str, float]) -> dict:
    row: dict[str, Any] = {}
    for part in ("forward", "decode", "nms", "total"):
        row[f"{part}_ms_median"] = statistics.median(t[part])
        row[f"{part}_ms_p90"] = percentile(t[part], 90)
    row["total_ms_mean"] = statistics.fmean(t["total"])
    row["fps"] = 1000.0 / row["total_ms_median"]
    row["candidates_per_image"] = extra["candidates"]
    row["detections_per_image"] = extra["detections"]
    row["throughput_img_s"] = extra["throughput"]
    return row


def overhead_rows(
    times: dict[str, dict[str, list[float]]], reference: str, rounds: int
) -> list[dict[str, Any]]:
    """Each model's median total (and forward) latency over the reference's, overall and per
    round, with the rounds' spread."""
    ref = times[reference]
    ref_rounds = _round_medians(ref, rounds)
    rows = []
    for name, t in times.items():
        if name == reference:
            continue
        per_round = [a / b for a, b in zip(_round_medians(t, rounds), ref_rounds, strict=True)]
        rows.append(
            {
                "model": name,
                "reference": reference,
                "ratio": statistics.median(t["total"]) / statistics.median(ref["total"]),
                "ratio_forward": statistics.median(t["forward"])
                / statistics.median(ref["forward"]),
                "ratio_round_median": statistics.median(per_round),
                "ratio_round_min": min(per_round),
                "ratio_round_max": max(per_round),
                "ratio_round_sd": statistics.stdev(per_round) if len(per_round) > 1 else 0.0,
                "rounds": rounds,
            }
        )
    return rows


def _round_medians(t: dict[str, list[float]], rounds: int) -> list[float]:
    """The median total latency of each round."""
    return [
        statistics.median(v for v, k in zip(t["total"], t["round"], strict=True) if k == r)
        for r in range(rounds)
    ]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


@dataclass
class BenchPlan:
    """What :func:`run_bench` times: the models (on ``device``, in eval mode), the config the
    images come from, the sizes and dtypes, the reference model of the ratios, and the
    provenance every row carries."""

    settings: dict[str, Any]
    subjects: list[Subject]
    cfg: dict[str, Any]
    device: torch.device
    reference: str
    sizes: list[int]
    dtypes: list[str]
    prov: dict[str, Any]


def plan_bench(
    params_path: str, experiments: Sequence[str], profile: str | None, overrides: Sequence[str]
) -> BenchPlan:
    """The settings and the models of ``study bench``, loaded on the CPU and moved once to
    ``eval.device`` (channels_last and the cuDNN autotuner on CUDA)."""

    params = load_params(params_path) if Path(params_path).is_file() else {}
    settings = bench_settings(params, overrides)
    subjects, cfg = load_subjects(params_path, experiments, profile, settings, torch.device("cpu"))
    device = pick_device(cfg["eval"]["device"])
    for s in subjects:
        s.model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        for s in subjects:
            s.model.to(memory_format=torch.channels_last)
    names = [s.name for s in subjects]
    reference = settings["reference"]
    if reference not in names:
        log.info("bench.reference %r is not timed here; ratios are over %s", reference, names[0])
        reference = names[0]
    # the profile's test sizes plus its evaluation size (the size of Table 3's ms column)
    sizes = settings["sizes"] or check_size_list(
        [*cfg["eval"]["test_sizes"], int(cfg["eval"]["img_size"])],
        "(eval.test_sizes + [eval.img_size])",
        f"config of {cfg.get('name') or 'bench'}",
    )
    dtypes = [d for d in settings["dtypes"] if d == "fp32" or device.type == "cuda"]
    skipped = sorted(set(settings["dtypes"]) - set(dtypes))
    if skipped:
        log.info("dtypes %s are timed on CUDA only; %s has fp32", skipped, device)
    prov = bench_provenance(device, {"bench": settings, "eval": cfg["eval"]})
    return BenchPlan(settings, subjects, cfg, device, reference, sizes, dtypes, prov)


def time_sizes(plan: BenchPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(latency rows, overhead rows) of every size, dtype and mode; the sizes of one (dtype,
    mode) are timed in the same interleaved rounds (:func:`bench_sizes`). A fast path that
    fails to compile is logged and left out."""
    settings, subjects, ev = plan.settings, plan.subjects, plan.cfg["eval"]
    images: dict[int, Tensor] = {}
    nms_inputs: dict[int, list[Tensor] | None] = {}
    flops: dict[int, dict[str, int]] = {}
    for size in plan.sizes:
        images[size], targets = bench_images(plan.cfg, size, settings["images"])
        nms_inputs[size] = None
        if any(s.fixed_nms_input for s in subjects):
            num_classes = subjects[0].model.num_classes
            nms_inputs[size] = fixed_candidates(targets, size, num_classes, settings["candidates"])
        flops[size] = {s.name: count_flops(s.model, size) for s in subjects}
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for dtype in plan.dtypes:
        for mode in settings["modes"]:
            try:
                timed = bench_sizes(
                    subjects, images, nms_inputs, plan.device, dtype, mode, settings, ev
                )
            except Exception as exc:  # noqa: BLE001 - a compiler failure skips the fast path
                if mode != "fast":
                    raise
                log.warning("fast path failed at %s, left out: %s", dtype, exc)
                continue
            for size in plan.sizes:
                times, extra = timed[size]
                common = {
                    "size": size,
                    "dtype": dtype,
                    "mode": mode,
                    "batch": 1,
                    "runs": len(times[subjects[0].name]["total"]),
                    "rounds": settings["rounds"],
                    "images": len(images[size]),
                }
                rows += _latency_rows(plan, common, times, extra, flops[size])
                ratios += _ratio_rows(plan, common, times)
            log.info("timed %d models at %s, %s %s", len(subjects), plan.sizes, dtype, mode)
    return rows, ratios


def _latency_rows(
    plan: BenchPlan,
    common: dict[str, Any],
    times: dict[str, dict[str, list[float]]],
    extra: dict[str, dict[str, float]],
    flops: dict[str, int],
) -> list[dict[str, Any]]:
    """One ``bench.csv`` row per model at one (size, dtype, mode)."""
    return [
        {
            "model": s.name,
            "variant": s.variant,
            "weights": s.weights,
            "seed": s.seed,
            **common,
            **latency_row(s, times[s.name], extra[s.name]),
            "throughput_batch": plan.settings["throughput_batch"],
            "nms_input": "fixed candidates" if s.fixed_nms_input else "own",
            "params": sum(p.numel() for p in s.model.parameters()),
            "flops": flops[s.name],
            "flops_unit": FLOPS_UNIT,
            "profile": plan.cfg.get("profile"),
            **plan.prov,
        }
        for s in plan.subjects
    ]


def _ratio_rows(
    plan: BenchPlan, common: dict[str, Any], times: dict[str, dict[str, list[float]]]
) -> list[dict[str, Any]]:
    """The ``bench_overhead.csv`` rows of one (size, dtype, mode)."""
    prov = plan.prov
    return [
        {
            **common,
            **r,
            "device": prov["device"],
            "git_revision": prov["git_revision"],
            "params_sha256": prov["params_sha256"],
        }
        for r in overhead_rows(times, plan.reference, plan.settings["rounds"])
    ]


def write_bench(out: Path, rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[Path]:
    """Write ``out`` and ``<stem>_overhead.csv`` beside it, print the summary; both paths."""
    out = Path(out)
    overhead = out.with_name(f"{out.stem}_overhead{out.suffix}")
    _write_csv(pd.DataFrame(rows), out)
    _write_csv(pd.DataFrame(ratios), overhead)
    _print_summary(pd.DataFrame(rows), pd.DataFrame(ratios))
    return [out, overhead]


def run_bench(
    params_path: str,
    experiments: Sequence[str],
    profile: str | None,
    overrides: Sequence[str],
    out: Path,
) -> list[Path]:
    """``study bench``: time every model at every size, dtype and mode; write ``out`` and
    ``<stem>_overhead.csv`` beside it (both replaced only when everything has run)."""
    plan = plan_bench(params_path, experiments, profile, overrides)
    rows, ratios = time_sizes(plan)
    return write_bench(out, rows, ratios)


def _print_summary(rows: pd.DataFrame, ratios: pd.DataFrame) -> None:
    for _, r in rows.iterrows():
        print(
            f"{r['model']:>22s} {r['size']:4d} {r['dtype']} {r['mode']:5s}: "
            f"{r['total_ms_median']:7.2f} ms (p90 {r['total_ms_p90']:.2f}; forward "
            f"{r['forward_ms_median']:.2f}, decode {r['decode_ms_median']:.2f}, NMS "
            f"{r['nms_ms_median']:.2f}), {r['throughput_img_s']:.0f} img/s, "
            f"{r['flops'] / 1e9:.2f} GFLOPs"
        )
    for _, r in ratios.iterrows():
        print(
            f"{r['model']:>22s} / {r['reference']} at {r['size']} {r['dtype']} {r['mode']}: "
            f"x{r['ratio']:.3f} (rounds x{r['ratio_round_min']:.3f}..x{r['ratio_round_max']:.3f})"
        )
