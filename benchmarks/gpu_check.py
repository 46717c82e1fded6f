"""CUDA check: forward every full-size model at 608 in fp32 and fp16 on CUDA and compare with
the CPU output for the same weights and input (deformable conv included).

Prints one JSON line per model and precision: max abs / relative difference of the decoded
(B, N, 85) output, split into box (cx, cy, w, h) and probability columns.
"""

from __future__ import annotations

import argparse
import json

import torch
from torchvision.ops import DeformConv2d

from study.models import available, build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=608)
    p.add_argument("--models", nargs="+", default=available())
    args = p.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name).eval()
        # Variance-preserving random weights and random BN statistics (eval-mode BN is not the
        # identity), so activations stay in range through the full-size network.
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, DeformConv2d)):
                fan_in = m.weight[0].numel()
                torch.nn.init.normal_(m.weight, 0.0, 1.0 / fan_in**0.5)
                if m.bias is not None:
                    torch.nn.init.normal_(m.bias, 0.0, 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.data.uniform_(0.5, 1.0)
                m.bias.data.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        with torch.no_grad():
            ref = model.decode(model(x))
            gpu = model.cuda()
            for dtype in (torch.float32, torch.float16):
                with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                    out = gpu.decode(gpu(x.cuda())).float().cpu()
                diff = (out - ref).abs()
                box, prob = diff[..., :4], diff[..., 4:]
                scale_box = ref[..., :4].abs().max().item()
                print(
                    json.dumps(
                        {
                            "model": name,
                            "dtype": str(dtype).replace("torch.", ""),
                            "size": args.size,
                            "predictions": ref.shape[1],
                            "finite": bool(torch.isfinite(out).all()),
                            "box_max_abs": round(box.max().item(), 6),
                            "box_max_rel": round(box.max().item() / scale_box, 8),
                            "prob_max_abs": round(prob.max().item(), 6),
                            "prob_mean_abs": round(prob.mean().item(), 8),
                            "device": torch.cuda.get_device_name(0),
                        }
                    ),
                    flush=True,
                )
        model.cpu()


if __name__ == "__main__":
    main()
