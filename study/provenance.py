"""What a result file records about how it was made: the git revision, the hash of the stage's
parameters, library versions, device and threads. Only the stages that write results import it
(not training: the weights record their config hash, the driver the provenance)."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import torch

from study.utils import device_description, params_hash

# What the pipeline itself writes into the tree (DVC outputs and the lock file): a change there
# is a result, not a change to the code or config that produced it, so it does not make the
# revision dirty.
PIPELINE_OUTPUTS = ("dvc.lock", "configs", "results", "models", "data/synthetic")


def provenance(params: Any, device: torch.device | str | None = None) -> dict[str, Any]:
    """What a result file records about how it was made: the git revision (clean when the code
    was committed), the hash of the stage's parameters, library versions, device and threads."""
    return {
        "git_revision": git_revision(),
        "params_sha256": params_hash(params),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_description(torch.device(device)) if device is not None else None,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def git_revision(cwd: str | os.PathLike[str] | None = None) -> str:
    """The current git commit (with ``-dirty`` when code or config has uncommitted changes),
    or ``unknown``. Changes to the pipeline's own outputs (``PIPELINE_OUTPUTS``) do not count.

    ``$STUDY_GIT_REVISION``, when set, names the commit that a copy of the tree (sent to another
    machine, possibly with a stale or no ``.git``) was made from; it is returned as
    ``<sha> (copy)`` instead of asking git.
    """
    copied = os.environ.get("STUDY_GIT_REVISION")
    if copied:
        return f"{copied} (copy)"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":/",
                *(f":(top,exclude){p}" for p in PIPELINE_OUTPUTS),
            ],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
