"""The d_z1 rule: principal components of two-point correlations explaining a variance fraction."""

import numpy as np
import pytest
import torch

from psppyro.models import explained_variance_ratio, principal_components_for_variance
from tests.models.synthetic import make_dataset, make_triads


def _reference_ratio(x):
    # Independent computation: S2 by direct summation over periodic shifts, PCA by eigh of the
    # sample covariance (NumPy, float64).
    x = x.numpy().astype(np.float64)
    n, ny, nx = x.shape
    s2 = np.zeros((n, ny, nx))
    for dy in range(ny):
        for dx in range(nx):
            s2[:, dy, dx] = (x * np.roll(x, (-dy, -dx), axis=(1, 2))).mean((1, 2))
    f = s2.reshape(n, -1)
    f = f - f.mean(0)
    eig = np.linalg.eigvalsh(f.T @ f)[::-1].clip(min=0)
    return eig / eig.sum()


def test_ratio_matches_an_independent_computation():
    _, x, _ = make_triads(30, size=6, seed=2)
    ours = explained_variance_ratio(x).numpy()
    ref = _reference_ratio(x)
    k = min(len(ours), len(ref))
    np.testing.assert_allclose(ours[:k], ref[:k], atol=1e-10)
    for fraction in (0.5, 0.9, 0.99):
        expected = int(np.searchsorted(np.cumsum(ref), fraction - 1e-12)) + 1
        assert principal_components_for_variance(x, fraction) == expected


def test_known_rank():
    # Two distinct images repeated: the centred S2 features span one direction, so k = 1 for any
    # fraction; three images with distinct S2 span at most two directions.
    a = torch.zeros(6, 6)
    a[:, :3] = 1
    b = torch.zeros(6, 6)
    b[:2] = 1
    assert principal_components_for_variance(torch.stack([a, b] * 5), 0.999) == 1
    c = torch.zeros(6, 6)
    c[::2, ::2] = 1
    assert principal_components_for_variance(torch.stack([a, b, c] * 4), 1.0) == 2


def test_dataset_and_tensor_agree_and_subsampling_is_seeded():
    ds = make_dataset(40, seed=4)
    x = torch.as_tensor(ds["x"].values, dtype=torch.float64)
    assert principal_components_for_variance(ds, 0.9) == principal_components_for_variance(x, 0.9)
    r1 = explained_variance_ratio(ds, max_samples=20, seed=1)
    r2 = explained_variance_ratio(x, max_samples=20, seed=1)
    torch.testing.assert_close(r1, r2)


def test_bad_input():
    _, x, _ = make_triads(5, size=6)
    with pytest.raises(ValueError, match="fraction"):
        principal_components_for_variance(x, 0.0)
    with pytest.raises(ValueError, match="fraction"):
        principal_components_for_variance(x, 1.5)
    with pytest.raises(ValueError, match="binary"):
        principal_components_for_variance(x * 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        principal_components_for_variance(x[:1])
    with pytest.raises(ValueError, match="no variance"):
        principal_components_for_variance(torch.ones(4, 6, 6))
    with pytest.raises(ValueError, match="shape"):
        principal_components_for_variance(torch.ones(6, 6))
