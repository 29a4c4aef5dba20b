"""SGA design of a saved Case-1 PSP-GEN with the harness's settings, checked by true simulation.

Runs ``pspgen_paper._design`` (SGA, the protocol of ``--scale``) for one of the paper's Case-1
boxes with the model in ``--model`` and evaluates φ* with the protocol's number of true
simulations (1 000 at scale 1), printing φ*, the simulated p ± s.e. and the model's P at φ*. Used
for the λ = 4 row of ``docs/results/pspgen_training.md`` § Session 5:

    OMP_NUM_THREADS=1 python benchmarks/pspgen_design_check.py --box M \\
        --model benchmark_output/case1-full/data/models/calibration_e40_pm4.pt \\
        --workdir benchmark_output/case1-full/data

``--workdir`` must hold (or will receive) the Case-1 training store of ``--scale`` (its process
and property map are those of the simulator).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from psppyro.cases import pspgen_paper as harness
from psppyro.design import evaluate, paper_targets
from psppyro.models import PSPGen
from psppyro.process import preset as process_preset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a saved PSPGen")
    ap.add_argument("--box", required=True, choices=["L", "M", "R"])
    ap.add_argument("--workdir", default="benchmark_output/case1-full/data")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = ap.parse_args(argv)
    if not Path(args.model).is_file():
        ap.error(f"--model: no such file {args.model!r}")
    torch.set_num_threads(1)
    proto = harness.protocol("pspgen-paper-case1", args.scale)
    _, train_p = harness._dataset("pspgen-paper-case1-train", args.scale, Path(args.workdir),
                                  progress=False)
    boxes = paper_targets("case1")
    k = list(boxes).index(args.box)
    gen = PSPGen.load(args.model)
    t0 = time.perf_counter()
    design = harness._design(gen, boxes[args.box], "sga", proto,
                             harness._s(args.seed, 40, 0, k, 0), False)
    p, se = evaluate(torch.tensor(design["phi_star"]), process_preset(train_p.process),
                     train_p.properties, boxes[args.box], proto["eval_samples"],
                     seed=harness._s(args.seed, 50, 0, k, 0))
    out = {"box": args.box, "model": args.model, "design": design, "p_sim": float(p),
           "p_sim_se": float(se), "seconds": time.perf_counter() - t0}
    print(f"box {args.box}: phi* = {[round(v, 3) for v in design['phi_star']]}, "
          f"p simulated {float(p):.3f} ± {float(se):.3f}, model's P {design['p_model']:.3f} "
          f"({out['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
