"""`psppyro` command line: every user mistake fails early, in one line, with exit status 2.

Most tests call ``main([...])`` in-process (fast); the subprocess tests check the real console
behaviour (no traceback, exit status, ``--version``).
"""

import os
import subprocess
import sys

import pytest
import torch

import psppyro as pp
from psppyro import cli
from psppyro.cli import main

BOX = ["--low", "-7", "-7", "--high", "-4", "-4"]
EVAL = ["evaluate", "--process", "pspgen36", "--phi", "1", "2"]


def _fail(argv, capsys):
    """Run ``main(argv)``, check the one-line failure and return its message."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    command = next(a for a in argv if not a.startswith("-"))
    assert lines[0].startswith(f"psppyro {command}: ")
    return lines[0]


@pytest.fixture
def no_simulation(monkeypatch):
    """Make any simulation fail loudly: the checks must come before it."""

    def boom(*args, **kwargs):
        raise AssertionError("simulation started before the arguments were checked")

    monkeypatch.setattr(pp.design, "evaluate", boom)
    monkeypatch.setattr(pp.design, "simulate_properties", boom)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--low", "-5", "-5", "--high", "-6", "-6"], "low must be < high"),  # inverted box
        (["--low", "nan", "-5", "--high", "-4", "-4"], "low must not contain NaN"),
        (BOX + ["--num-samples", "-4"], "--num-samples must be an integer >= 1, got -4"),
        (BOX + ["--workers", "0"], "--workers must be an integer >= 1, got 0"),
        (BOX + ["--seed", "-1"], "--seed must be an integer seed"),
        (["--low", "-7", "-7", "-7", "--high", "-4", "-4", "-4"],
         "the target has 3 components but --properties 'log_permeability' gives 2"),
        (BOX + ["--properties", "nope"], "--properties must be one of log_permeability"),
        (["--low", "-7"], "give --low and --high"),
    ],
)
def test_evaluate_errors_are_one_line_and_before_simulation(extra, message, capsys,
                                                           no_simulation):
    assert message in _fail(EVAL + extra, capsys)


@pytest.mark.parametrize(
    "phi, message",
    [
        (["100", "2"], "--phi is outside its bounds at index (0,): value 100"),  # bad phi
        (["1", "2", "3"], "--phi must have last dimension 2"),
        (["nan", "1"], "--phi must be finite"),
    ],
)
def test_evaluate_bad_phi(phi, message, capsys, no_simulation):
    argv = ["evaluate", "--process", "pspgen36", "--phi", *phi, *BOX]
    assert message in _fail(argv, capsys)


def test_evaluate_unknown_process_lists_presets(capsys, no_simulation):
    line = _fail(["evaluate", "--process", "pspgen99", "--phi", "1", "2", *BOX], capsys)
    assert "--process must be one of" in line and "pspgen36" in line and "'pspgen99'" in line


def test_evaluate_refuses_a_3d_process_for_a_2d_property(capsys, no_simulation):
    line = _fail(["evaluate", "--process", "filtered3d", "--phi", "1", "2", "3", *BOX], capsys)
    assert "takes 2-D images but --process 'filtered3d' makes 3-D ones" in line


def test_debug_prints_the_traceback_and_the_line(capsys):
    argv = EVAL + ["--low", "-5", "-5", "--high", "-6", "-6"]
    for args in (["--debug", *argv], [*argv, "--debug"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err
        assert "ValueError: low must be < high" in err
        assert err.strip().splitlines()[-1].startswith("psppyro evaluate: low must be < high")


def test_train_checks_before_reading_data(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the dataset was opened before the options were checked")

    monkeypatch.setattr(pp.data, "open_dataset", boom)
    base = ["train", "pspgen", "--data", str(tmp_path / "d.zarr")]
    out = str(tmp_path / "gen.pt")
    missing = str(tmp_path / "missing" / "dir" / "z.pt")
    cases = [
        (["--out", missing], "the folder"),
        (["--out", str(tmp_path)], "is a folder"),
        (["--out", out, "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        (["--out", out, "--batch-size", "-1"], "--batch-size must be an integer >= 1"),
        (["--out", out, "--d-z0", "0"], "--d-z0 must be an integer >= 1"),
        (["--out", out, "--lr", "0"], "--lr must be a finite number > 0"),
        (["--out", out, "--lr", "nan"], "--lr must be a finite number > 0"),
        (["--out", out, "--seed", "-3"], "--seed"),
        (["--out", out, "--resume"], "--resume needs --checkpoint-dir"),
        (["--out", out, "--device", "warp9"], "--device must be a torch device"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--out", out, "--device", "cuda"], "CUDA is not available"))
    for extra, message in cases:
        line = _fail(base + extra, capsys)
        assert message in line, line
    assert missing in _fail(base + ["--out", missing], capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_train_refuses_an_unwritable_out_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = _fail(["train", "pspgen", "--data", "d", "--out", str(ro / "z.pt")], capsys)
    finally:
        ro.chmod(0o700)
    assert "is not writable" in line


def test_train_missing_dataset_is_one_line(tmp_path, capsys):
    line = _fail(["train", "pspgen", "--data", str(tmp_path / "none.zarr"),
                  "--out", str(tmp_path / "g.pt")], capsys)
    assert "none.zarr" in line


def test_generate_checks_before_generating(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("generation started before the options were checked")

    monkeypatch.setattr(pp.data, "generate", boom)
    out = str(tmp_path / "d.zarr")
    cases = [
        (["pspgen-case1-train", "--out", out, "--workers", "0"], "--workers must be an integer"),
        (["pspgen-case1-train", "--out", out, "--chunk-size", "0"], "--chunk-size must be"),
        (["pspgen-case1-train", "--out", out, "--seed", "-1"], "--seed"),
        (["pspgen-case1-train", "--out", out, "--scale", "-1"], "scale"),
        (["pspgen-case1-train", "--out", str(tmp_path / "no" / "d.zarr")], "does not exist"),
        (["nope", "--out", out], "PRESET must be one of pspgen-case1-train"),
    ]
    for extra, message in cases:
        line = _fail(["generate", *extra], capsys)
        assert message in line, line


def test_generate_passes_an_explicit_worker_count(tmp_path, monkeypatch, capsys):
    # The Python API runs in-process by default; the command uses all cores unless told.
    seen = {}

    class Stop(Exception):
        pass

    def fake_generate(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(pp.data, "generate", fake_generate)
    with pytest.raises(Stop):
        main(["generate", "pspgen-case1-train", "--out", str(tmp_path / "d.zarr")])
    assert isinstance(seen["workers"], int) and seen["workers"] >= 1
    assert seen["workers"] == len(os.sched_getaffinity(0))


def test_design_checks_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from psppyro.models import PSPGen

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(PSPGen, "load", boom)
    model = tmp_path / "gen.pt"
    model.write_bytes(b"x")
    base = ["design", "--model", str(model), *BOX]
    cases = [
        (["--process", "pspgen99", "--out", str(tmp_path / "r.json")], "--process must be one of"),
        (["--out", str(tmp_path / "no" / "r.json")], "does not exist"),
        (["--process", "pspgen36", "--num-samples", "0"], "--num-samples must be an integer"),
        (["--seed", "-1"], "--seed"),
    ]
    for extra, message in cases:
        line = _fail(base + extra, capsys)
        assert message in line, line
    line = _fail(["design", "--model", str(tmp_path / "none.pt"), *BOX], capsys)
    assert "--model" in line and "does not exist" in line


@pytest.mark.parametrize(
    "content, what",
    [(b"", "empty file"), (b"not a model\n", "not a torch file")],
)
def test_design_with_a_non_model_file(tmp_path, capsys, content, what):
    model = tmp_path / "gen.pt"
    model.write_bytes(content)
    line = _fail(["design", "--model", str(model), *BOX], capsys)
    assert "is not a psppyro model file" in line and what in line


def test_demo_checks_its_options(tmp_path, capsys, monkeypatch):
    import psppyro.demo

    def boom(*args, **kwargs):
        raise AssertionError("the demo started before the options were checked")

    monkeypatch.setattr(psppyro.demo, "run_demo", boom)
    (tmp_path / "file").write_text("x")
    for extra, message in [
        (["--workers", "0"], "--workers must be an integer >= 1, got 0"),
        (["--seed", "-1"], "--seed"),
        (["--out", str(tmp_path / "file")], "is a file"),
    ]:
        line = _fail(["demo", "--out", str(tmp_path / "d"), *extra], capsys)
        assert message in line, line
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--num-samples", "x"], "psppyro evaluate: argument --num-samples: invalid"),
        (["evaluate"], "psppyro evaluate: the following arguments are required: --process, --phi"),
        (["nope"], "psppyro: argument command: invalid choice: 'nope'"),
        ([], "psppyro: the following arguments are required: command"),
    ],
)
def test_syntax_errors_are_one_line_too(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message) and "--help)" in err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"psppyro {pp.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "5 % of the pixels" in " ".join(out.split()) and "%%" not in out
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for name in pp.data.DATASET_PRESETS:
        assert name in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    for name in list(pp.process.PRESETS) + list(pp.properties.PROPERTY_MAPS):
        assert name in out


def test_bugs_still_show_their_traceback(monkeypatch):
    def broken(args):
        return {}["missing"]  # a KeyError is a bug, not a user mistake

    monkeypatch.setattr(cli, "_run_evaluate", broken)
    with pytest.raises(KeyError):
        main(EVAL + BOX)


def test_which_errors_are_user_errors():
    assert cli._is_user_error(ValueError("x"))
    assert cli._is_user_error(FileNotFoundError("x"))
    assert not cli._is_user_error(KeyError("x"))
    assert not cli._is_user_error(ZeroDivisionError())
    with pytest.raises(RuntimeError) as info:
        torch.zeros(2) @ torch.zeros(3)  # torch's own RuntimeError: a bug somewhere
    assert not cli._is_user_error(info.value)
    x = (torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    with pytest.raises(RuntimeError, match="maxiter=1") as info:
        pp.properties.conductivity(x, maxiter=1)  # raised on purpose by psppyro: CG stopped
    assert cli._is_user_error(info.value)
    one = cli._one_line("train", SystemExit("psppyro train: --x\n  bad"))
    assert one == "psppyro train: --x bad"  # no doubled prefix, one line


def test_runtime_errors_inside_psppyro_code(tmp_path):
    # A module of psppyro: one function raises on purpose, one lets torch fail (a bug).
    source = tmp_path / "fake.py"
    source.write_text(
        "import torch\n"
        "def on_purpose():\n"
        "    raise RuntimeError('solver did not converge')\n"
        "def torch_fails():\n"
        "    return torch.zeros(2) @ torch.zeros(3)\n"
    )
    ns = {"__name__": "psppyro.fake"}
    exec(compile(source.read_text(), str(source), "exec"), ns)
    with pytest.raises(RuntimeError) as info:
        ns["on_purpose"]()
    assert cli._is_user_error(info.value)
    with pytest.raises(RuntimeError) as info:
        ns["torch_fails"]()
    assert not cli._is_user_error(info.value)


def test_out_file_checks_cover_all_cases(tmp_path):
    cli._check_out_file(tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="is a folder"):
        cli._check_out_file(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        cli._check_out_file(tmp_path / "a" / "b.pt")
    cli._check_out_store(tmp_path / "new.zarr")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        cli._check_out_store(tmp_path / "file")


# --------------------------------------------------------------------------- real processes
def _run(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "psppyro.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_subprocess_one_line_error_and_exit_status():
    res = _run(*EVAL, "--low", "-5", "-5", "--high", "-6", "-6")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "psppyro evaluate: low must be < high in every component; component 0: low=-5 >= high=-6"
    ]


def test_subprocess_version_and_debug():
    res = _run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"psppyro {pp.__version__}"
    res = _run("--debug", *EVAL, "--num-samples", "-4", *BOX)
    assert res.returncode == 2
    assert "Traceback (most recent call last)" in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "psppyro evaluate: --num-samples must be an integer >= 1, got -4"
    )
