"""Small but real stand-ins for a process and a property map (protocol-complete, seeded).

They let the data layer be tested independently of the physics: ``NoiseThresholdProcess`` smooths
seeded white noise with a Gaussian of length ``phi[1]`` (pixels) and thresholds it at the per-sample
quantile that leaves a void fraction ``phi[0]``; ``UnboundedProcess`` has φ ∈ R^3 with a N(0, I)
prior; ``FRACTIONS`` maps an image to (void fraction, void fraction of the first row).
"""

import math
import time

import torch

from psppyro._random import make_generator
from psppyro._validation import as_tensor, check_last_dim
from psppyro.properties import PropertyMap


class NoiseThresholdProcess:
    phi_names = ("void_fraction", "length")
    d_phi = 2

    def __init__(self, size=12, delay=0.0):
        self.size = int(size)
        self.delay = float(delay)
        self.shape = (self.size, self.size)
        self.phi_bounds = torch.tensor([[0.3, 0.7], [0.5, 3.0]])
        self.phi_prior = torch.distributions.Independent(
            torch.distributions.Uniform(self.phi_bounds[:, 0], self.phi_bounds[:, 1]), 1
        )

    def config(self):
        return {"kind": "noise-threshold", "size": self.size, "delay": self.delay}

    @classmethod
    def from_config(cls, cfg):
        assert cfg["kind"] == "noise-threshold"
        return cls(cfg["size"], cfg["delay"])

    def sample(self, phi, num_samples, seed):
        if self.delay:
            time.sleep(self.delay)
        phi = as_tensor("phi", phi)
        check_last_dim("phi", phi, 2)
        n = self.size
        batch = phi.shape[:-1]
        g = make_generator(seed, device=phi.device)
        noise = torch.randn(*batch, num_samples, n, n, generator=g, device=phi.device)
        k = torch.fft.fftfreq(n, device=phi.device) * 2 * math.pi
        k2 = k[:, None] ** 2 + k[None, :] ** 2
        ell = phi[..., 1].reshape(*batch, 1, 1, 1)
        field = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-0.5 * ell**2 * k2)).real
        flat = field.flatten(-2)
        ranks = flat.argsort(dim=-1).argsort(dim=-1)
        n_void = torch.round(phi[..., 0] * n * n).reshape(*batch, 1, 1)
        x = (ranks >= n * n - n_void).to(torch.float32)
        return x.reshape(*batch, num_samples, n, n)


class UnboundedProcess:
    phi_names = ("a", "b", "c")
    d_phi = 3

    def __init__(self, size=8):
        self.size = size
        self.shape = (size, size)
        self.phi_bounds = torch.tensor([[-math.inf, math.inf]] * 3)
        self.phi_prior = torch.distributions.Independent(
            torch.distributions.Normal(torch.zeros(3), torch.ones(3)), 1
        )

    def config(self):
        return {"kind": "unbounded", "size": self.size}

    def sample(self, phi, num_samples, seed):
        phi = as_tensor("phi", phi)
        g = make_generator(seed)
        n = self.size
        noise = torch.randn(*phi.shape[:-1], num_samples, n, n, generator=g)
        return (noise + phi[..., :1, None, None].unsqueeze(-1).squeeze(-1) > 0).float()


def _fractions(x):
    m = torch.stack([x.mean((-1, -2)), x[..., 0, :].mean(-1)], dim=-1).double()
    return m, {"percolates": m > 0.5}


FRACTIONS = PropertyMap(
    "standin_fractions",
    ("void_fraction", "top_row_fraction"),
    2,
    _fractions,
    "void fraction and void fraction of the first row (test stand-in)",
)


class CubeProcess:
    """3-D: white noise thresholded at level phi[0] (void where noise > phi[0])."""

    phi_names = ("level",)
    d_phi = 1

    def __init__(self, size=6):
        self.size = size
        self.shape = (size, size, size)
        self.phi_bounds = torch.tensor([[-1.0, 1.0]])
        self.phi_prior = torch.distributions.Independent(
            torch.distributions.Uniform(self.phi_bounds[:, 0], self.phi_bounds[:, 1]), 1
        )

    def config(self):
        return {"kind": "cube", "size": self.size}

    def sample(self, phi, num_samples, seed):
        phi = as_tensor("phi", phi)
        g = make_generator(seed)
        noise = torch.randn(*phi.shape[:-1], num_samples, *self.shape, generator=g)
        return (noise > phi[..., :1, None, None, None]).float()


def _void_fraction_3d(x):
    m = x.mean((-1, -2, -3)).unsqueeze(-1).double()
    return m, {}


VOID_3D = PropertyMap("standin_void_3d", ("void_fraction",), 3, _void_fraction_3d, "3-D stand-in")
