"""postprocess: scores, thresholds, class-wise NMS, max_dets; to_original round trips."""

from __future__ import annotations

import pytest
import torch

from study.eval.postprocess import (
    class_nms,
    cxcywh_to_xyxy,
    nms_settings,
    num_candidates,
    postprocess,
    to_original,
)


def row(cx, cy, w, h, obj, *cls):
    return [cx, cy, w, h, obj, *cls]


def test_same_class_overlap_collapses_other_class_survives():
    pred = torch.tensor(
        [
            [
                row(50, 50, 20, 20, 0.9, 0.9, 0.1),  # class 0, score 0.81
                row(
                    52, 50, 20, 20, 0.8, 0.9, 0.1
                ),  # class 0, IoU 18/22 = 0.82 with the first: removed
                row(52, 50, 20, 20, 0.8, 0.1, 0.9),  # class 1, same box: kept (class-wise NMS)
            ]
        ]
    )
    (det,) = postprocess(pred, conf_thresh=0.001, nms_thresh=0.65)
    assert det["labels"].tolist() == [0, 1]
    assert det["scores"].tolist() == pytest.approx([0.81, 0.72], abs=1e-6)
    assert det["boxes"][0].tolist() == pytest.approx([40, 40, 60, 60])
    assert det["boxes"][1].tolist() == pytest.approx([42, 40, 62, 60])


def test_overlap_below_nms_threshold_keeps_both():
    pred = torch.tensor([[row(50, 50, 20, 20, 0.9, 0.9), row(60, 50, 20, 20, 0.8, 0.9)]])
    # IoU = 10 / 30 = 0.33 < 0.65
    assert len(postprocess(pred)[0]["scores"]) == 2
    assert len(postprocess(pred, nms_thresh=0.3)[0]["scores"]) == 1


def test_score_is_objectness_times_best_class_and_one_label():
    pred = torch.tensor([[row(10, 10, 4, 4, 0.5, 0.2, 0.6, 0.4)]])
    (det,) = postprocess(pred)
    assert det["labels"].tolist() == [1]
    assert det["scores"].tolist() == pytest.approx([0.3])
    assert det["labels"].dtype == torch.int64


def test_confidence_threshold():
    pred = torch.tensor(
        [
            [
                row(10, 10, 4, 4, 0.04, 0.05),  # 0.002: kept
                row(30, 30, 4, 4, 0.01, 0.05),  # 0.0005: dropped
            ]
        ]
    )
    (det,) = postprocess(pred, conf_thresh=0.001)
    assert det["scores"].tolist() == pytest.approx([0.002])
    (det,) = postprocess(pred, conf_thresh=0.01)
    assert det["boxes"].shape == (0, 4)


def test_max_dets_keeps_the_best_sorted():
    rows = [row(20 * i + 10, 10, 8, 8, 0.1 * (i + 1), 1.0) for i in range(8)]  # disjoint boxes
    (det,) = postprocess(torch.tensor([rows]), max_dets=3)
    assert det["scores"].tolist() == pytest.approx([0.8, 0.7, 0.6])
    assert det["boxes"][:, 0].tolist() == pytest.approx([146, 126, 106])
    assert len(postprocess(torch.tensor([rows]), max_dets=None)[0]["scores"]) == 8


def test_batch_is_per_image_and_empty_image_has_empty_tensors():
    pred = torch.tensor(
        [
            [row(10, 10, 4, 4, 0.9, 0.9), row(30, 30, 4, 4, 0.9, 0.9)],
            [row(10, 10, 4, 4, 0.0, 0.9), row(30, 30, 4, 4, 0.0, 0.9)],
        ]
    )
    a, b = postprocess(pred)
    assert len(a["scores"]) == 2
    assert b["boxes"].shape == (0, 4) and b["scores"].shape == (0,) and b["labels"].shape == (0,)


def test_non_finite_rows_are_dropped():
    pred = torch.tensor([[row(10, 10, 4, 4, 0.9, 0.9), row(float("nan"), 30, 4, 4, 0.9, 0.9)]])
    assert len(postprocess(pred)[0]["scores"]) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_computes_in_float32(dtype):
    pred = torch.tensor(
        [[row(50, 50, 20, 20, 0.5, 0.5), row(52, 50, 20, 20, 0.25, 0.5)]], dtype=dtype
    )
    (det,) = postprocess(pred)
    assert det["boxes"].dtype == torch.float32 and det["scores"].dtype == torch.float32
    assert det["scores"].tolist() == pytest.approx([0.25])


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="B, N, 5 \\+ C"):
        postprocess(torch.zeros(4, 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 500, 9, generator=gen)
    pred[..., :2] *= 200
    pred[..., 2:4] *= 50
    cpu = postprocess(pred)
    gpu = postprocess(pred.cuda().half())
    for c, g in zip(cpu, gpu, strict=True):
        assert g["boxes"].is_cuda
        assert len(g["scores"]) == len(c["scores"]) == 100
        assert g["scores"][:10].cpu().tolist() == pytest.approx(c["scores"][:10].tolist(), abs=2e-3)


def test_cxcywh_to_xyxy():
    assert cxcywh_to_xyxy(torch.tensor([10.0, 20.0, 4.0, 6.0])).tolist() == [8, 17, 12, 23]


def test_to_original_square_resize_round_trip():
    h, w, size = 480, 640, 608
    info = {"image_id": 1, "orig_size": (h, w), "scale": (size / w, size / h), "pad": (0, 0)}
    orig = torch.tensor([[64.0, 48.0, 320.0, 240.0], [0.0, 0.0, 640.0, 480.0]])
    inp = orig * torch.tensor([size / w, size / h, size / w, size / h])
    assert to_original(inp, info).tolist() == [pytest.approx(b, abs=1e-3) for b in orig.tolist()]


def test_to_original_letterbox_round_trip_and_clip():
    h, w, size = 480, 640, 608
    s = size / w  # 0.95: the long side fills the square
    pad_y = (size - h * s) / 2  # 76
    info = {"orig_size": torch.tensor([h, w]), "scale": torch.tensor(s), "pad": (0.0, pad_y)}
    orig = torch.tensor([[64.0, 48.0, 320.0, 240.0]])
    inp = orig * s + torch.tensor([0.0, pad_y, 0.0, pad_y])
    assert inp[0, 1].item() == pytest.approx(48 * 0.95 + 76)
    assert to_original(inp, info).tolist()[0] == pytest.approx(orig.tolist()[0], abs=1e-3)
    # a box reaching into the padding is clipped to the image
    out = to_original(torch.tensor([[-10.0, 0.0, 700.0, 600.0]]), info)
    assert out.tolist()[0] == pytest.approx([0.0, 0.0, 640.0, 480.0])


def test_to_original_four_sided_pad_and_missing_pad():
    info = {"orig_size": (100, 100), "scale": 2.0, "pad": (10, 20, 10, 20)}
    assert to_original(torch.tensor([[30.0, 40.0, 50.0, 60.0]]), info).tolist() == [
        [10.0, 10.0, 20.0, 20.0]
    ]
    info = {"orig_size": (100, 100), "scale": 2.0}
    assert to_original(torch.tensor([[30.0, 40.0, 50.0, 60.0]]), info).tolist() == [
        [15.0, 20.0, 25.0, 30.0]
    ]
    with pytest.raises(ValueError, match="scale"):
        to_original(torch.zeros(1, 4), {"orig_size": (1, 1), "scale": (1, 2, 3)})


@pytest.mark.parametrize("max_dets", [100, 5, None])
def test_batched_postprocess_equals_per_image(max_dets) -> None:
    """One NMS call for the batch gives exactly the per-image detections (fast path)."""
    from study.eval.postprocess import postprocess_batched

    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 400, 9, generator=gen)
    pred[..., :2] *= 64  # centres
    pred[..., 2:4] = pred[..., 2:4] * 30 + 2  # sizes: plenty of overlap
    pred[1, :, 4] = 0.0  # an image with nothing above the threshold
    ref = postprocess(pred, 0.05, 0.5, max_dets)
    fast = postprocess_batched(pred, 0.05, 0.5, max_dets)
    assert len(fast) == 3 and fast[1]["boxes"].shape == (0, 4)
    for a, b in zip(ref, fast, strict=True):
        assert torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["scores"], b["scores"])
        assert torch.equal(a["boxes"], b["boxes"])
    assert sum(len(d["scores"]) for d in ref) >= 10


def test_no_per_image_cap_by_default_as_the_official_evaluator() -> None:
    """The official evaluator submits every box that survives NMS; COCOeval then keeps the best
    100 per image *and category*, so a per-image cap of 100 would drop boxes it scores."""
    from pathlib import Path

    import yaml

    from study.eval.postprocess import postprocess_batched

    base = yaml.safe_load((Path(__file__).parents[2] / "experiments/_base.yaml").read_text())
    assert base["eval"]["max_dets"] is None
    # 150 disjoint boxes over 3 classes: NMS keeps all of them
    rows = [
        row(10 + 20 * (i % 15), 10 + 20 * (i // 15), 8, 8, 0.9 - i * 1e-3, *[0.1] * 3)
        for i in range(150)
    ]
    for i, r in enumerate(rows):
        r[5 + i % 3] = 0.9
    pred = torch.tensor([rows])
    assert len(postprocess(pred)[0]["scores"]) == 150
    assert len(postprocess_batched(pred)[0]["scores"]) == 150
    assert len(postprocess(pred, max_dets=100)[0]["scores"]) == 100  # only when asked


def test_num_candidates_counts_what_reaches_nms() -> None:
    """Objectness x best class probability against the threshold; non-finite boxes and scores
    never reach NMS."""
    pred = torch.tensor(
        [
            [
                row(10, 10, 4, 4, 0.04, 0.05, 0.01),  # 0.002
                row(30, 30, 4, 4, 0.01, 0.05, 0.02),  # 0.0005
                row(30, 30, 4, 4, 0.5, 0.2, 0.6),  # 0.3
                row(float("nan"), 30, 4, 4, 0.9, 0.9, 0.0),  # a non-finite box
            ],
            [
                row(10, 10, 4, 4, float("inf"), 0.5, 0.0),  # a non-finite score
                row(10, 10, 4, 4, 0.001, 1.0, 0.0),  # 0.001: at the threshold
                row(10, 10, 4, 4, 0.0, 0.0, 0.0),
                row(10, 10, 4, 4, 0.0, 0.0, 0.0),
            ],
        ]
    )
    assert num_candidates(pred).tolist() == [2, 1]
    assert num_candidates(pred, 0.01).tolist() == [1, 0]
    assert [len(d["scores"]) for d in postprocess(pred)] == [2, 1]


def test_class_nms_groups_by_class_and_by_image() -> None:
    boxes = torch.tensor([[40.0, 40, 60, 60], [42, 40, 62, 60], [42, 40, 62, 60]])  # IoU 0.82
    scores = torch.tensor([0.9, 0.8, 0.7])
    same = torch.tensor([0, 0, 0])
    assert class_nms(boxes, scores, same, 0.65).tolist() == [0]
    assert class_nms(boxes, scores, torch.tensor([0, 1, 1]), 0.65).tolist() == [0, 1]
    assert class_nms(boxes, scores, same, 0.9).tolist() == [0, 1]  # boxes 1 and 2: IoU 1
    # box 0 alone in image 0: only boxes of one image and one class suppress each other
    image = torch.tensor([0, 1, 1])
    assert class_nms(boxes, scores, same, 0.65, image, num_classes=2).tolist() == [0, 1]
    # (image 0, class 1) and (image 1, class 0) are different groups
    labels = torch.tensor([1, 0, 0])
    assert class_nms(boxes, scores, labels, 0.65, image, num_classes=2).tolist() == [0, 1]


def test_nms_settings_are_the_eval_sections() -> None:
    ev = {"conf_thresh": 0.5, "nms_thresh": 0.3, "batch_size": 8, "img_size": 64}
    assert nms_settings(ev) == {"conf_thresh": 0.5, "nms_thresh": 0.3, "max_dets": None}
    assert nms_settings({**ev, "conf_thresh": 1, "max_dets": 2}) == {
        "conf_thresh": 1.0,
        "nms_thresh": 0.3,
        "max_dets": 2,
    }
    pred = torch.tensor(
        [[row(50, 50, 20, 20, 0.9, 0.9), row(60, 50, 20, 20, 0.8, 0.9), row(9, 9, 2, 2, 0.1, 0.9)]]
    )  # IoU of the first two: 0.33
    assert postprocess(pred, **nms_settings(ev))[0]["scores"].tolist() == pytest.approx([0.81])
    loose = {**ev, "conf_thresh": 0.05, "nms_thresh": 0.65}
    assert postprocess(pred, **nms_settings(loose))[0]["scores"].tolist() == pytest.approx(
        [0.81, 0.72, 0.09]
    )
