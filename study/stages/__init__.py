"""The stage drivers: one module per ``study`` subcommand that dvc.yaml calls.

A driver resolves its run's config and paths and calls the library below it; it holds no
method of its own. Drivers are leaves above the library (as detectron2 keeps ``tools/`` above
``modeling/``): nothing in ``study/`` imports them but ``study/cli.py``. So a stage's code is the
import closure of its driver below this package, and dvc.yaml lists exactly that
(tests/test_dependencies.py); a driver's own effect on a training run is the resolved config
that ``study configure`` writes and DVC tracks (``configs/<experiment>/seed<k>/train.yaml``).
"""
