"""Follow-up of docs/results/inversion.md: bimodal VAE-Reg inverse with Bernoulli reconstruction.

Reads the bimodal subset cached by the vae-regression benchmark run
(``benchmark_output/inversion/vae-regression/data/bimodal_16_30_0.pt``), trains one model with
K components for the given epochs on the case's split and prints the inverse errors as JSON.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/inversion_bernoulli_followup.py 1 25   # Gaussian prior
    OMP_NUM_THREADS=1 python benchmarks/inversion_bernoulli_followup.py 2 25   # mixture, K = 2
"""

import json
import sys
import time

import torch

from psppyro._random import derive_seed
from psppyro.cases.inversion import _split
from psppyro.models import VAERegression
from psppyro.properties import property_map

DATA = "benchmark_output/inversion/vae-regression/data/bimodal_16_30_0.pt"


def main(k, epochs):
    torch.set_num_threads(1)
    b = torch.load(DATA)
    cb = b["c"][:, 0]
    targets = torch.quantile(cb, torch.linspace(0.05, 0.95, 6))
    tr, va, _ = _split(len(cb), derive_seed(0, 4))
    t0 = time.time()
    m = VAERegression((16,) * 3, components=k, width=64, latent_dim=16,
                      reconstruction="bernoulli", seed=k)
    h = m.fit(b["x"][tr], b["c"][tr], validation=(b["x"][va], b["c"][va]), epochs=epochs,
              patience=epochs, seed=k)
    res = m.inverse(targets)
    ach = property_map("c11_3d")(res.images.reshape(-1, 16, 16, 16))[:, 0].float().reshape(6, k)
    err = 100 * (ach - targets[:, None]).abs() / targets[:, None]
    dom = res.weights.argmax(-1)
    print(json.dumps({
        "K": k, "epochs": epochs, "targets": targets.tolist(), "achieved": ach.tolist(),
        "weights": res.weights.tolist(), "vf": res.images.flatten(2).mean(-1).tolist(),
        "err_dom": float(err.gather(1, dom[:, None]).mean()),
        "err_best": float(err.min(1).values.mean()), "best_epoch": h["best_epoch"],
        "seconds": time.time() - t0}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
