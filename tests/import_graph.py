"""The import graph of ``study`` (grimp), read the way Python executes it: a module's closure
holds every module it imports, directly or not, and every package ``__init__`` on the way."""

from __future__ import annotations

import functools
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "study"
# Imported by name at run time (pkgutil), not by an import statement: each fusion strategy
# registers itself; a run executes its own strategy's module (dvc.yaml names it per run). What
# the package itself imports by statement (resize.py, the shared building blocks) is no plugin:
# every run executes it.
PLUGINS = "study.models.fusions"


@functools.cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, include_external_packages=False, cache_dir=None)


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(*modules: str) -> set[str]:
    """Every ``study`` module that importing ``modules`` executes (plugins aside)."""
    g, todo, seen = graph(), list(modules), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [*g.find_modules_directly_imported_by(module), *ancestors(module)]
    return seen


def module_file(module: str) -> str:
    """``study.models.zoo`` -> ``study/models/zoo.py`` (a package -> its ``__init__.py``)."""
    path = REPO / Path(*module.split("."))
    if path.is_dir():
        return (path / "__init__.py").relative_to(REPO).as_posix()
    return path.with_suffix(".py").relative_to(REPO).as_posix()


def is_plugin(module: str) -> bool:
    return (
        module.startswith(PLUGINS + ".")
        and module.count(".") == PLUGINS.count(".") + 1
        and module not in graph().find_modules_directly_imported_by(PLUGINS)
    )


def stage_files(driver: str) -> set[str]:
    """The files a stage executes below its driver ``study.stages.<name>`` (the driver and the
    command line are leaves, and fusion strategies are listed per run)."""
    modules = closure(driver)
    keep = {
        m
        for m in modules
        if not m.startswith("study.stages") and m != "study.cli" and not is_plugin(m)
    }
    return {module_file(m) for m in keep}


def listed_files(files: set[str]) -> list[str]:
    """``files`` as dvc.yaml lists them: a folder of ``study`` whose every module is in
    ``files`` is named once (``study/engine``), other files one by one; sorted."""
    out, covered = [], set()
    folders = sorted({str(Path(f).parent) for f in files}, key=lambda p: p.count("/"))
    for folder in folders:
        if folder == PACKAGE or any(folder.startswith(c + "/") for c in covered):
            continue
        inside = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*.py")}
        inside = {f for f in inside if "__pycache__" not in f}
        if inside <= files and not folder.startswith(PLUGINS.replace(".", "/")):
            covered.add(folder)
            out.append(folder)
    out += [f for f in files if not any(f.startswith(c + "/") for c in covered)]
    return sorted(out)


if __name__ == "__main__":  # print each driver's dependency list, as dvc.yaml should hold it
    import sys

    for driver in sys.argv[1:]:
        print(f"{driver}:")
        for path in listed_files(stage_files(f"study.stages.{driver}")):
            print(f"      - {path}")
