#!/usr/bin/env bash
# The learning-curve runs behind the default profile's protocol (docs/default-profile.md):
# seed 0 of fusion/none and fusion/asff from the shared pretrained backbone, under
#   - the backbone learning rate: full (1.0), lower (0.1) and frozen (0),
#   - the LR step (x0.1) at 3.4 or at 2.5 of the 4 epochs (is the run flat in its last quarter?),
#   - two steps: [2.0, 2.75] of 4 epochs (tail), [3.25, 3.75] and [3.0, 3.4] of 5 (tail5, s5:
#     the previous profile's schedule), and s5 scaled to 7 and 8 epochs (e7: the default
#     profile's schedule since then, so it is the profile unchanged; e8),
#   - three anchor sets: yolov3, synthetic-ratios, synthetic-fit (study/anchors.py),
# each named explore/<fusion>-<variant> (models/, results/ of the current folder), then a table of
# every run's learning curve (AP x 100 on the curve's validation subset) and its final AP.
# SEED=K picks the training seed (default 0; the epoch-count rows were measured at seed 1).
# Needs the pretrained backbone first (`dvc repro pretrain` or `study pretrain`).
# Usage: bash benchmarks/protocol_runs.sh [VARIANT ...]   (default: every variant below)
set -euo pipefail
SEED=${SEED:-0}
# the runs before the two-step schedule: 4 epochs, mixup off for the last one
OLD4="--set train.epochs=4 --set train.mixup.off_last_epochs=1"
# the 5-epoch schedule the profile had before 7 epochs
S5="--set train.epochs=5 --set train.lr_schedule.steps=[3.0,3.4] --set train.mixup.off_last_epochs=2"
declare -A SETTINGS=(
  [blr1.0]="$OLD4 --set train.backbone_lr=1.0 --set train.lr_schedule.steps=[3.4]"
  [blr0.1]="$OLD4 --set train.backbone_lr=0.1 --set train.lr_schedule.steps=[3.4]"
  [blr0]="$OLD4 --set train.backbone_lr=0 --set train.lr_schedule.steps=[3.4]"
  [step25]="$OLD4 --set train.backbone_lr=1.0 --set train.lr_schedule.steps=[2.5]"
  [synthetic-ratios]="$OLD4 --set model.anchors=synthetic-ratios --set train.lr_schedule.steps=[2.5]"
  [synthetic-fit]="$OLD4 --set model.anchors=synthetic-fit --set train.lr_schedule.steps=[2.5]"
  [tail]="$OLD4 --set train.lr_schedule.steps=[2.0,2.75] --set train.mixup.off_last_epochs=2 --set train.dropblock.schedule={1:[1,3,3],2:[3,3,3]}"
  [tail5]="$S5 --set train.lr_schedule.steps=[3.25,3.75]"
  [s5]="$S5"
  [e7]=""
  [e8]="--set train.epochs=8 --set train.lr_schedule.steps=[4.8,5.44] --set train.mixup.off_last_epochs=3"
)
variants=("$@")
[[ ${#variants[@]} -gt 0 ]] || variants=(blr1.0 blr0.1 blr0 step25 synthetic-ratios synthetic-fit tail tail5 s5 e7 e8)
for v in "${variants[@]}"; do
  for f in none asff; do
    # shellcheck disable=SC2086
    study train "fusion/$f" --seed "$SEED" --set "name=explore/$f-$v" ${SETTINGS[$v]}
    # shellcheck disable=SC2086
    study evaluate "fusion/$f" --seed "$SEED" --set "name=explore/$f-$v" ${SETTINGS[$v]} | tail -1
  done
done
python3 - <<'PY'
import json
from pathlib import Path
for run in sorted(Path("results/explore").glob("*/seed*")):
    curve = json.loads((run / "curve.json").read_text())
    points = " ".join(f"{p['iteration']}:{100 * p['AP']:.1f}" for p in curve)
    m = json.loads((run / "metrics.json").read_text())
    print(f"{run.parent.name:28s} {points} | val AP {100 * m['AP']:.1f} AP50 {100 * m['AP50']:.1f}"
          f" APs {100 * m['APs']:.1f} APm {100 * m['APm']:.1f} APl {100 * m['APl']:.1f}")
PY
