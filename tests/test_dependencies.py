"""What each DVC stage depends on is exactly the code it can execute and the config it reads.

- dvc.yaml's code dependencies of every stage equal the import closure of its driver
  (study/stages/<stage>.py) below the drivers and the command line, computed from the import
  graph (tests/imports.py): a file too many retrains for nothing, a file too few lets a stage
  go stale without DVC seeing it.
- The layering is enforced: data -> models -> engine -> eval -> analysis -> report -> stage
  drivers -> command line, every module importing only its own layer or those below; the
  foundation (config, paths, helpers) imports no layer; no import cycle anywhere.
- In a fresh clone with the committed dvc.lock, edits that cannot change the trained weights
  leave every training stage unchanged, and edits that can mark every fusion run changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from import_graph import REPO, closure, graph, is_plugin, module_file, stage_files

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC["stages"]
# stage in dvc.yaml -> its driver below study/stages
DRIVERS = {
    "data": "data",
    "configure": "configure",
    "pretrain": "pretrain",
    "evaluate-pretrain": "evaluate",
    "train-fusion": "train",
    "train-table1": "train",
    "evaluate-fusion": "evaluate",
    "evaluate-table1": "evaluate",
    "analyze-fusion": "analyze",
    "train-designs": "train",
    "evaluate-designs": "evaluate",
    "analyze-designs": "analyze",
    "speed": "bench",
    "speed-designs": "bench",
    "report": "report",
    "report-designs": "report",
    "notebooks": "notebooks",
}
PER_RUN_STRATEGY = "study/models/fusions/${item.fusion}.py"
# The pretraining run's strategy (experiments/pretrain/backbone.yaml: model.fusion none).
PRETRAIN_STRATEGY = "study/models/fusions/none.py"
ALL_STRATEGIES = "study/models/fusions"


def listed_code(stage: str) -> set[str]:
    """The study/*.py files a dvc.yaml stage lists, folders expanded."""
    files: set[str] = set()
    for dep in STAGES[stage]["deps"]:
        dep = dep if isinstance(dep, str) else next(iter(dep))
        if not dep.startswith("study/") or dep in (PER_RUN_STRATEGY, PRETRAIN_STRATEGY):
            continue
        path = REPO / dep
        if path.is_dir():
            files |= {p.relative_to(REPO).as_posix() for p in path.rglob("*.py")}
        else:
            files.add(dep)
    return files


def strategy_modules() -> set[str]:
    return {module_file(m) for m in graph().modules if is_plugin(m)}


def test_every_stage_has_a_driver_and_every_driver_a_stage() -> None:
    assert set(DRIVERS) == set(STAGES)
    drivers = {p.stem for p in (REPO / "study" / "stages").glob("*.py")} - {"__init__"}
    assert set(DRIVERS.values()) | {"official"} == drivers  # import-official: a tool, no stage


@pytest.mark.parametrize("stage", sorted(DRIVERS))
def test_stage_dependencies_are_the_import_closure_of_its_driver(stage: str) -> None:
    expected = stage_files(f"study.stages.{DRIVERS[stage]}")
    deps = STAGES[stage]["deps"]
    if PER_RUN_STRATEGY in deps or PRETRAIN_STRATEGY in deps:  # one run: its own strategy
        assert ALL_STRATEGIES not in deps
    elif ALL_STRATEGIES in deps or any(d.startswith(ALL_STRATEGIES) for d in deps):
        expected |= strategy_modules()  # several strategies (Table 1 rows, the bench)
    names = [d if isinstance(d, str) else next(iter(d)) for d in deps]
    assert len(names) == len(set(names)), f"{stage}: a dependency listed twice"
    listed = listed_code(stage)
    assert not listed - expected, f"{stage}: listed but never executed: {sorted(listed - expected)}"
    assert not expected - listed, f"{stage}: executed but not listed: {sorted(expected - listed)}"


def test_a_training_run_never_depends_on_evaluation_reporting_or_the_command_line() -> None:
    train = stage_files("study.stages.train")
    for folder in ("study/eval/", "study/analysis/", "study/report/", "study/stages/"):
        assert not any(f.startswith(folder) for f in train), folder
    assert {"study/cli.py", "study/config.py"}.isdisjoint(train)
    assert not any(f.startswith("study/data/synthetic") for f in train)  # the files, not the code


# Layers, lowest first. The foundation imports no layer (and each other without a cycle).
LAYERS = [
    "study.data",
    "study.models",
    "study.engine",
    "study.eval",
    "study.analysis",
    "study.report",
    "study.stages",
    "study.cli",
]
ENTRY = {"study.__main__"}  # `python -m study`: above everything


def layer_of(module: str) -> int:
    if module in ENTRY:
        return len(LAYERS) + 1
    for i, prefix in enumerate(LAYERS, start=1):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return 0  # study, study.config, study.runs, study.utils, study.errors, ...


def test_modules_import_only_their_own_layer_or_below() -> None:
    g = graph()
    wrong = [
        f"{a} -> {b}"
        for a in sorted(g.modules)
        for b in sorted(g.find_modules_directly_imported_by(a))
        if layer_of(b) > layer_of(a)
    ]
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` (module -> imported modules), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    g = graph()
    edges = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_a_back_arrow_and_a_cycle() -> None:
    """The two rules above fail on the defects they guard against."""
    assert layer_of("study.analysis.run") > layer_of("study.eval.bench") > layer_of("study.runs")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "study.engine.trainer" in closure("study.stages.train")


# --------------------------------------------------------------------- dvc status, fresh clone
def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the committed tree (HEAD), with its dvc.lock."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the git repository")
    path = tmp_path_factory.mktemp("clone") / "study"
    run(["git", "clone", "-q", str(REPO), str(path)], REPO)
    return path


def changed_deps(clone: Path) -> dict[str, set[str]]:
    """dvc status: each stage -> the dependencies (files, params) that differ from dvc.lock."""
    status = json.loads(run([tool("dvc"), "status", "--json"], clone) or "{}")
    out: dict[str, set[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, dict):
                for key in ("changed deps", "changed params"):
                    out.setdefault(stage, set()).update(
                        f"{k}:{v}" if isinstance(v, str) else f"{k}:{sorted(v)}"
                        for k, v in (entry.get(key) or {}).items()
                    )
    return out


def training(changes: dict[str, set[str]]) -> dict[str, set[str]]:
    return {s: c for s, c in changes.items() if s.startswith("train-")}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def configure(clone: Path) -> None:
    run([tool("study"), "configure"], clone)


@pytest.mark.slow
def test_edits_that_cannot_change_the_weights_retrain_nothing(clone: Path) -> None:
    configure(clone)  # the committed configs, rewritten: byte-identical
    before = training(changed_deps(clone))
    for path in (
        "study/cli.py",
        *(f"study/stages/{p.name}" for p in (REPO / "study/stages").glob("*.py")),
    ):
        (clone / path).write_text((clone / path).read_text() + "# a comment\n")
    for folder in ("study/report", "study/eval", "study/analysis"):
        for path in (clone / folder).glob("*.py"):
            path.write_text(path.read_text() + "# a comment\n")
    edit(clone / "experiments/_base.yaml", "\n", "\n# a comment\n")
    params = clone / "params.yaml"
    edit(params, "      log_every: 25\n", "      log_every: 5\n")
    edit(params, "test_sizes: [64, 96, 128, 160]", "test_sizes: [96, 128]")
    configure(clone)
    after = training(changed_deps(clone))
    assert after == before, {s: after[s] - before.get(s, set()) for s in after}
    evaluate = changed_deps(clone)
    assert all(
        any("eval.yaml" in c for c in evaluate.get(f"evaluate-fusion@{r}", ()))
        for r in ("none-0", "asff-2")
    ), "a test-size change must re-evaluate"


@pytest.mark.slow
def test_edits_that_can_change_the_weights_retrain_every_fusion_run(clone: Path) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    runs = {f"train-fusion@{f}-{s}" for f in params["fusions"] for s in params["seeds"]}
    run(["git", "checkout", "-q", "--", "."], clone)
    configure(clone)
    before = training(changed_deps(clone))
    # A fresh clone lacks the upstream outputs (dataset, backbone: "deleted"), which every run
    # lists alike; only a dependency that differs from dvc.lock means the lock predates the code.
    stale = sorted(s for s in runs if any(not c.endswith(":deleted") for c in before.get(s, ())))
    if stale:  # an edit cannot show against a lock that the code has already moved past
        pytest.skip(f"the committed training stages predate the code ({stale[0]} and others)")
    (clone / "study/engine/loss.py").write_text(
        (clone / "study/engine/loss.py").read_text() + "# a comment\n"
    )
    after = training(changed_deps(clone))
    assert {s for s in runs if after.get(s, set()) - before.get(s, set())} == runs
    run(["git", "checkout", "-q", "--", "."], clone)
    edit(clone / "params.yaml", "      lr: 4.0e-3\n", "      lr: 2.0e-3\n")
    configure(clone)
    after = training(changed_deps(clone))
    newly = {s: after.get(s, set()) - before.get(s, set()) for s in runs}
    assert all(any("train.yaml" in c for c in newly[s]) for s in runs), newly


@pytest.mark.slow
def test_the_regenerated_dataset_is_the_committed_one(clone: Path) -> None:
    """`study data` writes the same bytes on every run (no wall time in stats.json), so DVC sees
    a regenerated dataset as the one every training run was trained on."""
    run(["git", "checkout", "-q", "--", "."], clone)
    run([tool("study"), "data"], clone)
    status = json.loads(run([tool("dvc"), "status", "--json", "data"], clone) or "{}")
    entries = [e for e in status.get("data", []) if isinstance(e, dict)]
    assert not any("changed deps" in e or "changed params" in e for e in entries), status
    outs = {k: v for e in entries for k, v in (e.get("changed outs") or {}).items()}
    # "modified" would mean other bytes than dvc.lock records; a fresh clone only lacks the cache
    assert set(outs.values()) <= {"not in cache"}, status
