r"""The true answer by simulation: evaluate designs with the real process and property solver.

A model's predicted P(m ∈ M_d | φ*) is only as good as the model. :func:`evaluate` runs the true
chain φ → x ~ p(x | φ) (``process.sample``) → m = f(x) (a property map) ``num_samples`` times and
reports

- Box: :math:`\hat p = \frac1n\sum_i 1[m_i ∈ M_d]` with the binomial standard error
  :math:`\sqrt{\hat p(1-\hat p)/n}`;
- TargetValue: the mean utility :math:`\frac1n\sum_i e^{-τ\|m_i - m_t\|^2}` with s.e. sd/√n;
- TargetDensity (O2): KL(p_target ‖ N(m̄, Σ̂)), a *Gaussian approximation* of p(m | φ) fitted to the
  simulated m (closed form when the target is (multivariate) Normal, Monte Carlo over 4096 target
  draws otherwise), with a bootstrap standard error (200 resamples of the simulated m).

Reproducibility and parallelism follow data generation
(``docs/architecture.md`` § "Randomness and seeding"): the simulations at φ_i are cut into chunks of
``chunk_size`` and chunk c draws with ``derive_seed(seed, i, c)``, so the answer does not depend on
``workers`` (a ``spawn`` process pool; each worker uses one torch thread).

:func:`reference_map` evaluates the same on a tensor grid over the φ box (the paper's Figure 3) and
:func:`design_table` prints a Table-1-style comparison of designs.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import torch

from .._random import derive_seed
from .._validation import as_tensor, check_in_bounds, check_last_dim, check_seed
from .._validation import check_int as _check_int
from .targets import Box, as_target  # noqa: F401  (Box: used by the doctests)

__all__ = ["ReferenceMap", "design_table", "evaluate", "reference_map", "simulate_properties"]


def _property_fn(properties):
    """A callable x -> m (..., d_m) from a registry name, a PropertyMap or a callable."""
    if isinstance(properties, str):
        from ..properties import property_map

        return property_map(properties)
    if callable(properties):
        return properties
    raise TypeError(
        "properties must be a property-map name (see psppyro.properties.PROPERTY_MAPS), a "
        f"PropertyMap or a callable x -> m, got {type(properties).__name__}"
    )


def _simulate_chunk(process, prop, phi_row, n, seed):
    x = process.sample(phi_row, num_samples=n, seed=seed)
    m = prop(x)
    if isinstance(m, tuple):  # PropertyMap.evaluate-style (m, flags)
        m = m[0]
    return torch.as_tensor(m).detach().cpu()


def _worker_init():
    torch.set_num_threads(1)


def _check_not_in_worker_bootstrap():
    """Refuse to run while a pool worker re-imports the main module (a script without the guard).

    The worker would otherwise re-run the user's script from the top; failing here makes it exit
    at once, and the parent then explains the guard (:func:`_pool_failure`).
    """
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError(
            "simulate_properties was called while a worker process imported the main module: the "
            'script calls it without an `if __name__ == "__main__":` guard'
        )


def _pool_failure(workers, err):
    return RuntimeError(
        f"simulate_properties(workers={workers}): the worker processes could not start or died "
        f"({type(err).__name__}: {err}). Each worker imports the main module, so (1) a script "
        'must make this call under `if __name__ == "__main__":`, and (2) code run from standard '
        "input (python - < script.py) or a notebook cannot use workers > 1, nor can processes, "
        "property maps or functions (lambdas) defined there: the workers cannot import them. Put "
        "the call under the guard in a script file and custom code in an importable module, or "
        "use workers=1 (in-process, the default; the results are identical). A worker killed by "
        "the system (e.g. out of memory) also gives this error"
    )


def _task(args):
    process, prop, phi_row, n, seed = args
    return _simulate_chunk(process, prop, phi_row, n, seed)


def simulate_properties(
    phi,
    process,
    properties,
    num_samples: int,
    seed: int = 0,
    workers: int | None = 1,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Simulate m for each φ: Tensor ``(*phi.shape[:-1], num_samples, d_m)`` (float64, on CPU).

    Args:
        phi: Tensor (d_φ,) or (..., d_φ), inside ``process.phi_bounds`` when the process has them.
        process: object with ``sample(phi, num_samples=n, seed=s)`` → images ``(n, *image)``.
        properties: property-map name (e.g. ``"log_permeability"``), ``PropertyMap`` or callable
            x → m (..., d_m).
        num_samples: simulations per φ. seed: int.
        workers: process-pool size; 1 or ``None`` computes in this process (works in any script,
            from standard input and in notebooks). ``workers > 1`` needs the
            ``if __name__ == "__main__":`` guard in scripts, and a process and property map that
            the workers can import (not defined in ``__main__``, no lambdas).
        chunk_size: simulations per task (fixes the seeds: keep it when comparing runs).

    Returns:
        Tensor of simulated properties (identical for any ``workers``).

    Raises:
        ValueError: for bad sizes or seed, φ outside the bounds.
        RuntimeError: if the pool of ``workers > 1`` cannot start (the message explains why).

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess, white_fraction
        >>> m = simulate_properties(torch.tensor([0.5]), CoinProcess(), white_fraction, 8)
        >>> m.shape
        torch.Size([8, 1])
    """
    _check_not_in_worker_bootstrap()
    num_samples = _check_int("num_samples", num_samples)
    workers = 1 if workers is None else _check_int("workers", workers)
    chunk_size = _check_int("chunk_size", chunk_size)
    seed = check_seed("seed", seed)
    prop = _property_fn(properties)
    bounds = getattr(process, "phi_bounds", None)
    phi = as_tensor("phi", phi)
    if phi.dim() == 0:
        raise ValueError("phi must have shape (d_phi,) or (..., d_phi), got a scalar")
    if bounds is not None:
        bounds = torch.as_tensor(bounds)
        check_last_dim("phi", phi, bounds.shape[0])
        check_in_bounds("phi", phi, bounds)
    batch = phi.shape[:-1]
    rows = phi.detach().cpu().reshape(-1, phi.shape[-1])
    tasks = []
    for i, row in enumerate(rows):
        for c, start in enumerate(range(0, num_samples, chunk_size)):
            n = min(chunk_size, num_samples - start)
            tasks.append((process, prop, row, n, derive_seed(seed, i, c)))
    if workers == 1:
        chunks = [_task(t) for t in tasks]
    else:
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool
        from pickle import PicklingError

        try:
            with ProcessPoolExecutor(
                workers, mp.get_context("spawn"), initializer=_worker_init
            ) as ex:
                chunks = list(ex.map(_task, tasks))
        except (BrokenProcessPool, PicklingError) as err:
            raise _pool_failure(workers, err) from err
    m = torch.cat(chunks, 0).double()
    return m.reshape(*batch, num_samples, m.shape[-1])


def _resolve_process(process):
    """A process preset name → ``psppyro.process.preset(name)``; a process object passes through."""
    if isinstance(process, str):
        from ..process import preset

        return preset(process)
    if not callable(getattr(process, "sample", None)):
        raise TypeError(
            "process must be a process preset name (e.g. 'pspgen36') or an object with "
            f"sample(phi, num_samples=, seed=), got {type(process).__name__}"
        )
    return process


def evaluate(
    phi,
    process,
    properties,
    target,
    num_samples=1000,
    seed=0,
    workers=1,
    chunk_size=64,
    return_samples=False,
):
    """True-simulator objective at φ with its standard error (module docstring).

    Args:
        phi: Tensor (d_φ,) or (..., d_φ).
        process: object with ``sample(phi, num_samples=, seed=)`` (e.g. ``pp.process.preset(...)``),
            or a process preset name such as ``"pspgen36"``.
        properties: property-map name, ``PropertyMap`` or callable x → m.
        target: Box, TargetValue or TargetDensity (d_m must match the property map; checked
            before any simulation for a name or ``PropertyMap``).
        num_samples: simulations per φ. seed: int. workers: process-pool size.
        chunk_size: simulations per task (part of the seeding; see module docstring).
        return_samples: also return the simulated m.

    Returns:
        ``(value, se)`` tensors of shape ``phi.shape[:-1]`` (0-d for one φ); with
        ``return_samples``, ``(value, se, m)``.

    Raises:
        ValueError: φ outside the process bounds or of the wrong dimension, d_m mismatch, bad sizes.

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess, white_fraction
        >>> p, se = evaluate(torch.tensor([0.3]), CoinProcess(), white_fraction, Box([0.5], [1.5]),
        ...                  2000, seed=0)
        >>> abs(float(p) - 0.3) < 4 * float(se)
        True
    """
    target = as_target(target)
    process = _resolve_process(process)
    pm_dim = getattr(_property_fn(properties), "dim", None)  # a PropertyMap knows its d_m
    if isinstance(pm_dim, int) and pm_dim != target.dim:
        raise ValueError(
            f"target has d_m={target.dim} but the property map returns {pm_dim} components"
        )
    m = simulate_properties(phi, process, properties, num_samples, seed, workers, chunk_size)
    if m.shape[-1] != target.dim:
        raise ValueError(
            f"target has d_m={target.dim} but the property map returns {m.shape[-1]} components"
        )
    batch = m.shape[:-2]
    flat = m.reshape(-1, num_samples, m.shape[-1])
    vals, ses = zip(*[target.from_simulations(mi, seed) for mi in flat])
    value = torch.stack(vals).reshape(batch)
    se = torch.stack(ses).reshape(batch)
    return (value, se, m) if return_samples else (value, se)


@dataclass
class ReferenceMap:
    """Objective on a tensor grid over φ, from :func:`reference_map`.

    Attributes:
        axes: list of d_φ 1-D tensors (grid coordinates per component).
        values, se: tensors of shape (len(axes[0]), …, len(axes[-1])) (``indexing="ij"``).
        target: the target; per_phi: simulations per grid point; phi_names: component names.
        objective: ``"probability" | "expected_utility" | "kl"``.

    Example::

        >>> r = ReferenceMap([torch.tensor([0.0, 1.0])], torch.tensor([0.2, 0.8]), torch.zeros(2),
        ...                  Box([0.0], [1.0]), 10)
        >>> r.argmax().tolist()
        [1.0]
    """

    axes: list
    values: torch.Tensor
    se: torch.Tensor
    target: object
    per_phi: int
    phi_names: list = field(default_factory=list)
    objective: str = "probability"

    def grid(self):
        """All grid points as a Tensor (n_points, d_φ) in the order of ``values.flatten()``."""
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        return torch.stack([t.reshape(-1) for t in mesh], -1)

    def argmax(self):
        """The grid point with the best value (max; min for a KL)."""
        flat = self.values.reshape(-1)
        i = self.target.best_index(flat)
        return self.grid()[i]


def reference_map(
    process,
    properties,
    target,
    grid=11,
    per_phi=100,
    seed=0,
    workers=1,
    bounds=None,
    chunk_size=64,
    phi_names=None,
):
    """The simulated objective on a φ grid (the paper's Figure 3 reference).

    Args:
        process: object with ``sample`` and ``phi_bounds`` (or pass ``bounds``).
        properties: property-map name, ``PropertyMap`` or callable.
        target: Box, TargetValue or TargetDensity.
        grid: int (points per axis), sequence of ints (per axis), or sequence of 1-D coordinate
            arrays (one per φ component).
        per_phi: simulations per grid point. seed, workers, chunk_size: as in :func:`evaluate`.
        bounds: Tensor (d_φ, 2) overriding ``process.phi_bounds`` (must be finite).
        phi_names: optional names for the φ components.

    Returns:
        :class:`ReferenceMap`.

    Example::

        >>> from psppyro._doctest_fixtures import CoinProcess, white_fraction
        >>> ref = reference_map(CoinProcess(), white_fraction, Box([0.5], [1.5]), grid=3,
        ...                     per_phi=50)
        >>> ref.values.shape
        torch.Size([3])
    """
    target = as_target(target)
    if bounds is None:
        if getattr(process, "phi_bounds", None) is None:
            raise ValueError("bounds must be given when process has no phi_bounds")
        bounds = process.phi_bounds
    bounds = as_tensor("bounds", bounds).double()
    if bounds.dim() != 2 or bounds.shape[-1] != 2:
        raise ValueError(f"bounds must have shape (d_phi, 2), got {tuple(bounds.shape)}")
    if not bool(torch.isfinite(bounds).all()):
        raise ValueError(f"bounds must be finite for a grid, got {bounds.tolist()}")
    d = bounds.shape[0]
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = [grid] * d
    grid = list(grid)
    if len(grid) != d:
        raise ValueError(f"grid must have one entry per phi component ({d}), got {len(grid)}")
    axes = []
    for i, g in enumerate(grid):
        if isinstance(g, int) and not isinstance(g, bool):
            _check_int(f"grid[{i}]", g, minimum=1)
            axes.append(
                torch.linspace(float(bounds[i, 0]), float(bounds[i, 1]), g, dtype=torch.float64)
            )
        else:
            a = as_tensor(f"grid[{i}]", g).double().reshape(-1)
            axes.append(a)
    ref = ReferenceMap(
        axes, None, None, target, per_phi, list(phi_names or [f"phi_{i}" for i in range(d)])
    )
    ref.objective = target.objective_name
    pts = ref.grid().to(torch.get_default_dtype())
    value, se = evaluate(pts, process, properties, target, per_phi, seed, workers, chunk_size)
    shape = tuple(len(a) for a in axes)
    ref.values, ref.se = value.reshape(shape), se.reshape(shape)
    return ref


def design_table(results, evaluations=None, reference=None):
    """A Table-1-style plain-text table of designs.

    Args:
        results: dict label → :class:`~psppyro.design.DesignResult`.
        evaluations: optional dict label → ``(value, se)`` from :func:`evaluate`.
        reference: optional dict label → :class:`ReferenceMap` (its best grid point and value
        are shown).

    Returns:
        str.

    Example::

        >>> print(design_table({}).splitlines()[0].split()[:3])
        ['design', 'method', 'phi_star']
    """
    evaluations = evaluations or {}
    reference = reference or {}
    head = (
        f"{'design':<14} {'method':<6} {'phi_star':<28} {'model':>17} {'simulated':>17} "
        f"{'grid best':>28} {'time_s':>8}"
    )
    lines = [head, "-" * len(head)]
    for label, res in results.items():
        phi = "(" + ", ".join(f"{float(v):.3g}" for v in res.phi_star) + ")"
        model = f"{res.objective:.3f} ± {res.objective_se:.3f}"
        sim = ""
        if label in evaluations:
            v, s = evaluations[label]
            sim = f"{float(v):.3f} ± {float(s):.3f}"
        grid = ""
        if label in reference:
            ref = reference[label]
            best = ref.argmax()
            flat = ref.values.reshape(-1)
            bv = float(flat[ref.target.best_index(flat)])
            grid = "(" + ", ".join(f"{float(v):.3g}" for v in best) + f") {bv:.3f}"
        lines.append(
            f"{label:<14} {res.method:<6} {phi:<28} {model:>17} {sim:>17} {grid:>28} "
            f"{res.wall_time:>8.1f}"
        )
    return "\n".join(lines)
