r"""PSP-GEN: one deep generative model of the whole Process–Structure–Property chain.

Zang & Koutsourelakis ("PSP-GEN: Stochastic inversion of the Process–Structure–Property chain in
materials design through deep, generative probabilistic modeling", Acta Materialia 284, 120600,
2025; arXiv:2408.01114) model microstructure x and properties m given process parameters φ through
two latent spaces::

    z1 = g(φ)                                   (deterministic process latent, site "z1")
    z0 ~ N(0, I_{d_z0})                         (stochastic latent, site "z0")
    x  ~ Bernoulli(logits = D_x(z0, z1))        (one independent pixel per event dim, site "x")
    m  ~ p(m | z0, z1)                          (site "m", below)

    p(x, m | φ) = ∫ p(x | z0, z1) p(m | z0, z1) N(z0 | 0, I) dz0,     z1 = g(φ).

**Property head.** Without blocked directions p(m | z0, z1) = N(μ_m, diag σ_m²). With them (the
physical permeability with κ_s = 0: a direction that does not percolate has k = 0, ln k = −∞) a
*percolation head* adds one Bernoulli logit ℓ_j(z0, z1) per blockable component and the property
is a :class:`~psppyro.distributions.PercolatedNormal`::

    m_j = −∞ (blocked)        with probability 1 − sigmoid(ℓ_j)
    m_j ~ N(μ_j, σ_j²)        otherwise,

so the likelihood of a blocked entry is log(1 − p_j) and the Normal term of ln k is taken on
percolating entries only — never a regression onto the artificial floor. A stored value at or
below :data:`BLOCKED_AT` (``psppyro.properties.LOG_PERMEABILITY_FLOOR`` = −20, what the property
maps write for a blocked direction) or equal to −∞ is read as blocked; the standardization of m uses
percolating entries only. ``percolation=None`` turns the head on exactly when the training data
contain blocked entries (the blockable components are those with at least one);
``percolation=False`` keeps the plain Normal (blocked entries are then regressed like any value,
the behaviour of models saved before the head existed). :meth:`PSPGen.property_dist` returns the
PercolatedNormal (design boxes with a −∞ lower bound include blocked directions; see
``docs/architecture.md`` § "The design protocol").

Inference is amortized: q(z0 | x, m, φ) = N(μ, diag σ²) comes from a three-branch encoder (x, m and
φ each mapped to d_z0 features, concatenated, one more network; with the percolation head the
m-branch also sees the blocked indicators). Training maximizes the β-ELBO

    L = E_q[log p(x | z0, z1) + log p(m | z0, z1)] − β KL(q(z0 | x, m, φ) ‖ N(0, I)),

where β (default 2) enters through Pyro's own scaling: the "z0" site is wrapped in
``poutine.scale(scale=beta)`` in *both* model and guide, so Trace_ELBO's term
β·(log q(z0) − log p(z0)) is exactly β times the KL estimate (tested). :meth:`PSPGen.fit`
(:mod:`psppyro.models.pspgen_training`) optimizes the same objective written in plain torch (closed
-form KL; tested equal to Trace_ELBO) and chooses its weights on the validation property
likelihood.

**Semi-supervised training** (described in the paper, not shown there). An unlabelled pair (φ, x)
has m marginalized: the "m" site is masked (``poutine.mask``) and z0 is inferred by a second
amortized guide q(z0 | x, φ) with its own x- and φ-branches. ``m_mask`` (bool, per sample) says
which rows are labelled; the guide picks the three-branch encoder for those and the x-only encoder
for the rest, so one "z0" site serves both. The x-only guide is also what predicts E[m | φ, x] for a
new microstructure; :meth:`PSPGen.fit` therefore always trains it, also on the labelled pairs with m
hidden at a small weight (``guide_x_weight``).

**Inputs**: φ is normalized inside the model to [−1, 1] per component with ``phi_bounds``
(φ_n = 2(φ − lo)/(hi − lo) − 1; values outside the bounds extrapolate, nothing is clipped). m is
standardized with the training mean and standard deviation stored as buffers; the "m" site,
:meth:`PSPGen.property_dist` and every prediction are in physical units.

**Architectures.** ``"mlp"`` (default): residual MLPs (:class:`~psppyro.models.nn.ResidualMLP`,
ELU) with ``width`` = 256 for the x-branches, the joint heads and (2·width) the x-decoder, and
``small_width`` = 64 for g, the m- and φ-branches and (2·small) the property and percolation heads —
our own choice. ``"conv"`` swaps the x-branches and the x-decoder for periodic convolutional stacks
(:class:`~psppyro.models.nn.ConvEncoder`/``ConvDecoder``) for large images such as 128².
``"paper"``: the hidden widths of the paper's appendix A (see :class:`PSPGen`). Default sizes follow
the paper's rules: d_z1 = number of principal components of the training images' two-point
correlations explaining 90 % of their variance
(:func:`~psppyro.models.two_point.principal_components_for_variance`), d_z0 ≈ 5 % of the number of
pixels. ``dropout`` > 0 regularizes the x-networks (x-decoder and x-encoders; training mode only).

**Design protocol** (``docs/architecture.md`` § "The design protocol"): ``phi_bounds`` (d_φ, 2),
``latent_dim`` = d_z0 and ``property_dist(phi, z)`` in physical units, differentiable in φ and z.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from psppyro._random import derive_seed, make_generator
from psppyro._validation import (
    as_tensor,
    check_binary,
    check_choice,
    check_finite,
    check_int,
    check_interval,
    check_last_dim,
    check_positive,
    check_seed,
)
from psppyro.distributions import PercolatedNormal
from psppyro.properties.permeability import LOG_PERMEABILITY_FLOOR

from .nn import ConvDecoder, ConvEncoder, ResidualMLP

__all__ = ["BLOCKED_AT", "PAPER_WIDTHS", "PSPGen", "blocked_entries"]

_PYRO_NAME = "pspgen"
_MIN_SCALE = 1e-4

#: Stored property values at or below this (or −∞) are blocked directions (the property maps'
#: floor, ``psppyro.properties.LOG_PERMEABILITY_FLOOR``).
BLOCKED_AT = LOG_PERMEABILITY_FLOOR

#: Hidden widths of the paper's appendix A (Zang & Koutsourelakis 2025), used by
#: ``architecture="paper"``: (widths, activation) per network.
PAPER_WIDTHS = {
    "process": ((256, 128, 64), "elu"),  # g: φ → z1
    "decoder_x": ((512, 128), "relu"),  # D_x: (z0, z1) → pixel logits
    "decoder_m": ((64, 128, 256), "elu"),  # D_m: (z0, z1) → (μ_m, σ_m)
    "enc_x": ((128, 512), "elu"),  # ResNet_x
    "enc_small": ((64,), "elu"),  # ResNet_m, ResNet_φ and the joint head
}


def blocked_entries(m: torch.Tensor) -> torch.Tensor:
    """Bool tensor: which entries of stored properties ``m`` are blocked (≤ :data:`BLOCKED_AT`).

    Example::

        >>> blocked_entries(torch.tensor([-20.0, -9.5, -math.inf])).tolist()
        [True, False, True]
    """
    return (m <= BLOCKED_AT) | torch.isneginf(m)


class _WidthMLP(nn.Module):
    """MLP with the given hidden widths plus a linear input→output skip (the paper's "ResNet")."""

    def __init__(self, d_in, d_out, widths, activation="elu", dropout=0.0):
        super().__init__()
        dims = (d_in, *widths)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(dims[-1], d_out)
        self.skip = nn.Linear(d_in, d_out, bias=False)
        self.act = nn.functional.elu if activation == "elu" else nn.functional.relu
        self.dropout = float(dropout)

    def forward(self, h):
        g = h
        for layer in self.hidden:
            g = self.act(layer(g))
            if self.dropout > 0:
                g = nn.functional.dropout(g, self.dropout, self.training)
        return self.output(g) + self.skip(h)


class PSPGen(nn.Module):
    r"""PSP-GEN generative model p(x, m | φ) with amortized guides, as a Pyro model/guide pair.

    Args:
        d_phi (int): number of process parameters.
        x_shape (tuple[int, ...]): microstructure shape, e.g. ``(36, 36)``.
        d_m (int): number of properties.
        d_z0 (int): size of the stochastic latent z0 (the design latent, ``latent_dim``).
        d_z1 (int): size of the process latent z1 = g(φ).
        beta (float): weight of the KL term (β-VAE), > 0; default 2 as in the paper.
        architecture (str): ``"mlp"`` (residual MLPs), ``"conv"`` (periodic convolutional
            x-encoder and x-decoder; 2-D images only) or ``"paper"``. ``"paper"`` takes from the
            paper's appendix A exactly the hidden widths and activations (:data:`PAPER_WIDTHS`): g
            256-128-64 ELU; D_x 512-128 ReLU (sigmoid output = Bernoulli logits); D_m 64-128-256
            ELU; ResNet_x 128-512 ELU; ResNet_m, ResNet_φ and the joint encoder head 64 ELU. The
            appendix calls each a "ResNet" without saying where the skips go: ours is the MLP plus
            a linear input→output skip (our reading). The x-only guide (not in the paper) copies
            the labelled guide's x- and φ-branches and head; the percolation head (ours) copies
            D_m. ``width``/``small_width`` are ignored.
        phi_bounds: (d_phi, 2) lower/upper bounds of φ used to normalize φ to [−1, 1]; default the
            unit box [0, 1]^d_phi.
        m_mean, m_std: (d_m,) property standardization; default 0 and 1. :meth:`fit` sets them from
            the (percolating) training data the first time it runs.
        width (int): width of the x-branches and joint heads (decoder: 2·width).
        small_width (int): width of g and the m- and φ-branches (property head: 2·small_width).
        phi_names, m_names (list[str], optional): names stored with the model (for reports).
        seed (int): seed of the initial network weights (drawn in a forked RNG, so torch's global
            random state is left as it was); the same seed gives the same initial model.
        dropout (float): dropout probability in the x-decoder and the x-encoders (in [0, 1);
            active only in training mode, i.e. inside :meth:`fit`; the conv decoder has none).
        percolation (bool or None): the percolation head (module docstring). None: on when the
            training data contain blocked entries (decided by :meth:`from_dataset`, else by the
            first :meth:`fit`); True: on (blockable components: those blocked somewhere in the
            training data, all if none is); False: off.

    Raises:
        ValueError / TypeError: bad sizes, β ≤ 0, an unknown architecture, bad bounds, bad
            dropout or percolation.

    Example::

        >>> import torch
        >>> gen = PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2, phi_bounds=[[1.0, 9.0], [0.2, 2.0]])
        >>> d = gen.property_dist(torch.tensor([5.0, 1.0]), torch.zeros(4, 3))
        >>> d.batch_shape, d.event_shape
        (torch.Size([4]), torch.Size([2]))
    """

    def __init__(
        self,
        d_phi: int,
        x_shape: tuple,
        d_m: int,
        d_z0: int,
        d_z1: int,
        beta: float = 2.0,
        architecture: str = "mlp",
        phi_bounds=None,
        m_mean=None,
        m_std=None,
        width: int = 256,
        small_width: int = 64,
        phi_names=None,
        m_names=None,
        seed: int = 0,
        dropout: float = 0.0,
        percolation: bool | None = None,
    ):
        seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 7))
            self._construct(d_phi, x_shape, d_m, d_z0, d_z1, beta, architecture, phi_bounds,
                            m_mean, m_std, width, small_width, phi_names, m_names, dropout,
                            percolation)
        self.eval()  # dropout only inside fit()

    def _construct(self, d_phi, x_shape, d_m, d_z0, d_z1, beta, architecture, phi_bounds, m_mean,
                   m_std, width, small_width, phi_names, m_names, dropout, percolation):
        """The constructor's body (networks drawn from the RNG state :meth:`__init__` set)."""
        super().__init__()
        # Python ints from here on: the configuration is written as JSON by save().
        d_phi, d_m, d_z0, d_z1, width, small_width = (
            check_int(name, value, minimum=1)
            for name, value in (
                ("d_phi", d_phi),
                ("d_m", d_m),
                ("d_z0", d_z0),
                ("d_z1", d_z1),
                ("width", width),
                ("small_width", small_width),
            )
        )
        if not hasattr(x_shape, "__len__") or len(x_shape) == 0:
            raise ValueError(f"x_shape must be a tuple of positive integers, got {x_shape!r}")
        x_shape = tuple(check_int(f"x_shape[{i}]", s, minimum=1) for i, s in enumerate(x_shape))
        check_positive("beta", beta)
        check_choice("architecture", architecture, ("mlp", "conv", "paper"))
        if architecture == "conv" and len(x_shape) != 2:
            raise ValueError(f"architecture='conv' needs 2-D images, got x_shape={x_shape}")
        check_interval("dropout", dropout, 0.0, 1.0, closed=(True, False))
        if percolation not in (None, True, False):
            raise TypeError(f"percolation must be True, False or None, got {percolation!r}")
        self.d_phi, self.x_shape, self.d_m = d_phi, x_shape, d_m
        self.d_z0, self.d_z1 = d_z0, d_z1
        self.beta = float(beta)
        self.architecture = architecture
        self.width, self.small_width = width, small_width
        self.dropout = float(dropout)
        self.percolation = percolation
        self.phi_names = list(phi_names) if phi_names is not None else None
        self.m_names = list(m_names) if m_names is not None else None
        d_x = math.prod(x_shape)
        self.d_x = d_x

        if phi_bounds is None:
            phi_bounds = torch.stack([torch.zeros(d_phi), torch.ones(d_phi)], -1)
        phi_bounds = as_tensor("phi_bounds", phi_bounds, dtype=torch.float32)
        if phi_bounds.shape != (d_phi, 2):
            raise ValueError(
                f"phi_bounds must have shape ({d_phi}, 2), got {tuple(phi_bounds.shape)}"
            )
        check_finite("phi_bounds", phi_bounds)
        if not bool((phi_bounds[:, 1] > phi_bounds[:, 0]).all()):
            raise ValueError(f"phi_bounds must have low < high per row, got {phi_bounds.tolist()}")
        stats_given = m_mean is not None and m_std is not None
        m_mean = torch.zeros(d_m) if m_mean is None else as_tensor("m_mean", m_mean)
        m_std = torch.ones(d_m) if m_std is None else as_tensor("m_std", m_std)
        check_last_dim("m_mean", m_mean, d_m)
        check_last_dim("m_std", m_std, d_m)
        check_finite("m_mean", m_mean)
        if not bool((m_std > 0).all()) or not bool(torch.isfinite(m_std).all()):
            raise ValueError(f"m_std must be finite and > 0, got {m_std.tolist()}")
        self.register_buffer("phi_bounds", phi_bounds.clone())
        self.register_buffer("m_mean", m_mean.to(torch.float32).clone())
        self.register_buffer("m_std", m_std.to(torch.float32).clone())
        self.register_buffer("m_stats_fitted", torch.tensor(stats_given))

        d_z = d_z0 + d_z1
        has_head = percolation is not False
        d_m_in = 2 * d_m if has_head else d_m  # m-branch input: values (+ blocked indicators)
        if architecture == "paper":
            w = PAPER_WIDTHS
            small = w["enc_small"][0]
            self.process_net = _WidthMLP(d_phi, d_z1, *w["process"])
            self.decoder_x = _WidthMLP(d_z, d_x, *w["decoder_x"], dropout=dropout)
            self.decoder_m = _WidthMLP(d_z, 2 * d_m, *w["decoder_m"])
            self.enc_x = _WidthMLP(d_x, d_z0, *w["enc_x"], dropout=dropout)
            self.enc_m = _WidthMLP(d_m_in, d_z0, small)
            self.enc_phi = _WidthMLP(d_phi, d_z0, small)
            self.enc_head = _WidthMLP(3 * d_z0, 2 * d_z0, small)
            self.enc_u_x = _WidthMLP(d_x, d_z0, *w["enc_x"], dropout=dropout)
            self.enc_u_phi = _WidthMLP(d_phi, d_z0, small)
            self.enc_u_head = _WidthMLP(2 * d_z0, 2 * d_z0, small)
            if has_head:
                self.decoder_p = _WidthMLP(d_z, d_m, *w["decoder_m"])
        else:
            # generative networks
            self.process_net = ResidualMLP(d_phi, d_z1, small_width, 2)  # g: φ_n → z1
            if architecture == "mlp":
                self.decoder_x = ResidualMLP(d_z, d_x, 2 * width, 2, dropout=dropout)
            else:
                self.decoder_x = ConvDecoder(d_z, x_shape)
            self.decoder_m = ResidualMLP(d_z, 2 * d_m, 2 * small_width, 2)
            # labelled guide q(z0 | x, m, φ): three branches + joint head
            self.enc_x = self._x_branch(d_z0)
            self.enc_m = ResidualMLP(d_m_in, d_z0, small_width, 1)
            self.enc_phi = ResidualMLP(d_phi, d_z0, small_width, 1)
            self.enc_head = ResidualMLP(3 * d_z0, 2 * d_z0, width, 1)
            # unlabelled guide q(z0 | x, φ): its own branches + head
            self.enc_u_x = self._x_branch(d_z0)
            self.enc_u_phi = ResidualMLP(d_phi, d_z0, small_width, 1)
            self.enc_u_head = ResidualMLP(2 * d_z0, 2 * d_z0, width, 1)
            if has_head:
                self.decoder_p = ResidualMLP(d_z, d_m, 2 * small_width, 2)  # percolation logits
        if has_head:
            # Which components can block: set from the training data by fit (all False = none).
            self.register_buffer("blocked_mask", torch.zeros(d_m, dtype=torch.bool))

    def _x_branch(self, d_out):
        if self.architecture == "mlp":
            return ResidualMLP(self.d_x, d_out, self.width, 2, dropout=self.dropout)
        encoder = ConvEncoder(self.x_shape, d_out, self.width)
        for block in encoder.head.blocks:
            block.dropout = self.dropout
        return encoder

    # ------------------------------------------------------------------ configuration
    @property
    def latent_dim(self) -> int:
        """int: d_z0, the standard-normal nuisance latent of the design protocol."""
        return self.d_z0

    @property
    def has_percolation_head(self) -> bool:
        """Whether p(m | z0, z1) is a PercolatedNormal (a head exists and some component blocks).

        Example::

            >>> PSPGen(1, (4, 4), 1, 2, 1).has_percolation_head
            False
        """
        return hasattr(self, "blocked_mask") and bool(self.blocked_mask.any())

    def config(self) -> dict:
        """The constructor arguments as a JSON-serializable dict (buffers travel in the state dict).

        Example::

            >>> PSPGen(1, (4, 4), 1, 2, 1).config()["x_shape"]
            [4, 4]
        """
        return {
            "d_phi": self.d_phi,
            "x_shape": list(self.x_shape),
            "d_m": self.d_m,
            "d_z0": self.d_z0,
            "d_z1": self.d_z1,
            "beta": self.beta,
            "architecture": self.architecture,
            "width": self.width,
            "small_width": self.small_width,
            "phi_names": self.phi_names,
            "m_names": self.m_names,
            "dropout": self.dropout,
            "percolation": self.percolation,
        }

    @classmethod
    def from_dataset(cls, ds, d_z0=None, d_z1=None, beta=2.0, architecture="mlp",
                     percolation=None, **kwargs) -> PSPGen:
        """Build a model sized for a triad dataset (``xarray.Dataset``, see ``psppyro.data``).

        d_φ, the image shape and d_m come from the dataset's dimensions. Defaults follow the paper:
        ``d_z0 = round(0.05 · number of pixels)``, ``d_z1`` = number of principal components of the
        images' two-point correlations explaining 90 % of their variance (≤ 2000 images, seeded).
        φ bounds come from the process configuration in ``ds.attrs["process"]``
        (``psppyro.process.from_config``); without it, from the φ range in the data. m
        standardization is set by :meth:`fit`. ``percolation=None`` is decided here: True when
        ``ds["m"]`` holds a blocked entry (:func:`blocked_entries`), else False.

        Args:
            ds (xarray.Dataset): with dims ``sample, phi_dim, y, x[, m_dim]``.
            d_z0, d_z1 (int, optional): override the defaults.
            beta (float): KL weight.
            architecture (str): ``"mlp"``, ``"conv"`` or ``"paper"``.
            percolation (bool or None): the percolation head (None: from the data).
            **kwargs: passed to the constructor (``width``, ``small_width``, ``seed``,
                ``dropout``).

        Returns:
            PSPGen

        Example::

            >>> import numpy as np, xarray as xr
            >>> rng = np.random.default_rng(0)
            >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), rng.uniform(size=(10, 2))),
            ...                  "x": (("sample", "y", "x"), (rng.uniform(size=(10, 8, 8)) < .5)
            ...                        .astype("uint8")),
            ...                  "m": (("sample", "m_dim"), rng.normal(size=(10, 2)))})
            >>> gen = PSPGen.from_dataset(ds, d_z1=2)
            >>> gen.d_z0, gen.percolation
            (3, False)
        """
        from .two_point import principal_components_for_variance

        for dim in ("sample", "phi_dim"):
            if dim not in ds.sizes:
                raise ValueError(f"ds must have a dimension {dim!r}; it has {dict(ds.sizes)}")
        x_dims = ds["x"].dims[1:]
        x_shape = tuple(int(ds.sizes[d]) for d in x_dims)
        d_phi = int(ds.sizes["phi_dim"])
        d_m = int(ds.sizes["m_dim"]) if "m_dim" in ds.sizes else int(kwargs.pop("d_m"))
        if d_z0 is None:
            d_z0 = max(1, round(0.05 * math.prod(x_shape)))
        if d_z1 is None:
            d_z1 = principal_components_for_variance(ds, 0.9)
        phi_bounds = kwargs.pop("phi_bounds", None)
        if phi_bounds is None:
            phi_bounds = _bounds_from_dataset(ds)
        if percolation is None:
            percolation = "m" in ds.variables and bool(
                blocked_entries(torch.as_tensor(ds["m"].values)).any()
            )
        phi_names = [str(v) for v in ds["phi_dim"].values] if "phi_dim" in ds.coords else None
        m_names = [str(v) for v in ds["m_dim"].values] if "m_dim" in ds.coords else None
        return cls(
            d_phi,
            x_shape,
            d_m,
            d_z0,
            d_z1,
            beta=beta,
            architecture=architecture,
            phi_bounds=phi_bounds,
            phi_names=phi_names,
            m_names=m_names,
            percolation=percolation,
            **kwargs,
        )

    # ------------------------------------------------------------------ pieces
    def _normalize_phi(self, phi):
        lo, hi = self.phi_bounds[:, 0], self.phi_bounds[:, 1]
        return 2.0 * (phi - lo) / (hi - lo) - 1.0

    def _flat_x(self, x):
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], self.d_x)

    def _x_features(self, branch, x):
        if self.architecture == "conv":
            return branch(x)
        return branch(self._flat_x(x))

    def _decode_x(self, h):
        logits = self.decoder_x(h)
        if self.architecture != "conv":
            logits = logits.reshape(*h.shape[:-1], *self.x_shape)
        return logits

    def _property_params(self, h):
        out = self.decoder_m(h)
        loc_std, raw = out[..., : self.d_m], out[..., self.d_m :]
        scale_std = nn.functional.softplus(raw) + 1e-3
        return self.m_mean + self.m_std * loc_std, self.m_std * scale_std

    def _property_from_h(self, h):
        """p(m | z0, z1) for h = (z0, z1): PercolatedNormal with the head, else diagonal Normal."""
        loc, scale = self._property_params(h)
        if self.has_percolation_head:
            return PercolatedNormal(self.decoder_p(h), loc, scale, self.blocked_mask)
        return dist.Normal(loc, scale).to_event(1)

    @staticmethod
    def _gaussian(out, d):
        return out[..., :d], nn.functional.softplus(out[..., d:]) + _MIN_SCALE

    def _m_features(self, m):
        m_n = (m - self.m_mean) / self.m_std
        if not hasattr(self, "blocked_mask"):
            return m_n
        blocked = torch.isneginf(m)
        return torch.cat([torch.where(blocked, torch.zeros_like(m_n), m_n), blocked.to(m_n)], -1)

    def _encode_labelled(self, phi_n, x, m):
        feats = torch.cat(
            [self._x_features(self.enc_x, x), self.enc_m(self._m_features(m)),
             self.enc_phi(phi_n)], -1
        )
        return self._gaussian(self.enc_head(feats), self.d_z0)

    def _encode_unlabelled(self, phi_n, x):
        feats = torch.cat([self._x_features(self.enc_u_x, x), self.enc_u_phi(phi_n)], -1)
        return self._gaussian(self.enc_u_head(feats), self.d_z0)

    def _encode_rows(self, phi_n, x, m, m_mask):
        """Guide (loc, scale) per row: labelled rows q(z0 | x, m, φ), the others q(z0 | x, φ)."""
        n = phi_n.shape[0]
        if m is None:
            return self._encode_unlabelled(phi_n, x)
        if m_mask is None:
            return self._encode_labelled(phi_n, x, m)
        # Each row goes through its own encoder only (index_copy is differentiable).
        lab, unl = m_mask.nonzero().squeeze(-1), (~m_mask).nonzero().squeeze(-1)
        loc, scale = phi_n.new_zeros(n, self.d_z0), phi_n.new_ones(n, self.d_z0)
        if lab.numel():
            loc_l, scale_l = self._encode_labelled(phi_n[lab], x[lab], m[lab])
            loc, scale = loc.index_copy(0, lab, loc_l), scale.index_copy(0, lab, scale_l)
        if unl.numel():
            loc_u, scale_u = self._encode_unlabelled(phi_n[unl], x[unl])
            loc, scale = loc.index_copy(0, unl, loc_u), scale.index_copy(0, unl, scale_u)
        return loc, scale

    def _param_like(self):
        p = next(self.parameters())
        return p.dtype, p.device

    def _check_phi(self, phi):
        dtype, device = self._param_like()
        phi = as_tensor("phi", phi, dtype=dtype, device=device)
        check_last_dim("phi", phi, self.d_phi)
        check_finite("phi", phi)
        return phi

    def _check_x(self, x, batch_shape):
        dtype, device = self._param_like()
        x = as_tensor("x", x, dtype=dtype, device=device)
        if tuple(x.shape) != tuple(batch_shape) + self.x_shape:
            raise ValueError(
                f"x must have shape {tuple(batch_shape) + self.x_shape} (batch of phi + x_shape), "
                f"got {tuple(x.shape)}"
            )
        check_binary("x", x)
        return x

    def _check_m_values(self, name, m):
        """Finite m; with the percolation head blocked entries (≤ floor or −inf) become −inf."""
        if not hasattr(self, "blocked_mask"):
            check_finite(name, m)
            return m
        if bool(torch.isnan(m).any()) or bool(torch.isposinf(m).any()):
            raise ValueError(
                f"{name} must be finite or -inf (blocked), got NaN or +inf: {m.tolist()[:4]}..."
            )
        return torch.where(blocked_entries(m), torch.full_like(m, -math.inf), m)

    def _check_batch(self, phi, x, m, m_mask, weight):
        phi = self._check_phi(phi)
        if phi.dim() != 2:
            raise ValueError(f"phi must have shape (batch, {self.d_phi}), got {tuple(phi.shape)}")
        n = phi.shape[0]
        if x is not None:
            x = self._check_x(x, (n,))
        if m_mask is not None:
            m_mask = torch.as_tensor(m_mask, device=phi.device)
            if m_mask.dtype != torch.bool or tuple(m_mask.shape) != (n,):
                raise ValueError(
                    f"m_mask must be a bool tensor of shape ({n},), got {m_mask.dtype} "
                    f"{tuple(m_mask.shape)}"
                )
        if m is not None:
            m = as_tensor("m", m, dtype=phi.dtype, device=phi.device)
            if tuple(m.shape) != (n, self.d_m):
                raise ValueError(f"m must have shape ({n}, {self.d_m}), got {tuple(m.shape)}")
            if m_mask is not None:
                self._check_m_values("m (labelled rows)", m[m_mask])
                # Unlabelled rows may hold NaN; zero them so no NaN reaches a gradient.
                m = torch.where(m_mask[:, None], m, torch.zeros_like(m))
            m = self._check_m_values("m", m)
        if weight is not None:
            weight = as_tensor("weight", weight, dtype=phi.dtype, device=phi.device)
            if tuple(weight.shape) != (n,) or not bool((weight > 0).all()):
                raise ValueError(f"weight must be a positive tensor of shape ({n},)")
        return phi, x, m, m_mask, weight

    # ------------------------------------------------------------------ Pyro model and guide
    def model(self, phi, x=None, m=None, m_mask=None, weight=None):
        """The generative model p(x, m | φ) for a batch (one batch dim, plate "data").

        Args:
            phi: (n, d_phi) process parameters (physical units).
            x: ``(n, *x_shape)`` binary images to condition on, or None to sample them.
            m: (n, d_m) properties (physical units) to condition on, or None to sample them. With
                the percolation head, values ≤ :data:`BLOCKED_AT` or −inf are blocked entries.
            m_mask: (n,) bool, True where m is observed; other rows have the "m" site masked out
                (their m entries are ignored, NaN allowed).
            weight: (n,) positive per-sample ELBO weights (minibatch scaling).

        Returns:
            dict with ``z0``, ``z1``, ``x`` and ``m`` tensors.

        Raises:
            ValueError: shapes, non-binary x, non-finite φ or m (NaN/+inf with the head).

        Example::

            >>> import pyro, torch
            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> tr = pyro.poutine.trace(gen.model).get_trace(torch.rand(3, 2))
            >>> tr.nodes["x"]["value"].shape, tr.nodes["z0"]["scale"]
            (torch.Size([3, 4, 4]), 2.0)
        """
        return self._model(*self._check_batch(phi, x, m, m_mask, weight))

    def _model(self, phi, x=None, m=None, m_mask=None, weight=None):
        """:meth:`model` on validated tensors (no checks)."""
        pyro.module(_PYRO_NAME, self)
        n = phi.shape[0]
        zeros = phi.new_zeros(n, self.d_z0)
        with pyro.plate("data", n, dim=-1), poutine.scale(scale=1.0 if weight is None else weight):
            z1 = pyro.deterministic("z1", self.process_net(self._normalize_phi(phi)), event_dim=1)
            with poutine.scale(scale=self.beta):
                z0 = pyro.sample("z0", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            h = torch.cat([z0, z1], -1)
            x = pyro.sample(
                "x",
                dist.Bernoulli(logits=self._decode_x(h)).to_event(len(self.x_shape)),
                obs=x,
            )
            masked = m_mask is not None and m is not None
            with poutine.mask(mask=m_mask) if masked else nullcontext():
                m = pyro.sample("m", self._property_from_h(h), obs=m)
        return {"z0": z0, "z1": z1, "x": x, "m": m}

    def guide(self, phi, x, m=None, m_mask=None, weight=None):
        """Amortized guide: q(z0 | x, m, φ) for labelled rows, q(z0 | x, φ) for the others.

        Args:
            phi: (n, d_phi); x: ``(n, *x_shape)`` binary; m: (n, d_m) or None (all rows unlabelled);
            m_mask: (n,) bool, True for labelled rows (default: all rows labelled when m is given);
            weight: as in :meth:`model`.

        Returns:
            Tensor: the sampled z0, (n, d_z0).

        Example::

            >>> import pyro, torch
            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> x = (torch.rand(3, 4, 4) < 0.5).float()
            >>> gen.guide(torch.rand(3, 2), x, torch.zeros(3, 1)).shape
            torch.Size([3, 2])
        """
        if x is None:
            raise ValueError("x must be given to the guide (it encodes x), got None")
        return self._guide(*self._check_batch(phi, x, m, m_mask, weight))

    def _guide(self, phi, x, m=None, m_mask=None, weight=None):
        """:meth:`guide` on validated tensors (no checks)."""
        pyro.module(_PYRO_NAME, self)
        n = phi.shape[0]
        loc, scale = self._encode_rows(self._normalize_phi(phi), x, m, m_mask)
        with pyro.plate("data", n, dim=-1), poutine.scale(scale=1.0 if weight is None else weight):
            with poutine.scale(scale=self.beta):
                return pyro.sample("z0", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ design protocol
    def property_dist(self, phi, z):
        """p(m | φ, z0) in physical units; differentiable in ``phi`` and ``z``.

        ``Independent(Normal(μ_m, σ_m), 1)`` without the percolation head, else a
        :class:`~psppyro.distributions.PercolatedNormal` (blocked components = −inf).

        Args:
            phi: (..., d_phi) process parameters.
            z: (..., d_z0) values of the standard-normal latent z0.

        Returns:
            torch.distributions.Distribution: batch shape broadcast(phi.shape[:-1],
            z.shape[:-1]), event shape (d_m,).

        Raises:
            ValueError: wrong last dimensions or non-finite inputs.

        Example::

            >>> gen = PSPGen(2, (4, 4), 2, 3, 1)
            >>> gen.property_dist(torch.rand(5, 1, 2), torch.zeros(7, 3)).batch_shape
            torch.Size([5, 7])
        """
        phi = self._check_phi(phi)
        dtype, device = self._param_like()
        z = as_tensor("z", z, dtype=dtype, device=device)
        check_last_dim("z", z, self.d_z0)
        check_finite("z", z)
        batch = torch.broadcast_shapes(phi.shape[:-1], z.shape[:-1])
        phi = phi.expand(*batch, self.d_phi)
        z = z.expand(*batch, self.d_z0)
        h = torch.cat([z, self.process_net(self._normalize_phi(phi))], -1)
        loc, scale = self._property_params(h)
        if self.has_percolation_head:
            return PercolatedNormal(self.decoder_p(h), loc, scale, self.blocked_mask)
        return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)

    # ------------------------------------------------------------------ prediction
    def _standard_normal(self, shape, seed, device, dtype):
        g = make_generator(seed, device=device)
        return torch.randn(shape, generator=g, device=device, dtype=dtype)

    def _draw(self, d, seed, device, dtype):
        """One seeded draw of m from ``d`` (−inf for blocked components of a PercolatedNormal)."""
        if isinstance(d, PercolatedNormal):
            loc, scale = d.loc, d.scale
        else:
            loc, scale = d.mean, d.stddev
        eps = self._standard_normal(loc.shape, None if seed is None else derive_seed(seed, 1),
                                    device, dtype)
        value = loc + scale * eps
        if isinstance(d, PercolatedNormal):
            g = make_generator(None if seed is None else derive_seed(seed, 2), device=device)
            u = torch.rand(loc.shape, generator=g, device=device, dtype=dtype)
            value = torch.where(u < d.percolation_probs, value, torch.full_like(value, -math.inf))
        return value

    @torch.no_grad()
    def predict_properties(self, phi, num_samples=1000, seed=None):
        """Samples of the forward process–property density p(m | φ) = ∫ p(m | z0, g(φ)) N(z0) dz0.

        Args:
            phi: (..., d_phi) process parameters.
            num_samples (int): samples per φ.
            seed (int, optional): seed (None: drawn from torch's global generator).

        Returns:
            Tensor: (num_samples, ..., d_m) in physical units (−inf: a blocked component, with the
            percolation head).

        Example::

            >>> gen = PSPGen(2, (4, 4), 2, 3, 1)
            >>> gen.predict_properties(torch.rand(5, 2), num_samples=10, seed=0).shape
            torch.Size([10, 5, 2])
        """
        phi = self._check_phi(phi)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        batch = phi.shape[:-1]
        z = self._standard_normal((num_samples, *batch, self.d_z0), seed, phi.device, phi.dtype)
        return self._draw(self.property_dist(phi, z), seed, phi.device, phi.dtype)

    @torch.no_grad()
    def encode(self, phi, x, m=None):
        """Mean and standard deviation of the amortized guide (x-only guide when ``m`` is None).

        Args:
            phi: (..., d_phi); x: ``(..., *x_shape)`` binary; m: (..., d_m) or None.

        Returns:
            tuple(Tensor, Tensor): loc and scale, each (..., d_z0).

        Example::

            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> gen.encode(torch.rand(3, 2), torch.ones(3, 4, 4))[0].shape
            torch.Size([3, 2])
        """
        phi = self._check_phi(phi)
        x = self._check_x(x, phi.shape[:-1])
        phi_n = self._normalize_phi(phi)
        if m is None:
            return self._encode_unlabelled(phi_n, x)
        m = as_tensor("m", m, dtype=phi.dtype, device=phi.device)
        if tuple(m.shape) != tuple(phi.shape[:-1]) + (self.d_m,):
            raise ValueError(
                f"m must have shape {tuple(phi.shape[:-1]) + (self.d_m,)}, got {tuple(m.shape)}"
            )
        check_finite("m", m)
        return self._encode_labelled(phi_n, x, m)

    @torch.no_grad()
    def posterior_property_samples(self, phi, x, num_samples=100, seed=None):
        """Samples of p(m | φ, x) ≈ ∫ p(m | z0, g(φ)) q(z0 | x, φ) dz0 (x-only guide).

        Args:
            phi: (..., d_phi); x: ``(..., *x_shape)`` binary images.
            num_samples (int): samples per input; seed (int, optional).

        Returns:
            Tensor: (num_samples, ..., d_m) in physical units.

        Example::

            >>> gen = PSPGen(2, (4, 4), 2, 3, 1)
            >>> gen.posterior_property_samples(torch.rand(3, 2), torch.ones(3, 4, 4), 5, 0).shape
            torch.Size([5, 3, 2])
        """
        loc, scale = self.encode(phi, x)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        eps = self._standard_normal((num_samples, *loc.shape), seed, loc.device, loc.dtype)
        return self._draw(self.property_dist(phi, loc + scale * eps), seed, loc.device, loc.dtype)

    @torch.no_grad()
    def posterior_mean_property(self, phi, x, num_samples=100, seed=None):
        """E[m | φ, x] = E_{q(z0|x,φ)}[μ_m(z0, g(φ))], a Monte Carlo average over the guide.

        With the percolation head μ_m is the mean *given percolation* (a blocked direction has no
        finite mean).

        Args:
            phi: (..., d_phi); x: ``(..., *x_shape)``; num_samples (int); seed (int, optional).

        Returns:
            Tensor: (..., d_m) in physical units.

        Example::

            >>> gen = PSPGen(2, (4, 4), 2, 3, 1)
            >>> gen.posterior_mean_property(torch.rand(3, 2), torch.ones(3, 4, 4), seed=0).shape
            torch.Size([3, 2])
        """
        loc, scale = self.encode(phi, x)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        eps = self._standard_normal((num_samples, *loc.shape), seed, loc.device, loc.dtype)
        d = self.property_dist(phi, loc + scale * eps)
        return (d.loc if isinstance(d, PercolatedNormal) else d.mean).mean(0)

    @torch.no_grad()
    def reconstruct(self, phi, x, m=None):
        """Pixel probabilities sigmoid(D_x(z0, g(φ))) at the guide mean of z0.

        Args:
            phi: (..., d_phi); x: ``(..., *x_shape)`` binary; m: (..., d_m) or None (x-only guide).

        Returns:
            Tensor: ``(..., *x_shape)`` probabilities in (0, 1).

        Example::

            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> gen.reconstruct(torch.rand(3, 2), torch.ones(3, 4, 4)).shape
            torch.Size([3, 4, 4])
        """
        loc, _ = self.encode(phi, x, m)
        phi = self._check_phi(phi)
        h = torch.cat([loc, self.process_net(self._normalize_phi(phi))], -1)
        return torch.sigmoid(self._decode_x(h))

    @torch.no_grad()
    def sample_microstructures(self, phi, num_samples=1, seed=None, threshold=0.5):
        """New microstructures x ~ p(x | φ): z0 ~ N(0, I), decoded, thresholded at ``threshold``.

        Args:
            phi: (..., d_phi); num_samples (int); seed (int, optional);
            threshold (float): pixel probability above which a pixel is phase 1, in (0, 1).

        Returns:
            Tensor: ``(num_samples, ..., *x_shape)`` with values 0./1.

        Example::

            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> x = gen.sample_microstructures(torch.rand(3, 2), num_samples=2, seed=0)
            >>> x.shape, bool(((x == 0) | (x == 1)).all())
            (torch.Size([2, 3, 4, 4]), True)
        """
        phi = self._check_phi(phi)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        check_interval("threshold", threshold, 0.0, 1.0)
        batch = phi.shape[:-1]
        z = self._standard_normal((num_samples, *batch, self.d_z0), seed, phi.device, phi.dtype)
        z1 = self.process_net(self._normalize_phi(phi)).expand(num_samples, *batch, self.d_z1)
        probs = torch.sigmoid(self._decode_x(torch.cat([z, z1], -1)))
        return (probs > threshold).to(phi.dtype)

    # ------------------------------------------------------------------ save / load
    def save(self, path):
        """Write weights, buffers, the JSON configuration and the package version to ``path``.

        Example::

            >>> import tempfile, os
            >>> gen = PSPGen(1, (4, 4), 1, 2, 1)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     gen.save(os.path.join(d, "gen.pt"))
            ...     PSPGen.load(os.path.join(d, "gen.pt")).d_z0
            2
        """
        from psppyro import __version__

        path = Path(path)
        if path.is_dir():
            raise ValueError(f"path {str(path)!r} is a folder; give a file name")
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {str(path)!r}: the folder {str(path.parent)!r} does not exist"
            )
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")  # a failed write never leaves half a model
        torch.save(
            {"config": json.dumps(self.config()), "version": __version__, "state_dict": state},
            tmp,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> PSPGen:
        """Load a model written by :meth:`save` (tensors mapped to ``map_location``, default CPU).

        Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``).

        Args:
            path: a file written by :meth:`save`.
            map_location: device for the tensors.

        Returns:
            PSPGen: the model, on ``map_location``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a psppyro model file; the message says what it is (a
                folder, an empty file, not a torch file, a training checkpoint — resume those
                with ``fit(resume=...)`` / ``psppyro train --resume`` — or another torch file).

        Example::

            >>> import tempfile, os
            >>> with tempfile.TemporaryDirectory() as d:
            ...     open(os.path.join(d, "empty.pt"), "w").close()
            ...     try:
            ...         PSPGen.load(os.path.join(d, "empty.pt"))
            ...     except ValueError as err:
            ...         print(str(err).endswith("is not a psppyro model file (empty file)"))
            True
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no model file at {str(path)!r}")
        problem = _model_file_problem(path)
        if problem is None:
            try:
                blob = torch.load(path, map_location=map_location, weights_only=True)
            except Exception as err:  # noqa: BLE001 - reported as what the file is not
                problem = f"torch could not read it: {type(err).__name__}: {err}"
                problem = problem.splitlines()[0]
            else:
                if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
                    problem = "a torch file without the 'config' and 'state_dict' of PSPGen.save"
        if problem is not None:
            raise ValueError(f"{str(path)!r} is not a psppyro model file ({problem})")
        version = blob.get("version", "unknown")
        try:
            config = json.loads(blob["config"])
            # Files written before the percolation head existed have the plain Normal head.
            config.setdefault("percolation", False)
            gen = cls(**config)
            gen.load_state_dict(blob["state_dict"])
        except (TypeError, ValueError, RuntimeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"{str(path)!r} was written by psppyro {version} and does not fit this version's "
                f"PSPGen: {first}"
            ) from err
        return gen.to(map_location)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train,
        val=None,
        epochs: int = 500,
        batch_size: int = 50,
        lr: float = 1e-3,
        unlabelled=None,
        patience: int = 60,
        lr_patience: int = 20,
        lr_factor: float = 1.0 / 3.0,
        checkpoint_dir=None,
        checkpoint_every: int = 50,
        resume=None,
        seed: int = 0,
        progress: bool = True,
        device=None,
        guide_x_weight: float = 0.01,
        weight_decay: float = 0.0,
        select: str = "property",
        val_num_z: int = 64,
        guide_x_fraction: float = 0.2,
        prior_m_weight: float = 0.0,
        prior_m_samples: int = 16,
    ) -> dict:
        r"""Train on minibatches; choose the weights on what design needs (the property likelihood).

        The loss is the model/guide's negative β-ELBO written in plain torch
        (:func:`~psppyro.models.pspgen_training.elbo_loss`: closed-form Normal KL, Bernoulli image
        log-likelihood, property log-likelihood; equal to ``Trace_ELBO`` of :meth:`model` /
        :meth:`guide`, tested), optimized with Adam (AdamW, i.e. *decoupled* weight decay, when
        ``weight_decay`` > 0). Each step draws a labelled minibatch (and, with ``unlabelled``, an
        unlabelled one sized so that both sets are traversed once per epoch). Row weights make the
        step loss an unbiased estimate of the full-data negative β-ELBO divided by the number of
        pairs (labelled + unlabelled), so losses compare across batch sizes.

        **Model selection** (``select``). Every epoch the validation set gives (with fixed seeds,
        so each is a deterministic function of the weights) the negative β-ELBO ``val_loss``, its
        image term ``val_x``, the property log-likelihood ``val_m_loglik`` = mean_i log p(m_i |
        φ_i) with p(m | φ) = E_{z0 ~ N(0, I)} p(m | z0, g(φ)) (``val_num_z`` prior draws — the
        density design uses, not the encoder's) and a calibration score ``val_calibration``
        (mean |coverage − nominal| of the central intervals of p(m_j | φ) at nominal levels 0.1 …
        0.9, per component; blocked entries count as the point mass at −∞).
        ``select="property"`` (default) monitors −val_m_loglik, ``"elbo"`` the validation loss
        (the old behaviour). The image term is ~10³ nats per pair against a few for m, so the
        ELBO is lowest when the x-decoder starts memorizing the training images — long before the
        property head is trained: stopping there keeps a model whose p(m | φ) is poor. Without
        ``val`` the monitored value is the epoch's mean training loss. When it has not improved
        for ``lr_patience`` epochs the learning rate is multiplied by ``lr_factor``; after
        ``patience`` epochs without improvement training stops. The best weights are restored.

        Args:
            train: labelled pairs — ``xarray.Dataset`` (phi, x, m; read lazily, one minibatch at a
                time), a dict with ``phi``, ``x``, ``m`` or a tuple ``(phi, x, m)``.
            val: labelled validation pairs, same forms, or None.
            epochs (int): maximal number of epochs (counted from 0, including resumed ones).
            batch_size (int): labelled pairs per step.
            lr (float): initial learning rate.
            unlabelled: (φ, x) pairs without m (Dataset or ``(phi, x)``), or None.
            patience (int): early-stopping patience in epochs.
            lr_patience (int): epochs without improvement before the learning rate drops.
            lr_factor (float): learning-rate multiplier at a drop, in (0, 1).
            checkpoint_dir (str, optional): write ``epoch_XXXX.pt`` there every ``checkpoint_every``
                epochs and at the end (model, optimizer, RNG states, history, epoch).
            checkpoint_every (int): checkpoint period in epochs.
            resume: a checkpoint path, or True for the newest one in ``checkpoint_dir``.
            seed (int): seeds torch/Pyro (``pyro.set_rng_seed``) and the per-epoch shuffles.
            progress (bool): show a tqdm bar with loss, rec-x, rec-m, KL and the validation terms.
            device: move the model there first (e.g. ``"cuda"``); batches follow the model.
            guide_x_weight (float): weight of the labelled pairs' m-hidden copies that train the
                x-only guide q(z0 | x, φ); 0 turns them off.
            guide_x_fraction (float): fraction in (0, 1] of each labelled minibatch that gets an
                m-hidden copy (weights scaled by its inverse, so the objective is unchanged in
                expectation). The copies run the image decoder a second time; 0.2 instead of 1
                makes a step ≈ 1.4× faster with the paper's widths (measured,
                ``docs/results/pspgen_training.md``).
            weight_decay (float): decoupled (AdamW) weight decay, ≥ 0.
            prior_m_weight (float): λ ≥ 0 of an extra term −λ log p(m | φ) per labelled pair,
                with p(m | φ) = E_{z0 ~ N(0, I)} p(m | z0, g(φ)) estimated by
                ``prior_m_samples`` prior draws (logsumexp): it trains the density design uses
                directly. The β-ELBO alone trains the property head on z0 from the guide, which
                sees m, and the design-time p(m | φ) then loses calibration as training goes on
                (``docs/results/pspgen_training.md``). 0 (default) is the paper's objective.
            prior_m_samples (int): prior z0 draws of that term.
            select (str): ``"property"`` or ``"elbo"`` (above).
            val_num_z (int): prior z0 draws for ``val_m_loglik`` / ``val_calibration``.

        Returns:
            dict of per-epoch lists: ``epoch``, ``train_loss`` (= ``loss``), ``rec_x``, ``rec_m``,
            ``kl`` (un-weighted KL; loss = rec_x + rec_m + β·kl per pair), ``val_loss``, ``val_x``,
            ``val_m_loglik``, ``val_calibration`` (NaN without val), ``lr``, ``epoch_time``
            (= ``seconds``); plus ``best_epoch`` (int), ``stopped_early`` (bool) and ``select``.

        Raises:
            ValueError / TypeError: bad arguments or data.

        Example::

            >>> import torch
            >>> g = torch.Generator().manual_seed(0)
            >>> phi = torch.rand(20, 1, generator=g)
            >>> x = (torch.rand(20, 4, 4, generator=g) < phi[:, :, None]).float()
            >>> m = x.mean((-1, -2))[:, None]
            >>> gen = PSPGen(1, (4, 4), 1, 2, 1, width=16, small_width=8)
            >>> hist = gen.fit((phi, x, m), val=(phi, x, m), epochs=2, batch_size=10,
            ...                progress=False)
            >>> len(hist["val_m_loglik"]), hist["select"]
            (2, 'property')
        """
        from .pspgen_training import fit

        return fit(self, train, val=val, epochs=epochs, batch_size=batch_size, lr=lr,
                   unlabelled=unlabelled, patience=patience, lr_patience=lr_patience,
                   lr_factor=lr_factor, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, seed=seed, progress=progress,
                   device=device, guide_x_weight=guide_x_weight, weight_decay=weight_decay,
                   select=select, val_num_z=val_num_z, guide_x_fraction=guide_x_fraction,
                   prior_m_weight=prior_m_weight, prior_m_samples=prior_m_samples)


# --------------------------------------------------------------------------- helpers
def _model_file_problem(path):
    """Why ``path`` cannot be a :meth:`PSPGen.save` file, or ``None`` if it may be one.

    Looks at the file without unpickling it: size, the zip archive of ``torch.save`` and the
    top-level keys named in its pickle (a training checkpoint also has ``optim`` and ``history``).
    """
    import pickletools
    import zipfile

    if path.is_dir():
        return "it is a folder"
    if path.stat().st_size == 0:
        return "empty file"
    if not zipfile.is_zipfile(path):
        return "not a torch file: torch.save writes a zip archive"
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return "a zip archive, not a torch file (no data.pkl)"
            strings = set()
            for op, arg, _ in pickletools.genops(zf.read(names[0])):
                if isinstance(arg, str) and op.name.endswith("UNICODE"):
                    strings.add(arg)
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        return f"a damaged torch file: {err}"
    if {"optim", "history", "state_dict"} <= strings:
        return (
            "it is a training checkpoint written by fit(checkpoint_dir=...): continue training "
            "with psppyro train --resume / fit(resume=...), or load the file written by "
            "--out / save()"
        )
    if not {"config", "state_dict"} <= strings:
        return "a torch file without the 'config' and 'state_dict' of PSPGen.save"
    return None


def _bounds_from_dataset(ds):
    # φ bounds from the process configuration stored with the data, else the data's own range.
    if "process" in ds.attrs:
        from psppyro.process import from_config

        return from_config(json.loads(ds.attrs["process"])).phi_bounds
    phi = torch.as_tensor(ds["phi"].values, dtype=torch.float64)
    lo, hi = phi.min(0).values, phi.max(0).values
    hi = torch.where(hi > lo, hi, lo + 1.0)
    return torch.stack([lo, hi], -1)
