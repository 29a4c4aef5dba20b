r"""Bayesian optimization on the simulator: the baseline without a learned PSP model.

The question no seed paper answers: would plain Bayesian optimization (BO) of the *true* chain
have done as well for the same number of simulations as a model trained on a data set of that
size? :func:`bayesopt_design` maximizes the O1 objective

.. math::

   p(φ) = P(m ∈ M_d \mid φ) = E_{x \sim p(x|φ)}\big[1_{M_d}(f(x))\big]

directly. One *evaluation* runs n true simulations at one φ and observes the binomial estimate
:math:`\hat p = k/n` with the heteroscedastic noise variance
:math:`\hat σ^2 = \tilde p (1 - \tilde p)/n`, :math:`\tilde p = (k + 1)/(n + 2)` (the Laplace
estimate keeps the variance positive at k = 0 or k = n). A GP with these *observed* noise levels
(BoTorch ``SingleTaskGP`` with ``train_Yvar``, Matérn-5/2 ARD kernel, inputs scaled to the unit
cube, outcomes standardized) models p(φ); the next φ maximizes the noisy log expected improvement
``qLogNoisyExpectedImprovement`` (Ament et al. 2023) over the same φ box as the other methods.
The first evaluations are a scrambled Sobol design (``num_init``, default 2 d_φ + 1).

After each evaluation the *recommended* φ is the evaluated point with the highest GP posterior
mean (the usual in-sample recommendation for noisy BO). :class:`BOResult` keeps its trace against
the simulations spent, so it can be plotted against the training-set size of PSP-GEN or of the
SV-MOGP competitor (their simulation budget); with ``true_objective`` (e.g. a toy's exact p(φ), or
an independent simulation estimate) the trace also records the true value at each recommendation.

BoTorch is an optional dependency: ``pip install psppyro[bo]``.

Example::

    >>> import torch
    >>> from psppyro.design import Box
    >>> def simulate(phi, n, seed):          # m ~ N(phi, 0.3^2): p(phi) peaks at phi = 1
    ...     g = torch.Generator().manual_seed(seed)
    ...     return phi + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    >>> res = bayesopt_design(Box([0.8], [1.2]), simulate, phi_bounds=[[-3.0, 3.0]],
    ...                       budget=60, sims_per_eval=20, num_init=2, raw_samples=16,
    ...                       num_restarts=1, seed=0)
    >>> res.simulations, len(res.trace)
    (60, 3)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

from .._random import derive_seed
from .._validation import as_tensor, check_int, check_seed
from .targets import Box, as_target

__all__ = ["BOResult", "bayesopt_design"]


def _botorch():
    try:
        import botorch  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "design.bayesopt needs BoTorch, an optional dependency: pip install psppyro[bo] "
            "(or pip install botorch)"
        ) from err
    import botorch

    return botorch


@dataclass
class BOResult:
    """Result of :func:`bayesopt_design`.

    Attributes:
        phi: the final recommended φ (d_φ,).
        trace: one dict per evaluation: ``evaluation``, ``simulations`` (spent so far), ``phi``
            (evaluated), ``p_hat``, ``recommended`` φ, ``posterior_mean`` of p at it, and
            ``true_value`` when ``true_objective`` was given.
        X: evaluated φ (n_eval, d_φ). p_hat: (n_eval,) observed fractions. simulations: total.
        timings: seconds (``simulate_s``, ``model_s``).

    Example::

        >>> BOResult(torch.zeros(1), [], torch.zeros(0, 1), torch.zeros(0), 0).simulations
        0
    """

    phi: torch.Tensor
    trace: list
    X: torch.Tensor
    p_hat: torch.Tensor
    simulations: int
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able summary (the trace with lists instead of tensors)."""
        return {
            "phi": [float(v) for v in self.phi],
            "simulations": int(self.simulations),
            "trace": self.trace,
            "timings": dict(self.timings),
        }


def _simulator(simulate, process, properties, workers):
    if simulate is not None:
        if process is not None or properties is not None:
            raise ValueError("give either simulate or process + properties, not both")
        if not callable(simulate):
            raise TypeError(f"simulate must be callable (phi, n, seed) -> m, got {simulate!r}")
        return simulate
    if process is None or properties is None:
        raise ValueError("bayesopt_design needs simulate=... or both process= and properties=")
    from .evaluate import _resolve_process, simulate_properties

    proc = _resolve_process(process)

    def run(phi, n, seed):
        return simulate_properties(phi, proc, properties, n, seed=seed, workers=workers)

    run.phi_bounds = getattr(proc, "phi_bounds", None)
    return run


def bayesopt_design(
    target,
    simulate=None,
    *,
    process=None,
    properties=None,
    phi_bounds=None,
    budget: int = 400,
    sims_per_eval: int = 20,
    num_init: int | None = None,
    num_restarts: int = 8,
    raw_samples: int = 256,
    true_objective=None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> BOResult:
    """Maximize P(m ∈ M_d | φ) on the true simulator with BoTorch (module docstring).

    Args:
        target: a :class:`~psppyro.design.Box` M_d.
        simulate: ``simulate(phi (d_φ,), n, seed) -> m (n, d_m)``; or give ``process`` (preset
            name or object) and ``properties`` (property-map name or callable), simulated with
            :func:`~psppyro.design.simulate_properties` (``workers`` processes).
        phi_bounds: (d_φ, 2) box; default the process's ``phi_bounds``.
        budget: total simulations (evaluations = budget // sims_per_eval).
        sims_per_eval: n, simulations per evaluation. num_init: Sobol evaluations first
            (default 2 d_φ + 1). num_restarts, raw_samples: acquisition optimization.
        true_objective: optional ``f(phi) -> float`` recorded at every recommendation.
        seed: int (Sobol scramble, simulation seeds, acquisition optimization).
        progress: tqdm bar over evaluations.

    Returns:
        :class:`BOResult`.

    Raises:
        ImportError: BoTorch is not installed (``pip install psppyro[bo]``).
        ValueError / TypeError: bad target, bounds or sizes (checked before any simulation).
    """
    target = as_target(target)
    if not isinstance(target, Box):
        raise TypeError(f"bayesopt_design maximizes P(m in box): target must be a Box, got "
                        f"{type(target).__name__}")
    sim = _simulator(simulate, process, properties, workers)
    if phi_bounds is None:
        phi_bounds = getattr(sim, "phi_bounds", None)
        if phi_bounds is None:
            raise ValueError("phi_bounds is required with a simulate callable")
    bounds = as_tensor("phi_bounds", phi_bounds, dtype=torch.float64)
    if bounds.dim() != 2 or bounds.shape[-1] != 2 or not bool(torch.isfinite(bounds).all()) \
            or bool((bounds[:, 0] >= bounds[:, 1]).any()):
        raise ValueError(f"phi_bounds must be a finite (d_phi, 2) box with low < high, got "
                         f"{bounds.tolist()}")
    d = int(bounds.shape[0])
    budget = check_int("budget", budget)
    sims_per_eval = check_int("sims_per_eval", sims_per_eval)
    n_eval = budget // sims_per_eval
    if n_eval < 2:
        raise ValueError(f"budget={budget} allows {n_eval} evaluations of sims_per_eval="
                         f"{sims_per_eval} simulations; at least 2 are needed")
    num_init = check_int("num_init", 2 * d + 1 if num_init is None else num_init)
    num_init = min(num_init, n_eval)
    num_restarts = check_int("num_restarts", num_restarts)
    raw_samples = check_int("raw_samples", raw_samples)
    seed = check_seed("seed", seed)
    if true_objective is not None and not callable(true_objective):
        raise TypeError("true_objective must be callable phi -> float")
    _botorch()
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from tqdm.auto import tqdm

    lo, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    unit_box = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=derive_seed(seed, 0) % 2**31)
    U = sobol.draw(num_init).double()
    Y, Yvar, trace = [], [], []
    timings = {"simulate_s": 0.0, "model_s": 0.0}
    spent = 0

    def observe(u, i):
        nonlocal spent
        t0 = time.perf_counter()
        phi = lo + width * u
        m = torch.as_tensor(sim(phi, sims_per_eval, derive_seed(seed, 1, i)))
        if m.dim() != 2 or m.shape[0] != sims_per_eval:
            raise ValueError(f"simulate must return m of shape ({sims_per_eval}, d_m), got "
                             f"{tuple(m.shape)}")
        k = float(target.contains(m.to(torch.float64)).sum())
        spent += sims_per_eval
        timings["simulate_s"] += time.perf_counter() - t0
        p_tilde = (k + 1) / (sims_per_eval + 2)
        return k / sims_per_eval, p_tilde * (1 - p_tilde) / sims_per_eval

    bar = tqdm(total=n_eval, desc="bayesopt", disable=not progress, leave=False)
    model = None
    for i in range(n_eval):
        if i >= num_init:
            t0 = time.perf_counter()
            acq = qLogNoisyExpectedImprovement(model, U, prune_baseline=True)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, 2, i) % 2**63)
                cand, _ = optimize_acqf(acq, unit_box, q=1, num_restarts=num_restarts,
                                        raw_samples=raw_samples)
            U = torch.cat([U, cand.detach().double()])
            timings["model_s"] += time.perf_counter() - t0
        p, var = observe(U[i], i)
        Y.append(p)
        Yvar.append(var)
        t0 = time.perf_counter()
        y = torch.tensor(Y, dtype=torch.float64)[:, None]
        yv = torch.tensor(Yvar, dtype=torch.float64)[:, None]
        with warnings.catch_warnings():
            # BoTorch warns when fewer points than needed for a well-conditioned fit (the first
            # Sobol points) and about standardizing a constant outcome: both expected here.
            warnings.simplefilter("ignore")
            model = SingleTaskGP(U[: i + 1], y, train_Yvar=yv,
                                 outcome_transform=Standardize(m=1))
            if i + 1 >= 2:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(derive_seed(seed, 3, i) % 2**63)
                    try:
                        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
                    except Exception:  # noqa: BLE001 - keep the prior hyperparameters
                        pass
        with torch.no_grad():
            mean = model.posterior(U[: i + 1]).mean.reshape(-1)
        best = int(mean.argmax())
        rec = lo + width * U[best]
        timings["model_s"] += time.perf_counter() - t0
        row = {
            "evaluation": i + 1,
            "simulations": spent,
            "phi": [float(v) for v in lo + width * U[i]],
            "p_hat": p,
            "recommended": [float(v) for v in rec],
            "posterior_mean": float(mean[best]),
        }
        if true_objective is not None:
            row["true_value"] = float(true_objective(rec))
        trace.append(row)
        bar.update(1)
    bar.close()
    X = lo + width * U
    return BOResult(torch.tensor(trace[-1]["recommended"], dtype=torch.float64), trace, X,
                    torch.tensor(Y, dtype=torch.float64), spent, timings)
