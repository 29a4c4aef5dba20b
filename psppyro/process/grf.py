r"""Gaussian random field microstructures: p(x | φ) by filtered white noise and thresholding.

A process draws white noise :math:`\xi` on the periodic N×N (or N×N×N) pixel grid, filters it in
Fourier space with the amplitude :math:`\sqrt{S_\phi(k)}` of a spectral density
(:mod:`psppyro.process.spectral`), normalizes the field and thresholds it
(``docs/architecture.md`` § "Fields, thresholds and Cahn–Hilliard"):

.. math::

    g = \mathcal F^{-1}\big[\sqrt{\tilde S_\phi}\,\mathcal F \xi\big], \qquad
    \tilde S_\phi(k) = \frac{n\,S_\phi(k)\,1[k\neq 0]}{\sum_{k'\neq 0} S_\phi(k')},

with :math:`n` the number of pixels. :math:`\tilde S` drops the mean mode and scales the field to
unit *expected* variance; every field is then standardized to zero mean and unit variance per
sample, :math:`x_g = (g - \bar g)/\mathrm{sd}(g)`. Because the filter acts on the discrete Fourier
transform, the field is an exactly periodic circular convolution of the noise: shifting the noise
circularly shifts the field.

*Filter amplitude.* ``filter_amplitude="sqrt"`` (default) is the reading above: the filter is
:math:`\sqrt{S}`, so the power spectrum of the field is :math:`S` itself, the textbook meaning
of a spectral density. ``filter_amplitude="density"`` uses :math:`S` itself as the filter, so the
power spectrum is :math:`S^2` (normalized the same way,
:math:`\tilde P = n\,S^2 1[k\neq0]/\sum_{k'\neq0}S(k')^2`, filter :math:`\sqrt{\tilde P}
\propto S`). Squaring a Gaussian bump :math:`e^{-\phi_2 k^2}` doubles its decay rate (features
√2 longer) and, for the PSP-GEN mixture, sharpens the anisotropy: far from the origin, where one
term dominates, the weights enter as :math:`w^2` and :math:`(1-w)^2` (9 : 1 becomes 81 : 1).
This is the amplitude of the reconstructed PSP-GEN simulator (``preset("pspgen36-paper")``,
``docs/pspgen_reconstruction.md``), whose paper does not say which of the two it used.

*Hard threshold.* Phase 1 is the ``round(vf·n)`` pixels with the largest field values (per
sample, the empirical quantile), so the volume fraction of phase 1 is exact.

*Relaxed threshold.* :math:`x = (\tanh(\varepsilon (x_g - x_0)) + 1)/2` with
:math:`x_0 = \Phi^{-1}(1 - vf)`, the Gaussian quantile, so :math:`E[x] \approx vf` (ε = 25 default).
It is smooth in φ and in the noise, which is what Pyro models need
(:meth:`GaussianRandomField.model`).

*Phase field.* An optional callable (e.g. :class:`~psppyro.process.CahnHilliard`) maps the
hard-thresholded binary image to the final binary image.

*Noise.* ``noise="normal"`` uses standard normal white noise; ``noise="uniform"`` (the Gaussian
filter data of the VAE-Regression paper) uses uniform noise of unit variance obtained from the same
standard normal draws by :math:`u = \sqrt3\,\mathrm{erf}(z/\sqrt2)` (an exact transform to
U(−√3, √3)); the latent variable is therefore standard normal in both cases.

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). Self-supervised optimization of random material
    microstructures in the small-data regime. npj Computational Materials 8, 46.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from .._random import make_generator
from .._validation import check_choice, check_int, check_interval, check_positive
from .spectral import SpectralDensity, wavenumbers

__all__ = ["GaussianRandomField", "hard_threshold", "relaxed_threshold"]

THRESHOLDS = ("hard", "relaxed")
NOISES = ("normal", "uniform")
FILTER_AMPLITUDES = ("sqrt", "density")


def hard_threshold(field, volume_fraction, ndim):
    """Binary image whose phase 1 is the ``round(vf·n)`` largest values of each sample.

    Args:
        field (torch.Tensor): real field of shape ``(..., *shape)``.
        volume_fraction (float): target fraction of phase 1, in (0, 1).
        ndim (int): number of trailing spatial dimensions.

    Returns:
        torch.Tensor: 0./1. tensor of ``field``'s shape and dtype with exactly
        ``round(vf·n)`` ones per sample (n = pixels per sample).

    Example::

        >>> x = hard_threshold(torch.randn(3, 8, 8), 0.25, ndim=2)
        >>> x.sum((-2, -1)).tolist()
        [16.0, 16.0, 16.0]
    """
    check_interval("volume_fraction", volume_fraction, 0.0, 1.0)
    shape = field.shape[field.dim() - ndim :]
    flat = field.detach().reshape(field.shape[: field.dim() - ndim] + (-1,))
    n_ones = round(volume_fraction * flat.shape[-1])
    out = torch.zeros_like(flat)
    if n_ones > 0:
        idx = torch.topk(flat, n_ones, dim=-1, sorted=False).indices
        out.scatter_(-1, idx, 1.0)
    return out.reshape(flat.shape[:-1] + shape)


def relaxed_threshold(field, volume_fraction, eps=25.0):
    r"""Smooth threshold :math:`(\tanh(\varepsilon(x_g - x_0)) + 1)/2`, :math:`x_0=\Phi^{-1}(1-vf)`.

    Args:
        field (torch.Tensor): standardized Gaussian field (zero mean, unit variance).
        volume_fraction (float): target mean of the output, in (0, 1).
        eps (float): sharpness ε > 0.

    Returns:
        torch.Tensor: values in (0, 1), differentiable in ``field``.

    Example::

        >>> x = relaxed_threshold(torch.zeros(2), 0.5)
        >>> x.tolist()
        [0.5, 0.5]
    """
    check_interval("volume_fraction", volume_fraction, 0.0, 1.0)
    check_positive("eps", eps)
    x0 = math.sqrt(2.0) * torch.erfinv(torch.tensor(1.0 - 2.0 * volume_fraction).double())
    return 0.5 * (torch.tanh(eps * (field - float(x0))) + 1.0)


class GaussianRandomField:
    r"""Periodic thresholded Gaussian random fields with a φ-dependent spectral density.

    Args:
        shape (tuple of int): ``(N, N)`` or ``(N, N, N)``; sizes ≥ 2 (rectangular grids allowed).
        sdf (SpectralDensity): the spectral density family S_φ(k).
        volume_fraction (float): fraction of phase 1 in (0, 1) (for PSP-GEN: the void fraction).
        threshold (str): ``"hard"`` (exact volume fraction, binary) or ``"relaxed"`` (tanh) for
            :meth:`sample`; :meth:`model` always uses the relaxed threshold.
        eps (float): sharpness ε > 0 of the relaxed threshold.
        phase_field (callable, optional): maps the hard-thresholded binary image
            ``(..., *shape)`` to a binary image (e.g. ``CahnHilliard(...)``); requires
            ``threshold="hard"``.
        noise (str): ``"normal"`` or ``"uniform"`` white noise (see the module docstring).
        filter_amplitude (str): ``"sqrt"`` (default: filter √S, power spectrum S) or
            ``"density"`` (filter S, power spectrum S², the reconstructed PSP-GEN reading; see
            the module docstring).

    Raises:
        ValueError: on unsupported dimensions, an sdf defined for other dimensions, a volume
            fraction outside (0, 1), a non-positive ``eps``, or an unknown
            threshold/noise/filter_amplitude.
        TypeError: if ``sdf`` is not a :class:`SpectralDensity` or ``phase_field`` not callable.

    Example::

        >>> from psppyro.process import PSPGenDensity
        >>> proc = GaussianRandomField((36, 36), PSPGenDensity(), volume_fraction=2 / 3)
        >>> x = proc.sample(torch.tensor([5.0, 1.0]), num_samples=2, seed=0)
        >>> x.shape, x.sum((-2, -1)).tolist()
        (torch.Size([2, 36, 36]), [864.0, 864.0])
    """

    def __init__(
        self,
        shape,
        sdf,
        volume_fraction,
        threshold="hard",
        eps=25.0,
        phase_field=None,
        noise="normal",
        filter_amplitude="sqrt",
    ):
        if isinstance(shape, int) or not hasattr(shape, "__len__"):
            raise ValueError(f"shape must be a tuple (N, N) or (N, N, N), got {shape!r}")
        if len(shape) not in (2, 3):
            raise ValueError(
                f"shape must be (N, N) or (N, N, N) with integer sizes >= 2 (2-D or 3-D), "
                f"got {tuple(shape)!r}"
            )
        shape = tuple(check_int(f"shape[{i}]", n, minimum=2) for i, n in enumerate(shape))
        if not isinstance(sdf, SpectralDensity):
            raise TypeError(f"sdf must be a SpectralDensity, got {type(sdf).__name__}")
        if sdf.ndim is not None and sdf.ndim != len(shape):
            raise ValueError(
                f"shape {tuple(shape)} is {len(shape)}-D but sdf {type(sdf).__name__} is defined "
                f"for ndim={sdf.ndim} only"
            )
        check_interval("volume_fraction", volume_fraction, 0.0, 1.0)
        check_choice("threshold", threshold, THRESHOLDS)
        check_positive("eps", eps)
        check_choice("noise", noise, NOISES)
        check_choice("filter_amplitude", filter_amplitude, FILTER_AMPLITUDES)
        if phase_field is not None:
            if not callable(phase_field):
                raise TypeError(f"phase_field must be callable or None, got {phase_field!r}")
            if threshold != "hard":
                raise ValueError(
                    f"phase_field acts on binary images and needs threshold='hard', "
                    f"got {threshold!r}"
                )
        self._shape = tuple(int(n) for n in shape)
        self.sdf = sdf
        self.volume_fraction = float(volume_fraction)
        self.threshold = threshold
        self.eps = float(eps)
        self.phase_field = phase_field
        self.noise = noise
        self.filter_amplitude = filter_amplitude
        self._k = wavenumbers(self._shape, dtype=torch.float64)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self):
        """Image shape ``(N, N)`` or ``(N, N, N)``."""
        return self._shape

    @property
    def ndim(self):
        """Spatial dimension (2 or 3)."""
        return len(self._shape)

    @property
    def d_phi(self):
        """Dimension of φ."""
        return self.sdf.d_phi

    @property
    def phi_bounds(self):
        """Tensor ``(d_phi, 2)`` of bounds on φ (±inf for unbounded families)."""
        return self.sdf.phi_bounds

    @property
    def phi_prior(self):
        """Prior over φ (event shape ``(d_phi,)``) of the spectral density family."""
        return self.sdf.phi_prior

    @property
    def phi_names(self):
        """Names of φ's components."""
        return self.sdf.phi_names

    @property
    def _dims(self):
        return tuple(range(-self.ndim, 0))

    # ------------------------------------------------------------------ fields
    def amplitude(self, phi):
        r"""The real-FFT filter :math:`\sqrt{\tilde S_\phi}` of shape ``(..., N, …, N//2+1)``.

        :math:`\tilde S` has the mean mode removed and is scaled so the filtered field has unit
        expected variance (module docstring). With ``filter_amplitude="density"`` the filter is
        :math:`\sqrt{\tilde P}`, :math:`\tilde P \propto S_\phi^2` normalized the same way.
        Differentiable in φ.

        Args:
            phi (torch.Tensor): ``(..., d_phi)``.

        Returns:
            torch.Tensor: amplitude over the half spectrum used by ``torch.fft.rfftn``.

        Example::

            >>> from psppyro.process import PSPGenDensity
            >>> GaussianRandomField((8, 8), PSPGenDensity(), 0.5).amplitude(
            ...     torch.tensor([5.0, 1.0])).shape
            torch.Size([8, 5])
        """
        phi = self.sdf.check_phi(phi)
        k = self._k.to(device=phi.device, dtype=phi.dtype)
        S = self.sdf(phi, k)
        not_mean = (k != 0).any(0)
        S = torch.where(not_mean, S, torch.zeros_like(S))
        n = math.prod(self._shape)
        half = slice(0, self._shape[-1] // 2 + 1)
        if self.filter_amplitude == "density":
            # filter ∝ S itself (power S²): no square root, so the gradient is finite everywhere
            scale = (n / S.pow(2).sum(self._dims, keepdim=True)).sqrt()
            return S[..., half] * scale
        S = S * (n / S.sum(self._dims, keepdim=True))
        # clamp before sqrt: d sqrt(S)/dS is infinite at S = 0 (the mean mode, or modes where
        # exp underflows), which would turn the chain rule's 0 * inf into NaN
        tiny = torch.finfo(S.dtype).tiny
        return S[..., half].clamp_min(tiny).sqrt() * not_mean[..., half]

    def field(self, phi, noise, normalize=True):
        """The Gaussian field (before thresholding) for given standard-normal white noise.

        Args:
            phi (torch.Tensor): ``(..., d_phi)``.
            noise (torch.Tensor): standard normal white noise ``(..., *shape)``; batch dims
                broadcast against φ's. For ``noise="uniform"`` processes it is mapped to uniform
                noise first (module docstring).
            normalize (bool): standardize each field to zero mean and unit variance (default). With
                ``False`` the raw filtered field (zero mean mode, unit *expected* variance) is
                returned, whose periodogram has expectation exactly ``S̃`` (used in tests).

        Returns:
            torch.Tensor: ``(*broadcast(phi.shape[:-1], noise batch), *shape)`` in φ's dtype.

        Raises:
            ValueError: if ``noise`` does not end with the process shape or φ is invalid.

        Example::

            >>> from psppyro.process import PSPGenDensity
            >>> proc = GaussianRandomField((8, 8), PSPGenDensity(), 0.5)
            >>> g = proc.field(torch.tensor([5.0, 1.0]), torch.randn(4, 8, 8))
            >>> g.shape, round(float(g[0].var(unbiased=False)), 4)
            (torch.Size([4, 8, 8]), 1.0)
        """
        amp = self.amplitude(phi)
        if not isinstance(noise, torch.Tensor) or tuple(noise.shape[-self.ndim :]) != self._shape:
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"noise must be a tensor of shape (..., {self._shape}), got {got}")
        noise = noise.to(device=amp.device, dtype=amp.dtype)
        if self.noise == "uniform":
            noise = math.sqrt(3.0) * torch.erf(noise / math.sqrt(2.0))
        g = torch.fft.irfftn(amp * torch.fft.rfftn(noise, dim=self._dims), s=self._shape,
                             dim=self._dims)
        if not normalize:
            return g
        g = g - g.mean(self._dims, keepdim=True)
        return g / g.pow(2).mean(self._dims, keepdim=True).sqrt()

    def sample(self, phi, num_samples=1, seed=None, threshold=None):
        """Draw microstructures.

        Args:
            phi (torch.Tensor): ``(..., d_phi)``; the output is on φ's device.
            num_samples (int): samples per φ (≥ 1).
            seed (int or torch.Generator, optional): seed; the same seed gives identical tensors
                on the same device type (CPU and CUDA generators differ). ``None`` draws a seed
                from torch's global generator (so ``pyro.set_rng_seed`` applies).
            threshold (str, optional): overrides the process's threshold for this call
                (``"hard"``: binary, with the phase field if any; ``"relaxed"``: values in (0, 1),
                no phase field).

        Returns:
            torch.Tensor: float32 ``(*phi.shape[:-1], num_samples, *shape)``.

        Raises:
            ValueError: on invalid φ, ``num_samples`` < 1, or an unknown threshold.

        Example::

            >>> from psppyro.process import PSPGenDensity
            >>> proc = GaussianRandomField((16, 16), PSPGenDensity(), 0.5)
            >>> proc.sample(torch.tensor([[1.0, 2.0], [9.0, 2.0]]), num_samples=3, seed=1).shape
            torch.Size([2, 3, 16, 16])
        """
        threshold = self.threshold if threshold is None else threshold
        check_choice("threshold", threshold, THRESHOLDS)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        phi = self.sdf.check_phi(phi)
        gen = make_generator(seed, device=phi.device)
        batch = phi.shape[:-1]
        noise = torch.randn(batch + (num_samples,) + self._shape, generator=gen,
                            device=phi.device, dtype=phi.dtype)
        with torch.no_grad():
            g = self.field(phi.unsqueeze(-2), noise)
            if threshold == "relaxed":
                return relaxed_threshold(g, self.volume_fraction, self.eps).float()
            x = hard_threshold(g, self.volume_fraction, self.ndim)
            if self.phase_field is not None:
                x = self.phase_field(x)
        return x.float()

    def model(self, phi, name="white_noise"):
        """Pyro model fragment: sample the white noise as a site and return the relaxed image.

        The site ``name`` is ``Normal(0, 1)`` with event shape ``shape`` and batch shape
        ``phi.shape[:-1]`` (enclosing plates broadcast it further); for ``noise="uniform"`` the
        standard normal site is mapped to uniform noise inside :meth:`field`, so the site stays
        standard normal (the design protocol's nuisance latent). The output is always the
        *relaxed* microstructure (tanh threshold with this process's ε and volume fraction),
        whatever ``threshold`` :meth:`sample` uses, so gradients flow to φ and to the noise. The
        phase-field step (Cahn–Hilliard) is *not* part of the fragment.

        Args:
            phi (torch.Tensor): ``(..., d_phi)``.
            name (str): name of the white-noise sample site.

        Returns:
            torch.Tensor: relaxed image ``(*batch, *shape)`` in φ's dtype, values in (0, 1)
            (in float32, tanh saturates to exactly 0 or 1 a few 1/ε away from the level x0).

        Example::

            >>> import pyro
            >>> from psppyro.process import PSPGenDensity
            >>> proc = GaussianRandomField((8, 8), PSPGenDensity(), 0.5)
            >>> tr = pyro.poutine.trace(proc.model).get_trace(torch.tensor([5.0, 1.0]))
            >>> tr.nodes["white_noise"]["value"].shape
            torch.Size([8, 8])
        """
        phi = self.sdf.check_phi(phi)
        loc = torch.zeros(phi.shape[:-1] + self._shape, dtype=phi.dtype, device=phi.device)
        noise = pyro.sample(name, dist.Normal(loc, torch.ones_like(loc)).to_event(self.ndim))
        return relaxed_threshold(self.field(phi, noise), self.volume_fraction, self.eps)

    # ------------------------------------------------------------------ config
    def config(self):
        """JSON-serializable description; :func:`psppyro.process.from_config` rebuilds the process.

        A phase field is stored through its own ``config()``; one without it is stored as
        ``{"type": "callable", "repr": ...}`` and cannot be rebuilt.

        Example::

            >>> from psppyro.process import PSPGenDensity
            >>> GaussianRandomField((8, 8), PSPGenDensity(), 0.5).config()["sdf"]
            {'type': 'PSPGenDensity'}
        """
        pf = self.phase_field
        if pf is None:
            pf_cfg = None
        elif hasattr(pf, "config"):
            pf_cfg = pf.config()
        else:
            pf_cfg = {"type": "callable", "repr": repr(pf)}
        return {
            "type": type(self).__name__,
            "shape": list(self._shape),
            "sdf": self.sdf.config(),
            "volume_fraction": self.volume_fraction,
            "threshold": self.threshold,
            "eps": self.eps,
            "noise": self.noise,
            "filter_amplitude": self.filter_amplitude,
            "phase_field": pf_cfg,
        }

    def __repr__(self):
        pf = type(self.phase_field).__name__ if self.phase_field is not None else None
        return (
            f"GaussianRandomField(shape={self._shape}, sdf={self.sdf!r}, "
            f"volume_fraction={self.volume_fraction:g}, threshold={self.threshold!r}, "
            f"eps={self.eps:g}, phase_field={pf}, noise={self.noise!r}, "
            f"filter_amplitude={self.filter_amplitude!r})"
        )
