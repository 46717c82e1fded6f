#!/usr/bin/env bash
# The fusion study on one GPU (issue 7's device check): the `gpu` profile (full-width models,
# bf16, built-in benchmark) for none/sum/concat/asff x 2 seeds, then `study report` on them.
# Usage: bash benchmarks/gpu_fusion.sh OUT_DIR [BUDGET_SECONDS]
# Writes OUT_DIR/gpu.txt, OUT_DIR/log.txt and OUT_DIR/results-gpu.tar.gz (results/gpu/...: every
# run's metrics.json, speed.json, train_summary.json, detections.json and the report's tables).
# Runs go seed by seed; a run is not started once BUDGET_SECONDS (default 500) have passed.
set -uo pipefail
out=${1:?usage: gpu_fusion.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-500}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$out/log.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
python3 -m study data 2>&1 | tail -1 | tee -a "$out/log.txt"
fusions=(none sum concat asff)
done_runs=()
for seed in 0 1; do
  for f in "${fusions[@]}"; do
    if (( $(date +%s) - start > budget )); then log "budget spent: fusion/$f seed $seed not run"; continue; fi
    log "train fusion/$f seed $seed"
    python3 -m study train "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tr '\r' '\n' \
      | grep -v "^\s*$" | grep -v "it/s\]$" | tail -3 >> "$out/log.txt"
    python3 -m study evaluate "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tail -1 | tee -a "$out/log.txt"
    python3 -m study speed "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tail -1 | tee -a "$out/log.txt"
    [[ -f "results/fusion/$f/seed$seed/metrics.json" ]] && done_runs+=("$f:$seed")
  done
done
# The report over the runs that finished, from a params file naming them.
python3 - "${done_runs[@]}" <<'PY'
import sys, yaml
runs = [r.split(":") for r in sys.argv[1:]]
fusions = [f for f in ("none", "sum", "concat", "asff") if all([f, s] in runs for s in ("0", "1"))]
params = yaml.safe_load(open("params.yaml"))
params.update(profile="gpu", fusions=fusions or sorted({f for f, _ in runs}),
              seeds=[0, 1] if fusions else [0], table1=[], table1_not_run=[])
yaml.safe_dump(params, open("/tmp/params-gpu.yaml", "w"))
PY
log "report"
python3 -m study report --params /tmp/params-gpu.yaml --results results 2>&1 | tail -3 | tee -a "$out/log.txt"
mkdir -p results/gpu && cp -r results/fusion results/tables results/gpu/
find results/gpu -name live -prune -exec rm -rf {} +
tar czf "$out/results-gpu.tar.gz" results/gpu
log "done"
