"""``study notebooks`` (study/report/notebooks.py): execution with the results parameter, HTML,
no timestamps in the output, and a failing cell reported by notebook and cell."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from study.errors import StudyError
from study.report.notebooks import execute_notebooks

REPO = Path(__file__).resolve().parents[2]


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('results = "nowhere"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with an empty notebook folder ``nb`` and results folder ``res``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb").mkdir()
    (tmp_path / "res").mkdir()
    return tmp_path


def test_notebooks_run_on_the_results_folder(workdir: Path) -> None:
    (workdir / "res" / "x.txt").write_text("42")
    _notebook(
        workdir / "nb" / "a.ipynb",
        'from pathlib import Path\nprint(Path(results, "x.txt").read_text())',
    )
    written = execute_notebooks(Path("nb"), Path("res"), Path("out"))
    assert [p.name for p in written] == ["a.ipynb", "a.html"]
    nb = nbformat.read(workdir / "out" / "a.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("42" in o.get("text", "") for o in outputs)
    text = (workdir / "out" / "a.ipynb").read_text()
    assert "start_time" not in text and "duration" not in text
    assert "42" in (workdir / "out" / "a.html").read_text()


def test_a_failing_cell_names_the_notebook(workdir: Path) -> None:
    _notebook(workdir / "nb" / "bad.ipynb", "raise ValueError('no table')")
    with pytest.raises(StudyError, match=r"nb/bad.ipynb: cell \d+ failed: ValueError: no table"):
        execute_notebooks(Path("nb"), Path("res"), Path("out"))
    assert not (workdir / "out" / "bad.ipynb").exists()
    with pytest.raises(StudyError, match="no notebooks"):
        execute_notebooks(Path("res"), Path("res"), Path("out"))
    with pytest.raises(StudyError, match="absent: results folder not found"):
        execute_notebooks(Path("nb"), Path("absent"), Path("out"))


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_shipped_notebooks_read_only_results(path: Path) -> None:
    """Each shipped notebook has a `results` parameter cell and never trains or evaluates."""
    nb = json.loads(path.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "".join(tagged[0]["source"]).startswith("results = ")
    code = "\n".join(cells)
    for forbidden in ("study train", "Trainer(", "pipeline.train", "import torch"):
        assert forbidden not in code
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
