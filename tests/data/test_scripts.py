"""generate and simulate_properties from plain scripts: no __main__ guard, standard input."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# No `if __name__ == "__main__":` guard. The default (in-process) calls must work; the pool calls
# must fail with a RuntimeError that explains the guard, without the workers re-running the
# script (they stop at the first psppyro call while importing the main module).
_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import torch
from tests.data._standins import FRACTIONS, NoiseThresholdProcess
from psppyro.data import generate, open_dataset
from psppyro.design import simulate_properties

proc, phi = NoiseThresholdProcess(8), torch.tensor([0.5, 1.0])
args = dict(n_phi=4, per_phi=2, seed=1, chunk_size=2, progress=False)
ds = generate(proc, FRACTIONS, path={a!r}, **args)
m = simulate_properties(phi, proc, FRACTIONS, 4)
print("OK", ds.sizes["sample"], tuple(m.shape), flush=True)
calls = {{
    "generate": lambda: generate(proc, FRACTIONS, path={b!r}, workers=2, **args),
    "simulate": lambda: simulate_properties(phi, proc, FRACTIONS, 4, workers=2, chunk_size=2),
}}
for label in {pools!r}:
    call = calls[label]
    try:
        call()
        print("NOERROR", label, flush=True)
    except RuntimeError as err:
        print("ERROR", label, " ".join(str(err).split()), flush=True)
"""


def _run(tmp_path, stdin, pools):
    code = _SCRIPT.format(
        root=str(ROOT), a=str(tmp_path / "a.zarr"), b=str(tmp_path / "b.zarr"), pools=pools
    )
    script = tmp_path / "plain.py"
    script.write_text(code)
    cmd = [sys.executable, "-"] if stdin else [sys.executable, str(script)]
    out = subprocess.run(
        cmd,
        input=code if stdin else None,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def _check(lines, tmp_path, pools):
    assert lines[0] == "OK 8 (4, 2)"
    errors = {line.split()[1]: line for line in lines[1:]}
    assert sorted(errors) == sorted(pools)
    for line in errors.values():
        assert line.startswith("ERROR"), line
        assert 'if __name__ == "__main__":' in line and "workers=1" in line, line
        assert "could not start or died" in line, line
    assert not (tmp_path / "b.zarr").exists()  # the failed pool run made no store at path


# Spawning workers that import torch costs seconds each on a busy 2-core machine: the default
# suite runs the in-process calls from both kinds of script and one pool failure (about 20 s
# under load), the slow test every pool failure.
def test_script_without_main_guard(tmp_path):
    _check(_run(tmp_path, stdin=False, pools=["generate"]), tmp_path, ["generate"])


def test_script_on_standard_input(tmp_path):
    _check(_run(tmp_path, stdin=True, pools=[]), tmp_path, [])


@pytest.mark.slow
@pytest.mark.parametrize("stdin", [False, True])
def test_every_pool_explains_the_guard(tmp_path, stdin):
    pools = ["generate", "simulate"]
    _check(_run(tmp_path, stdin=stdin, pools=pools), tmp_path, pools)
