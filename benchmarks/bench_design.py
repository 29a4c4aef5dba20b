"""Benchmark of the design methods (sga | svi | nuts | flow) on one model and one target.

Per method: wall time, φ*, the model-predicted P(m ∈ M_d | φ*) ± MC s.e., the true P at φ* (exact
for the analytic toy; by simulation with ``--process`` for a trained model), NUTS ESS per
second, and the
distances of the SVI and flow posteriors to NUTS (energy distance, per-φ Wasserstein-1).

Models:
  * default: the analytic linear-Gaussian toy of ``tests/design/test_infer.py`` (φ ∈ [−3, 3]²,
    m = Aφ + 0.5 z + 0.5 ε), where P(m ∈ M_d | φ) is known in closed form;
  * ``--model PATH``: a trained PSP-GEN (``psppyro.models.PSPGen.load``), e.g. case 1, with
    ``--low/--high`` the box (default the paper's M_d^L) and optionally
    ``--process pspgen36`` for the
    simulated probability at each φ*.

Usage::

    python benchmarks/bench_design.py --quick
    python benchmarks/bench_design.py --model pspgen_case1.pt --process pspgen36 \\
        --low -10 -7 --high -9 -5 --sim-samples 500
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch.distributions import Independent, Normal
from torch.special import ndtr

import psppyro as pp
from psppyro.design import Box, compare_posteriors

A = torch.tensor([[1.0, 0.5], [0.0, 1.0]])


class LinearToy:
    """m | φ, z ~ N(Aφ + 0.5 z, 0.5² I), φ ∈ [−3, 3]², z ~ N(0, I₂)."""

    phi_bounds = torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    latent_dim = 2
    phi_names = ["phi_1", "phi_2"]

    def property_dist(self, phi, z):
        return Independent(Normal(phi @ A.T + 0.5 * z, 0.5), 1)

    @staticmethod
    def exact_probability(phi, box):
        m = phi @ A.T
        s = math.sqrt(0.5)
        return float((ndtr((box.high - m) / s) - ndtr((box.low - m) / s)).prod())


def _settings(quick):
    if quick:
        return {
            "sga": dict(num_z=2000, epochs=4, restarts=2),
            "svi": dict(num_steps=300, lr=0.03, num_samples=500),
            "nuts": dict(num_samples=150, warmup_steps=100, num_chains=2),
            "flow": dict(
                num_steps=300, lr=0.01, num_samples=500, hidden_features=(32, 32), transforms=2
            ),
        }
    return {
        "sga": dict(),  # the paper's defaults: M = 50 000, batch 100, lr 0.2, 20 epochs
        "svi": dict(num_steps=3000, lr=0.01, num_samples=2000),
        "nuts": dict(num_samples=1000, warmup_steps=500, num_chains=2),
        "flow": dict(num_steps=3000, lr=0.005, num_samples=2000),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke run)")
    ap.add_argument("--model", default=None, help="trained PSPGen file (default: analytic toy)")
    ap.add_argument("--process", default=None, help="process preset for simulated P (with --model)")
    ap.add_argument("--properties", default="log_permeability")
    ap.add_argument("--low", type=float, nargs="+", default=None)
    ap.add_argument("--high", type=float, nargs="+", default=None)
    ap.add_argument("--methods", nargs="+", default=["sga", "svi", "nuts", "flow"])
    ap.add_argument("--sim-samples", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.model:
        from psppyro.models import PSPGen

        model = PSPGen.load(args.model)
        box = Box(args.low or [-10.0, -7.0], args.high or [-9.0, -5.0])
        name = f"PSPGen({args.model})"
    else:
        model = LinearToy()
        box = Box(args.low or [0.4, -0.6], args.high or [0.8, -0.2])
        name = "analytic linear-Gaussian toy"
    process = pp.process.preset(args.process) if args.process else None
    settings = _settings(args.quick)
    print(f"model: {name}; target: {box!r}; torch threads: {torch.get_num_threads()}")
    print(
        f"settings ({'quick' if args.quick else 'full'}): "
        f"{ {m: settings[m] for m in args.methods} }"
    )

    results = {}
    head = (
        f"{'method':<6} {'wall_s':>8} {'phi_star':<26} {'P model':>17} {'P true':>17} {'extra':<30}"
    )
    print(head)
    print("-" * len(head))
    for method in args.methods:
        t0 = time.perf_counter()
        res = pp.infer_design(model, box, method=method, seed=args.seed, **settings[method])
        wall = time.perf_counter() - t0
        results[method] = res
        phi = "(" + ", ".join(f"{float(v):.3f}" for v in res.phi_star) + ")"
        true = ""
        if process is not None:
            v, se = pp.design.evaluate(
                res.phi_star,
                process,
                args.properties,
                box,
                num_samples=args.sim_samples,
                seed=args.seed + 1,
                workers=args.workers,
            )
            true = f"{float(v):.3f} ± {float(se):.3f}"
        elif isinstance(model, LinearToy):
            true = f"{model.exact_probability(res.phi_star, box):.4f} (exact)"
        extra = ""
        if method == "nuts":
            extra = (
                f"ESS/s {res.diagnostics['ess_per_s']:.2f}, r_hat "
                f"{max(res.diagnostics['r_hat']):.3f}, div {res.diagnostics['divergences']}"
            )
        elif method in ("svi", "flow"):
            extra = f"k_hat {res.diagnostics['khat']:.2f}"
        print(
            f"{method:<6} {wall:>8.2f} {phi:<26} "
            f"{res.probability:>8.4f} ± {res.probability_se:.4f} {true:>17} {extra:<30}"
        )
    if isinstance(model, LinearToy):
        p_opt = model.exact_probability(torch.linalg.solve(A, box.center), box)
        print(
            f"exact optimum: phi* = {torch.linalg.solve(A, box.center).tolist()}, P = {p_opt:.4f}"
        )
    if "nuts" in results:
        for other in ("svi", "flow"):
            if other in results:
                c = compare_posteriors(
                    results[other],
                    results["nuts"],
                    model=model,
                    target=box,
                    num_samples=2000,
                    seed=args.seed,
                )
                w = ", ".join(f"{x:.3f}" for x in c.wasserstein)
                fr = ", ".join(f"{lab} {v:.3f}±{s:.3f}" for lab, (v, s) in c.in_target.items())
                print(
                    f"{other} vs nuts: energy D^2 {c.energy_distance:.4f}; W1 per phi [{w}]; "
                    f"in-target fraction of predicted m: {fr}"
                )


if __name__ == "__main__":
    main()
