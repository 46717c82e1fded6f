#!/usr/bin/env bash
# The fusion study on one GPU: the `gpu` profile (full-width models, bf16, built-in benchmark)
# for none/sum/concat/asff x seeds 0 and 1, then `study report` over the runs that finished.
# Usage: STUDY_GIT_REVISION=<commit of this tree> bash benchmarks/gpu_fusion.sh OUT [BUDGET_S]
#   OUT/gpu.txt, OUT/log.txt: the device and every run's metrics line;
#   OUT/results-gpu.tar: results/gpu/fusion/<strategy>/seed<k>/ (metrics, speed, training
#   summary, detections), appended after each run so that a cut-off call loses nothing, and
#   results/gpu/tables/ once the report has run.
# Runs go seed by seed and none is started after BUDGET_S seconds (default 500). One run takes
# about 3 minutes on an H100 (~610 iterations of batch 64 at 160 px, ~300 images/s), so the
# whole 4 x 2 comparison needs about 25 minutes.
set -uo pipefail
out=${1:?usage: gpu_fusion.sh OUT [BUDGET_S]}
budget=${2:-500}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$out/log.txt"; }
# A copy of a study may carry another profile's runs: start from none.
rm -rf results/fusion/*/ results/table1/*/ results/tables results/gpu runs models
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
[[ -f data/synthetic/stats.json ]] || python3 -m study data 2>&1 | tail -1 | tee -a "$out/log.txt"
fusions=(none sum concat asff)
done_runs=()
for seed in 0 1; do
  for f in "${fusions[@]}"; do
    if (( $(date +%s) - start > budget )); then log "budget spent: fusion/$f seed $seed not run"; continue; fi
    log "train fusion/$f seed $seed"
    python3 -m study train "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tr '\r' '\n' \
      | grep -v "^\s*$" | grep -v "it/s" | tail -2 >> "$out/log.txt"
    python3 -m study evaluate "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tail -1 | tee -a "$out/log.txt"
    python3 -m study speed "fusion/$f" --profile gpu --seed "$seed" 2>&1 | tail -1 | tee -a "$out/log.txt"
    run="results/fusion/$f/seed$seed"
    if [[ -f "$run/metrics.json" ]]; then
      done_runs+=("$f:$seed")
      mkdir -p "results/gpu/fusion/$f" && cp -r "$run" "results/gpu/fusion/$f/" \
        && rm -rf "results/gpu/fusion/$f/seed$seed/live" && tar rf "$out/results-gpu.tar" "results/gpu/fusion/$f/seed$seed"
    fi
  done
done
# The report over the strategies that finished every seed (or over seed 0 alone).
python3 - "${done_runs[@]}" <<'PY'
import sys, yaml
runs = {tuple(r.split(":")) for r in sys.argv[1:]}
order = ("none", "sum", "concat", "asff")
both = [f for f in order if {(f, "0"), (f, "1")} <= runs]
first = [f for f in order if (f, "0") in runs]
fusions, seeds = (both, [0, 1]) if len(both) >= 2 else (first, [0])
params = yaml.safe_load(open("params.yaml"))
params.update(profile="gpu", fusions=fusions, seeds=seeds, table1=[], table1_not_run=[])
yaml.safe_dump(params, open("/tmp/params-gpu.yaml", "w"))
PY
log "report"
mkdir -p results/gpu/table1
python3 -m study report --params /tmp/params-gpu.yaml --results results/gpu 2>&1 | tail -3 | tee -a "$out/log.txt"
tar rf "$out/results-gpu.tar" results/gpu/tables 2>/dev/null
log "done"
