"""Build the tutorial notebooks ``tutorials/NN_*.ipynb`` from their sources ``tutorials/src/*.py``.

The sources are plain Python in the "percent" cell format (as jupytext writes it), so each one is
also a script that runs top to bottom (``python tutorials/src/01_process_structure.py``), can be
linted with ruff and reviewed as text::

    # %% [markdown]
    # # A title
    # Narrative text; each line starts with "# ".

    # %%
    x = 1  # a code cell

The notebooks are written *without outputs* (``nbformat`` v4); the documentation renders them as
code and text, and ``tests/test_tutorials.py`` executes them in the smoke setting
(``PSPPYRO_SMOKE=1``) and checks that the committed notebooks equal a fresh build.

Every notebook ends by printing one line ``SUMMARY {json}`` with the numbers it computed;
:func:`execute` runs a notebook with ``nbclient`` and :func:`summary_of` reads that line back (the
tests assert on it).

Run::

    .venv/bin/python tutorials/_build_notebooks.py              # rebuild every notebook
    .venv/bin/python tutorials/_build_notebooks.py --check      # exit 1 if a notebook is stale
    .venv/bin/python tutorials/_build_notebooks.py --run 01 05  # execute (full setting), timed
    .venv/bin/python tutorials/_build_notebooks.py --run all --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

_KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split percent-format source into ``(kind, source)`` cells, kind "markdown" or "code"."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
            continue
        if not cells:  # text before the first marker (none in our sources) is ignored
            continue
        kind, lines = cells[-1]
        if kind == "markdown":
            if line == "#":
                line = ""
            elif line.startswith("# "):
                line = line[2:]
            elif line.strip():
                raise ValueError(f"markdown line does not start with '# ': {line!r}")
        lines.append(line)
    out = []
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            out.append((kind, "\n".join(lines)))
    return out


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook for one percent-format source file (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(_KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(parse_cells(source.read_text(encoding="utf-8"))):
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(
            text
        )
        cell["id"] = f"{source.stem[:2]}-{i:03d}"  # stable ids: a rebuild gives identical files
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as the text written to disk."""
    return nbformat.writes(nb) + "\n"


def sources() -> list[Path]:
    """The tutorial sources, in order."""
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def execute(notebook: Path, smoke: bool, timeout: int = 1200, cwd: Path | None = None):
    """Execute a notebook in a fresh ``python3`` kernel; return ``(executed notebook, seconds)``.

    ``PSPPYRO_SMOKE`` is set to "1" or "0" for the kernel (which inherits this environment, so
    ``PSPPYRO_FIGDIR`` and ``OMP_NUM_THREADS`` pass through as well). A failing cell raises
    ``nbclient.exceptions.CellExecutionError`` with the cell's traceback.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(str(notebook), as_version=4)
    old = os.environ.get("PSPPYRO_SMOKE")
    os.environ["PSPPYRO_SMOKE"] = "1" if smoke else "0"
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd or notebook.parent)}})
        t0 = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("PSPPYRO_SMOKE", None)
        else:
            os.environ["PSPPYRO_SMOKE"] = old


def summary_of(nb: nbformat.NotebookNode) -> dict:
    """The ``SUMMARY {json}`` line an executed tutorial printed (ValueError if there is none)."""
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith("SUMMARY "):
                    return json.loads(line[len("SUMMARY "):])
    raise ValueError("the notebook printed no 'SUMMARY {json}' line")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that notebooks are fresh")
    parser.add_argument("--run", nargs="+", metavar="NN",
                        help="execute these notebooks (numbers, or 'all') and print their times")
    parser.add_argument("--smoke", action="store_true", help="with --run: PSPPYRO_SMOKE=1")
    args = parser.parse_args(argv)
    if args.run:
        for nb_path in sorted(HERE.glob("[0-9][0-9]_*.ipynb")):
            if "all" in args.run or nb_path.name[:2] in args.run:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                nb, seconds = execute(nb_path, args.smoke)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, reaped
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                print(f"{nb_path.name}: {seconds:.1f} s wall, {cpu:.1f} s CPU of the kernel and "
                      f"its workers (load {os.getloadavg()[0]:.1f}); "
                      f"summary {json.dumps(summary_of(nb))}", flush=True)
        return 0
    stale = []
    for src in sources():
        target = HERE / f"{src.stem}.ipynb"
        text = render(build(src))
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print(f"stale notebooks (run tutorials/_build_notebooks.py): {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
