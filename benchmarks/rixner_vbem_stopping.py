r"""When does VB-EM stop on the Rixner O1 surrogate chain, and where is it then?

One D(0) of ``--n0`` ancestral samples (φ ~ N(0, I), 64² ``preset("rixner64")`` at vf 0.5, the
accurate map ``rixner_o1``), one :class:`~psppyro.models.ProbabilisticCNN` trained on it, then
:func:`psppyro.design.vbem.run_vbem` on the O1 box K' from ``--seeds`` starting points with two
settings of the stopping-relevant options:

* ``reduced`` — what ``psppyro.cases.rixner.protocol`` used below scale 0.5 until session 7:
  2 particles, 5 E-steps per iteration, patience 5;
* ``paper`` — 4 particles, 10 E-steps, patience 10 (the full-scale protocol).

Both with ``max_iter`` = ``--max-iter``. Per run the script prints the iterations run, the
best iteration, the ELBO trajectory (iteration means of the E-step ELBOs), its best and its
final level (the mean of the last five iterations: the best of noisy means is biased up) and
how far φ moved, then one summary line per setting. The ELBO is comparable across settings
(the same chain and target): a run whose final level is lower stopped early.

It reuses active learning's own D(0), simulation and training steps
(:mod:`psppyro.design.active_learning`), so the surrogate is the one step 0 of
``psppyro benchmark rixner-o1`` would train from the same seed.

Run (one thread, load 3: ≈ 5 min of accurate solves, then 17–29 s per ``reduced`` and 77–97 s
per ``paper`` VB-EM run)::

    OMP_NUM_THREADS=1 python benchmarks/rixner_vbem_stopping.py --n0 82 --seeds 3 --max-iter 40
"""

import argparse
import json
import statistics
import time

import torch

from psppyro.cases.rixner import o1_box
from psppyro.design import Box
from psppyro.design.active_learning import _ancestral, _simulate, _train
from psppyro.design.evaluate import _property_fn
from psppyro.design.vbem import run_vbem
from psppyro.models import ProbabilisticCNN, SurrogateChain
from psppyro.process import preset

SETTINGS = {
    "reduced": {"num_particles": 2, "e_steps": 5, "patience": 5},
    "paper": {"num_particles": 4, "e_steps": 10, "patience": 10},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n0", type=int, default=82, help="ancestral training samples (D(0))")
    ap.add_argument("--seeds", type=int, default=3, help="VB-EM runs per setting")
    ap.add_argument("--max-iter", type=int, default=40, help="VB-EM max_iter")
    args = ap.parse_args(argv)
    if args.n0 < 8 or args.seeds < 1 or args.max_iter < 1:
        ap.error("--n0 must be >= 8, --seeds and --max-iter >= 1")

    proc = preset("rixner64", volume_fraction=0.5, phase_field=None)
    chain = SurrogateChain(proc, ProbabilisticCNN((64, 64), 2, seed=0))
    t0 = time.perf_counter()
    _, x = _ancestral(proc, args.n0, seed=0)
    m = _simulate(_property_fn("rixner_o1"), x)
    print(f"D(0): {args.n0} accurate solves in {time.perf_counter() - t0:.0f} s", flush=True)
    _train(chain.surrogate, x, m.float(), 0, {"epochs": 60, "patience": 15}, False)
    for p in chain.surrogate.parameters():
        p.requires_grad_(False)
    target = Box(*o1_box())
    summary = {}
    for label, opts in SETTINGS.items():
        rows = []
        for s in range(args.seeds):
            t0 = time.perf_counter()
            out = run_vbem(chain, target, seed=s, max_iter=args.max_iter, **opts)
            elbo = out.history["elbo"]
            phis = torch.tensor(out.history["phi"])
            rows.append({"setting": label, "seed": s, "iterations": len(elbo),
                         "best_iteration": 1 + max(range(len(elbo)), key=elbo.__getitem__),
                         "best_elbo": round(max(elbo), 2),
                         "final_elbo": round(statistics.mean(elbo[-5:]), 2),
                         "phi_moved": round(float((phis[-1] - phis[0]).norm()), 2),
                         "seconds": round(time.perf_counter() - t0, 1),
                         "elbo": [round(v, 1) for v in elbo]})
            print(json.dumps(rows[-1]), flush=True)
        summary[label] = rows
    for label, rows in summary.items():
        final = statistics.median(r["final_elbo"] for r in rows)
        print(f"{label:8s} iterations {[r['iterations'] for r in rows]}, final ELBO (mean of "
              f"the last 5 iterations) median {final:.1f}, phi moved median "
              f"{statistics.median(r['phi_moved'] for r in rows):.2f}, "
              f"{statistics.median(r['seconds'] for r in rows):.0f} s per run")


if __name__ == "__main__":
    main()
