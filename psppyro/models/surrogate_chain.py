r"""The surrogate chain: the true process–structure link followed by a learned property surrogate.

Rixner & Koutsourelakis (2022) keep the process p(x | φ) exact and replace only the
structure–property link by a probabilistic surrogate p_M(κ | x):

.. math::

    z \sim \mathcal N(0, I_{n}),\quad x = \tfrac12\big(\tanh(ε(x_g(φ, z) - x_0)) + 1\big),\quad
    κ \mid x \sim p_M(κ \mid x) = \mathcal N(m_θ(x), \mathrm{diag}\,S_θ(x)),

where x_g(φ, z) is the standardized Gaussian field of the process built from the white noise z
(n = number of pixels; :meth:`psppyro.process.GaussianRandomField.field`) and x_0 the volume
fraction's Gaussian quantile. The paper writes the noise as random phase angles Ψ = π(1 +
erf(Ψ_t/√2)) with Ψ_t ~ N(0, I); here the white noise itself is the standard-normal latent —
the same law of the field, and the same "latent = N(0, I)" structure the design protocol needs.
x is differentiable in φ and z, so every design method can differentiate through the chain.

:class:`SurrogateChain` satisfies the design protocol (``docs/architecture.md`` § "The design
protocol"): ``phi_bounds`` (±inf for ``rixner64``), ``phi_prior`` (N(0, I), the paper's
ancestral distribution), ``latent_dim = n`` and ``property_dist(phi, z)``.

*Dimension limits.* For ``preset("rixner64")`` the latent z has 64² = 4 096 components and φ 100:

- ``vbem`` (:mod:`psppyro.design.vbem`) is the method built for it (low-rank q over (κ, z)).
- ``sga`` runs: memory is ``num_z × 4096`` floats for the fixed z draws (50 000 draws = 820 MB in
  float32 — use ``num_z`` of a few thousand) and each step costs ``batch_size`` CNN passes.
- ``svi`` and ``flow`` run but fit a guide over 4 196 dimensions (flows: slow, and the guide's
  width grows with the dimension); use few steps and expect a poor PSIS k̂.
- ``nuts`` is technically possible (the log density is differentiable) but each leapfrog step in
  4 196 dimensions costs a CNN pass and the posterior over white noise is strongly correlated: it
  is impractical here; it is for low-dimensional chains.

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). Self-supervised optimization of random material
    microstructures in the small-data regime. npj Computational Materials 8, 46.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SurrogateChain"]


class SurrogateChain:
    r"""x = relaxed threshold of the process field from (φ, z), κ ~ surrogate(x) (module docstring).

    Args:
        process: a :class:`~psppyro.process.GaussianRandomField` (e.g. ``preset("rixner64")``)
            without a phase field (the chain uses the relaxed threshold).
        surrogate: an object with ``property_dist(x)`` (batch shape ``x.shape[:-2]``, event
            (d_m,)), e.g. :class:`~psppyro.models.ProbabilisticCNN`, and ``fit(x, m, ...)`` for
            active learning.

    Raises:
        TypeError: ``process`` has no ``field`` method or ``surrogate`` no ``property_dist``.
        ValueError: a process with a phase field (not differentiable).

    Example::

        >>> import torch
        >>> from psppyro.process import preset
        >>> from psppyro.models import ProbabilisticCNN
        >>> proc = preset("rixner64", shape=(16, 16))
        >>> chain = SurrogateChain(proc, ProbabilisticCNN((16, 16), 2))
        >>> d = chain.property_dist(torch.zeros(3, 100), torch.randn(3, 256))
        >>> chain.latent_dim, d.batch_shape
        (256, torch.Size([3]))
    """

    def __init__(self, process, surrogate):
        if not callable(getattr(process, "field", None)) or not hasattr(process, "shape"):
            raise TypeError(
                f"process must be a GaussianRandomField (with field() and shape), got "
                f"{type(process).__name__}"
            )
        if getattr(process, "phase_field", None) is not None:
            raise ValueError(
                "process must have no phase field (the surrogate chain uses the differentiable "
                f"relaxed threshold), got phase_field={process.phase_field!r}"
            )
        if not callable(getattr(surrogate, "property_dist", None)):
            raise TypeError(
                f"surrogate must have property_dist(x), got {type(surrogate).__name__}"
            )
        self.process = process
        self.surrogate = surrogate
        self.shape = tuple(process.shape)
        self.latent_dim = int(math.prod(self.shape))

    @property
    def phi_bounds(self) -> torch.Tensor:
        """The process's φ bounds (d_φ, 2); ±inf for the spectral mixture."""
        return torch.as_tensor(self.process.phi_bounds, dtype=torch.get_default_dtype())

    @property
    def phi_prior(self):
        """The process's prior over φ (N(0, I) for ``rixner64``)."""
        return self.process.phi_prior

    @property
    def phi_names(self):
        """The process's names of φ's components."""
        return self.process.phi_names

    def structures(self, phi: torch.Tensor, z: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """Microstructures ``(*broadcast(φ, z batch), *shape)`` from φ and white noise z.

        Args:
            phi: ``(..., d_φ)``. z: ``(..., latent_dim)`` standard-normal white noise.
            hard: binary images (the exact-volume-fraction threshold of ``process.sample``,
                for simulation) instead of the relaxed ones (default, differentiable).

        Example::

            >>> import torch
            >>> from psppyro.process import preset
            >>> from psppyro.models import ProbabilisticCNN
            >>> chain = SurrogateChain(preset("rixner64", shape=(16, 16)),
            ...                        ProbabilisticCNN((16, 16), 2))
            >>> x = chain.structures(torch.zeros(100), torch.randn(2, 256), hard=True)
            >>> x.shape, x.sum((-2, -1)).tolist()
            (torch.Size([2, 16, 16]), [128.0, 128.0])
        """
        from psppyro.process.grf import hard_threshold, relaxed_threshold

        if not isinstance(z, torch.Tensor) or z.shape[-1:] != (self.latent_dim,):
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape (..., {self.latent_dim}), got {got}")
        noise = z.reshape(*z.shape[:-1], *self.shape)
        g = self.process.field(phi, noise)
        if hard:
            return hard_threshold(g, self.process.volume_fraction, len(self.shape))
        return relaxed_threshold(g, self.process.volume_fraction, self.process.eps)

    def property_dist(self, phi: torch.Tensor, z: torch.Tensor) -> torch.distributions.Distribution:
        """p_M(κ | x(φ, z)), batch shape ``broadcast(phi.shape[:-1], z.shape[:-1])``."""
        x = self.structures(phi, z)
        w = next(iter(getattr(self.surrogate, "parameters", lambda: iter([x]))()), x)
        return self.surrogate.property_dist(x.to(w.dtype))
