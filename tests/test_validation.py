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
    with pytest.raises(ValueError, match="seed"):
        make_generator("x")
