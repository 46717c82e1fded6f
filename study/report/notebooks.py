"""``study notebooks``: execute every notebook of ``notebooks/`` on a results folder (papermill,
the ``results`` parameter) into ``results/notebooks/``: the executed ``.ipynb`` (outputs kept, so
JupyterLab shows them) and an ``.html`` rendering (nbconvert). The notebooks read only results;
they never train. Execution timestamps are removed so that a rerun on the same results changes
nothing but what the code changed."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import nbformat
import papermill
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from study.errors import StudyError
from study.utils import atomic_path, write_text

log = logging.getLogger(__name__)
TIMING_KEYS = ("papermill", "execution")


def _strip_timing(nb) -> None:  # noqa: ANN001
    for cell in nb.cells:
        for key in TIMING_KEYS:
            cell.metadata.pop(key, None)
    pm = nb.metadata.get("papermill")
    if pm is not None:
        for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
            pm.pop(key, None)


def execute_notebook(notebook: Path, results: Path, out_dir: Path) -> list[Path]:
    """Run ``notebook`` with ``results`` as its parameter; write ipynb and html to ``out_dir``."""
    out_ipynb = out_dir / notebook.name
    out_html = out_ipynb.with_suffix(".html")
    with atomic_path(out_ipynb) as tmp, warnings.catch_warnings():
        # the temporary file's name does not end in .ipynb; papermill warns about that
        warnings.filterwarnings("ignore", message="The specified file", category=UserWarning)
        try:
            papermill.execute_notebook(
                str(notebook),
                str(tmp),
                parameters={"results": results.as_posix()},
                kernel_name="python3",
                progress_bar=False,
                cwd=str(Path.cwd()),
            )
        except PapermillExecutionError as exc:
            raise StudyError(
                f"{notebook}: cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}"
            ) from None
        except (ValueError, OSError) as exc:  # not a notebook, unreadable, no kernel
            raise StudyError(f"{notebook}: cannot execute: {exc}") from None
        nb = nbformat.read(tmp, as_version=4)
        _strip_timing(nb)
        nbformat.write(nb, tmp)
    html, _ = HTMLExporter().from_notebook_node(nb)
    write_text(out_html, html)
    return [out_ipynb, out_html]


def execute_notebooks(source: Path, results: Path, out_dir: Path) -> list[Path]:
    """Every ``*.ipynb`` of ``source`` (sorted), executed on ``results``."""
    source, results, out_dir = Path(source), Path(results), Path(out_dir)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise StudyError(f"{source}: no notebooks (*.ipynb) to execute")
    if not results.is_dir():
        raise StudyError(f"{results}: results folder not found (run the study first)")
    written: list[Path] = []
    for nb in notebooks:
        log.info("executing %s on %s", nb, results)
        written += execute_notebook(nb, results, out_dir)
    return written
