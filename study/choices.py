"""The choices of settings that the config checks (study/config.py ``RULES``) and the code
branches on, one spelling each. They live apart from the config loader so that the training
code can name them without depending on it: an edit to study/config.py retrains nothing."""

# train.lr_schedule.name (study/engine/schedule.py, ``lr_at``)
LR_SCHEDULES = ("official", "paper", "step")
# eval.dropped_gt: what scoring does with ground truth the loader drops (study/data/coco.py,
# ``refuse_dropped_gt``)
DROPPED_GT = ("error", "score", "ignore")
