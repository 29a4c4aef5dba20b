"""Benchmark of PSP-GEN training and prediction (issue 5).

Prints plain-text tables of

1. training cost: seconds per epoch on the training set used, projected to 500 epochs on it and on
   the full case-1 training set (10 000 triads; goal <= 10 min on 2 cores), peak memory (RSS of
   this process; peak GPU memory on CUDA);
2. test-set property prediction from (φ, x): R² of E[m | φ, x] and the coverage of the central 90 %
   interval of p(m | φ, x) (ideal 0.90), per property;
3. the forward density check of the paper's Figure 6: the fraction of observed test m lying inside
   the 90 % highest-density region of the predicted p(m | φ) (ideal 0.90). p(m | φ) is evaluated
   as the Gaussian mixture (1/S) Σ_s N(m; μ_m(z_s, g(φ)), σ_m²(z_s, g(φ))) over S prior draws z_s,
   and the HPD threshold is the 10 % quantile of that density at S' samples drawn from it;
4. semi-supervised training: a few labelled pairs (``--labelled``, default 200) with and without the
   remaining training pairs as unlabelled (φ, x); R² and HPD fraction both ways, reported as
   measured (no claim either way).

Data: ``--data`` / ``--test`` point to stores written by ``psppyro generate``; otherwise the
``pspgen-case1-train`` / ``pspgen-case1-test`` presets are generated at ``--scale`` into
``--workdir`` (reused when present). ``--properties`` overrides the property map of the presets
(e.g. ``rixner_o2``, conductivity) while the permeability solver is not available; the table says
which map was used.

``--synthetic`` replaces the stores by an in-memory stand-in of the same schema and size (for
timing on a machine without the solvers or Zarr); its accuracy figures are about that stand-in only.

Usage::

    python benchmarks/bench_pspgen.py                 # scale 0.1 (1000 + 200 triads), 30 epochs
    python benchmarks/bench_pspgen.py --quick         # tiny smoke run (about a minute)
    python benchmarks/bench_pspgen.py --data train.zarr --test test.zarr --epochs 500 --device cuda
    python benchmarks/bench_pspgen.py --synthetic --scale 1 --epochs 5 --device cuda  # timing
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import psppyro as pp  # noqa: E402
from psppyro.models import PSPGen  # noqa: E402

FULL_CASE1_TRAIN = 10_000


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dataset(path, preset, scale, properties, workdir, seed_offset=0):
    if path:
        return pp.data.open_dataset(path), path
    p = pp.data.dataset_preset(preset, scale=scale)
    overrides = {"properties": properties} if properties else {}
    name = f"{preset}-{scale:g}-{properties or p.properties}.zarr"
    target = os.path.join(workdir, name)
    ds = p.generate(target, workers=1, progress=False, **overrides)
    return ds, target


def _synthetic(n, size, seed):
    """In-memory stand-in with the triad schema: anisotropic filtered noise thresholded at 0, φ in
    the PSP-GEN box, m = (volume fraction, horizontal two-point probability at lag 1). Training
    cost does not depend on the data values, so this measures timing where no store is at hand."""
    import numpy as np
    import xarray as xr

    g = torch.Generator().manual_seed(seed)
    phi = torch.stack([1 + 8 * torch.rand(n, generator=g), 0.2 + 1.8 * torch.rand(n, generator=g)],
                      -1)
    k = torch.fft.fftfreq(size) * size
    w, ell = (phi[:, 0] / 10)[:, None, None], (phi[:, 1] / 50)[:, None, None]
    spec = w * torch.exp(-ell * k[None, :] ** 2) + (1 - w) * torch.exp(-ell * k[:, None] ** 2)
    field = torch.fft.ifft2(torch.fft.fft2(torch.randn(n, size, size, generator=g)) * spec.sqrt())
    x = (field.real > 0).to(torch.uint8)
    xf = x.double()
    m = torch.stack([xf.mean((-1, -2)), (xf * xf.roll(1, -1)).mean((-1, -2))], -1)
    ds = xr.Dataset(
        {"phi": (("sample", "phi_dim"), phi.double().numpy()),
         "phi_index": (("sample",), np.arange(n)),
         "x": (("sample", "y", "x"), x.numpy()),
         "m": (("sample", "m_dim"), m.numpy())},
        coords={"phi_dim": ["phi1", "phi2"], "m_dim": ["vf", "s2_h1"]},
    )
    ds.attrs["properties"] = "synthetic stand-in: m = (volume fraction, S2_h(1))"
    return ds


def _test_tensors(ds, device):
    t = pp.data.to_torch(ds, ("phi", "x", "m", "phi_index"), device=device)
    return t["phi"], t["x"], t["m"], t["phi_index"]


def _log_mixture(loc, scale, points):
    """log (1/S) Σ_s N(points; loc_s, diag scale_s²): loc/scale (P, S, d), points (P, T, d)."""
    lp = torch.distributions.Normal(loc[:, None], scale[:, None]).log_prob(points[:, :, None])
    return torch.logsumexp(lp.sum(-1), dim=-1) - math.log(loc.shape[1])


def _r2(pred, obs):
    return 1.0 - ((pred - obs) ** 2).sum(0) / ((obs - obs.mean(0)) ** 2).sum(0)


@torch.no_grad()
def _evaluate(gen, phi, x, m, phi_index, seed, num_samples=200, batch=250):
    """R², 90 % interval coverage of p(m|φ,x), and the HPD fraction of p(m|φ)."""
    means, inside = [], []
    for s in range(0, phi.shape[0], batch):
        sl = slice(s, s + batch)
        draws = gen.posterior_property_samples(phi[sl], x[sl], num_samples, seed=seed + s)
        means.append(gen.posterior_mean_property(phi[sl], x[sl], num_samples, seed=seed + s))
        lo, hi = draws.quantile(0.05, dim=0), draws.quantile(0.95, dim=0)
        inside.append(((m[sl] >= lo) & (m[sl] <= hi)).float())
    mean = torch.cat(means)
    coverage = torch.cat(inside).mean(0)
    r2 = _r2(mean, m)

    # Forward density p(m | φ) per unique φ, as a Gaussian mixture over prior draws of z0.
    uniq, inverse = torch.unique(phi_index, return_inverse=True)
    first = torch.zeros(len(uniq), dtype=torch.long, device=phi.device)
    first.scatter_(0, inverse, torch.arange(len(phi_index), device=phi.device))
    phi_u = phi[first]
    g = torch.Generator(device=phi.device).manual_seed(seed)
    hpd_inside = torch.zeros(len(phi_index), dtype=torch.bool, device=phi.device)
    for s in range(0, len(uniq), 50):
        pb = phi_u[s : s + 50]
        z = torch.randn(num_samples, gen.d_z0, generator=g, device=phi.device)
        comp = gen.property_dist(pb[:, None, :], z[None])  # batch (P, S), event (d_m,)
        loc, scale = comp.mean, comp.stddev
        pick = torch.randint(num_samples, (pb.shape[0], num_samples), generator=g,
                             device=phi.device)
        index = pick[..., None].expand(-1, -1, gen.d_m)
        draws = torch.gather(loc, 1, index) + torch.gather(scale, 1, index) * torch.randn(
            pb.shape[0], num_samples, gen.d_m, generator=g, device=phi.device
        )
        threshold = _log_mixture(loc, scale, draws).quantile(0.10, dim=1)  # (P,)
        rows = ((inverse >= s) & (inverse < s + 50)).nonzero().squeeze(-1)
        local = inverse[rows] - s
        lp_obs = _log_mixture(loc[local], scale[local], m[rows][:, None, :])[:, 0]
        hpd_inside[rows] = lp_obs >= threshold[local]
    return r2.cpu(), coverage.cpu(), float(hpd_inside.float().mean())


def _train(gen, train, epochs, batch_size, lr, seed, device, unlabelled=None, progress=False):
    return gen.fit(train, epochs=epochs, batch_size=batch_size, lr=lr, unlabelled=unlabelled,
                   patience=10 * epochs, seed=seed, device=device, progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--data", default=None, help="training store (default: generate a preset)")
    ap.add_argument("--test", default=None, help="test store (default: generate a preset)")
    ap.add_argument("--preset", default="pspgen-case1", help="preset family (…-train/…-test)")
    ap.add_argument("--scale", type=float, default=0.1, help="preset scale when generating")
    ap.add_argument("--properties", default=None, help="override the preset's property map")
    ap.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "results", "pspgen"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    ap.add_argument("--labelled", type=int, default=200, help="labelled pairs, semi-supervised")
    ap.add_argument("--skip-semi", action="store_true", help="skip the semi-supervised table")
    ap.add_argument("--synthetic", action="store_true",
                    help="in-memory synthetic stand-in (10 000 x scale triads) instead of stores")
    ap.add_argument("--size", type=int, default=36, help="image side of --synthetic")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, 0.01)
        args.epochs = min(args.epochs, 3)
        args.labelled = min(args.labelled, 40)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    t0 = time.perf_counter()
    if args.synthetic:
        n_syn = max(50, round(FULL_CASE1_TRAIN * args.scale))
        train, train_path = _synthetic(n_syn, args.size, args.seed), "synthetic"
        test, test_path = _synthetic(max(20, n_syn // 5), args.size, args.seed + 1), "synthetic"
    else:
        os.makedirs(args.workdir, exist_ok=True)
        train, train_path = _dataset(args.data, f"{args.preset}-train", args.scale,
                                     args.properties, args.workdir)
        test, test_path = _dataset(args.test, f"{args.preset}-test", args.scale, args.properties,
                                   args.workdir)
    t_data = time.perf_counter() - t0
    n_train, n_test = int(train.sizes["sample"]), int(test.sizes["sample"])
    props = train.attrs.get("properties", "?")

    print("PSP-GEN benchmark")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"train: {train_path} ({n_train} triads), test: {test_path} ({n_test} triads), "
          f"data ready in {t_data:.1f} s")
    print(f"property map: {props[:100]}")

    # ------------------------------------------------------------------ 1. training cost
    torch.manual_seed(args.seed)
    gen = PSPGen.from_dataset(train, architecture=args.architecture)
    n_params = sum(p.numel() for p in gen.parameters())
    rss0 = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    hist = _train(gen, train, args.epochs, args.batch_size, args.lr, args.seed, device,
                  progress=args.progress)
    wall = time.perf_counter() - t0
    secs = hist["seconds"]
    per_epoch = sum(secs[1:]) / max(len(secs) - 1, 1) if len(secs) > 1 else secs[0]
    print()
    print(f"1. Training ({args.architecture}, d_z0={gen.d_z0}, d_z1={gen.d_z1}, beta={gen.beta:g}, "
          f"{n_params} parameters, batch {args.batch_size}, lr {args.lr:g})")
    print(f"   {'epochs':>8} {'wall s':>9} {'s/epoch':>9} {'500 ep. (this set) min':>24} "
          f"{'500 ep. (10k set) min':>23} {'peak RSS MB':>12} {'RSS before MB':>14}")
    print(f"   {len(secs):>8} {wall:>9.1f} {per_epoch:>9.3f} {per_epoch * 500 / 60:>24.1f} "
          f"{per_epoch * 500 / 60 * FULL_CASE1_TRAIN / n_train:>23.1f} {_rss_mb():>12.0f} "
          f"{rss0:>14.0f}")
    if device.type == "cuda":
        print(f"   peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    last = {k: hist[k][-1] for k in ("loss", "rec_x", "rec_m", "kl")}
    print(f"   loss first/last epoch: {hist['loss'][0]:.2f} / {last['loss']:.2f} "
          f"(rec-x {last['rec_x']:.2f}, rec-m {last['rec_m']:.3f}, KL {last['kl']:.2f})")

    # ------------------------------------------------------------------ 2./3. prediction
    phi, x, m, phi_index = _test_tensors(test, device)
    r2, cov, hpd = _evaluate(gen, phi, x, m, phi_index, seed=args.seed + 1)
    names = [str(v) for v in test["m_dim"].values] if "m_dim" in test.coords else [
        f"m{i}" for i in range(gen.d_m)
    ]
    print()
    print(f"2. Test-set prediction from (phi, x) ({n_test} triads)")
    print(f"   {'property':>12} {'R2 of E[m|phi,x]':>18} {'90% coverage':>13}")
    for i, name in enumerate(names):
        print(f"   {name:>12} {float(r2[i]):>18.3f} {float(cov[i]):>13.3f}")
    print()
    print("3. Forward density check (Figure 6): fraction of test m inside the 90% HPD region of "
          f"p(m|phi): {hpd:.3f} (ideal 0.90)")

    # ------------------------------------------------------------------ 4. semi-supervised
    if args.skip_semi:
        return 0
    n_lab = min(args.labelled, n_train - 1)
    labelled = train.isel(sample=slice(0, n_lab))
    unlabelled = train.isel(sample=slice(n_lab, None))
    rows = []
    for name, extra in (("labelled only", None), ("+ unlabelled", unlabelled)):
        torch.manual_seed(args.seed)
        g2 = PSPGen.from_dataset(train, architecture=args.architecture)
        t0 = time.perf_counter()
        _train(g2, labelled, args.epochs, args.batch_size, args.lr, args.seed, device,
               unlabelled=extra, progress=args.progress)
        wall = time.perf_counter() - t0
        r2_s, _, hpd_s = _evaluate(g2, phi, x, m, phi_index, seed=args.seed + 1)
        rows.append((name, r2_s, hpd_s, wall))
    print()
    print(f"4. Semi-supervised: {n_lab} labelled pairs, {n_train - n_lab} unlabelled, "
          f"{args.epochs} epochs each")
    header = " ".join(f"{'R2 ' + n:>14}" for n in names)
    print(f"   {'training':>14} {header} {'HPD 90%':>8} {'wall s':>8}")
    for name, r2_s, hpd_s, wall in rows:
        vals = " ".join(f"{float(v):>14.3f}" for v in r2_s)
        print(f"   {name:>14} {vals} {hpd_s:>8.3f} {wall:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
