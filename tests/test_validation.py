import math

import numpy as np
import pytest
import torch

from psppyro import _validation as v
from psppyro._random import derive_seed, make_generator


def test_as_tensor_accepts_numbers_and_refuses_strings():
    assert v.as_tensor("phi", [1, 2]).dtype == torch.get_default_dtype()
    t = torch.ones(2, dtype=torch.float64)
    assert v.as_tensor("phi", t) is t
    with pytest.raises(TypeError, match="phi"):
        v.as_tensor("phi", "abc")
    with pytest.raises(TypeError, match="phi"):
        v.as_tensor("phi", None)


def test_check_finite_names_argument():
    with pytest.raises(ValueError, match="phi must be finite"):
        v.check_finite("phi", torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="eps"):
        v.check_finite("eps", math.inf)
    v.check_finite("phi", torch.tensor([1, 2]))  # integer tensors are always finite


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_check_positive_refuses(value):
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        v.check_positive("eps", value)


def test_check_positive_allow_zero_and_type():
    v.check_positive("s", 0.0, allow_zero=True)
    with pytest.raises(TypeError, match="s must be a real number"):
        v.check_positive("s", "1")
    with pytest.raises(TypeError):
        v.check_positive("s", True)


def test_check_interval_open_and_closed():
    v.check_interval("vf", 0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"vf must lie in \(0.0, 1.0\), got 1.0"):
        v.check_interval("vf", 1.0, 0.0, 1.0)
    v.check_interval("vf", 1.0, 0.0, 1.0, closed=(False, True))


def test_check_choice_lists_allowed():
    with pytest.raises(ValueError, match=r"\('hard', 'relaxed'\)"):
        v.check_choice("threshold", "soft", ("hard", "relaxed"))


def test_check_last_dim():
    with pytest.raises(ValueError, match=r"phi must have last dimension 2.*\(3, 3\)"):
        v.check_last_dim("phi", torch.zeros(3, 3), 2)
    with pytest.raises(ValueError):
        v.check_last_dim("phi", torch.tensor(1.0), 1)


def test_check_in_bounds_reports_index_and_value():
    bounds = torch.tensor([[1.0, 9.0], [0.2, 2.0]])
    v.check_in_bounds("phi", torch.tensor([[1.0, 2.0], [9.0, 0.2]]), bounds)
    with pytest.raises(ValueError, match=r"index \(1, 1\): value 3"):
        v.check_in_bounds("phi", torch.tensor([[1.0, 2.0], [5.0, 3.0]]), bounds)


def test_check_binary():
    v.check_binary("x", torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="binary image"):
        v.check_binary("x", torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="finite"):
        v.check_binary("x", torch.tensor([0.0, float("nan")]))


def test_derive_seed_is_deterministic_and_distinct():
    seeds = {derive_seed(3, i) for i in range(1000)}
    assert len(seeds) == 1000
    assert derive_seed(3, 7) == derive_seed(3, 7)
    assert derive_seed(3, 7) != derive_seed(4, 7)
    assert 0 <= derive_seed(3, 7) < 2**63
    assert derive_seed(np.int64(3), 7) == derive_seed(3, 7)
    with pytest.raises(ValueError, match="seed"):
        derive_seed(-1)
    with pytest.raises(ValueError, match="seed keys"):
        derive_seed(1, -2)


def test_make_generator():
    a = torch.randn(3, generator=make_generator(5))
    b = torch.randn(3, generator=make_generator(5))
    assert torch.equal(a, b)
    g = make_generator(1)
    assert make_generator(g) is g
    with pytest.raises(TypeError, match=r"seed must be .*'x'.*torch.Generator or None"):
        make_generator("x")
    with pytest.raises(ValueError, match="seed"):
        make_generator(-1)
    assert torch.equal(torch.randn(3, generator=make_generator(np.int64(5))), a)


# --------------------------------------------------------------------------- integers everywhere
# The shared check_int / check_seed replaced the hand-rolled copies: every place accepts Python
# and NumPy integers alike (with the same result) and refuses bool / float, naming the argument.

I64 = np.int64


def test_grf_accepts_numpy_ints_like_python_ints():
    from psppyro.process import GaussianRandomField, PSPGenDensity

    phi = torch.tensor([5.0, 1.0])
    ref = GaussianRandomField((8, 8), PSPGenDensity(), 0.5).sample(phi, num_samples=2, seed=3)
    proc = GaussianRandomField((I64(8), np.int32(8)), PSPGenDensity(), 0.5)
    assert proc.shape == (8, 8) and all(type(n) is int for n in proc.shape)
    assert torch.equal(proc.sample(phi, num_samples=I64(2), seed=I64(3)), ref)
    with pytest.raises(TypeError, match="num_samples must be an integer"):
        proc.sample(phi, num_samples=2.0)
    with pytest.raises(TypeError, match="num_samples"):
        proc.sample(phi, num_samples=True)
    with pytest.raises(ValueError, match=r"shape\[1\] must be an integer >= 2, got 1"):
        GaussianRandomField((8, 1), PSPGenDensity(), 0.5)
    with pytest.raises(TypeError, match="seed"):
        proc.sample(phi, seed=1.0)


def test_process_helpers_accept_numpy_ints():
    from psppyro.process import (
        CahnHilliard,
        SpectralMixtureDensity,
        correlation_length,
        two_point_correlation,
    )

    assert SpectralMixtureDensity(Q=I64(4)).Q == 4
    with pytest.raises(ValueError, match="perfect square"):
        SpectralMixtureDensity(Q=I64(5))
    with pytest.raises(TypeError, match="Q must be an integer"):
        SpectralMixtureDensity(Q=4.0)
    assert CahnHilliard(ndim=I64(3)).ndim == 3
    with pytest.raises(ValueError, match="ndim"):
        CahnHilliard(ndim=I64(4))
    x = torch.zeros(8, 8)
    x[:, :4] = 1.0
    assert torch.equal(two_point_correlation(x, ndim=I64(2)), two_point_correlation(x))
    assert float(correlation_length(x, axis=I64(-1))) == float(correlation_length(x, axis=-1))
    with pytest.raises(TypeError, match="axis"):
        correlation_length(x, axis=-1.0)
    with pytest.raises(TypeError, match="ndim"):
        two_point_correlation(x, ndim=True)


def test_derive_seed_accepts_numpy_seeds_and_keys():
    assert derive_seed(np.uint32(3), I64(7)) == derive_seed(3, 7)
    with pytest.raises(TypeError, match="seed"):
        derive_seed(3.0)
    with pytest.raises(TypeError, match="seed keys"):
        derive_seed(3, 1.5)


def test_solvers_accept_numpy_ints():
    from psppyro.properties import conductivity, elasticity
    from psppyro.properties._krylov import batched_pcg

    x = torch.zeros(6, 6, dtype=torch.float64)
    x[:, :3] = 1.0
    K = conductivity(x, phases=(1.0, 4.0), refine=I64(2), maxiter=I64(200))
    torch.testing.assert_close(K, conductivity(x, phases=(1.0, 4.0), refine=2))
    C = elasticity(x, youngs=(1.0, 4.0), refine=I64(1), maxiter=I64(500), columns=(I64(0),))
    torch.testing.assert_close(C, elasticity(x, youngs=(1.0, 4.0), columns=(0,)))
    with pytest.raises(TypeError, match="refine must be an integer"):
        conductivity(x, refine=2.0)
    with pytest.raises(TypeError, match="maxiter must be an integer"):
        elasticity(x, maxiter=10.0)
    A = torch.eye(3, dtype=torch.float64) * 2
    b = torch.ones(1, 3, dtype=torch.float64)
    sol, info = batched_pcg(lambda v: v @ A, b, rtol=1e-12, maxiter=I64(10))
    torch.testing.assert_close(sol, b / 2)
    with pytest.raises(TypeError, match="maxiter"):
        batched_pcg(lambda v: v @ A, b, rtol=1e-12, maxiter=True)


def test_pspgen_accepts_numpy_ints_and_saves_python_ints(tmp_path):
    from psppyro.models import PSPGen

    gen = PSPGen(I64(2), (I64(4), I64(4)), I64(1), I64(2), I64(1), width=I64(8), small_width=4)
    assert gen.x_shape == (4, 4) and type(gen.d_z0) is int
    gen.save(tmp_path / "g.pt")  # the configuration is JSON: NumPy ints would not serialize
    assert PSPGen.load(tmp_path / "g.pt").config() == gen.config()
    phi = torch.tensor([[0.5, 0.5]])
    x = gen.sample_microstructures(phi, num_samples=I64(2), seed=I64(1))
    assert torch.equal(x, gen.sample_microstructures(phi, num_samples=2, seed=1))
    with pytest.raises(TypeError, match="d_z0 must be an integer"):
        PSPGen(2, (4, 4), 1, 2.0, 1)
    with pytest.raises(ValueError, match=r"x_shape\[1\] must be an integer >= 1"):
        PSPGen(2, (4, 0), 1, 2, 1)
    with pytest.raises(TypeError, match="num_samples"):
        gen.sample_microstructures(phi, num_samples=2.5)
    with pytest.raises(TypeError, match="epochs"):
        gen.fit((phi, torch.zeros(1, 4, 4), torch.zeros(1, 1)), epochs=1.0, progress=False)


def test_data_layer_accepts_numpy_ints():
    import xarray as xr

    from psppyro.data import TriadLoader, design_phi
    from psppyro.process import preset

    proc = preset("pspgen36")
    torch.testing.assert_close(design_phi(proc, "uniform", I64(3), seed=I64(2)),
                               design_phi(proc, "uniform", 3, seed=2))
    with pytest.raises(TypeError, match="n_phi"):
        design_phi(proc, "uniform", 3.0, seed=2)
    ds = xr.Dataset({"x": (("sample", "y", "x"), np.zeros((10, 2, 2), np.uint8))})
    assert len(TriadLoader(ds, ("x",), batch_size=I64(4), seed=I64(0))) == 3
    with pytest.raises(TypeError, match="batch_size"):
        TriadLoader(ds, ("x",), batch_size=4.0)


# --------------------------------------------------------------------------- NumPy images
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, bool])
def test_property_functions_accept_numpy_images(dtype):
    from psppyro.properties import conductivity, elasticity, permeability

    g = np.random.default_rng(0)
    x = (g.random((2, 6, 6)) < 0.6).astype(dtype)
    x[:, :, 0] = 1  # a straight channel: both media percolate along x
    t = torch.as_tensor(x.astype(np.float64))
    torch.testing.assert_close(conductivity(x, phases=(1.0, 5.0)),
                               conductivity(t, phases=(1.0, 5.0)))
    torch.testing.assert_close(elasticity(x, youngs=(1.0, 5.0)), elasticity(t, youngs=(1.0, 5.0)))
    torch.testing.assert_close(permeability(x), permeability(t))
    with pytest.raises(ValueError, match="binary"):
        conductivity(np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="binary"):
        elasticity(np.full((4, 4), 0.5))


# --------------------------------------------------------------------------- evaluate(name, ...)
def _volume_fractions(x):
    m = torch.stack([x.mean((-1, -2)), 1 - x.mean((-1, -2))], -1)
    return m, {}


def test_evaluate_takes_a_process_preset_name(monkeypatch):
    import importlib

    import psppyro as pp
    from psppyro.properties.maps import PropertyMap

    pm = PropertyMap("vf_test", ("vf1", "vf0"), 2, _volume_fractions, "volume fractions")
    box = pp.design.Box([0.5, 0.0], [1.0, 0.5])
    phi = torch.tensor([5.0, 1.0])
    by_name = pp.design.evaluate(phi, "pspgen36", pm, box, num_samples=2, seed=3)
    by_object = pp.design.evaluate(phi, pp.process.preset("pspgen36"), pm, box, num_samples=2,
                                   seed=3)
    assert [float(v) for v in by_name] == [float(v) for v in by_object]
    by_numpy_seed = pp.design.evaluate(phi, "pspgen36", pm, box, num_samples=I64(2),
                                       seed=I64(3), workers=I64(1))
    assert [float(v) for v in by_numpy_seed] == [float(v) for v in by_object]
    with pytest.raises(ValueError, match="name must be one of"):
        pp.design.evaluate(phi, "pspgen99", pm, box, num_samples=2)
    with pytest.raises(TypeError, match="process must be a process preset name"):
        pp.design.evaluate(phi, 42, pm, box, num_samples=2)
    # A target of the wrong dimension is refused before any simulation.
    module = importlib.import_module("psppyro.design.evaluate")

    def boom(*args, **kwargs):
        raise AssertionError("simulated before checking the target's dimension")

    monkeypatch.setattr(module, "simulate_properties", boom)
    with pytest.raises(ValueError, match="target has d_m=3 but the property map returns 2"):
        pp.design.evaluate(phi, "pspgen36", "log_permeability",
                           pp.design.Box([-9.0] * 3, [0.0] * 3), num_samples=2)
