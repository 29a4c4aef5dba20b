r"""VAE-Regression with a (multimodal) conditional prior: forward prediction and one-shot inversion.

Sardeshmukh et al. model a microstructure x (binary, 2-D or 3-D) and its property vector c as

.. math::

    p(c)\, p(z \mid c)\, p(x \mid z), \qquad
    p(z \mid c) = \sum_{k=1}^K \pi_k(c)\,
        \mathcal N\big(z;\ \mu_k(c), \operatorname{diag}\sigma_k^2(c)\big),

with a *generator* network for (π, μ, σ) (K = 1: a Gaussian prior), a decoder for p(x | z) and a
factorized variational posterior q(c, z | x) = q(c | x) q(z | x) whose *regressor* q(c | x) and
*encoder* q(z | x) are diagonal Gaussians sharing one convolutional trunk. The paper's loss (its
eq. 4) per microstructure is

.. math::

    \mathcal L = -w_c \log q(c \mid x) + w_x\,\mathcal L_{\rm style}(x, \hat x)
        - w_z \log \sum_k \pi_k(\tilde c)\, e^{-\mathrm{KL}(q(z|x)\,\|\,\mathcal N_k(\tilde c))},
    \qquad \tilde c \sim q(c \mid x),\ \hat x = \mathrm{dec}(\tilde z),\ \tilde z \sim q(z \mid x),

where the last term is the Hershey–Olsen (2007) variational approximation of the intractable
KL(q ‖ Σ_k π_k N_k) (:func:`mixture_kl_hershey_olsen`; exact for K = 1) and ``c̃`` is one
reparameterized draw of the regressor, which links the VAE and the regressor. The properties are
standardized with the training mean and standard deviation (stored in the model). The style loss
is one of :mod:`psppyro.models.style`: Gram matrices of a fixed seeded feature bank on the 2-D
slices along every axis (``"gram"``, the stand-in for the paper's VGG19 Gram loss, which needs
pretrained weights we cannot download), slice two-point correlations (``"two_point"``) or the
pixel-wise Bernoulli likelihood (``"bernoulli"``). Because the three terms live on different
scales the paper normalizes them (appendix A); here ``w_x`` defaults to 1 for ``"gram"`` and
``"two_point"`` (whose definitions are scaled to order one) and to 100 / (number of pixels) for
``"bernoulli"`` (100 × the mean per-pixel NLL; ``style_loss`` scales the other two by
:data:`~psppyro.models.style.STYLE_SCALES`); ``w_c = 10`` and ``w_z = 1`` are the paper's weights.

**Pyro model and guide.** :meth:`VAERegression.model` and :meth:`VAERegression.guide` state the
same generative story for :class:`pyro.infer.SVI` with ``Trace_ELBO``: c ~ N(0, I) (standardized,
observed when given), z ~ MixtureSameFamily(π, N(μ_k, σ_k)) conditioned on the *observed* c, x from
the reconstruction term (``Bernoulli`` or a ``pyro.factor`` of the style loss), plus the auxiliary
regression term ``w_c log q(c | x)`` as a ``pyro.factor`` (as the classification term of
Kingma et al. 2014). There the mixture KL is estimated by Monte Carlo; :meth:`~VAERegression.loss`
and :meth:`~VAERegression.fit` use the paper's eq. 4 with the Hershey–Olsen term.

**Inverse.** :meth:`VAERegression.inverse` evaluates the generator at a target c, decodes the mean
μ_k(c) of every component and thresholds the probabilities at ½ — one microstructure per
component, no optimization. ``refine_steps > 0`` then runs a short local search from those means
(the paper's "optimization seeded by the inverse"): Adam on z minimizing
``(E_q[c | dec(z)] − c)² + λ ‖(z − μ_k)/σ_k‖² / (2 d_z)`` with the model's own regressor on the
decoded probabilities as the forward model.

**Architecture** (paper appendix A, widths reduced by default for CPU budgets): trunk of ``levels``
periodic 3×3(×3) convolutions with 16, 32, 64, 128, 256 filters, LeakyReLU(0.2) and 2× max
pooling (as many levels as the image allows, down to side 2), a dense layer of ``width`` (paper
2048) and four two-layer heads (z mean, z log-variance, c mean, c log-variance; paper 1024 wide);
decoder dense 32 → 64 → coarse grid, nearest-neighbour 2× upsampling + 3×3 convolution per level
with LeakyReLU(0.2), a last convolution to one logit per voxel (resized to the image if the side is
not a multiple of 2^levels, as the paper's 48 → 51); generator: Gaussian = linear maps of c, mixture
= Dense(``prior_width`` = 8, tanh) → softmax π (K), means and log-variances (K · d_z).

:class:`RegressionCNN` is the regression-only baseline (the paper's "Reg-Only"): the same trunk and
regressor head trained with −log q(c | x) alone.

References:
    Sardeshmukh, A., Reddy, S., Gautham, B. P. and Bhattacharyya, P. Material microstructure design
    using VAE-Regression with multimodal prior. (seed paper; its appendix A gives the layers).
    Hershey, J. R. and Olsen, P. A. (2007). Approximating the Kullback Leibler divergence between
    Gaussian mixture models. ICASSP.
    Kingma, D. P., Rezende, D. J., Mohamed, S. and Welling, M. (2014). Semi-supervised learning with
    deep generative models. NeurIPS.

Example::

    >>> import torch
    >>> vae = VAERegression((8, 8, 8), latent_dim=4, components=2, width=32, seed=0)
    >>> out = vae.inverse(torch.tensor([[30.0]]))
    >>> out.images.shape, out.weights.shape
    (torch.Size([1, 2, 8, 8, 8]), torch.Size([1, 2]))
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from .._random import derive_seed
from .._validation import (
    as_tensor,
    check_choice,
    check_finite,
    check_int,
    check_positive,
    check_seed,
)
from .style import STYLE_LOSSES, FeatureBank, style_loss

__all__ = [
    "InverseResult",
    "RegressionCNN",
    "VAERegression",
    "gaussian_kl",
    "mixture_kl_hershey_olsen",
]


def gaussian_kl(q_loc: Tensor, q_scale: Tensor, p_loc: Tensor, p_scale: Tensor) -> Tensor:
    r"""KL(N(q_loc, diag q_scale²) ‖ N(p_loc, diag p_scale²)), summed over the last dim.

    .. math::

        \mathrm{KL} = \sum_i \log\frac{\sigma_{p,i}}{\sigma_{q,i}}
            + \frac{\sigma_{q,i}^2 + (\mu_{q,i}-\mu_{p,i})^2}{2\sigma_{p,i}^2} - \frac12

    Example::

        >>> z = torch.zeros(3)
        >>> float(gaussian_kl(z, torch.ones(3), z, torch.ones(3)))
        0.0
    """
    var_ratio = (q_scale / p_scale) ** 2
    return 0.5 * (var_ratio + ((q_loc - p_loc) / p_scale) ** 2 - 1.0 - var_ratio.log()).sum(-1)


def mixture_kl_hershey_olsen(
    q_loc: Tensor, q_scale: Tensor, log_pi: Tensor, p_loc: Tensor, p_scale: Tensor
) -> Tensor:
    r"""Hershey–Olsen approximation of KL(q ‖ Σ_k π_k N_k) for a Gaussian q.

    .. math:: \mathrm{KL}(q\,\|\,\textstyle\sum_k \pi_k N_k) \approx
              -\log \sum_k \pi_k \exp(-\mathrm{KL}(q\,\|\,N_k))

    (the variational approximation of Hershey & Olsen 2007 with a one-component f); exact for K = 1.

    Args:
        q_loc, q_scale (Tensor): ``(..., d)``.
        log_pi (Tensor): ``(..., K)`` log mixture weights.
        p_loc, p_scale (Tensor): ``(..., K, d)``.

    Returns:
        Tensor: ``(...)``.

    Example::

        >>> q = torch.zeros(1, 2)
        >>> p = q[:, None] + 1
        >>> kl = mixture_kl_hershey_olsen(q, q + 1, torch.zeros(1, 1), p, p)
        >>> round(float(kl), 4)
        1.0
    """
    kl_k = gaussian_kl(q_loc.unsqueeze(-2), q_scale.unsqueeze(-2), p_loc, p_scale)
    return -torch.logsumexp(log_pi - kl_k, dim=-1)


def _conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _levels(shape: tuple[int, ...], maximum: int) -> int:
    side, levels = min(shape), 0
    while levels < maximum and side // 2 >= 2:
        side //= 2
        levels += 1
    return levels


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3):
        raise ValueError(f"shape must be a tuple of 2 or 3 ints, got {shape!r}")
    return tuple(check_int("shape", s, minimum=4) for s in shape)


def _head(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class _Trunk(nn.Module):
    """Paper appendix A trunk: conv 3, LeakyReLU(0.2), max-pool 2 per level, dense ``width``."""

    def __init__(self, shape, channels, width):
        super().__init__()
        self.shape = shape
        ndim = len(shape)
        levels = _levels(shape, len(channels))
        layers, c_in = [], 1
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
        for c_out in channels[:levels]:
            layers += [_conv(ndim)(c_in, c_out, 3, padding=1, padding_mode="circular"),
                       nn.LeakyReLU(0.2), pool(2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        coarse = 1
        for s in shape:
            coarse *= s >> levels
        self.dense = nn.Sequential(nn.Linear(c_in * coarse, width), nn.ReLU())

    def forward(self, x):
        return self.dense(self.convs(x.reshape(-1, 1, *self.shape)).flatten(1))


class _Decoder(nn.Module):
    """Dense 32 → 64 → coarse grid, (upsample 2×, conv 3, LeakyReLU) per level, conv to logits."""

    def __init__(self, d_z, shape, channels):
        super().__init__()
        self.shape = shape
        ndim = len(shape)
        self.levels = _levels(shape, len(channels))
        self.coarse = tuple(s >> self.levels for s in shape)
        chans = list(channels[: max(self.levels, 1)])[::-1]
        self.c0 = chans[0]
        n_coarse = self.c0 * math.prod(self.coarse)
        self.dense = nn.Sequential(nn.Linear(d_z, 32), nn.LeakyReLU(0.2), nn.Linear(32, 64),
                                   nn.LeakyReLU(0.2), nn.Linear(64, n_coarse), nn.LeakyReLU(0.2))
        layers, c_in = [], self.c0
        for c_out in chans[: self.levels]:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       _conv(ndim)(c_in, c_out, 3, padding=1, padding_mode="circular"),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(_conv(ndim)(c_in, 1, 3, padding=1, padding_mode="circular"))
        self.convs = nn.Sequential(*layers)

    def forward(self, z):
        batch = z.shape[:-1]
        g = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, self.c0, *self.coarse)
        g = self.convs(g)
        if tuple(g.shape[2:]) != self.shape:
            g = nn.functional.interpolate(g, size=self.shape, mode="nearest")
        return g.reshape(*batch, *self.shape)


@dataclass
class InverseResult:
    """Microstructures decoded for target properties by :meth:`VAERegression.inverse`.

    Attributes:
        images: binary float tensor ``(T, K, *shape)``: one microstructure per target and component.
        weights: ``(T, K)`` mixture weights π_k(c) (each row sums to one).
        z: ``(T, K, d_z)`` the latent points decoded (the component means, refined if asked).
        predicted: ``(T, K, d_c)`` the model's own regressor mean on each decoded image.
    """

    images: Tensor
    weights: Tensor
    z: Tensor
    predicted: Tensor


def _check_xc(x, c, shape, d_c):
    x = as_tensor("x", x, dtype=torch.float32)
    if tuple(x.shape[1:]) != tuple(shape) or x.dim() != len(shape) + 1:
        raise ValueError(
            f"x must have shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if c is not None:
        c = as_tensor("c", c, dtype=torch.float32)
        if c.dim() == 1 and d_c == 1:
            c = c[:, None]
        if c.shape != (x.shape[0], d_c):
            raise ValueError(f"c must have shape ({x.shape[0]}, {d_c}), got {tuple(c.shape)}")
        check_finite("c", c)
    return x, c


def _fit(module, batch_loss, x, c, validation, epochs, batch_size, lr, betas, patience, seed,
         progress, desc):
    from tqdm.auto import tqdm

    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    patience = check_int("patience", patience, minimum=1)
    seed = check_seed("seed", seed)
    module.set_standardization(c)
    opt = torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(betas))
    history = {"train": [], "validation": [], "best_epoch": None}
    best, best_state, bad = math.inf, None, 0
    n = x.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 11))
        bar = tqdm(range(epochs), disable=not progress, desc=desc)
        for epoch in bar:
            module.train()
            perm = torch.randperm(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                loss = batch_loss(x[idx], c[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history["train"].append(total / n)
            module.eval()
            if validation is not None:
                with torch.no_grad():
                    xv, cv = validation
                    val = float(torch.cat([batch_loss(xv[i:i + 64], cv[i:i + 64])
                                           for i in range(0, xv.shape[0], 64)]).mean())
                history["validation"].append(val)
                if val < best:
                    best, best_state, bad = val, copy.deepcopy(module.state_dict()), 0
                    history["best_epoch"] = epoch
                else:
                    bad += 1
                bar.set_postfix(train=history["train"][-1], val=val)
                if bad >= patience:
                    break
            else:
                bar.set_postfix(train=history["train"][-1])
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


class _Standardized(nn.Module):
    def __init__(self, d_c):
        super().__init__()
        self.register_buffer("c_mean", torch.zeros(d_c))
        self.register_buffer("c_std", torch.ones(d_c))

    def set_standardization(self, c):
        self.c_mean.copy_(c.mean(0))
        self.c_std.copy_(c.std(0).clamp_min(1e-6) if c.shape[0] > 1 else torch.ones_like(c[0]))

    def _std(self, c):
        return (c - self.c_mean) / self.c_std


class RegressionCNN(_Standardized):
    """Regression-only baseline: the VAE-Regression trunk and regressor head, −log q(c|x) only.

    Args:
        shape (tuple): image shape, 2-D or 3-D.
        d_c (int): number of properties.
        width (int): dense width after the convolutions (paper 2048).
        channels (tuple): filters per convolution level.
        seed (int): seed of the initial weights.

    Raises:
        ValueError: on a bad shape or sizes.

    Example::

        >>> reg = RegressionCNN((8, 8), width=16, seed=0)
        >>> mean, sd = reg.predict(torch.zeros(3, 8, 8))
        >>> mean.shape, bool((sd > 0).all())
        (torch.Size([3, 1]), True)
    """

    def __init__(self, shape, d_c: int = 1, width: int = 256,
                 channels: tuple = (16, 32, 64, 128, 256), seed: int = 0):
        super().__init__(check_int("d_c", d_c, minimum=1))
        self.shape = _check_shape(shape)
        self.d_c = d_c
        width = check_int("width", width, minimum=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(check_seed("seed", seed), 7))
            self.trunk = _Trunk(self.shape, tuple(channels), width)
            self.c_loc = _head(width, width, d_c)
            self.c_logvar = _head(width, width, d_c)

    def regress(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Standardized (loc, scale) of q(c | x)."""
        h = self.trunk(x)
        return self.c_loc(h), (0.5 * self.c_logvar(h)).exp().clamp_min(1e-3)

    def loss(self, x: Tensor, c: Tensor) -> Tensor:
        """−log q(c | x) per sample (standardized c), ``(B,)``."""
        loc, scale = self.regress(x)
        return -dist.Normal(loc, scale).log_prob(self._std(c)).sum(-1)

    def fit(self, x, c, *, epochs: int = 50, batch_size: int = 8, lr: float = 5e-4,
            betas=(0.75, 0.999), validation=None, patience: int = 10, seed: int = 0,
            progress: bool = False) -> dict:
        """Train with Adam (the paper's settings by default); early stopping on ``validation``.

        Args:
            x (Tensor): ``(N, *shape)`` binary images.
            c (Tensor): ``(N, d_c)`` properties (original units).
            epochs, batch_size, lr, betas: optimizer settings.
            validation (tuple, optional): ``(x_val, c_val)``; the best validation state is kept and
                training stops after ``patience`` epochs without improvement.
            patience (int): early-stopping patience in epochs.
            seed (int): seed of the batch order.
            progress (bool): tqdm bar.

        Returns:
            dict: ``train`` and ``validation`` loss per epoch, ``best_epoch``.
        """
        x, c = _check_xc(x, c, self.shape, self.d_c)
        if validation is not None:
            validation = _check_xc(*validation, self.shape, self.d_c)
        return _fit(self, self.loss, x, c, validation, epochs, batch_size, lr, betas, patience,
                    seed, progress, "Reg-only CNN")

    @torch.no_grad()
    def predict(self, x, batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of q(c | x) in original units, each ``(B, d_c)``."""
        x, _ = _check_xc(x, None, self.shape, self.d_c)
        self.eval()
        out = [self.regress(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        loc = torch.cat([o[0] for o in out])
        scale = torch.cat([o[1] for o in out])
        return loc * self.c_std + self.c_mean, scale * self.c_std


class VAERegression(RegressionCNN):
    """VAE-Regression with a Gaussian (K = 1) or K-component Gaussian-mixture conditional prior.

    Args:
        shape (tuple): image shape, ``(ny, nx)`` or ``(n0, n1, n2)`` (each side ≥ 4).
        d_c (int): number of properties.
        latent_dim (int): d_z (paper 16).
        components (int): K, mixture components of p(z | c) (1 = Gaussian prior).
        reconstruction (str): ``"gram"``, ``"two_point"`` or ``"bernoulli"`` (module docstring).
        regression_weight (float): w_c (paper 10).
        kl_weight (float): w_z (paper 1).
        style_weight (float, optional): w_x; ``None`` = 1 for ``"gram"``/``"two_point"``,
            100 / (number of pixels) for ``"bernoulli"``.
        width (int): dense width of the trunk and heads.
        channels (tuple): filters per convolution level.
        prior_width (int): hidden width of the mixture generator (paper 8).
        bank_channels, bank_levels (int): size of the fixed feature bank of ``"gram"``.
        seed (int): seed of the initial weights and of the feature bank.

    Raises:
        ValueError: on a bad shape, size, weight or reconstruction name.

    Example::

        >>> vae = VAERegression((8, 8), latent_dim=3, components=2, width=16, seed=0)
        >>> x = torch.zeros(4, 8, 8); x[:, :, :4] = 1.0
        >>> terms = vae.loss_terms(x, torch.ones(4, 1))
        >>> sorted(terms)
        ['kl', 'regression', 'style', 'total']
    """

    def __init__(self, shape, d_c: int = 1, latent_dim: int = 16, components: int = 1,
                 reconstruction: str = "gram", regression_weight: float = 10.0,
                 kl_weight: float = 1.0, style_weight: float | None = None, width: int = 256,
                 channels: tuple = (16, 32, 64, 128, 256), prior_width: int = 8,
                 bank_channels: int = 8, bank_levels: int = 2, seed: int = 0):
        super().__init__(shape, d_c=d_c, width=width, channels=channels, seed=seed)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.components = check_int("components", components, minimum=1)
        check_choice("reconstruction", reconstruction, STYLE_LOSSES)
        self.reconstruction = reconstruction
        check_positive("regression_weight", regression_weight, allow_zero=True)
        check_positive("kl_weight", kl_weight, allow_zero=True)
        if style_weight is None:
            style_weight = 100.0 / math.prod(self.shape) if reconstruction == "bernoulli" else 1.0
        check_positive("style_weight", style_weight, allow_zero=True)
        self.weights = {"regression": float(regression_weight), "kl": float(kl_weight),
                        "style": float(style_weight)}
        seed = check_seed("seed", seed)
        self.seed = seed
        prior_width = check_int("prior_width", prior_width, minimum=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 8))
            self.z_loc = _head(width, width, latent_dim)
            self.z_logvar = _head(width, width, latent_dim)
            self.decoder = _Decoder(latent_dim, self.shape, tuple(channels))
            k = self.components
            if k == 1:
                self.prior_hidden = nn.Identity()
                d_h = d_c
            else:
                self.prior_hidden = nn.Sequential(nn.Linear(d_c, prior_width), nn.Tanh())
                d_h = prior_width
            self.prior_logits = nn.Linear(d_h, k) if k > 1 else None
            self.prior_loc = nn.Linear(d_h, k * latent_dim)
            self.prior_logvar = nn.Linear(d_h, k * latent_dim)
        self.bank = (FeatureBank(len(self.shape), bank_channels, bank_levels,
                                 seed=derive_seed(seed, 9))
                     if reconstruction == "gram" else None)

    # ------------------------------------------------------------------ networks
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(z_loc, z_scale, c_loc, c_scale)`` of q(z | x) and q(c | x) (c standardized)."""
        h = self.trunk(x)
        z_scale = (0.5 * self.z_logvar(h)).exp().clamp_min(1e-4)
        c_scale = (0.5 * self.c_logvar(h)).exp().clamp_min(1e-3)
        return self.z_loc(h), z_scale, self.c_loc(h), c_scale

    def prior(self, c_std: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Generator of p(z | c) at standardized c ``(B, d_c)``: ``log π (B, K)``, loc and scale
        ``(B, K, d_z)``; ``log π`` is a log-softmax (the weights sum to one)."""
        h = self.prior_hidden(c_std)
        k, d = self.components, self.latent_dim
        if self.prior_logits is None:
            log_pi = c_std.new_zeros(c_std.shape[0], 1)
        else:
            log_pi = torch.log_softmax(self.prior_logits(h), dim=-1)
        loc = self.prior_loc(h).reshape(-1, k, d)
        scale = (0.5 * self.prior_logvar(h)).exp().clamp_min(1e-4).reshape(-1, k, d)
        return log_pi, loc, scale

    def decode(self, z: Tensor) -> Tensor:
        """Logits of p(x | z), ``(..., *shape)``."""
        return self.decoder(z)

    # ------------------------------------------------------------------ losses
    def loss_terms(self, x: Tensor, c: Tensor) -> dict[str, Tensor]:
        """The three per-sample terms of the paper's eq. 4 and their weighted sum (``(B,)`` each).

        ``regression`` = −log q(c | x), ``style`` = the reconstruction loss of one reparameterized
        z ~ q(z | x), ``kl`` = the Hershey–Olsen KL to p(z | c̃) with c̃ ~ q(c | x) (reparameterized),
        ``total`` = w_c · regression + w_x · style + w_z · kl.
        """
        z_loc, z_scale, c_loc, c_scale = self.encode(x)
        regression = -dist.Normal(c_loc, c_scale).log_prob(self._std(c)).sum(-1)
        c_tilde = c_loc + c_scale * torch.randn_like(c_loc)
        log_pi, p_loc, p_scale = self.prior(c_tilde)
        kl = mixture_kl_hershey_olsen(z_loc, z_scale, log_pi, p_loc, p_scale)
        z = z_loc + z_scale * torch.randn_like(z_loc)
        style = style_loss(self.reconstruction, x, self.decode(z), bank=self.bank)
        w = self.weights
        total = w["regression"] * regression + w["style"] * style + w["kl"] * kl
        return {"regression": regression, "style": style, "kl": kl, "total": total}

    def loss(self, x: Tensor, c: Tensor) -> Tensor:
        """The paper's loss (eq. 4) per sample, ``(B,)`` (see :meth:`loss_terms`)."""
        return self.loss_terms(x, c)["total"]

    # ------------------------------------------------------------------ Pyro
    def _prior_dist(self, c_std):
        log_pi, loc, scale = self.prior(c_std)
        comp = dist.Normal(loc, scale).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=log_pi), comp)

    def model(self, x: Tensor, c: Tensor | None = None) -> None:
        """Pyro model: c ~ N(0, I) (standardized; observed if given), z ~ p(z | c), x | z.

        The auxiliary regression term w_c log q(c | x) enters as ``pyro.factor("regression")``
        when c is observed; a style reconstruction enters as ``pyro.factor("style")``.
        """
        pyro.module("vae_regression", self)
        batch = x.shape[0]
        c_std = None if c is None else self._std(c)
        with pyro.plate("data", batch):
            c_s = pyro.sample("c", dist.Normal(x.new_zeros(batch, self.d_c), 1.0).to_event(1),
                              obs=c_std)
            z = pyro.sample("z", self._prior_dist(c_s))
            logits = self.decode(z)
            if self.reconstruction == "bernoulli":
                pyro.sample("x", dist.Bernoulli(logits=logits).to_event(len(self.shape)), obs=x)
            else:
                pyro.factor("style", -self.weights["style"]
                            * style_loss(self.reconstruction, x, logits, bank=self.bank))
            if c_std is not None:
                loc, scale = self.regress(x)
                pyro.factor("regression", self.weights["regression"]
                            * dist.Normal(loc, scale).log_prob(c_std).sum(-1))

    def guide(self, x: Tensor, c: Tensor | None = None) -> None:
        """Pyro guide: z ~ q(z | x); c ~ q(c | x) when c is not observed."""
        pyro.module("vae_regression", self)
        z_loc, z_scale, c_loc, c_scale = self.encode(x)
        with pyro.plate("data", x.shape[0]):
            if c is None:
                pyro.sample("c", dist.Normal(c_loc, c_scale).to_event(1))
            pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))

    # ------------------------------------------------------------------ training / use
    def fit(self, x, c, *, epochs: int = 50, batch_size: int = 8, lr: float = 5e-4,
            betas=(0.75, 0.999), validation=None, patience: int = 10, seed: int = 0,
            progress: bool = False) -> dict:
        """Train on the paper's loss with Adam (lr 5e-4, β = (0.75, 0.999), batch 8 by default).

        Args: as :meth:`RegressionCNN.fit`.

        Returns:
            dict: ``train`` / ``validation`` loss per epoch and ``best_epoch``.

        Raises:
            ValueError: on shapes that do not match the model.

        Example::

            >>> vae = VAERegression((8, 8), latent_dim=2, width=8, seed=0)
            >>> x = (torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0)) > .5).float()
            >>> len(vae.fit(x, x.mean((1, 2))[:, None], epochs=2)["train"])
            2
        """
        x, c = _check_xc(x, c, self.shape, self.d_c)
        if validation is not None:
            validation = _check_xc(*validation, self.shape, self.d_c)
        return _fit(self, self.loss, x, c, validation, epochs, batch_size, lr, betas, patience,
                    seed, progress, f"VAE-Reg K={self.components}")

    def inverse(self, c, *, refine_steps: int = 0, refine_lr: float = 0.05,
                prior_weight: float = 1.0) -> InverseResult:
        """Decode the component means of p(z | c) for target properties ``c`` (one shot).

        Args:
            c: targets ``(T, d_c)`` (or ``(T,)`` when d_c = 1) in original units.
            refine_steps (int): steps of the optional local refinement from the means (0 = none).
            refine_lr (float): Adam step size of the refinement.
            prior_weight (float): λ, weight of the pull towards the component mean.

        Returns:
            InverseResult: binary images ``(T, K, *shape)``, weights, latent points, predictions.

        Raises:
            ValueError: on a bad shape or non-finite targets, negative steps.

        Example::

            >>> vae = VAERegression((8, 8), latent_dim=2, components=3, width=8, seed=0)
            >>> res = vae.inverse([1.0, 2.0], refine_steps=2)
            >>> res.images.shape, sorted(set(res.images.unique().tolist())) <= [0.0, 1.0]
            (torch.Size([2, 3, 8, 8]), True)
        """
        c = as_tensor("c", c, dtype=torch.float32)
        if c.dim() == 1 and self.d_c == 1:
            c = c[:, None]
        if c.dim() != 2 or c.shape[-1] != self.d_c:
            raise ValueError(f"c must have shape (T, {self.d_c}), got {tuple(c.shape)}")
        check_finite("c", c)
        refine_steps = check_int("refine_steps", refine_steps, minimum=0)
        check_positive("refine_lr", refine_lr)
        check_positive("prior_weight", prior_weight, allow_zero=True)
        self.eval()
        c_std = self._std(c)
        with torch.no_grad():
            log_pi, p_loc, p_scale = self.prior(c_std)
        z = p_loc.clone()
        if refine_steps:
            z.requires_grad_(True)
            opt = torch.optim.Adam([z], lr=refine_lr)
            for _ in range(refine_steps):
                probs = torch.sigmoid(self.decode(z))
                pred, _ = self.regress(probs.reshape(-1, *self.shape))
                pred = pred.reshape(*z.shape[:2], self.d_c)
                obj = ((pred - c_std[:, None]) ** 2).sum(-1) + prior_weight * (
                    ((z - p_loc) / p_scale) ** 2).sum(-1) / (2 * self.latent_dim)
                opt.zero_grad()
                obj.sum().backward()
                opt.step()
            z = z.detach()
        with torch.no_grad():
            images = (torch.sigmoid(self.decode(z)) > 0.5).float()
            pred, _ = self.regress(images.reshape(-1, *self.shape))
            pred = pred.reshape(*z.shape[:2], self.d_c) * self.c_std + self.c_mean
        return InverseResult(images=images, weights=log_pi.exp(), z=z, predicted=pred)
