#!/usr/bin/env bash
# The GPU checks of issues 3 and 4 as one script: CUDA vs CPU outputs of the four full-size
# models (fp32, fp16), training-step throughput and peak memory of baseline and asff at 608 with
# AMP, and the real `study train` / `study evaluate` path on CUDA (tiny synthetic data).
# Usage: bash benchmarks/gpu_checks.sh OUT_DIR
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
python3 benchmarks/gpu_check.py --size 608 2>&1 | tee "$out/cuda_vs_cpu.jsonl"
for amp in bf16 fp16; do
  python3 benchmarks/train_speed.py --models baseline asff --size 608 --batch 16 --iters 200 \
    --amp $amp --json "$out/train_speed_$amp.json" 2>&1 | tee -a "$out/train_speed.log"
done
tmp=$(mktemp -d)
python3 -m study.data.synthetic "$tmp/syn" --train 64 --val 16 --img-size 256 --seed 0 >/dev/null
for v in baseline asff; do
  python3 -m study train $v --profile smoke --set data.root="$tmp/syn" --set data.max_images=null \
    --set train.amp=fp16 --set train.img_size=256 --set eval.img_size=256 --set train.epochs=2 2>&1 \
    | tr '\r' '\n' | grep -v '^\s*$' | tail -2 | tee -a "$out/study_cuda.log"
  python3 -m study evaluate $v --profile smoke --set data.root="$tmp/syn" --set data.max_images=null \
    --set eval.img_size=256 2>&1 | tail -1 | tee -a "$out/study_cuda.log"
done
cp results/baseline/train_summary.json "$out/" 2>/dev/null || true
