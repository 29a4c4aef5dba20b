r"""Does the surrogate believe its own designs? Model against simulator at every φ* of a Rixner run.

For each run of a finished ``psppyro benchmark rixner-o1 | rixner-o2`` output folder
(``OUT/runs/vf…-{variance,random}-r/state.pt``) the script retrains, for every acquisition
step l, the surrogate that step used — same data (the first N0 + l·N_add rows of the run's
data set), same seed, same options, through active learning's own training step, so it is the
run's surrogate — and compares at that step's design φ*_l:

* the **model's** mean κ and (O1) its probability
  :math:`P_M(κ ∈ K' | φ^*) = \frac1M \sum_j \prod_i [Φ((h_i - μ_{ij})/σ_{ij})
  - Φ((l_i - μ_{ij})/σ_{ij})]` over M structures x_j of the chain at φ*_l, with
  p_M(κ | x_j) = N(μ_j, diag σ_j²), once on the binary structures the simulator sees and once
  on the relaxed-threshold structures of the same white noise, which are what VB-EM's
  objective sees (``SurrogateChain.property_dist``);
* the **simulator's** mean κ and true P, from the evaluation samples the run stored.

A design method can only be as good as the model's belief where it designs: a model that puts
P_M ≫ P_true at φ* has been fooled (extrapolation), one with P_M ≈ P_true ≈ 0 simply does not
know a better φ.

Run (one thread; one surrogate training per step and run, ≈ 10–60 s each at scale 0.25)::

    OMP_NUM_THREADS=1 python benchmarks/rixner_model_check.py benchmark_output/rixner-o1-s0.25-v8
"""

import argparse
import json
import math
from pathlib import Path

import torch

from psppyro._random import derive_seed
from psppyro.cases.rixner import o1_box
from psppyro.design.active_learning import _train
from psppyro.models import ProbabilisticCNN, SurrogateChain
from psppyro.process import preset


def _box_probability(dist, low, high):
    """P(κ ∈ [low, high]) under each diagonal Normal of ``dist`` → (M,)."""
    normal = torch.distributions.Normal(dist.mean.double(), dist.stddev.double())
    lo, hi = torch.tensor(low).double(), torch.tensor(high).double()
    return (normal.cdf(hi) - normal.cdf(lo)).prod(-1)


def _fmt(v):
    return "(" + ", ".join(f"{a:.2f}" for a in v) + ")"


def check_run(folder: Path, num_structures: int, seed: int) -> list:
    st = torch.load(folder / "state.pt", weights_only=False)
    cfg = st["config"]
    vf = float(folder.name.split("-")[0][2:])
    o1 = "low" in cfg["target"]
    proc = preset("rixner64", volume_fraction=vf, phase_field=None)
    chain = SurrogateChain(proc, ProbabilisticCNN((64, 64), 2, seed=cfg["seed"]))
    low, high = o1_box() if o1 else (None, None)
    rows = []
    for rec, sim in zip(st["records"], st["samples"]):
        step, n = rec["step"], rec["n_data"]
        x, m = st["x"][:n].float(), st["m"][:n]
        _train(chain.surrogate, x, m.float(), derive_seed(cfg["seed"], 30, step),
               cfg["fit_options"], False)
        phi = torch.tensor(rec["phi_star"])
        z = torch.randn(num_structures, chain.latent_dim,
                        generator=torch.Generator().manual_seed(derive_seed(seed, step)))
        with torch.no_grad():
            xs = torch.cat([chain.structures(phi, z[i:i + 256], hard=True).float()
                            for i in range(0, num_structures, 256)])
            d = chain.surrogate.property_dist(xs)
            dr = chain.property_dist(phi, z)  # relaxed structures
        row = {"step": step, "n_data": n, "sim_mean": sim.double().mean(0).tolist(),
               "model_mean": d.mean.double().mean(0).tolist(),
               "model_mean_relaxed": dr.mean.double().mean(0).tolist(),
               "model_sd": (d.variance.double().mean(0)
                            + d.mean.double().var(0)).sqrt().tolist(),
               "sim_sd": sim.double().std(0).tolist(), "true": rec["objective"]}
        if o1:
            row["model_p"] = float(_box_probability(d, low, high).mean())
            row["model_p_relaxed"] = float(_box_probability(dr, low, high).mean())
        rows.append(row)
        extra = (f"  P model {row['model_p']:.3f} (relaxed x {row['model_p_relaxed']:.3f}) vs "
                 f"true {row['true']:.3f}") if o1 else f"  KL {row['true']:.2f}"
        print(f"{folder.name} step {step} N {n}: mean κ model {_fmt(row['model_mean'])} "
              f"(relaxed x {_fmt(row['model_mean_relaxed'])}) sd "
              f"{_fmt(row['model_sd'])} | simulated {_fmt(row['sim_mean'])} sd "
              f"{_fmt(row['sim_sd'])}{extra}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="a finished rixner-o1/o2 benchmark output folder")
    ap.add_argument("--structures", type=int, default=1024, help="structures per φ* (model)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    runs = sorted((args.out / "runs").glob("*/state.pt"))
    if not runs:
        ap.error(f"{args.out} has no runs/*/state.pt (not a rixner benchmark output folder)")
    if args.structures < 1:
        ap.error("--structures must be >= 1")
    torch.set_num_threads(1)
    result = {p.parent.name: check_run(p.parent, args.structures, args.seed) for p in runs}
    if any("model_p" in r for rows in result.values() for r in rows):
        pairs = [(r["model_p"], r["true"]) for rows in result.values() for r in rows]
        gap = sum(a - b for a, b in pairs) / len(pairs)
        print(f"mean P_model − P_true over {len(pairs)} designs: {gap:+.3f}; "
              f"max P_model {max(a for a, _ in pairs):.3f}, max P_true "
              f"{max(b for _, b in pairs):.3f}")
    path = args.out / "model_check.json"
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"written {path}")
    return 0 if all(math.isfinite(r["true"]) for rows in result.values() for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
