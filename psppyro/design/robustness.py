r"""Robust-design read-out: does the design still work when the manufactured φ drifts?

A design φ* is manufactured with a tolerance: the realized process parameters are φ = φ* + δ.
For a per-component tolerance vector τ (``tolerance``) and a radius r ≥ 0 this module draws

- ``distribution="uniform"`` (default): δ uniform in the box [−r τ, r τ] (each component
  independently), or
- ``distribution="normal"``: δ ~ N(0, diag((r τ)²)) (τ is then a standard deviation),

clips φ to the process's ``phi_bounds`` (a machine cannot leave its operating range; the clipped
fraction is reported), and simulates the true chain φ → x → m with
:func:`~psppyro.design.simulate_properties` — ``num_samples`` microstructures at each of
``num_phi`` drawn φ. The manufactured material's properties then follow the mixture
∫ p(m | φ* + δ) p(δ) dδ, and the read-out is the target's objective under that mixture,

.. math::

    R(r) = E_{δ}\big[P(m ∈ M_d \mid φ^* + δ)\big] ≈ \frac{1}{J}\sum_{j=1}^{J}
    \frac{1}{n}\sum_{i=1}^{n} 1[m_{ij} ∈ M_d]

for a Box (the mean utility for a TargetValue), with the standard error of the mean over the J
per-φ averages (which includes both the spread over δ and the simulation noise). For a
TargetDensity the read-out is the KL of the target to a Gaussian fit of the pooled m (its
``from_simulations``). At r = 0 every draw is φ*, so R(0) is the plain simulated objective at φ*
(:func:`~psppyro.design.evaluate` with J·n simulations, up to Monte Carlo error).

:func:`robustness_curve` evaluates R on a list of radii with *common random numbers*: the same unit
draws u_j (δ_j = r τ ⊙ u_j) and the same simulation seeds at every radius, so the curve is smooth
and differences between radii or between designs are not simulation noise.
:func:`psppyro.diagnostics.plot_robustness` draws P(m ∈ M_d) against r — a flat curve is a robust
optimum, a steep one a sharp optimum that manufacturing scatter will miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._random import derive_seed, make_generator
from .._validation import as_tensor, check_choice, check_finite, check_int, check_seed
from .targets import as_target

__all__ = ["RobustnessCurve", "robustness", "robustness_curve"]


@dataclass
class RobustnessCurve:
    """R(r) on a list of radii, from :func:`robustness_curve`.

    Attributes:
        radii: Tensor (R,). values, se: Tensor (R,) of the read-out and its standard error.
        phi_star: the design. tolerance: Tensor (d_φ,). distribution: ``"uniform" | "normal"``.
        objective: the target's objective name. clipped: Tensor (R,), fraction of drawn φ clipped
            to the process bounds. num_phi, num_samples: J and n. label: for plots.

    Example::

        >>> c = RobustnessCurve(torch.tensor([0.0, 1.0]), torch.tensor([0.8, 0.5]),
        ...                     torch.tensor([0.01, 0.02]), torch.zeros(1), torch.ones(1))
        >>> c.drop()
        0.30000001192092896
    """

    radii: torch.Tensor
    values: torch.Tensor
    se: torch.Tensor
    phi_star: torch.Tensor
    tolerance: torch.Tensor
    distribution: str = "uniform"
    objective: str = "probability"
    clipped: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    num_phi: int = 0
    num_samples: int = 0
    label: str = ""

    def drop(self) -> float:
        """R(first radius) − R(last radius): how much the objective falls over the curve."""
        return float(self.values[0] - self.values[-1])

    def to_dict(self) -> dict:
        """JSON-ready dict of the curve."""
        return {
            "label": self.label,
            "radii": self.radii.tolist(),
            "values": self.values.tolist(),
            "se": self.se.tolist(),
            "phi_star": self.phi_star.tolist(),
            "tolerance": self.tolerance.tolist(),
            "distribution": self.distribution,
            "objective": self.objective,
            "clipped": self.clipped.tolist(),
            "num_phi": self.num_phi,
            "num_samples": self.num_samples,
        }


def _design_phi(result):
    phi = getattr(result, "phi_star", result)
    phi = as_tensor("result", phi, dtype=torch.float64).detach().cpu()
    if phi.dim() != 1:
        raise ValueError(
            f"result must be a DesignResult or a design phi of shape (d_phi,), got shape "
            f"{tuple(phi.shape)}"
        )
    check_finite("result.phi_star", phi)
    return phi


def _prepare(result, process, target, tolerance, num_phi, num_samples, seed, distribution):
    from .evaluate import _resolve_process

    phi = _design_phi(result)
    if target is None:
        target = getattr(result, "target", None)
        if target is None:
            raise TypeError("target is required when result is a tensor, not a DesignResult")
    target = as_target(target)
    tol = as_tensor("tolerance", tolerance, dtype=torch.float64).detach().cpu()
    if tol.dim() == 0:
        tol = tol.expand(phi.shape[0]).clone()
    if tuple(tol.shape) != tuple(phi.shape):
        raise ValueError(
            f"tolerance must be a number or have shape ({phi.shape[0]},) like phi_star, got "
            f"shape {tuple(tol.shape)}"
        )
    check_finite("tolerance", tol)
    if bool((tol < 0).any()):
        raise ValueError(f"tolerance must be >= 0 in every component, got {tol.tolist()}")
    num_phi = check_int("num_phi", num_phi)
    num_samples = check_int("num_samples", num_samples)
    seed = check_seed("seed", seed)
    check_choice("distribution", distribution, ("uniform", "normal"))
    process = _resolve_process(process)
    return phi, target, tol, num_phi, num_samples, seed, process


def _unit_draws(num_phi, d, distribution, seed):
    g = make_generator(derive_seed(seed, 61))
    if distribution == "uniform":
        return 2.0 * torch.rand(num_phi, d, generator=g, dtype=torch.float64) - 1.0
    return torch.randn(num_phi, d, generator=g, dtype=torch.float64)


def _read_out(phi_star, u, radius, tol, process, properties, target, num_samples, seed, workers,
              chunk_size):
    from .evaluate import simulate_properties

    phis = phi_star + radius * tol * u
    bounds = getattr(process, "phi_bounds", None)
    clipped = 0.0
    if bounds is not None:
        b = torch.as_tensor(bounds, dtype=torch.float64)
        inside = phis.clamp(b[:, 0], b[:, 1])
        clipped = float((inside != phis).any(-1).double().mean())
        phis = inside
    m = simulate_properties(phis, process, properties, num_samples, seed, workers, chunk_size)
    if m.shape[-1] != target.dim:
        raise ValueError(
            f"target has d_m={target.dim} but the property map returns {m.shape[-1]} components"
        )
    if target.kind == "utility":
        per_phi = target.predictive_score(m).double().mean(-1)  # (J,)
        value = per_phi.mean()
        if per_phi.numel() > 1:
            se = per_phi.std() / per_phi.numel() ** 0.5
        else:
            _, se = target.from_simulations(m[0], seed)
        return float(value), float(se), clipped
    value, se = target.from_simulations(m.reshape(-1, m.shape[-1]), seed)
    return float(value), float(se), clipped


def robustness(
    result,
    process,
    properties,
    target=None,
    tolerance=0.1,
    num_phi: int = 32,
    num_samples: int = 32,
    seed: int = 0,
    *,
    distribution: str = "uniform",
    workers: int | None = 1,
    chunk_size: int = 64,
) -> tuple[float, float]:
    """Simulated objective when φ is drawn from the tolerance ball around φ* (module docstring).

    Args:
        result: a :class:`~psppyro.design.DesignResult` (its ``phi_star`` and ``target``) or a
            design φ* of shape (d_φ,).
        process: object with ``sample(phi, num_samples=, seed=)`` or a process preset name.
        properties: property-map name, ``PropertyMap`` or callable x → m.
        target: the target (default: ``result.target``).
        tolerance: per-component tolerance τ (a number or shape (d_φ,)), ≥ 0: the half-width of
            the uniform box, or the standard deviation for ``distribution="normal"``.
        num_phi: J, manufactured φ drawn. num_samples: n simulations per drawn φ. seed: int.
        distribution: ``"uniform"`` (default) or ``"normal"``.
        workers, chunk_size: as for :func:`~psppyro.design.simulate_properties`.

    Returns:
        ``(value, se)``: P(m ∈ M_d) under manufacturing scatter for a Box (mean utility for a
        TargetValue, KL for a TargetDensity) and its standard error.

    Raises:
        ValueError: negative or mis-shaped tolerance, bad sizes or seed, unknown distribution.
        TypeError: no target for a tensor design, a bad process or properties.

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess, white_fraction
        >>> from psppyro.design import Box
        >>> p, se = robustness(torch.tensor([0.8]), CoinProcess(), white_fraction,
        ...                    Box([0.5], [1.5]), tolerance=0.2, num_phi=64, num_samples=16)
        >>> abs(p - 0.8) < 4 * se      # E[phi] = 0.8 for a symmetric ball inside [0, 1]
        True
    """
    phi, target, tol, num_phi, num_samples, seed, process = _prepare(
        result, process, target, tolerance, num_phi, num_samples, seed, distribution
    )
    u = _unit_draws(num_phi, phi.shape[0], distribution, seed)
    value, se, _ = _read_out(phi, u, 1.0, tol, process, properties, target, num_samples,
                             derive_seed(seed, 62), workers, chunk_size)
    return value, se


def robustness_curve(
    result,
    process,
    properties,
    target=None,
    tolerance=0.1,
    radii=(0.0, 0.5, 1.0, 1.5, 2.0),
    num_phi: int = 32,
    num_samples: int = 32,
    seed: int = 0,
    *,
    distribution: str = "uniform",
    label: str | None = None,
    workers: int | None = 1,
    chunk_size: int = 64,
    progress: bool = False,
) -> RobustnessCurve:
    """R(r) = :func:`robustness` at tolerance r · τ for each radius r, with common random numbers.

    Args:
        result, process, properties, target, tolerance: as for :func:`robustness`
            (``tolerance`` is τ, the tolerance at radius 1).
        num_phi, num_samples, seed, distribution, workers, chunk_size: as for
            :func:`robustness`.
        radii: non-negative radii (multiples of τ), e.g. ``(0, 0.5, 1, 2)``.
        label: curve label (default: ``result.method`` or ``"design"``). progress: tqdm bar.

    Returns:
        :class:`RobustnessCurve`.

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess, white_fraction
        >>> from psppyro.design import Box
        >>> c = robustness_curve(torch.tensor([0.9]), CoinProcess(), white_fraction,
        ...                      Box([0.5], [1.5]), tolerance=0.1, radii=(0, 1), num_phi=8,
        ...                      num_samples=8)
        >>> c.values.shape
        torch.Size([2])
    """
    phi, target, tol, num_phi, num_samples, seed, process = _prepare(
        result, process, target, tolerance, num_phi, num_samples, seed, distribution
    )
    radii = as_tensor("radii", radii, dtype=torch.float64).detach().cpu().reshape(-1)
    if radii.numel() == 0:
        raise ValueError("radii must contain at least one radius")
    check_finite("radii", radii)
    if bool((radii < 0).any()):
        raise ValueError(f"radii must be >= 0, got {radii.tolist()}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    u = _unit_draws(num_phi, phi.shape[0], distribution, seed)
    sim_seed = derive_seed(seed, 62)
    values, ses, clipped = [], [], []
    it = radii.tolist()
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="robustness", unit="radius")
    for r in it:
        v, s, c = _read_out(phi, u, r, tol, process, properties, target, num_samples, sim_seed,
                            workers, chunk_size)
        values.append(v)
        ses.append(s)
        clipped.append(c)
    if label is None:
        label = str(getattr(result, "method", "design"))
    return RobustnessCurve(
        radii=radii,
        values=torch.tensor(values, dtype=torch.float64),
        se=torch.tensor(ses, dtype=torch.float64),
        phi_star=phi,
        tolerance=tol,
        distribution=distribution,
        objective=target.objective_name,
        clipped=torch.tensor(clipped, dtype=torch.float64),
        num_phi=num_phi,
        num_samples=num_samples,
        label=label,
    )
