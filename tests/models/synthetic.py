"""Tiny synthetic triad datasets for the model tests (no solver needed).

Images: white noise filtered by an anisotropic Gaussian whose axis ratio depends on φ1 (the PSP-GEN
spectral weight w = φ1/10 mixes a horizontal and a vertical correlation), thresholded at 0, so the
structure really depends on φ. Properties are analytic: m = (volume fraction, fraction of horizontal
neighbour pairs that are both phase 1), plus a little Gaussian noise.
"""

import numpy as np
import torch
import xarray as xr

PHI_BOUNDS = torch.tensor([[1.0, 9.0], [0.2, 2.0]])


def make_triads(n, size=8, seed=0, noise=0.01):
    """(phi, x, m) float32 tensors: (n, 2), (n, size, size) 0/1, (n, 2)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = PHI_BOUNDS[:, 0], PHI_BOUNDS[:, 1]
    phi = lo + (hi - lo) * torch.rand(n, 2, generator=g)
    k = torch.fft.fftfreq(size) * size
    ky, kx = k[:, None], k[None, :]
    w = (phi[:, 0] / 10)[:, None, None]
    ell = phi[:, 1][:, None, None]
    spectrum = w * torch.exp(-ell * kx**2) + (1 - w) * torch.exp(-ell * ky**2)
    white = torch.randn(n, size, size, generator=g)
    field = torch.fft.ifft2(torch.fft.fft2(white) * spectrum.sqrt()).real
    x = (field > 0).float()
    m = torch.stack([x.mean((-1, -2)), (x * x.roll(1, -1)).mean((-1, -2))], -1)
    m = m + noise * torch.randn(n, 2, generator=g)
    return phi, x, m


def make_dataset(n, size=8, seed=0, labelled=True):
    """The same triads as an in-memory xarray.Dataset with the psppyro.data schema."""
    phi, x, m = make_triads(n, size, seed)
    data = {
        "phi": (("sample", "phi_dim"), phi.double().numpy()),
        "phi_index": (("sample",), np.arange(n)),
        "x": (("sample", "y", "x"), x.numpy().astype(np.uint8)),
    }
    if labelled:
        data["m"] = (("sample", "m_dim"), m.double().numpy())
        data["percolates"] = (("sample", "m_dim"), np.ones((n, 2), dtype=bool))
    return xr.Dataset(
        data, coords={"phi_dim": ["phi1", "phi2"], "m_dim": ["vf", "s2_h1"]}
    )
