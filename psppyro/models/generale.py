r"""The PSP-GEN paper's competitor: two-point statistics → PCA → sparse variational multi-output GP.

Generale et al. ("Inverse stochastic microstructure design", Acta Materialia 271, 119877, 2024;
and the NeurIPS 2023 AI4Mat workshop paper cited as [20] by PSP-GEN) model the PSP chain with
low-dimensional microstructure *features* instead of images:

1. **Two-point statistics.** Each binary image x (phase 1 indicator) is summarized by its periodic
   auto-correlation :math:`S_2(r) = \frac1N\sum_u x(u)\,x(u+r)`, computed by FFT
   (:func:`psppyro.process.statistics.two_point_correlation`).
2. **PCA.** The flattened :math:`S_2` of the training images are centred and projected on the
   principal components that explain 90 % of their variance (PSP-GEN's d_z1 uses the same number,
   :func:`~psppyro.models.two_point.components_for_fraction`); the scores
   :math:`s = V^\top (S_2 - \bar S_2)` are whitened by their standard deviations.
3. **Sparse variational multi-output GPs** (Hensman et al. 2015; the linear model of
   coregionalization, LMC): :math:`f_t(\cdot) = \sum_{q=1}^{Q} a_{qt}\, g_q(\cdot)` with independent
   latent GPs :math:`g_q` (ARD RBF kernels, M learned inducing points each, a full-rank Gaussian
   q(u) in natural parameters), trained on minibatches by the variational ELBO (gpytorch;
   natural-gradient steps on q(u), Adam on the hyperparameters). Two of them:

   - PS GP, φ (scaled to [0, 1]^{d_φ}) → PC scores s: :math:`s \mid φ \sim N(μ_s(φ), Σ_s(φ))` with
     :math:`Σ_s = \sum_q v_q(φ)\, a_q a_q^\top + \mathrm{diag}(σ^2_{s})` — the GP's epistemic
     variance plus the task noise, which here *is* the microstructure's randomness given φ;
   - SP GP, s → m (standardized):
     :math:`m \mid s \sim N(μ_m(s) + L_f(s)\, ε_f, \mathrm{diag}(σ^2_m))`
     with :math:`L_f L_f^\top` the latent function's predictive covariance at s.

The chain :class:`GeneraleChain` satisfies the design protocol (``docs/architecture.md`` § "The
design protocol") with the *GP sampling noise* as its nuisance latent:
:math:`z = (ε_s, ε_f) \sim N(0, I_{d_{pc} + d_m})`,
:math:`s = μ_s(φ) + L_s(φ)\, ε_s` (:math:`L_s L_s^\top = Σ_s`) and
``property_dist(phi, z)`` :math:`= N(μ_m(s) + L_f(s)\,ε_f,\ \mathrm{diag}\,σ_m^2)` in physical
units — so predictive uncertainty is propagated through both links, the density is
differentiable in φ, and every method of :func:`psppyro.design.infer_design` runs on it. The
competitor's own design step, a conditional normalizing flow for p(φ | m), is
:mod:`psppyro.design.conditional_flow`.

Public code of the authors (``agenerale/inverse-psp``, ``models/mogp.py``) uses gpytorch's
``LMCVariationalStrategy`` over ``VariationalStrategy`` with learned inducing locations and
ARD-RBF latent kernels; this module follows that structure (our code). GP arithmetic is float64;
results are returned in the dtype of φ.

Example::

    >>> import torch
    >>> from psppyro.models.generale import TwoPointPCA
    >>> g = torch.Generator().manual_seed(0)
    >>> x = (torch.rand(30, 8, 8, generator=g) < 0.5).double()
    >>> pca = TwoPointPCA(fraction=0.9).fit(x)
    >>> pca.transform(x).shape[1] == pca.n_components
    True
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.distributions import Independent, Normal

from .._random import derive_seed, make_generator
from .._validation import (
    as_tensor,
    check_binary,
    check_finite,
    check_int,
    check_interval,
    check_last_dim,
    check_paired_rows,
    check_positive,
    check_seed,
)
from ..process.statistics import two_point_correlation
from .two_point import components_for_fraction

__all__ = ["GeneraleChain", "SVMOGP", "TwoPointPCA", "two_point_features"]

_DTYPE = torch.float64


def two_point_features(x: torch.Tensor) -> torch.Tensor:
    """Flattened periodic two-point auto-correlation S2 of binary images (phase 1), by FFT.

    Args:
        x: binary images ``(n, ny, nx)`` (values 0/1).

    Returns:
        Tensor ``(n, ny·nx)`` float64; entry ``[i, a·nx + b]`` is S2 at lag (a, b).

    Raises:
        ValueError: ``x`` is not ``(n, ny, nx)`` or not binary.

    Example::

        >>> x = torch.zeros(1, 4, 4); x[0, :, :2] = 1.0      # vertical stripes
        >>> two_point_features(x)[0, :4].tolist()
        [0.5, 0.25, 0.0, 0.25]
    """
    x = as_tensor("x", x, dtype=_DTYPE)
    if x.dim() != 3:
        raise ValueError(f"x must have shape (n, ny, nx), got {tuple(x.shape)}")
    check_binary("x", x)
    return two_point_correlation(x, ndim=2).reshape(x.shape[0], -1)


class TwoPointPCA:
    """PCA of two-point statistics keeping a fraction of their variance; whitened scores.

    Args:
        fraction: fraction of the variance of S2 to keep, in (0, 1] (0.9 in both papers).
        max_components: optional cap on the number of components.

    Attributes (after :meth:`fit`):
        n_components: the number k of components kept. mean: (F,) mean S2. components: (k, F).
        scale: (k,) standard deviations of the training scores (the whitening).
        explained_variance_ratio: (min(n, F),) ratios of all components, decreasing.
        explained: the fraction actually explained by the k components.

    Example::

        >>> g = torch.Generator().manual_seed(1)
        >>> x = (torch.rand(40, 6, 6, generator=g) < 0.4).double()
        >>> pca = TwoPointPCA(0.9).fit(x)
        >>> bool(pca.explained >= 0.9), pca.transform(x).std(0).round().unique().tolist()
        (True, [1.0])
    """

    def __init__(self, fraction: float = 0.9, max_components: int | None = None):
        check_interval("fraction", fraction, 0.0, 1.0, closed=(False, True))
        if max_components is not None:
            max_components = check_int("max_components", max_components, minimum=1)
        self.fraction = float(fraction)
        self.max_components = max_components
        self.mean = None

    def fit(self, x: torch.Tensor) -> TwoPointPCA:
        """Fit on binary images ``(n, ny, nx)`` (n ≥ 2); returns ``self``.

        Raises:
            ValueError: fewer than 2 images, non-binary images, or S2 without variance.
        """
        feats = two_point_features(x)
        if feats.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 images, got {feats.shape[0]}")
        mean = feats.mean(0)
        c = (feats - mean).numpy()
        n = c.shape[0]
        # Eigen-decomposition of the smaller Gram matrix (see two_point.explained_variance_ratio).
        if c.shape[0] <= c.shape[1]:
            lam, u = np.linalg.eigh(c @ c.T)
            lam, u = lam[::-1].clip(min=0.0), u[:, ::-1]
            sv = np.sqrt(lam)
            keep = sv > sv[0] * 1e-10
            comps = np.zeros((len(lam), c.shape[1]))
            comps[keep] = ((c.T @ u[:, keep]) / sv[keep]).T
        else:
            lam, v = np.linalg.eigh(c.T @ c)
            lam, comps = lam[::-1].clip(min=0.0), v[:, ::-1].T
        total = lam.sum()
        if not total > 0:
            raise ValueError("x: the two-point correlations have no variance (all images alike)")
        ratio = torch.from_numpy((lam / total).copy())
        k = components_for_fraction(ratio, self.fraction)
        if self.max_components is not None:
            k = min(k, self.max_components)
        self.explained_variance_ratio = ratio
        self.n_components = int(k)
        self.explained = float(ratio[:k].sum())
        self.mean = mean
        self.components = torch.from_numpy(np.ascontiguousarray(comps[:k]))
        self.scale = torch.from_numpy(np.sqrt(lam[:k] / max(n - 1, 1)).copy()).clamp_min(1e-12)
        return self

    def _check_fitted(self):
        if self.mean is None:
            raise ValueError("TwoPointPCA is not fitted: call fit(x) first")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Whitened PC scores ``(n, n_components)`` (float64) of binary images ``(n, ny, nx)``."""
        self._check_fitted()
        feats = two_point_features(x)
        check_last_dim("x (flattened)", feats, self.mean.numel())
        return (feats - self.mean) @ self.components.T / self.scale

    def inverse_transform(self, scores: torch.Tensor) -> torch.Tensor:
        """S2 features ``(..., F)`` reconstructed from whitened scores ``(..., n_components)``."""
        self._check_fitted()
        scores = as_tensor("scores", scores, dtype=_DTYPE)
        check_last_dim("scores", scores, self.n_components)
        return self.mean + (scores * self.scale) @ self.components


def _gpytorch():
    try:
        import gpytorch
    except ImportError as err:  # pragma: no cover - gpytorch is a main dependency
        raise ImportError(
            "the SV-MOGP competitor needs gpytorch: pip install gpytorch (a psppyro dependency)"
        ) from err
    return gpytorch


def _make_lmc_gp(inducing, num_tasks, num_latents):
    gpytorch = _gpytorch()

    class _LMCGP(gpytorch.models.ApproximateGP):
        def __init__(self):
            batch = torch.Size([num_latents])
            # Natural parametrization: q(u) is trained by natural-gradient descent (as in the
            # authors' agenerale/inverse-psp "NG" scripts), which converges in tens of steps
            # where Adam on a Cholesky factor needs hundreds.
            dist = gpytorch.variational.NaturalVariationalDistribution(
                inducing.shape[-2], batch_shape=batch
            )
            strategy = gpytorch.variational.LMCVariationalStrategy(
                gpytorch.variational.VariationalStrategy(
                    self, inducing, dist, learn_inducing_locations=True
                ),
                num_tasks=num_tasks,
                num_latents=num_latents,
                latent_dim=-1,
            )
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(batch_shape=batch, ard_num_dims=inducing.shape[-1]),
                batch_shape=batch,
            )

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    return _LMCGP()


class SVMOGP(torch.nn.Module):
    """Sparse variational multi-output GP (LMC of independent latent GPs), trained on minibatches.

    Args:
        d_in: input dimension. d_out: number of outputs (tasks).
        num_latents: number Q of latent GPs (default ``d_out``).
        num_inducing: inducing points per latent GP (learned locations).

    Example::

        >>> gp = SVMOGP(1, 2, num_inducing=8)
        >>> x = torch.linspace(0, 1, 40)[:, None]
        >>> y = torch.cat([torch.sin(3 * x), torch.cos(3 * x)], -1)
        >>> _ = gp.fit(x, y, epochs=30, batch_size=40, lr=0.05, seed=0, progress=False)
        >>> mean, cov = gp.predict(x)
        >>> mean.shape, cov.shape
        (torch.Size([40, 2]), torch.Size([40, 2, 2]))
    """

    def __init__(self, d_in: int, d_out: int, num_latents: int | None = None,
                 num_inducing: int = 64):
        super().__init__()
        self.d_in = check_int("d_in", d_in)
        self.d_out = check_int("d_out", d_out)
        self.num_latents = check_int("num_latents", num_latents or d_out)
        self.num_inducing = check_int("num_inducing", num_inducing)
        gpytorch = _gpytorch()
        # Placeholder locations (fit re-initializes them and the LMC weights from its seed):
        # a fixed generator, so constructing a model never consumes the global RNG.
        inducing = torch.rand(self.num_latents, self.num_inducing, self.d_in, dtype=_DTYPE,
                              generator=make_generator(0))
        self.gp = _make_lmc_gp(inducing, self.d_out, self.num_latents).to(_DTYPE)
        self.likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(
            num_tasks=self.d_out, has_global_noise=False
        ).to(_DTYPE)
        # Start the task noise at 0.05 (outputs are standardized): from gpytorch's default ≈ 0.7
        # minibatch Adam needs hundreds of steps before the noise stops masking the signal.
        self.likelihood.task_noises = torch.full((self.d_out,), 0.05, dtype=_DTYPE)
        self.history: list[float] = []

    def fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int = 200, batch_size: int = 256,
            lr: float = 0.01, seed: int = 0, progress: bool = True,
            ngd_lr: float = 0.1) -> SVMOGP:
        """Maximize the variational ELBO on shuffled minibatches: natural-gradient steps on q(u),
        Adam on the kernel, inducing locations, LMC weights and noise.

        Inducing points start at a seeded random subset of the inputs (with jitter when there
        are fewer inputs than inducing points) and the LMC weights at seeded N(0, 1) draws
        and gpytorch's own initial draws (the variational mean jitter at the first call) come from
        a stream seeded by ``seed`` inside ``torch.random.fork_rng``, so a fit depends on ``seed``
        only and leaves the global RNG as it found it.

        Args:
            x: inputs (n, d_in). y: outputs (n, d_out) (standardize them first).
            epochs, batch_size: passes over the data and minibatch size. lr: Adam step size.
            ngd_lr: natural-gradient step size on q(u) (in (0, 1]; 1 is exact for full batches
            with fixed hyperparameters).
            seed: seeds the initialization and the shuffles. progress: tqdm bar.

        Returns:
            ``self``; ``history`` holds the mean negative ELBO per epoch.

        Raises:
            ValueError: mismatched shapes, non-finite data, bad sizes.
        """
        gpytorch = _gpytorch()
        x, y = check_paired_rows("x", x, self.d_in, "y", y, self.d_out, dtype=_DTYPE)
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size)
        check_positive("lr", lr)
        check_interval("ngd_lr", ngd_lr, 0.0, 1.0, closed=(False, True))
        seed = check_seed("seed", seed)
        n = x.shape[0]
        g = make_generator(derive_seed(seed, 0))
        idx = torch.randint(n, (self.num_latents, self.num_inducing), generator=g)
        jitter = 1e-3 * torch.randn(idx.shape + (self.d_in,), generator=g, dtype=_DTYPE)
        lmc = self.gp.variational_strategy.lmc_coefficients
        with torch.no_grad():
            self.gp.variational_strategy.base_variational_strategy.inducing_points.copy_(
                x[idx] + jitter
            )
            lmc.copy_(torch.randn(lmc.shape, generator=g, dtype=lmc.dtype))
        self.train()
        ngd = gpytorch.optim.NGD(self.gp.variational_parameters(), num_data=n, lr=ngd_lr)
        params = list(self.gp.hyperparameters()) + list(self.likelihood.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        mll = gpytorch.mlls.VariationalELBO(self.likelihood, self.gp, num_data=n)
        from tqdm.auto import tqdm

        bar = tqdm(range(epochs), desc="SV-MOGP", disable=not progress, leave=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 2))  # gpytorch's own initial draws
            for epoch in bar:
                perm = torch.randperm(n, generator=make_generator(derive_seed(seed, 1, epoch)))
                total = 0.0
                for start in range(0, n, batch_size):
                    b = perm[start:start + batch_size]
                    opt.zero_grad()
                    ngd.zero_grad()
                    loss = -mll(self.gp(x[b]), y[b])
                    loss.backward()
                    ngd.step()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                self.history.append(total / n)
                bar.set_postfix(loss=f"{self.history[-1]:.3f}")
        self.eval()
        return self

    @property
    def noise(self) -> torch.Tensor:
        """Task noise variances (d_out,)."""
        return self.likelihood.task_noises.reshape(-1)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean (n, d_out) and *latent-function* covariance (n, d_out, d_out) at x.

        The covariance is the LMC's :math:`\\sum_q v_q(x) a_q a_q^\\top` at each point (no task
        noise: add ``diag(noise)`` for the observation predictive). Differentiable in x.

        Args:
            x: inputs (n, d_in).

        Example::

            >>> gp = SVMOGP(2, 3, num_inducing=4)
            >>> gp.predict(torch.rand(5, 2))[1].shape
            torch.Size([5, 3, 3])
        """
        x = torch.as_tensor(x).to(_DTYPE)
        if x.dim() != 2:
            raise ValueError(f"x must have shape (n, d_in), got {tuple(x.shape)}")
        check_last_dim("x", x, self.d_in)
        gpytorch = _gpytorch()
        strategy = self.gp.variational_strategy
        base = strategy.base_variational_strategy
        # gpytorch memoizes the inducing-point Cholesky in eval mode together with its autograd
        # graph; a second backward through a cached factor would fail, so every call recomputes it.
        base._clear_cache()
        with gpytorch.settings.fast_computations(False, False, False):
            latent = base(x)
            lmean, lvar = latent.mean, latent.variance  # (Q, n)
        a = strategy.lmc_coefficients  # (Q, t)
        mean = lmean.transpose(-1, -2) @ a
        cov = torch.einsum("qn,qi,qj->nij", lvar.clamp_min(0.0), a, a)
        return mean, cov


def _chol(cov):
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    jitter = 1e-9 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[..., None, None]
    return torch.linalg.cholesky(cov + jitter * eye)


class GeneraleChain(torch.nn.Module):
    """Generale et al.'s PSP chain φ → PC scores → m as a design-protocol model.

    Build it with :meth:`fit_data` (or :meth:`from_dataset`); the constructor takes fitted parts.

    Args:
        pca: a fitted :class:`TwoPointPCA`. ps_gp: :class:`SVMOGP` φ_unit → whitened scores.
        sp_gp: :class:`SVMOGP` whitened scores → standardized m.
        phi_bounds: (d_φ, 2). m_mean, m_std: (d_m,) standardization of m.
        phi_names: optional names of the φ components.

    The design latent has ``latent_dim`` = d_pc + d_m components (z = the GP sampling noise,
    module docstring).

    Attributes:
        timings: wall seconds of the PCA and GP fits (filled by :meth:`fit_data`).

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess
        >>> phi = torch.rand(60, 1, generator=torch.Generator().manual_seed(0))
        >>> x = torch.stack([CoinProcess().sample(p, 16, seed=i).reshape(4, 4)
        ...                  for i, p in enumerate(phi)])
        >>> m = x.mean((-1, -2))[:, None]
        >>> chain = GeneraleChain.fit_data(phi, x, m, torch.tensor([[0.0, 1.0]]), epochs=5,
        ...                                num_inducing=8, progress=False)
        >>> z = torch.zeros(1, 4, chain.latent_dim)
        >>> chain.property_dist(torch.rand(3, 1, 1), z).batch_shape
        torch.Size([3, 4])
    """

    def __init__(self, pca: TwoPointPCA, ps_gp: SVMOGP, sp_gp: SVMOGP, phi_bounds, m_mean, m_std,
                 phi_names=None):
        super().__init__()
        self.pca = pca
        self.ps_gp = ps_gp
        self.sp_gp = sp_gp
        bounds = as_tensor("phi_bounds", phi_bounds, dtype=torch.get_default_dtype())
        if bounds.dim() != 2 or bounds.shape[-1] != 2 or not bool(torch.isfinite(bounds).all()):
            raise ValueError(
                f"phi_bounds must be a finite (d_phi, 2) tensor, got {bounds.tolist()}"
            )
        self.phi_bounds = bounds
        self.d_phi = int(bounds.shape[0])
        self.d_pc = int(pca.n_components)
        self.m_mean = as_tensor("m_mean", m_mean, dtype=_DTYPE).reshape(-1)
        self.m_std = as_tensor("m_std", m_std, dtype=_DTYPE).reshape(-1)
        self.d_m = int(self.m_mean.numel())
        if phi_names is not None:
            self.phi_names = [str(n) for n in phi_names]
        self.timings: dict = {}

    @property
    def latent_dim(self) -> int:
        """d_pc + d_m: ε_s for the PC scores and ε_f for the SP GP's latent function."""
        return self.d_pc + self.d_m

    @classmethod
    def fit_data(cls, phi, x, m, phi_bounds, fraction: float = 0.9, num_inducing: int = 128,
                 num_latents: int | None = None, epochs: int = 200, batch_size: int = 256,
                 lr: float = 0.01, seed: int = 0, progress: bool = True,
                 phi_names=None) -> GeneraleChain:
        """Fit PCA, the PS GP (φ → scores) and the SP GP (scores → m) on triads (φ, x, m).

        Args:
            phi: (n, d_φ). x: binary images (n, ny, nx). m: (n, d_m). phi_bounds: (d_φ, 2).
            fraction: PCA variance fraction (0.9 in the paper). num_inducing, num_latents: GP
                sizes (num_latents defaults to each GP's number of outputs).
            epochs, batch_size, lr: minibatch Adam on each GP's ELBO. seed: int.
            progress: tqdm bars. phi_names: optional names.

        Returns:
            a fitted :class:`GeneraleChain` (``timings`` in seconds per stage).

        Raises:
            ValueError: mismatched sizes, φ outside the bounds, non-binary x, non-finite m.
        """
        import time

        from .._validation import check_in_bounds

        phi = as_tensor("phi", phi, dtype=_DTYPE)
        m = as_tensor("m", m, dtype=_DTYPE)
        bounds = as_tensor("phi_bounds", phi_bounds, dtype=_DTYPE)
        if phi.dim() != 2 or m.dim() != 2:
            raise ValueError(
                f"phi and m must be (n, d_phi) and (n, d_m), got {tuple(phi.shape)}, "
                f"{tuple(m.shape)}"
            )
        x = as_tensor("x", x, dtype=_DTYPE)
        if not (phi.shape[0] == m.shape[0] == x.shape[0]):
            raise ValueError(
                f"phi, x and m must have the same number of rows, got {phi.shape[0]}, "
                f"{x.shape[0]}, {m.shape[0]}"
            )
        check_last_dim("phi", phi, bounds.shape[0])
        check_in_bounds("phi", phi, bounds)
        check_finite("m", m)
        seed = check_seed("seed", seed)
        timings = {}
        t0 = time.perf_counter()
        pca = TwoPointPCA(fraction).fit(x)
        scores = pca.transform(x)
        timings["pca_s"] = time.perf_counter() - t0
        unit = (phi - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
        t0 = time.perf_counter()
        ps = SVMOGP(phi.shape[1], pca.n_components, num_latents, num_inducing)
        ps.fit(unit, scores, epochs, batch_size, lr, derive_seed(seed, 1), progress)
        timings["ps_gp_s"] = time.perf_counter() - t0
        m_mean, m_std = m.mean(0), m.std(0).clamp_min(1e-12)
        t0 = time.perf_counter()
        sp = SVMOGP(pca.n_components, m.shape[1], num_latents, num_inducing)
        sp.fit(scores, (m - m_mean) / m_std, epochs, batch_size, lr, derive_seed(seed, 2),
               progress)
        timings["sp_gp_s"] = time.perf_counter() - t0
        chain = cls(pca, ps, sp, phi_bounds, m_mean, m_std, phi_names=phi_names)
        chain.timings = timings
        return chain

    @classmethod
    def from_dataset(cls, ds, **kwargs) -> GeneraleChain:
        """:meth:`fit_data` on an ``xarray.Dataset`` with ``phi``, ``x``, ``m`` (``psppyro.data``).

        φ bounds come from ``ds.attrs["process"]`` (the process configuration) unless
        ``phi_bounds`` is given; rows whose m is not finite are dropped.
        """
        phi = torch.as_tensor(np.asarray(ds["phi"].values), dtype=_DTYPE)
        x = torch.as_tensor(np.asarray(ds["x"].values), dtype=_DTYPE)
        m = torch.as_tensor(np.asarray(ds["m"].values), dtype=_DTYPE)
        bounds = kwargs.pop("phi_bounds", None)
        if bounds is None:
            from ..process import from_config

            bounds = from_config(ds.attrs["process"]).phi_bounds
        ok = torch.isfinite(m).all(-1)
        names = [str(v) for v in ds["phi_dim"].values] if "phi_dim" in ds.coords else None
        kwargs.setdefault("phi_names", names)
        return cls.fit_data(phi[ok], x[ok], m[ok], bounds, **kwargs)

    # ------------------------------------------------------------------ predictions
    def _unit(self, phi):
        b = self.phi_bounds.to(_DTYPE)
        return (phi.to(_DTYPE) - b[:, 0]) / (b[:, 1] - b[:, 0])

    def score_dist(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (..., d_pc) and Cholesky factor (..., d_pc, d_pc) of p(s | φ) (whitened scores).

        Example::

            >>> chain = _tiny_chain()
            >>> [t.shape for t in chain.score_dist(torch.rand(5, 1))]
            [torch.Size([5, 1]), torch.Size([5, 1, 1])]
        """
        phi = as_tensor("phi", phi)
        check_last_dim("phi", phi, self.d_phi)
        batch = phi.shape[:-1]
        mean, cov = self.ps_gp.predict(self._unit(phi).reshape(-1, self.d_phi))
        cov = cov + torch.diag_embed(self.ps_gp.noise.expand(mean.shape))
        return mean.reshape(*batch, self.d_pc), _chol(cov).reshape(*batch, self.d_pc, self.d_pc)

    def property_dist(self, phi: torch.Tensor, z: torch.Tensor) -> torch.distributions.Distribution:
        """p(m | φ, z) = N(μ_m(s) + L_f(s) ε_f, diag σ_m²) with s = μ_s(φ) + L_s(φ) ε_s.

        Args:
            phi: (..., d_φ). z: (..., d_pc + d_m) standard normals (ε_s, ε_f).

        Returns:
            ``Independent(Normal, 1)``: batch broadcast(φ, z batch shapes), event (d_m,), in
            physical units and φ's dtype; differentiable in φ and z.

        Raises:
            ValueError: wrong last dimensions or non-finite inputs.

        Example::

            >>> chain = _tiny_chain()
            >>> chain.property_dist(torch.rand(4, 1), torch.zeros(4, chain.latent_dim)).event_shape
            torch.Size([1])
        """
        phi = as_tensor("phi", phi)
        if not phi.is_floating_point():
            phi = phi.to(torch.get_default_dtype())
        z = as_tensor("z", z)
        check_last_dim("phi", phi, self.d_phi)
        check_last_dim("z", z, self.latent_dim)
        check_finite("phi", phi)
        check_finite("z", z)
        out_dtype = phi.dtype
        batch = torch.broadcast_shapes(phi.shape[:-1], z.shape[:-1])
        mu_s, l_s = self.score_dist(phi)
        z = z.to(_DTYPE)
        eps_s, eps_f = z[..., : self.d_pc], z[..., self.d_pc:]
        s = mu_s + (l_s @ eps_s.unsqueeze(-1)).squeeze(-1)
        s = s.expand(*batch, self.d_pc)
        mean, cov = self.sp_gp.predict(s.reshape(-1, self.d_pc))
        loc = mean + (_chol(cov) @ eps_f.expand(*batch, self.d_m).reshape(-1, self.d_m, 1)
                      ).squeeze(-1)
        loc = (self.m_mean + self.m_std * loc).reshape(*batch, self.d_m)
        scale = (self.m_std * self.sp_gp.noise.sqrt()).expand(*batch, self.d_m)
        return Independent(Normal(loc.to(out_dtype), scale.to(out_dtype)), 1)

    @torch.no_grad()
    def predict_properties(self, phi: torch.Tensor, num_samples: int = 1000,
                           seed: int = 0) -> torch.Tensor:
        """Samples of p(m | φ) (num_samples, ..., d_m): z ~ N(0, I), then m ~ property_dist.

        Example::

            >>> _tiny_chain().predict_properties(torch.rand(3, 1), num_samples=7).shape
            torch.Size([7, 3, 1])
        """
        phi = as_tensor("phi", phi)
        num_samples = check_int("num_samples", num_samples)
        seed = check_seed("seed", seed)
        g = make_generator(seed)
        z = torch.randn(num_samples, *phi.shape[:-1], self.latent_dim, generator=g, dtype=_DTYPE)
        d = self.property_dist(phi, z.to(phi.dtype if phi.is_floating_point() else _DTYPE))
        eps = torch.randn(d.mean.shape, generator=g, dtype=_DTYPE).to(d.mean.dtype)
        return d.mean + d.stddev * eps

    def describe(self) -> dict:
        """Sizes and fit timings as a JSON-able dict (components, explained variance, ...)."""
        return {
            "n_components": self.d_pc,
            "explained_variance": self.pca.explained,
            "num_inducing": self.ps_gp.num_inducing,
            "num_latents_ps": self.ps_gp.num_latents,
            "num_latents_sp": self.sp_gp.num_latents,
            "latent_dim": self.latent_dim,
            "timings": dict(self.timings),
        }


def _tiny_triads(n=40, seed=0):
    """Toy triads (φ, x, m) for docstring examples: 4 × 4 images with pixels 1 w.p. φ ∈ [0, 1],
    m = their white fraction."""
    g = torch.Generator().manual_seed(seed)
    phi = torch.rand(n, 1, generator=g, dtype=_DTYPE)
    x = (torch.rand(n, 4, 4, generator=g, dtype=_DTYPE) < phi[:, :, None]).double()
    return phi, x, x.mean((-1, -2))[:, None]


def _tiny_chain():
    """A 1-D toy chain fitted in < 0.5 s (for the docstring examples only)."""
    phi, x, m = _tiny_triads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GeneraleChain.fit_data(phi, x, m, torch.tensor([[0.0, 1.0]]), epochs=3,
                                      num_inducing=4, progress=False, fraction=0.5)

