"""Small shared helpers: atomic file writes, hashing, device choice, seeding (what every stage
runs, training included; provenance and git live in study/provenance.py)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# A write that failed for lack of room or a broken device: the user's to fix, not a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def write_failed(path: str | os.PathLike[str], exc: OSError) -> Exception:
    """The error to raise for ``exc`` while writing ``path``: a StudyError naming ``path`` (the
    final file, not the temporary one) for a full disk or a failing device, else ``exc``."""
    from study.errors import StudyError

    if exc.errno not in WRITE_ERRNOS:
        return exc
    return StudyError(
        f"{path}: cannot write ({exc.strerror}); the previous {Path(path).name}, if any, is "
        "unchanged and nothing partial was left. Free some space and rerun the same command"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A full disk (or a failing device) while writing is a StudyError naming ``path``; the
    temporary file is removed and ``path`` keeps its previous contents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class _Writer:
    """A binary file for ``torch.save`` that keeps the OSError of a failed write: torch's zip
    writer turns it into a RuntimeError without the errno ("unexpected pos ...")."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically: a killed process never leaves a truncated checkpoint, and a
    full disk is a StudyError naming ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _Writer(file)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None


def swap_in(new: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Replace the folder (or file) ``final`` by ``new``, which was written beside it.

    The old ``final`` is kept until ``new`` is in place, so a failure before this call leaves the
    previous good output untouched.
    """
    new, final = Path(new), Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def ensure_writable(*folders: str | os.PathLike[str]) -> None:
    """Create each folder and check that a file can be written in it, before any work is done.

    Raises ``StudyError`` naming the folder (a read-only ``results/``, ``models/`` or ``runs/``
    would otherwise fail only after the work, e.g. after a whole training run).
    """
    from study.errors import StudyError

    for folder in folders:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise StudyError(
                f"{folder}: cannot write here ({exc.strerror}); nothing was done. Make it "
                "writable or run from a copy of the study you can write to"
            ) from None


def params_hash(params: Any) -> str:
    """A short hash of a stage's resolved parameters (the config of a run, ``bench``, ...)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else CPU; nothing assumes either."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
