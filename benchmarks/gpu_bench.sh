#!/usr/bin/env bash
# The GPU check of the speed issue as one script (<= 10 minutes on one H100): full-size baseline,
# asff and asff-star with random weights at 320/416/608/800, batch 1, fp32/fp16/bf16, eager and
# the fast path (torch.compile with CUDA graphs, one batched NMS), the forward / decode / NMS
# breakdown; NMS on one fixed candidate set shared by all models (random weights would pass every
# box). Writes OUT_DIR/bench_gpu.csv and OUT_DIR/bench_gpu_overhead.csv (commit them under
# benchmarks/results/ with the device named) and the log.
# Usage: bash benchmarks/gpu_bench.sh OUT_DIR
set -uo pipefail
out=${1:?usage: gpu_bench.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# images: the COCO subset's val split when present, else a generated one (the paper profile reads
# data/coco; --set only changes bench settings, so point the profile's data.root via a params copy)
root=${COCO_ROOT:-../shared/data/coco-subset}
if [ ! -f "$root/annotations/instances_val2017.json" ]; then
  root=$(mktemp -d)/syn
  python3 -c "from study.data.synthetic import generate; generate('$root', num_train=1, num_val=50, img_size=640, seed=0)"
fi
python3 - "$root" <<'PY'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["profiles"]["paper"]["data"]["root"] = sys.argv[1]
p["dataset"] = sys.argv[1]
yaml.safe_dump(p, open("params_gpu_bench.yaml", "w"))
PY
timeout 560 python3 -m study bench --profile paper --params params_gpu_bench.yaml \
  --set 'bench.random_models=[baseline,asff,asff-star]' --set bench.reference=baseline \
  --set 'bench.sizes=[320,416,608,800]' --set 'bench.dtypes=[fp32,fp16,bf16]' \
  --set 'bench.modes=[eager,fast]' --set bench.runs=100 --set bench.rounds=5 \
  --set bench.throughput_batch=32 --set bench.images=20 \
  --out "$out/bench_gpu.csv" 2>&1 | tee "$out/bench_gpu.log"
