"""The README's Python snippet runs as a plain, guard-less script (in a subprocess).

The default test runs the snippet with its sizes shrunk (the same calls in the same order); the
slow test runs it exactly as printed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: README size -> tiny size. Every key must occur in the snippet (so an edit there is noticed).
TINY = {
    'scale=0.02)': 'scale=0.002)',  # 5 phi x 4 = 20 triads
    "gen.fit(ds, epochs=10)": "gen.fit(ds, epochs=1, progress=False)",
    "num_z=2000, epochs=3": "num_z=100, epochs=1",
    "num_samples=100, seed=1": "num_samples=4, seed=1",
}


def readme_snippet():
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^## [^\n]*Python[^\n]*$", text, re.M)
    assert heading, "no '## ... Python' section in README.md"
    match = re.search(r"```python\n(.*?)```", text[heading.end():], re.S)
    assert match, f"no ```python block under {heading.group(0)!r} in README.md"
    code = match.group(1)
    assert "__main__" not in code  # the point: a plain script
    return code


def _run_script(code, cwd, env=None):
    script = Path(cwd) / "readme_snippet.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env=env)


def _check(res, cwd):
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BrokenProcessPool" not in res.stderr
    assert re.search(r"phi\* = \[[-0-9.e, ]+\], simulated P = [0-9.]+ ± [0-9.]+", res.stdout), (
        res.stdout
    )
    assert (Path(cwd) / "train.zarr").is_dir() and (Path(cwd) / "design.json").is_file()


def test_readme_snippet_shape_runs_as_a_plain_script(tmp_path):
    code = readme_snippet()
    for readme_text, tiny in TINY.items():
        assert readme_text in code, f"README snippet changed: {readme_text!r} not found"
        code = code.replace(readme_text, tiny)
    # One torch thread: tiny sizes, and the test suite shares 2 cores.
    _check(_run_script(code, tmp_path, dict(os.environ, OMP_NUM_THREADS="1")), tmp_path)


@pytest.mark.slow
def test_readme_snippet_as_printed(tmp_path):
    _check(_run_script(readme_snippet(), tmp_path), tmp_path)
