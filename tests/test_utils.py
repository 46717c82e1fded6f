"""Shared helpers (study/utils.py): provenance of a result."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from study.provenance import git_revision


def test_git_revision_of_a_checkout_and_of_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STUDY_GIT_REVISION", raising=False)
    assert git_revision(tmp_path) == "unknown"  # not a git checkout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("a")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "m"], check=True)
    clean = git_revision(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    # What the pipeline writes (results, models, dvc.lock) is a result, not a code change.
    for out in ("dvc.lock", "results/tables/t.md", "models/m.pt"):
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("1")
        subprocess.run([*git, "add", out], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "outputs"], check=True)
    clean = git_revision(tmp_path)
    for out in ("dvc.lock", "results/tables/t.md", "models/m.pt"):
        (tmp_path / out).write_text("2")
    assert git_revision(tmp_path) == clean
    (tmp_path / "f").write_text("b")
    assert git_revision(tmp_path) == clean + "-dirty"
    # A copy sent to another machine names the commit it was made from, whatever .git it has.
    monkeypatch.setenv("STUDY_GIT_REVISION", "0123abc")
    assert git_revision(tmp_path) == "0123abc (copy)"
