r"""Active learning for surrogate-driven design (Rixner & Koutsourelakis 2022, Algorithm 1).

A surrogate trained on microstructures from p(x | φ(0)) extrapolates badly where the optimum
lies, so the training data are enriched where the *design objective* is uncertain. Starting from
D(0) (N_0 ancestral samples φ_n ~ p(φ) = N(0, I), x_n ~ p(x | φ_n), κ_n = κ(x_n) by the true
solvers), each step l

1. trains the surrogate on D(l) (from scratch, seeded: ``surrogate.reset_parameters`` when it has
   one),
2. runs VB-EM (:mod:`psppyro.design.vbem`) on the chain → φ*_l and the variational q^(l),
3. evaluates φ*_l with the true simulator (:func:`~psppyro.design.evaluate`: P(κ ∈ K | φ*_l) for a
   Box, the expected utility for a TargetValue, the KL for a TargetDensity),
4. draws N_pool candidates x from q^(l)(x) (white noise z ~ q's z-marginal, binary x at φ*_l),
   scores them with the acquisition function and simulates the N_add best:

.. math::

    α(x) = \mathrm{Var}_{p_M(κ|x)}[u(κ)] \quad\text{(O1)}, \qquad
    α(x) = \frac1S\sum_{s=1}^S \log p_M(κ^{(s)} \mid x),\ κ^{(s)} ∼ p_{target} \quad\text{(O2)}.

For a Box, Var[1_K] = P(1 − P) with P the closed-form box probability of the diagonal Gaussian;
for a TargetValue :math:`\mathrm{Var}[u] = E[u_{2τ}] - E[u_τ]^2` in closed form
(:func:`acquisition_scores`). ``acquisition="random"`` is the paper's baseline: the same number
of new simulations from ancestral samples (randomized data, no use of the objective).

The chain is any object with ``process`` (``sample``, ``phi_prior``), ``surrogate`` (``fit(x, m,
seed=, progress=)``, ``property_dist(x)``) and ``structures(phi, z, hard=True)`` — e.g.
:class:`~psppyro.models.SurrogateChain`; design reaches the model only through it and the design
protocol (``docs/architecture.md`` § "The design protocol").

*Interruptible.* With ``state_dir`` the data set, the records and the surrogate are written after
every step (``state.pt``, ``records.json``); calling again with the same arguments resumes after
the last completed step.

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). npj Computational Materials 8, 46 (Eqs. 7–8,
    Algorithm 1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._random import derive_seed
from .._validation import check_choice, check_int, check_seed
from .evaluate import _property_fn, evaluate
from .infer import _frozen
from .protocol import validate_model
from .results import to_json_value
from .targets import Box, TargetDensity, TargetValue, as_target
from .vbem import run_vbem

__all__ = ["ActiveLearningResult", "acquisition_scores", "active_learning"]

ACQUISITIONS = ("variance", "random")


def acquisition_scores(dist, target, draws: torch.Tensor | None = None) -> torch.Tensor:
    r"""α(x) for surrogate predictions ``dist`` = p_M(κ | x) (batch shape (n,)): higher = acquire.

    Args:
        dist: property distribution with event shape (d_m,), e.g. ``surrogate.property_dist(x)``.
        target: Box or TargetValue (α = Var[u(κ)]) or TargetDensity (α = mean log p_M(κ_s | x)).
        draws: target draws (S, d_m), required for a TargetDensity.

    Returns:
        Tensor of dist's batch shape.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> d = Independent(Normal(torch.tensor([[0.0], [0.5], [3.0]]), 0.1), 1)
        >>> acquisition_scores(d, Box([0.5], [1.0])).argmax().item()   # on the edge: P = 1/2
        1
    """
    target = as_target(target)
    if isinstance(target, TargetDensity):
        if draws is None:
            raise ValueError("draws (S, d_m) of the target are required for a TargetDensity")
        nb = len(dist.batch_shape)
        m = draws.reshape(draws.shape[0], *([1] * nb), draws.shape[-1]).to(dist.mean)
        return dist.log_prob(m).mean(0)
    if isinstance(target, Box):
        p = Box(target.low, target.high).log_utility(dist).exp()
        return p * (1 - p)
    if isinstance(target, TargetValue):
        e1 = target.log_utility(dist).exp()
        e2 = TargetValue(target.m_target, tau=2 * target.tau).log_utility(dist).exp()
        return (e2 - e1**2).clamp_min(0.0)
    raise TypeError(f"target must be a Box, TargetValue or TargetDensity, got {target!r}")


@dataclass
class ActiveLearningResult:
    """What :func:`active_learning` returns.

    Attributes:
        records: one dict per step: ``step``, ``n_data``, ``phi_star``, ``objective`` and
            ``objective_se`` (true simulator at φ*), ``objective_name``, ``vbem`` diagnostics and
            ``wall`` (seconds per stage: ``train``, ``vbem``, ``evaluate``, ``acquire``,
            ``simulate``).
        phi0: the initial φ(0) (Tensor (d_φ,)); ``objective0``/``objective0_se`` there.
        samples: simulated properties at φ* per step (list of Tensors (n_eval, d_m)).
        samples0: simulated properties at φ(0).
        x, m: the final data set. wall_initial: seconds to simulate D(0).
    """

    records: list
    phi0: torch.Tensor
    objective0: float
    objective0_se: float
    samples: list = field(default_factory=list)
    samples0: torch.Tensor | None = None
    x: torch.Tensor | None = None
    m: torch.Tensor | None = None
    wall_initial: float = 0.0

    @property
    def phi_star(self) -> torch.Tensor:
        """φ* of the last step."""
        return torch.tensor(self.records[-1]["phi_star"])

    def to_dict(self) -> dict:
        """JSON-serializable summary (records, φ(0) and its objective)."""
        return {
            "records": to_json_value(self.records),
            "phi0": to_json_value(self.phi0),
            "objective0": self.objective0,
            "objective0_se": self.objective0_se,
            "wall_initial": self.wall_initial,
        }


def _ancestral(process, n, seed):
    """n ancestral samples: φ ~ prior, one binary x per φ."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 1))
        phi = process.phi_prior.sample((n,))
    x = process.sample(phi, num_samples=1, seed=derive_seed(seed, 2))[:, 0]
    return phi, x


def _simulate(prop, x, chunk=64, bar=None):
    out = []
    for start in range(0, x.shape[0], chunk):
        m = prop(x[start : start + chunk])
        if isinstance(m, tuple):
            m = m[0]
        out.append(torch.as_tensor(m).detach().double().cpu())
        if bar is not None:
            bar.update(min(chunk, x.shape[0] - start))
    return torch.cat(out)


def _train(surrogate, x, m, seed, fit_options, progress):
    if hasattr(surrogate, "reset_parameters"):
        surrogate.reset_parameters(seed=derive_seed(seed, 0))
    for p in surrogate.parameters():
        p.requires_grad_(True)
    surrogate.fit(x, m, seed=seed, progress=progress, **fit_options)


def active_learning(
    chain,
    target,
    properties,
    *,
    steps: int = 4,
    n_initial: int = 2048,
    n_pool: int = 4096,
    n_add: int = 1024,
    acquisition: str = "variance",
    num_eval_samples: int = 1024,
    vbem_options: dict | None = None,
    fit_options: dict | None = None,
    warm_start: bool = True,
    state_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ActiveLearningResult:
    """Algorithm 1 of Rixner & Koutsourelakis: train, VB-EM, evaluate, acquire; ``steps`` times.

    Args:
        chain: trainable chain (module docstring), e.g. ``SurrogateChain(preset("rixner64"),
            ProbabilisticCNN())``.
        target: Box, TargetValue (O1) or TargetDensity (O2).
        properties: the true property map (name, ``PropertyMap`` or callable x → m).
        steps: L, acquisition steps (the surrogate is trained L + 1 times).
        n_initial: N_0 ancestral samples in D(0). n_pool: N_pool candidates per step.
        n_add: N_add simulations added per step (≤ n_pool).
        acquisition: ``"variance"`` (α of the module docstring) or ``"random"`` (ancestral data).
        num_eval_samples: true simulations at φ* per step (and at φ(0)).
        vbem_options: options of :func:`~psppyro.design.vbem.run_vbem`.
        fit_options: options of the surrogate's ``fit`` (epochs, lr, ...).
        warm_start: start each VB-EM after the first at the previous φ* (default) instead of φ(0).
        state_dir: folder for the per-step state (resume after an interruption).
        seed: int seed. progress: tqdm bars.

    Returns:
        :class:`ActiveLearningResult`.

    Raises:
        ValueError: bad sizes or acquisition; a ``state_dir`` written with other arguments.
        TypeError: a chain without ``process``, ``surrogate`` or ``structures``.

    Example::

        >>> from psppyro.process import preset
        >>> from psppyro.models import ProbabilisticCNN, SurrogateChain
        >>> from psppyro._doctest_fixtures import white_fraction
        >>> proc = preset("rixner64", shape=(16, 16))
        >>> chain = SurrogateChain(proc, ProbabilisticCNN((16, 16), 1))
        >>> res = active_learning(chain, Box([0.45], [0.55]), white_fraction, steps=1,
        ...     n_initial=32, n_pool=16, n_add=8, num_eval_samples=8, fit_options={"epochs": 1},
        ...     vbem_options={"max_iter": 2, "e_steps": 1, "num_particles": 1, "rank": 2})
        >>> [r["n_data"] for r in res.records]
        [32, 40]
    """
    for attr in ("process", "surrogate", "structures"):
        if not hasattr(chain, attr):
            raise TypeError(f"chain must have {attr!r} (see the module docstring), got "
                            f"{type(chain).__name__}")
    target = as_target(target)
    steps = check_int("steps", steps, minimum=0)
    n_initial = check_int("n_initial", n_initial, minimum=2)
    n_pool = check_int("n_pool", n_pool)
    n_add = check_int("n_add", n_add)
    if n_add > n_pool:
        raise ValueError(f"n_add must be <= n_pool ({n_pool}), got {n_add}")
    num_eval_samples = check_int("num_eval_samples", num_eval_samples, minimum=2)
    check_choice("acquisition", acquisition, ACQUISITIONS)
    seed = check_seed("seed", seed)
    vbem_options = dict(vbem_options or {})
    fit_options = dict(fit_options or {})
    for reserved in ("init", "seed", "progress"):
        if reserved in vbem_options:
            raise ValueError(f"vbem_options must not set {reserved!r} (active_learning does)")
    prop = _property_fn(properties)
    process, surrogate = chain.process, chain.surrogate
    config = {
        "target": target.config(), "steps": steps, "n_initial": n_initial, "n_pool": n_pool,
        "n_add": n_add, "acquisition": acquisition, "num_eval_samples": num_eval_samples,
        "vbem_options": vbem_options, "fit_options": fit_options, "seed": seed,
        "warm_start": warm_start,
    }
    density = isinstance(target, TargetDensity)
    draws = None
    if density:
        s = vbem_options.get("num_target_samples", 20)
        draws = target.draws(s, seed=derive_seed(seed, 8)).float()

    state_path = None
    records, samples = [], []
    if state_dir is not None:
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        state_path = state_dir / "state.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 4))
        phi0 = process.phi_prior.sample().to(torch.get_default_dtype())
    if state_path is not None and state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        if st["config"] != json.loads(json.dumps(to_json_value(config))):
            raise ValueError(
                f"state_dir {str(state_dir)!r} holds a run with other arguments "
                f"({st['config']}); use another folder"
            )
        x, m, records, samples = st["x"].float(), st["m"], st["records"], st["samples"]
        obj0, se0, samples0 = st["objective0"], st["objective0_se"], st["samples0"]
        wall_initial = st["wall_initial"]
    else:
        t0 = time.perf_counter()
        _, x = _ancestral(process, n_initial, derive_seed(seed, 10))
        m = _simulate(prop, x)
        wall_initial = time.perf_counter() - t0
        v0, s0, samples0 = evaluate(phi0, process, prop, target, num_eval_samples,
                                    seed=derive_seed(seed, 20), return_samples=True)
        obj0, se0 = float(v0), float(s0)
        records = []
        samples0 = samples0.reshape(-1, samples0.shape[-1])

    phi_prev = phi0
    if records:
        phi_prev = torch.tensor(records[-1]["phi_star"])
    for step in range(len(records), steps + 1):
        wall = {}
        t = time.perf_counter()
        _train(surrogate, x, m.float(), derive_seed(seed, 30, step), fit_options, progress)
        wall["train"] = time.perf_counter() - t
        t = time.perf_counter()
        with _frozen(surrogate):
            cm = validate_model(chain, target)
            init = phi_prev if (warm_start or step == 0) else phi0
            out = run_vbem(cm, target, seed=derive_seed(seed, 40, step), progress=progress,
                           init=init, **vbem_options)
        wall["vbem"] = time.perf_counter() - t
        phi_star = out.phi_star.detach()
        t = time.perf_counter()
        val, se, ms = evaluate(phi_star, process, prop, target, num_eval_samples,
                               seed=derive_seed(seed, 50, step), return_samples=True)
        wall["evaluate"] = time.perf_counter() - t
        samples.append(ms.reshape(-1, ms.shape[-1]))
        rec = {
            "step": step, "n_data": int(x.shape[0]), "phi_star": phi_star.tolist(),
            "objective": float(val), "objective_se": float(se),
            "objective_name": target.objective_name,
            "vbem": dict(out.diagnostics),
            "elbo": out.history["elbo"],
        }
        if step < steps:
            t = time.perf_counter()
            if acquisition == "random":
                _, x_new = _ancestral(process, n_add, derive_seed(seed, 60, step))
            else:
                z = out.extras["sample_latents"](n_pool, seed=derive_seed(seed, 61, step))
                with torch.no_grad():
                    xs, scores = [], []
                    for start in range(0, n_pool, 256):
                        xp = chain.structures(phi_star, z[start : start + 256], hard=True)
                        xs.append(xp.float())
                        d = surrogate.property_dist(xp.float())
                        scores.append(acquisition_scores(d, target, draws).float())
                    x_pool, score = torch.cat(xs), torch.cat(scores)
                top = torch.topk(score, n_add).indices
                x_new = x_pool[top]
                rec["acquisition_score_mean_selected"] = float(score[top].mean())
                rec["acquisition_score_mean_pool"] = float(score.mean())
            wall["acquire"] = time.perf_counter() - t
            t = time.perf_counter()
            m_new = _simulate(prop, x_new)
            wall["simulate"] = time.perf_counter() - t
            x = torch.cat([x, x_new.float()])
            m = torch.cat([m, m_new])
        rec["wall"] = wall
        records.append(rec)
        phi_prev = phi_star
        if state_path is not None:
            tmp = state_path.with_name("state.pt.tmp")
            torch.save({"config": json.loads(json.dumps(to_json_value(config))),
                        "x": x.to(torch.uint8), "m": m, "records": records, "samples": samples,
                        "objective0": obj0, "objective0_se": se0, "samples0": samples0,
                        "wall_initial": wall_initial}, tmp)
            tmp.replace(state_path)
            (state_dir / "records.json").write_text(
                json.dumps(to_json_value(records), indent=1), encoding="utf-8")
    return ActiveLearningResult(records, phi0, obj0, se0, samples, samples0, x, m, wall_initial)
