"""The documentation stays connected to the code: API coverage, citations, pages and clean imports.

The docstring examples themselves run as doctests (setup.cfg: ``--doctest-modules`` on psppyro/);
``make docs`` builds the pages with warnings as errors. These tests check what neither sees.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "psppyro"
DOCS = ROOT / "docs"

CITATION = re.compile(r'docs/architecture\.md``?\s*§\s*"([^"]+)"')


def _public_modules():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") for p in parts if p != "__init__"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _headings():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    return {m.group(1).strip() for m in re.finditer(r"^#{1,4} (.+)$", text, re.MULTILINE)}


def test_api_reference_documents_every_public_module():
    api = (DOCS / "api.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. automodule:: (\S+)", api, re.MULTILINE))
    missing = [m for m in _public_modules() if m not in documented]
    assert not missing, f"public modules missing from docs/api.rst: {missing}"
    stale = sorted(documented - set(_public_modules()))
    assert not stale, f"docs/api.rst documents modules that do not exist: {stale}"


def test_docstrings_cite_sections_that_exist_in_architecture_md():
    headings = _headings()
    assert {"Layers and their import rule", "The design protocol", "Phases"} <= headings
    cited, bad, external = 0, [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        # a citation may be wrapped over two docstring lines
        flat = re.sub(r"\s*\n\s*(?:#:?\s*)?", " ", text)
        for name in CITATION.findall(flat):
            cited += 1
            if name not in headings:
                bad.append(f"{path.relative_to(ROOT)}: § {name!r}")
        if re.search(r"DESIGN(\.md)?\s*§|DESIGN\.md", text):
            external.append(str(path.relative_to(ROOT)))
    assert not external, f"citations of the external DESIGN file left in {external}"
    assert not bad, f"citations of sections that docs/architecture.md does not have: {bad}"
    assert cited >= 20  # the package really cites the page (the regex is not silently broken)


def test_every_docs_page_is_in_the_index_toctree():
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\S+)\s*$", index, re.MULTILINE))
    pages = {p.stem for p in DOCS.iterdir() if p.suffix in (".md", ".rst") and p.stem != "index"}
    assert pages <= listed, f"pages not linked from docs/index.rst: {sorted(pages - listed)}"


def test_importing_cli_and_demo_has_no_side_effects(tmp_path):
    # In a fresh interpreter: no output, no files, no matplotlib, no global torch/multiprocessing
    # state changed by the import itself (the work happens only when main()/run_demo() run).
    code = (
        "import multiprocessing, sys, torch\n"
        "threads = torch.get_num_threads()\n"
        "import psppyro.cli, psppyro.demo\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "assert multiprocessing.get_start_method(allow_none=True) is None, 'start method set'\n"
        "assert torch.get_num_threads() == threads, 'torch threads changed'\n"
        "assert torch.get_default_dtype() == torch.float32, 'default dtype changed'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == "", (out.stdout, out.stderr)
    assert list(tmp_path.iterdir()) == []
