r"""``method="nuts"``: the No-U-Turn sampler on the design posterior p(φ, z | target).

``pyro.infer.NUTS`` in ``MCMC`` on the Pyro model of :func:`~psppyro.design.posterior.design_model`.
Chains run one after another in this process (each with its own derived seed): Pyro's multi-chain
mode forks worker processes, which is fragile with torch threads and not faster on a 2-core machine.
NUTS needs an exact log-density, so O1 is only allowed when the target's log utility has a closed
form for the model (``target.exact_log_density``: diagonal-Normal property model, no temperature); a
Monte Carlo factor would make the sampler invalid.

Per draw it records ``diverging``, the Hamiltonian ``energy`` at the start of the transition
(potential + fresh kinetic energy, what ``arviz.plot_energy`` / BFMI need) and ``lp`` = −potential
energy (the log joint density in the unconstrained space, up to a constant). ``infer_design`` warns
about divergences and R̂ > 1.01.
"""

from __future__ import annotations

import math
import time

import pyro
import torch

from .._random import derive_seed
from .._validation import check_int, check_interval
from .arviz_io import mcmc_diagnostics, to_inference_data
from .posterior import design_model
from .protocol import as_checked
from .registry import MethodOutput, register_method
from .targets import as_target

__all__ = ["run_nuts"]


class _RecordingNUTS(pyro.infer.NUTS):
    """NUTS that remembers the energy at the start of each transition."""

    def sample(self, params):
        self._record_energy = True
        self.last_energy = math.nan
        return super().sample(params)

    def _kinetic_energy(self, r_unscaled):
        ke = super()._kinetic_energy(r_unscaled)
        if getattr(self, "_record_energy", False):
            # First kinetic-energy call of sample(): the fresh momentum at the current point.
            self._record_energy = False
            self.last_energy = float(ke + self._potential_energy_last)
        return ke


def run_nuts(
    model,
    target,
    seed=0,
    progress=False,
    num_samples=500,
    warmup_steps=500,
    num_chains=2,
    target_accept_prob=0.8,
    max_tree_depth=10,
    full_mass=False,
    num_pseudo_data=20,
):
    """NUTS on the design posterior p(φ, z | target); chains run one after another.

    Args:
        model, target: as for :func:`~psppyro.design.posterior.design_model`.
        seed: int seed (chain c uses ``derive_seed(seed, 20, c)``). progress: Pyro's progress bar.
        num_samples, warmup_steps: per chain. num_chains: number of chains.
        target_accept_prob, max_tree_depth: NUTS settings.
        full_mass: adapt a dense mass matrix (helps the strong φ–z correlations of the design
            posterior), else a diagonal one.
        num_pseudo_data: N for O2.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``samples`` (chains, draws, d_φ),
        ``sample_stats`` ``diverging``, ``energy``, ``lp`` (chains, draws) and diagnostics
        ``r_hat`` (NaN for one chain), ``ess_bulk``, ``ess_tail``, ``ess_per_s``, ``divergences``,
        ``accept_rate`` (per chain), ``sampling_time`` (s, warm-up included).

    Raises:
        ValueError: a bad option, or an O1 log utility without closed form for this model/target.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain()
        >>> out = run_nuts(model, Box([0.5], [1.5]), num_samples=20, warmup_steps=20, num_chains=1)
        >>> out.samples.shape, out.sample_stats["energy"].shape
        (torch.Size([1, 20, 1]), torch.Size([1, 20]))
    """
    target = as_target(target)
    num_samples = check_int("num_samples", num_samples)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = check_int("num_chains", num_chains)
    max_tree_depth = check_int("max_tree_depth", max_tree_depth)
    check_interval("target_accept_prob", target_accept_prob, 0.0, 1.0)
    num_pseudo_data = check_int("num_pseudo_data", num_pseudo_data)
    cm = as_checked(model, target)
    phi0 = cm.prior.mean.to(cm.bounds) if cm.has_phi_prior else cm.bounds.mean(-1)
    with torch.no_grad():
        probe = cm.property_dist(phi0, cm.sample_latents(1, torch.Generator().manual_seed(0))[0])
    if not target.exact_log_density(probe):
        raise ValueError(
            "method='nuts' needs an exact log utility: the target must be a Box without "
            "temperature or a TargetValue, and model.property_dist must return "
            f"Independent(Normal, 1); got {type(probe).__name__} for {target!r}"
        )
    pyro_model = design_model(cm, target, num_pseudo_data, seed)
    samples, diverging, accept, energy, lp = [], [], [], [], []
    t0 = time.perf_counter()
    for c in range(num_chains):
        chain_energy, chain_lp = [], []

        def hook(kernel, _params, stage, _i, chain_energy=chain_energy, chain_lp=chain_lp):
            if stage == "Sample":
                chain_energy.append(kernel.last_energy)
                chain_lp.append(-float(kernel._potential_energy_last))

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 20, c))
            kernel = _RecordingNUTS(
                pyro_model,
                target_accept_prob=float(target_accept_prob),
                max_tree_depth=max_tree_depth,
                full_mass=bool(full_mass),
            )
            mcmc = pyro.infer.MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=1,
                disable_progbar=not progress,
                hook_fn=hook,
            )
            mcmc.run()
        samples.append(mcmc.get_samples()["phi"].detach())
        diag = mcmc.diagnostics()
        div = torch.zeros(num_samples, dtype=torch.bool)
        idx = diag.get("divergences", {}).get("chain 0", [])
        if len(idx):
            div[torch.as_tensor(list(idx), dtype=torch.long)] = True
        diverging.append(div)
        accept.append(float(diag.get("acceptance rate", {}).get("chain 0", float("nan"))))
        energy.append(torch.tensor(chain_energy, dtype=torch.float64))
        lp.append(torch.tensor(chain_lp, dtype=torch.float64))
    sampling_time = time.perf_counter() - t0
    diverging = torch.stack(diverging)
    samples = torch.stack(samples)
    mcmc_diag = mcmc_diagnostics(to_inference_data(samples, cm.names))
    return MethodOutput(
        samples=samples,
        sample_stats={"diverging": diverging, "energy": torch.stack(energy), "lp": torch.stack(lp)},
        diagnostics={
            **mcmc_diag,
            "ess_per_s": float(min(mcmc_diag["ess_bulk"])) / sampling_time,
            "divergences": int(diverging.sum()),
            "accept_rate": accept,
            "sampling_time": sampling_time,
        },
    )


register_method("nuts", run_nuts)
