r"""PSP-GEN: one deep generative model of the whole Process–Structure–Property chain.

Zang & Koutsourelakis ("PSP-GEN: Stochastic inversion of the Process–Structure–Property chain in
materials design through deep, generative probabilistic modeling", Acta Materialia 284, 120600,
2025; arXiv:2408.01114) model microstructure x and properties m given process parameters φ through
two latent spaces::

    z1 = g(φ)                                   (deterministic process latent, site "z1")
    z0 ~ N(0, I_{d_z0})                         (stochastic latent, site "z0")
    x  ~ Bernoulli(logits = D_x(z0, z1))        (one independent pixel per event dim, site "x")
    m  ~ N(μ_m(z0, z1), diag σ_m(z0, z1)²)      (site "m")

    p(x, m | φ) = ∫ p(x | z0, z1) p(m | z0, z1) N(z0 | 0, I) dz0,     z1 = g(φ).

Inference is amortized: q(z0 | x, m, φ) = N(μ, diag σ²) comes from a three-branch encoder (x, m and
φ each mapped to d_z0 features, concatenated, one more residual MLP). Training maximizes the β-ELBO

    L = E_q[log p(x | z0, z1) + log p(m | z0, z1)] − β KL(q(z0 | x, m, φ) ‖ N(0, I)),

where β (default 2) enters through Pyro's own scaling: the "z0" site is wrapped in
``poutine.scale(scale=beta)`` in *both* model and guide, so Trace_ELBO's term
β·(log q(z0) − log p(z0)) is exactly β times the KL estimate (tested).

**Semi-supervised training** (described in the paper, not shown there). An unlabelled pair (φ, x)
has m marginalized: the "m" site is masked (``poutine.mask``) and z0 is inferred by a second
amortized guide q(z0 | x, φ) with its own x- and φ-branches. ``m_mask`` (bool, per sample) says
which rows are labelled; the guide picks the three-branch encoder for those and the x-only encoder
for the rest, so one "z0" site serves both. The x-only guide is also what predicts E[m | φ, x] for a
new microstructure; :meth:`PSPGen.fit` therefore always trains it, also on the labelled pairs with m
hidden at a small weight (``guide_x_weight``, default 0.01) so these copies barely touch the
generative model while the guide's parameters (which see no other gradient when there are no
unlabelled data) learn at Adam's scale-free pace.

**Inputs**: φ is normalized inside the model to [−1, 1] per component with ``phi_bounds``
(φ_n = 2(φ − lo)/(hi − lo) − 1; values outside the bounds extrapolate, nothing is clipped). m is
standardized with the training mean and standard deviation stored as buffers; the "m" site,
:meth:`PSPGen.property_dist` and every prediction are in physical units.

**Architecture.** The paper's appendix A (layer widths) could not be consulted when this was
written, so the widths below are our own documented choice, not the paper's: residual MLPs
(:class:`~psppyro.models.nn.ResidualMLP`, ELU) with ``width`` = 256 for the x-branches, the joint
heads and (2·width) the x-decoder, and ``small_width`` = 64 for g, the m- and φ-branches and
(2·small) the property head. ``architecture="conv"`` swaps the x-branches and the x-decoder for
periodic convolutional stacks (:class:`~psppyro.models.nn.ConvEncoder`/``ConvDecoder``) for large
images such as 128². Default sizes follow the paper's rules: d_z1 = number of principal components
of the training images' two-point correlations explaining 90 % of their variance
(:func:`~psppyro.models.two_point.principal_components_for_variance`), d_z0 ≈ 5 % of the number of
pixels.

**Design protocol** (``docs/architecture.md`` § "The design protocol"): ``phi_bounds`` (d_φ, 2),
``latent_dim`` = d_z0 and ``property_dist(phi, z)`` = ``Independent(Normal(μ_m, σ_m), 1)`` in
physical units, differentiable in φ and z.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
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

from .nn import ConvDecoder, ConvEncoder, ResidualMLP

__all__ = ["PSPGen"]

_PYRO_NAME = "pspgen"
_MIN_SCALE = 1e-4


# --------------------------------------------------------------------------- data access
class _Pairs:
    """Minibatches of (φ, x[, m]) from tensors or a lazily opened xarray Dataset.

    A Dataset is read through :func:`psppyro.data.to_torch` (a chunk-aware lazy loader whose order
    depends only on (seed, epoch)), never loaded as a whole: a 128² set trains in bounded memory.
    """

    def __init__(self, name, data, need_m):
        self.name = name
        self.dataset = None
        self.fields = ("phi", "x") + (("m",) if need_m else ())
        if hasattr(data, "data_vars"):
            for var in self.fields:
                if var not in data.variables:
                    raise ValueError(
                        f"{name} must hold a variable {var!r}; it has {list(data.variables)}"
                    )
            self.dataset = data
            self.n = int(data.sizes["sample"])
            self.tensors = None
        else:
            if isinstance(data, dict):
                parts = [data.get(f) for f in self.fields]
            elif isinstance(data, (tuple, list)):
                parts = list(data)
                if len(parts) < len(self.fields):
                    raise ValueError(
                        f"{name} must be ({', '.join(self.fields)}), got {len(parts)} parts"
                    )
                parts = parts[: len(self.fields)]
            else:
                raise TypeError(
                    f"{name} must be an xarray.Dataset, a dict with {'/'.join(self.fields)} or a "
                    f"tuple ({', '.join(self.fields)}), got {type(data).__name__}"
                )
            if any(p is None for p in parts):
                raise ValueError(f"{name} must provide {', '.join(self.fields)}")
            self.tensors = [as_tensor(f"{name}[{i}]", p) for i, p in enumerate(parts)]
            self.n = int(self.tensors[0].shape[0])
            for t in self.tensors[1:]:
                if t.shape[0] != self.n:
                    raise ValueError(
                        f"{name}: {', '.join(self.fields)} must have the same number of samples, "
                        f"got {[tuple(p.shape) for p in self.tensors]}"
                    )
        if self.n == 0:
            raise ValueError(f"{name} holds no samples")
        self.has_m = need_m

    def batches(self, batch_size, seed, epoch, shuffle, device, dtype):
        """Yield [phi, x(, m)] minibatches; the order depends only on (seed, epoch)."""
        if self.dataset is not None:
            from psppyro.data import to_torch

            loader = to_torch(self.dataset, self.fields, batch_size=batch_size, shuffle=shuffle,
                              seed=seed, dtype=dtype, device=device)
            loader.set_epoch(epoch)
            for batch in loader:
                yield [batch[f] for f in self.fields]
            return
        if shuffle:
            order = torch.randperm(self.n, generator=make_generator(derive_seed(seed, epoch)))
        else:
            order = torch.arange(self.n)
        for start in range(0, self.n, batch_size):
            idx = order[start : start + batch_size]
            yield [t[idx.to(t.device)].to(device=device, dtype=dtype) for t in self.tensors]

    def m_statistics(self):
        if self.dataset is not None:
            m = self.dataset["m"]
            mean = torch.as_tensor(m.mean("sample").values, dtype=torch.float64)
            std = torch.as_tensor(m.std("sample").values, dtype=torch.float64)
        else:
            m = self.tensors[2].to(torch.float64)
            mean = m.mean(0)
            std = m.std(0, correction=0) if m.shape[0] > 1 else torch.ones_like(mean)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return mean, std


# --------------------------------------------------------------------------- ELBO with terms
class _TermsTraceELBO(Trace_ELBO):
    """Trace_ELBO that also records the last particle's terms: rec-x, rec-m, un-weighted KL."""

    def __init__(self, beta, **kwargs):
        super().__init__(**kwargs)
        self.beta = beta

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        kl = (guide_trace.nodes["z0"]["log_prob_sum"] - model_trace.nodes["z0"]["log_prob_sum"])
        kl = kl.detach()
        self.terms = {
            "rec_x": -model_trace.nodes["x"]["log_prob_sum"].item(),
            "rec_m": -model_trace.nodes["m"]["log_prob_sum"].item(),
            "kl": kl.item() / self.beta,
        }
        return loss, surrogate


# --------------------------------------------------------------------------- optimizer
class _ModuleAdam(pyro.optim.PyroOptim):
    """Adam over all parameters of one module as a single multi-tensor ``torch.optim.Adam``.

    ``pyro.optim.Adam`` builds one torch optimizer per parameter tensor, ~100 of them here, and on
    a GPU that per-tensor bookkeeping costs more than the arithmetic. Same algorithm and defaults,
    one optimizer: SVI calls it with the parameters it captured (those of ``pyro.module``), and it
    steps all of the module's parameters.
    """

    def __init__(self, module, lr):
        super().__init__(torch.optim.Adam, {"lr": lr})
        self.optimizer = torch.optim.Adam(module.parameters(), lr=lr)

    def __call__(self, params, *args, **kwargs):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def get_state(self):
        return self.optimizer.state_dict()

    def set_state(self, state_dict):
        self.optimizer.load_state_dict(state_dict)


# --------------------------------------------------------------------------- the model
class PSPGen(nn.Module):
    r"""PSP-GEN generative model p(x, m | φ) with amortized guides, as a Pyro model/guide pair.

    Args:
        d_phi (int): number of process parameters.
        x_shape (tuple[int, ...]): microstructure shape, e.g. ``(36, 36)``.
        d_m (int): number of properties.
        d_z0 (int): size of the stochastic latent z0 (the design latent, ``latent_dim``).
        d_z1 (int): size of the process latent z1 = g(φ).
        beta (float): weight of the KL term (β-VAE), > 0; default 2 as in the paper.
        architecture (str): ``"mlp"`` (residual MLPs) or ``"conv"`` (periodic convolutional
            x-encoder and x-decoder; 2-D images only).
        phi_bounds: (d_phi, 2) lower/upper bounds of φ used to normalize φ to [−1, 1]; default the
            unit box [0, 1]^d_phi.
        m_mean, m_std: (d_m,) property standardization; default 0 and 1. :meth:`fit` sets them from
            the training data the first time it runs.
        width (int): width of the x-branches and joint heads (decoder: 2·width).
        small_width (int): width of g and the m- and φ-branches (property head: 2·small_width).
        phi_names, m_names (list[str], optional): names stored with the model (for reports).
        seed (int): seed of the initial network weights (drawn in a forked RNG, so torch's global
            random state is left as it was); the same seed gives the same initial model.

    Raises:
        ValueError / TypeError: bad sizes, β ≤ 0, an unknown architecture, bad bounds.

    Example::

        >>> import torch
        >>> gen = PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2, phi_bounds=[[1.0, 9.0], [0.2, 2.0]])
        >>> d = gen.property_dist(torch.tensor([5.0, 1.0]), torch.zeros(4, 3))
        >>> d.batch_shape, d.event_shape
        (torch.Size([4]), torch.Size([2]))
    """

    def __init__(
        self,
        d_phi,
        x_shape,
        d_m,
        d_z0,
        d_z1,
        beta=2.0,
        architecture="mlp",
        phi_bounds=None,
        m_mean=None,
        m_std=None,
        width=256,
        small_width=64,
        phi_names=None,
        m_names=None,
        seed=0,
    ):
        seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 7))
            self._construct(d_phi, x_shape, d_m, d_z0, d_z1, beta, architecture, phi_bounds,
                            m_mean, m_std, width, small_width, phi_names, m_names)

    def _construct(self, d_phi, x_shape, d_m, d_z0, d_z1, beta, architecture, phi_bounds, m_mean,
                   m_std, width, small_width, phi_names, m_names):
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
        check_choice("architecture", architecture, ("mlp", "conv"))
        if architecture == "conv" and len(x_shape) != 2:
            raise ValueError(f"architecture='conv' needs 2-D images, got x_shape={x_shape}")
        self.d_phi, self.x_shape, self.d_m = d_phi, x_shape, d_m
        self.d_z0, self.d_z1 = d_z0, d_z1
        self.beta = float(beta)
        self.architecture = architecture
        self.width, self.small_width = width, small_width
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
        # generative networks
        self.process_net = ResidualMLP(d_phi, d_z1, small_width, 2)  # g: φ_n → z1
        if architecture == "mlp":
            self.decoder_x = ResidualMLP(d_z, d_x, 2 * width, 2)
        else:
            self.decoder_x = ConvDecoder(d_z, x_shape)
        self.decoder_m = ResidualMLP(d_z, 2 * d_m, 2 * small_width, 2)
        # labelled guide q(z0 | x, m, φ): three branches + joint head
        self.enc_x = self._x_branch(d_z0)
        self.enc_m = ResidualMLP(d_m, d_z0, small_width, 1)
        self.enc_phi = ResidualMLP(d_phi, d_z0, small_width, 1)
        self.enc_head = ResidualMLP(3 * d_z0, 2 * d_z0, width, 1)
        # unlabelled guide q(z0 | x, φ): its own branches + head
        self.enc_u_x = self._x_branch(d_z0)
        self.enc_u_phi = ResidualMLP(d_phi, d_z0, small_width, 1)
        self.enc_u_head = ResidualMLP(2 * d_z0, 2 * d_z0, width, 1)
        # fit() validates each batch once, so inside it model/guide skip their own checks.
        self._inside_fit = False

    def _x_branch(self, d_out):
        if self.architecture == "mlp":
            return ResidualMLP(self.d_x, d_out, self.width, 2)
        return ConvEncoder(self.x_shape, d_out, self.width)

    # ------------------------------------------------------------------ configuration
    @property
    def latent_dim(self):
        """int: d_z0, the standard-normal nuisance latent of the design protocol."""
        return self.d_z0

    def config(self):
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
        }

    @classmethod
    def from_dataset(cls, ds, d_z0=None, d_z1=None, beta=2.0, architecture="mlp", **kwargs):
        """Build a model sized for a triad dataset (``xarray.Dataset``, see ``psppyro.data``).

        d_φ, the image shape and d_m come from the dataset's dimensions. Defaults follow the paper:
        ``d_z0 = round(0.05 · number of pixels)``, ``d_z1`` = number of principal components of the
        images' two-point correlations explaining 90 % of their variance (≤ 2000 images, seeded).
        φ bounds come from the process configuration in ``ds.attrs["process"]``
        (``psppyro.process.from_config``); without it, from the φ range in the data. m
        standardization is set by :meth:`fit`.

        Args:
            ds (xarray.Dataset): with dims ``sample, phi_dim, y, x[, m_dim]``.
            d_z0, d_z1 (int, optional): override the defaults.
            beta (float): KL weight.
            architecture (str): ``"mlp"`` or ``"conv"``.
            **kwargs: passed to the constructor (``width``, ``small_width``, ``seed``).

        Returns:
            PSPGen

        Example::

            >>> import numpy as np, xarray as xr
            >>> rng = np.random.default_rng(0)
            >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), rng.uniform(size=(10, 2))),
            ...                  "x": (("sample", "y", "x"), (rng.uniform(size=(10, 8, 8)) < .5)
            ...                        .astype("uint8")),
            ...                  "m": (("sample", "m_dim"), rng.normal(size=(10, 2)))})
            >>> PSPGen.from_dataset(ds, d_z1=2).d_z0
            3
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
            **kwargs,
        )

    # ------------------------------------------------------------------ pieces
    def _normalize_phi(self, phi):
        lo, hi = self.phi_bounds[:, 0], self.phi_bounds[:, 1]
        return 2.0 * (phi - lo) / (hi - lo) - 1.0

    def _flat_x(self, x):
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], self.d_x)

    def _x_features(self, branch, x):
        if self.architecture == "mlp":
            return branch(self._flat_x(x))
        return branch(x)

    def _decode_x(self, h):
        logits = self.decoder_x(h)
        if self.architecture == "mlp":
            logits = logits.reshape(*h.shape[:-1], *self.x_shape)
        return logits

    def _property_params(self, h):
        out = self.decoder_m(h)
        loc_std, raw = out[..., : self.d_m], out[..., self.d_m :]
        scale_std = nn.functional.softplus(raw) + 1e-3
        return self.m_mean + self.m_std * loc_std, self.m_std * scale_std

    @staticmethod
    def _gaussian(out, d):
        return out[..., :d], nn.functional.softplus(out[..., d:]) + _MIN_SCALE

    def _encode_labelled(self, phi_n, x, m):
        m_n = (m - self.m_mean) / self.m_std
        feats = torch.cat(
            [self._x_features(self.enc_x, x), self.enc_m(m_n), self.enc_phi(phi_n)], -1
        )
        return self._gaussian(self.enc_head(feats), self.d_z0)

    def _encode_unlabelled(self, phi_n, x):
        feats = torch.cat([self._x_features(self.enc_u_x, x), self.enc_u_phi(phi_n)], -1)
        return self._gaussian(self.enc_u_head(feats), self.d_z0)

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

    def _check_batch(self, phi, x, m, m_mask, weight):
        if self._inside_fit:
            if m is not None and m_mask is not None:
                m = torch.where(m_mask[:, None], m, torch.zeros_like(m))
            return phi, x, m, m_mask, weight, phi.shape[0]
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
                check_finite("m (labelled rows)", m[m_mask])
                # Unlabelled rows may hold NaN; zero them so no NaN reaches a gradient.
                m = torch.where(m_mask[:, None], m, torch.zeros_like(m))
            else:
                check_finite("m", m)
        if weight is not None:
            weight = as_tensor("weight", weight, dtype=phi.dtype, device=phi.device)
            if tuple(weight.shape) != (n,) or not bool((weight > 0).all()):
                raise ValueError(f"weight must be a positive tensor of shape ({n},)")
        return phi, x, m, m_mask, weight, n

    # ------------------------------------------------------------------ Pyro model and guide
    def model(self, phi, x=None, m=None, m_mask=None, weight=None):
        """The generative model p(x, m | φ) for a batch (one batch dim, plate "data").

        Args:
            phi: (n, d_phi) process parameters (physical units).
            x: ``(n, *x_shape)`` binary images to condition on, or None to sample them.
            m: (n, d_m) properties (physical units) to condition on, or None to sample them.
            m_mask: (n,) bool, True where m is observed; other rows have the "m" site masked out
                (their m entries are ignored, NaN allowed).
            weight: (n,) positive per-sample ELBO weights (minibatch scaling used by :meth:`fit`).

        Returns:
            dict with ``z0``, ``z1``, ``x`` and ``m`` tensors.

        Example::

            >>> import pyro, torch
            >>> gen = PSPGen(2, (4, 4), 1, 2, 1)
            >>> tr = pyro.poutine.trace(gen.model).get_trace(torch.rand(3, 2))
            >>> tr.nodes["x"]["value"].shape, tr.nodes["z0"]["scale"]
            (torch.Size([3, 4, 4]), 2.0)
        """
        pyro.module(_PYRO_NAME, self)
        phi, x, m, m_mask, weight, n = self._check_batch(phi, x, m, m_mask, weight)
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
            loc, scale = self._property_params(h)
            masked = m_mask is not None and m is not None
            with poutine.mask(mask=m_mask) if masked else nullcontext():
                m = pyro.sample("m", dist.Normal(loc, scale).to_event(1), obs=m)
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
        pyro.module(_PYRO_NAME, self)
        if x is None:
            raise ValueError("x must be given to the guide (it encodes x), got None")
        phi, x, m, m_mask, weight, n = self._check_batch(phi, x, m, m_mask, weight)
        phi_n = self._normalize_phi(phi)
        if m is None:
            loc, scale = self._encode_unlabelled(phi_n, x)
        elif m_mask is None:
            loc, scale = self._encode_labelled(phi_n, x, m)
        else:
            # Each row goes through its own encoder only (index_copy is differentiable).
            lab, unl = m_mask.nonzero().squeeze(-1), (~m_mask).nonzero().squeeze(-1)
            loc, scale = phi_n.new_zeros(n, self.d_z0), phi_n.new_ones(n, self.d_z0)
            if lab.numel():
                loc_l, scale_l = self._encode_labelled(phi_n[lab], x[lab], m[lab])
                loc, scale = loc.index_copy(0, lab, loc_l), scale.index_copy(0, lab, scale_l)
            if unl.numel():
                loc_u, scale_u = self._encode_unlabelled(phi_n[unl], x[unl])
                loc, scale = loc.index_copy(0, unl, loc_u), scale.index_copy(0, unl, scale_u)
        with pyro.plate("data", n, dim=-1), poutine.scale(scale=1.0 if weight is None else weight):
            with poutine.scale(scale=self.beta):
                return pyro.sample("z0", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ design protocol
    def property_dist(self, phi, z):
        """p(m | φ, z0) = N(μ_m, diag σ_m²) in physical units; differentiable in ``phi`` and ``z``.

        Args:
            phi: (..., d_phi) process parameters.
            z: (..., d_z0) values of the standard-normal latent z0.

        Returns:
            torch.distributions.Independent: batch shape broadcast(phi.shape[:-1], z.shape[:-1]),
            event shape (d_m,).

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
        return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)

    # ------------------------------------------------------------------ prediction
    def _standard_normal(self, shape, seed, device, dtype):
        g = make_generator(seed, device=device)
        return torch.randn(shape, generator=g, device=device, dtype=dtype)

    @torch.no_grad()
    def predict_properties(self, phi, num_samples=1000, seed=None):
        """Samples of the forward process–property density p(m | φ) = ∫ p(m | z0, g(φ)) N(z0) dz0.

        Args:
            phi: (..., d_phi) process parameters.
            num_samples (int): samples per φ.
            seed (int, optional): seed (None: drawn from torch's global generator).

        Returns:
            Tensor: (num_samples, ..., d_m) in physical units.

        Example::

            >>> gen = PSPGen(2, (4, 4), 2, 3, 1)
            >>> gen.predict_properties(torch.rand(5, 2), num_samples=10, seed=0).shape
            torch.Size([10, 5, 2])
        """
        phi = self._check_phi(phi)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        batch = phi.shape[:-1]
        z = self._standard_normal((num_samples, *batch, self.d_z0), seed, phi.device, phi.dtype)
        d = self.property_dist(phi, z)
        eps = self._standard_normal(d.mean.shape, None if seed is None else derive_seed(seed, 1),
                                    phi.device, phi.dtype)
        return d.mean + d.stddev * eps

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
        d = self.property_dist(phi, loc + scale * eps)
        eps_m = self._standard_normal(
            d.mean.shape, None if seed is None else derive_seed(seed, 1), loc.device, loc.dtype
        )
        return d.mean + d.stddev * eps_m

    @torch.no_grad()
    def posterior_mean_property(self, phi, x, num_samples=100, seed=None):
        """E[m | φ, x] = E_{q(z0|x,φ)}[μ_m(z0, g(φ))], a Monte Carlo average over the guide.

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
        return self.property_dist(phi, loc + scale * eps).mean.mean(0)

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
            gen = cls(**json.loads(blob["config"]))
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
        epochs=500,
        batch_size=50,
        lr=1e-3,
        unlabelled=None,
        patience=60,
        lr_patience=20,
        lr_factor=1.0 / 3.0,
        checkpoint_dir=None,
        checkpoint_every=50,
        resume=None,
        seed=0,
        progress=True,
        device=None,
        guide_x_weight=0.01,
    ):
        r"""Train with ``pyro.infer.SVI`` + ``Trace_ELBO`` + Adam on minibatches.

        Each step draws a labelled minibatch (and, with ``unlabelled``, an unlabelled one sized so
        that both sets are traversed once per epoch). Row weights make the step loss an unbiased
        estimate of the full-data negative β-ELBO divided by the number of pairs (labelled +
        unlabelled), so losses compare across batch sizes. The monitored loss is the validation loss
        (its own random stream, not disturbing the training one) when ``val`` is given (evaluated
        with the same fixed seed every epoch, so it is a deterministic function of the weights),
        else the epoch's mean training loss. When it has not improved for ``lr_patience`` epochs the
        learning rate is multiplied by ``lr_factor`` (÷3); after ``patience`` epochs without
        improvement training stops. The best weights are restored at the end.

        Args:
            train: labelled pairs — ``xarray.Dataset`` (phi, x, m; read lazily, one minibatch at a
                time), a dict with ``phi``, ``x``, ``m`` or a tuple ``(phi, x, m)``.
            val: labelled validation pairs, same forms, or None.
            epochs (int): maximal number of epochs (counted from 0, including resumed ones).
            batch_size (int): labelled pairs per step.
            lr (float): initial Adam learning rate.
            unlabelled: (φ, x) pairs without m (Dataset or ``(phi, x)``), or None.
            patience (int): early-stopping patience in epochs.
            lr_patience (int): epochs without improvement before the learning rate drops.
            lr_factor (float): learning-rate multiplier at a drop, in (0, 1).
            checkpoint_dir (str, optional): write ``epoch_XXXX.pt`` there every ``checkpoint_every``
                epochs and at the end (model, optimizer, RNG states, history, epoch).
            checkpoint_every (int): checkpoint period in epochs.
            resume: a checkpoint path, or True for the newest one in ``checkpoint_dir``.
            seed (int): seeds Pyro (``pyro.set_rng_seed``) and the per-epoch shuffles.
            progress (bool): show a tqdm bar with loss, rec-x, rec-m and KL.
            device: move the model there first (e.g. ``"cuda"``); batches follow the model.
            guide_x_weight (float): weight of the labelled pairs' m-hidden copies that train the
                x-only guide q(z0 | x, φ); 0 turns them off (then E[m | φ, x] is untrained
                unless ``unlabelled`` is given).

        Returns:
            dict of lists: ``epoch``, ``loss``, ``rec_x``, ``rec_m``, ``kl`` (un-weighted KL; loss =
            rec_x + rec_m + β·kl per pair), ``val_loss`` (NaN without val), ``lr``, ``seconds``;
            plus ``best_epoch`` (int) and ``stopped_early`` (bool).

        Raises:
            ValueError / TypeError: bad arguments or data.

        Example::

            >>> import torch
            >>> g = torch.Generator().manual_seed(0)
            >>> phi = torch.rand(20, 1, generator=g)
            >>> x = (torch.rand(20, 4, 4, generator=g) < phi[:, :, None]).float()
            >>> m = x.mean((-1, -2))[:, None]
            >>> gen = PSPGen(1, (4, 4), 1, 2, 1, width=16, small_width=8)
            >>> hist = gen.fit((phi, x, m), epochs=2, batch_size=10, progress=False)
            >>> len(hist["loss"])
            2
        """
        from tqdm.auto import tqdm

        epochs, batch_size, patience, lr_patience, checkpoint_every = (
            check_int(name, value, minimum=1)
            for name, value in (
                ("epochs", epochs),
                ("batch_size", batch_size),
                ("patience", patience),
                ("lr_patience", lr_patience),
                ("checkpoint_every", checkpoint_every),
            )
        )
        check_positive("lr", lr)
        check_interval("lr_factor", lr_factor, 0.0, 1.0)
        check_positive("guide_x_weight", guide_x_weight, allow_zero=True)
        seed = check_seed("seed", seed)  # a Python int: it is stored in the checkpoints
        if device is not None:
            self.to(device)
        dtype, device = self._param_like()
        labelled = _Pairs("train", train, need_m=True)
        validation = _Pairs("val", val, need_m=True) if val is not None else None
        extra = _Pairs("unlabelled", unlabelled, need_m=False) if unlabelled is not None else None
        if not bool(self.m_stats_fitted):
            mean, std = labelled.m_statistics()
            self.m_mean.copy_(mean.to(self.m_mean))
            self.m_std.copy_(std.to(self.m_std))
            self.m_stats_fitted.fill_(True)

        n_l = labelled.n
        n_u = extra.n if extra is not None else 0
        n_total = n_l + n_u
        steps = math.ceil(n_l / batch_size)
        batch_u = math.ceil(n_u / steps) if n_u else 0  # one pass over each set per epoch

        history = {k: [] for k in ("epoch", "loss", "rec_x", "rec_m", "kl", "val_loss", "lr",
                                   "seconds")}
        state = {"epoch": 0, "lr": float(lr), "best": math.inf, "best_epoch": -1,
                 "since_best": 0, "since_drop": 0, "best_state": None}
        optim = _ModuleAdam(self, float(lr))
        ckpt_path = _resolve_resume(resume, checkpoint_dir)
        if ckpt_path is not None:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
            if json.loads(ckpt["config"]) != self.config():
                raise ValueError(
                    f"resume: checkpoint {str(ckpt_path)!r} was written by a model with config "
                    f"{ckpt['config']}, this model has {json.dumps(self.config())}"
                )
            self.load_state_dict(ckpt["state_dict"])
            optim.set_state(ckpt["optim"])
            history = ckpt["history"]
            state = ckpt["state"]
            seed = ckpt["seed"]
            pyro.util.set_rng_state(ckpt["rng"])
            if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        else:
            pyro.set_rng_seed(seed)

        elbo = _TermsTraceELBO(self.beta)
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)

        with pyro.get_param_store().scope(), _inside_fit(self):
            svi = SVI(self.model, self.guide, optim, loss=elbo)
            bar = tqdm(range(state["epoch"], epochs), disable=not progress, desc="PSP-GEN",
                       initial=state["epoch"], total=epochs)
            stopped = False
            for epoch in bar:
                t0 = time.perf_counter()
                optim.set_lr(state["lr"])
                stream_l = labelled.batches(batch_size, derive_seed(seed, 2), epoch, True, device,
                                            dtype)
                stream_u = (extra.batches(batch_u, derive_seed(seed, 3), epoch, True, device, dtype)
                            if n_u else iter(()))
                sums = {"loss": 0.0, "rec_x": 0.0, "rec_m": 0.0, "kl": 0.0}
                for batch_l in stream_l:
                    args = self._training_batch(batch_l, next(stream_u, None), n_l, n_u, n_total,
                                                guide_x_weight)
                    sums["loss"] += svi.step(*args)
                    for k in ("rec_x", "rec_m", "kl"):
                        sums[k] += elbo.terms[k]
                means = {k: v / steps for k, v in sums.items()}
                val_loss = (
                    self._evaluate(validation, batch_size, derive_seed(seed, 1), device, dtype)
                    if validation is not None else math.nan
                )
                monitored = val_loss if validation is not None else means["loss"]
                history["epoch"].append(epoch)
                for k, v in means.items():
                    history[k].append(v)
                history["val_loss"].append(val_loss)
                history["lr"].append(state["lr"])
                history["seconds"].append(time.perf_counter() - t0)
                if monitored < state["best"]:
                    state.update(best=monitored, best_epoch=epoch, since_best=0, since_drop=0)
                    state["best_state"] = {k: v.detach().clone() for k, v in
                                           self.state_dict().items()}
                else:
                    state["since_best"] += 1
                    state["since_drop"] += 1
                    if state["since_drop"] >= lr_patience:
                        state["lr"] *= lr_factor
                        state["since_drop"] = 0
                state["epoch"] = epoch + 1
                bar.set_postfix(loss=f"{means['loss']:.4g}", rec_x=f"{means['rec_x']:.4g}",
                                rec_m=f"{means['rec_m']:.3g}", kl=f"{means['kl']:.3g}",
                                val=f"{val_loss:.4g}", lr=f"{state['lr']:.2g}")
                stopped = state["since_best"] >= patience
                last = stopped or epoch + 1 == epochs
                if ckpt_dir is not None and ((epoch + 1) % checkpoint_every == 0 or last):
                    self._write_checkpoint(ckpt_dir / f"epoch_{epoch + 1:04d}.pt", optim, history,
                                           state, seed, device)
                if stopped:
                    break
            bar.close()
        if state["best_state"] is not None:
            self.load_state_dict(state["best_state"])
        history = {k: list(v) for k, v in history.items()}
        history["best_epoch"] = state["best_epoch"]
        history["stopped_early"] = bool(stopped)
        return history

    def _training_batch(self, batch_l, batch_u, n_l, n_u, n_total, guide_x_weight):
        # One SVI batch: labelled rows, their m-hidden copies (x-only guide), unlabelled rows.
        phi, x, m = self._validated(*batch_l)
        b = phi.shape[0]
        w_l = phi.new_full((b,), n_l / (b * n_total))
        parts = [(phi, x, m, torch.ones(b, dtype=torch.bool, device=phi.device), w_l)]
        if guide_x_weight > 0:
            parts.append((phi, x, torch.zeros_like(m), torch.zeros_like(parts[0][3]),
                          w_l * guide_x_weight))
        if batch_u is not None:
            phi_u, x_u, _ = self._validated(*batch_u, None)
            bu = phi_u.shape[0]
            parts.append((phi_u, x_u, phi_u.new_zeros(bu, self.d_m),
                          torch.zeros(bu, dtype=torch.bool, device=phi.device),
                          phi_u.new_full((bu,), n_u / (bu * n_total))))
        return tuple(torch.cat(column) for column in zip(*parts))

    def _validated(self, phi, x, m):
        inside, self._inside_fit = self._inside_fit, False
        try:
            phi, x, m, _, _, _ = self._check_batch(phi, x, m, None, None)
        finally:
            self._inside_fit = inside
        return phi, x, m

    def _evaluate(self, pairs, batch_size, seed, device, dtype):
        # Mean negative β-ELBO per labelled pair, with its own fixed random stream.
        devices = [device] if device.type == "cuda" else []
        total = 0.0
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            elbo = Trace_ELBO()
            for batch in pairs.batches(batch_size, 0, 0, False, device, dtype):
                phi, x, m = self._validated(*batch)
                w = torch.full((phi.shape[0],), 1.0 / pairs.n, device=device, dtype=dtype)
                total += elbo.loss(self.model, self.guide, phi, x, m, None, w)
        return total

    def _write_checkpoint(self, path, optim, history, state, seed, device):
        from psppyro import __version__

        blob = {
            "config": json.dumps(self.config()),
            "version": __version__,
            "state_dict": self.state_dict(),
            "optim": optim.get_state(),
            "rng": pyro.util.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": history,
            "state": state,
            "seed": seed,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)


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


class _inside_fit:
    # Context manager: model/guide trust fit's validated batches (see PSPGen.__init__).
    def __init__(self, gen):
        self.gen = gen

    def __enter__(self):
        self.gen._inside_fit = True

    def __exit__(self, *exc):
        self.gen._inside_fit = False


def _resolve_resume(resume, checkpoint_dir):
    if resume is None or resume is False:
        return None
    if resume is True:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (where to look for epoch_*.pt)")
        found = sorted(Path(checkpoint_dir).glob("epoch_*.pt"))
        if not found:
            raise ValueError(f"resume=True: no epoch_*.pt checkpoint in {str(checkpoint_dir)!r}")
        return found[-1]
    path = Path(resume)
    if not path.is_file():
        raise ValueError(f"resume must be a checkpoint file, True or None, got {str(resume)!r}")
    return path


def _bounds_from_dataset(ds):
    # φ bounds from the process configuration stored with the data, else the data's own range.
    if "process" in ds.attrs:
        from psppyro.process import from_config

        return from_config(json.loads(ds.attrs["process"])).phi_bounds
    phi = torch.as_tensor(ds["phi"].values, dtype=torch.float64)
    lo, hi = phi.min(0).values, phi.max(0).values
    hi = torch.where(hi > lo, hi, lo + 1.0)
    return torch.stack([lo, hi], -1)
