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

Two further modes (issue 11):

``--speed``: seconds per epoch at batch 50 on 2 000 and 9 000 triads of 36² (the in-memory
stand-in: the cost does not depend on the values) with the paper's sizes (d_z0 = 65, d_z1 = 21),
projected to 500 epochs, for the working tree and for ``--baseline-rev`` (default ``c000bd0``,
the main before issue 11), each in its own subprocess on the same machine in the same run, so the
ratio is meaningful even on a loaded machine. The baseline's source comes from ``git archive``
(nothing in the working tree changes). Then the case harness's configuration on 9 000 triads
(``architecture="paper"``, d_z1 = 12, ``prior_m_weight`` 0 and 4) and its floor: the three image
networks alone (forward, backward and fused Adam of the x-encoders and the x-decoder, the GEMMs
that no removal of overhead can avoid at batch 50)::

    python benchmarks/bench_pspgen.py --speed --speed-epochs 2 --threads 1

``--study``: the anti-memorization study on Case 1 (``pspgen-paper-case1-*`` presets at
``--scale``, reference grid round(20 √s)² × ``--per-phi``): the same training (the harness's paper
settings at ``--scale``, or ``--epochs``) for each variant — the default, weight decay, dropout,
``architecture="paper"``, ``"conv"``, a smaller d_z0 — compared by the held-out property
log-likelihood log p(m | φ) (marginal over z0 ~ N(0, I), what design uses; per test triad), the
train/validation gap, the mean |P_model − P_sim| over the reference grid for the three boxes and
the 90 % coverage. A variant whose option the installed PSPGen lacks is reported as such::

    python benchmarks/bench_pspgen.py --study --scale 0.05 --threads 1
    python benchmarks/bench_pspgen.py --study --scale 0.1 --epochs 20 \\
        --workdir benchmark_output/case1-s0.1/data      # reuse the harness's Case-1 data
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


_TIMING_CODE = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
sys.path.insert(0, sys.argv[1])
from psppyro.models import PSPGen
n, epochs, arch, lam = int(sys.argv[2]), int(sys.argv[3]), sys.argv[5], float(sys.argv[6])
g = torch.Generator().manual_seed(0)
phi = torch.stack([1 + 8 * torch.rand(n, generator=g), 0.2 + 1.8 * torch.rand(n, generator=g)], -1)
x = (torch.rand(n, 36, 36, generator=g) < 0.6).float()
m = torch.randn(n, 2, generator=g) - 7
if arch == "mlp":  # the issue-11 baseline's configuration (the baseline has no other)
    gen = PSPGen(2, (36, 36), 2, d_z0=65, d_z1=21, phi_bounds=[[1, 9], [0.2, 2]])
    kw = {}
else:  # the case harness's: appendix-A widths, d_z1 = 12 (Case 1's PCA rule)
    gen = PSPGen(2, (36, 36), 2, d_z0=65, d_z1=12, phi_bounds=[[1, 9], [0.2, 2]],
                 architecture=arch, percolation=False)
    kw = {"prior_m_weight": lam}
t = time.perf_counter()
h = gen.fit((phi, x, m), epochs=epochs, batch_size=50, progress=False, patience=10 * epochs, **kw)
wall = time.perf_counter() - t
print(json.dumps({"n": n, "epochs": epochs, "wall": wall}))
"""

# The GEMM-bound part of a harness step alone: the three image networks of
# architecture="paper" (x-encoder on the 50 rows, x-only encoder on the 10 m-hidden copies,
# x-decoder on all 60), the Bernoulli image term and a fused Adam over their parameters. Time per
# step, measured the same way as a full epoch: what no overhead removal can go below at batch 50.
_FLOOR_CODE = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
sys.path.insert(0, sys.argv[1])
from psppyro.models import PSPGen
gen = PSPGen(2, (36, 36), 2, d_z0=65, d_z1=12, architecture="paper", percolation=False)
nets = (gen.enc_x, gen.enc_u_x, gen.decoder_x)
opt = torch.optim.Adam([p for net in nets for p in net.parameters()], fused=True)
x = (torch.rand(50, 36 * 36, generator=torch.Generator().manual_seed(0)) < 0.6).float()
def step():
    h = torch.cat([gen.enc_x(x), gen.enc_u_x(x[:10])])
    h = torch.cat([h, h[:, :12]], -1)  # (z0, z1): 77 inputs as in the model
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        gen.decoder_x(h), torch.cat([x, x[:10]]), reduction="sum")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(20):
    step()
k = int(sys.argv[3])
t = time.perf_counter()
for _ in range(k):
    step()
print(json.dumps({"step": (time.perf_counter() - t) / k}))
"""


def _source_tree(rev, folder):
    """Extract ``psppyro/`` of git revision ``rev`` into ``folder`` (git archive; no checkout)."""
    import subprocess
    import tarfile

    os.makedirs(folder, exist_ok=True)
    tar = os.path.join(folder, "src.tar")
    with open(tar, "wb") as f:
        subprocess.run(["git", "-C", ROOT, "archive", rev, "psppyro"], check=True, stdout=f)
    with tarfile.open(tar) as t:
        t.extractall(folder, filter="data")
    return folder


def _run_json(code, *args):
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(baseline_rev, epochs, threads, sizes=(2000, 9000)):
    """s/epoch of the working tree and of ``baseline_rev`` (module docstring, ``--speed``)."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"working tree": ROOT}
        if baseline_rev:
            trees[f"baseline {baseline_rev}"] = _source_tree(baseline_rev, tmp)
        for n in sizes:
            for label, src in trees.items():
                r = _run_json(_TIMING_CODE, src, n, epochs, threads, "mlp", 0.0)
                rows.append((label, "mlp", n, r["wall"] / r["epochs"]))
        n = max(sizes)
        for lam in (0.0, 4.0):
            r = _run_json(_TIMING_CODE, ROOT, n, epochs, threads, "paper", lam)
            rows.append(("working tree", f"paper, λ = {lam:g}", n, r["wall"] / r["epochs"]))
        floor = _run_json(_FLOOR_CODE, ROOT, threads, 200)["step"]
        rows.append(("image networks only", "paper", n, floor * math.ceil(n / 50)))
    print(f"Speed: batch 50, 36^2, d_z0 = 65 (mlp: d_z1 = 21; paper: d_z1 = 12, λ = "
          f"prior_m_weight), {epochs} epoch(s) timed, {threads} thread(s); loaded machine: "
          "compare rows of the same run")
    print(f"   {'code':<22} {'architecture':<15} {'triads':>7} {'s/epoch':>9} "
          f"{'500 epochs, min':>16}")
    for label, arch, n, per in rows:
        print(f"   {label:<22} {arch:<15} {n:>7} {per:>9.2f} {per * 500 / 60:>16.1f}")
    print(f"   image networks only = forward + backward + fused Adam of the x-encoders and "
          f"x-decoder, {floor * 1e3:.1f} ms per step (no validation): the GEMM-bound floor of "
          "a paper step at batch 50")
    if baseline_rev:
        for n in sizes:
            new = [p for lab, a, k, p in rows if k == n and lab == "working tree" and a == "mlp"]
            old = [p for lab, a, k, p in rows if k == n and lab.startswith("baseline")]
            print(f"   speed-up at {n} triads (mlp): {old[0] / new[0]:.2f}x")
    return rows


STUDY_VARIANTS = (
    ("default", {}, {}),
    ("weight_decay=1e-4", {}, {"weight_decay": 1e-4}),
    ("weight_decay=1e-2", {}, {"weight_decay": 1e-2}),
    ("dropout=0.2", {"dropout": 0.2}, {}),
    ('architecture="paper"', {"architecture": "paper"}, {}),
    ('architecture="conv"', {"architecture": "conv"}, {}),
    ("d_z0=16", {"d_z0": 16}, {}),
)


def study(scale, per_phi, epochs, workdir, seed, num_samples, progress, only=None):
    """The anti-memorization study (module docstring, ``--study``); returns the rows."""
    from psppyro.cases import _calibration as cal
    from psppyro.cases import pspgen_paper as harness
    from psppyro.data import split
    from psppyro.design import log_marginal_density, paper_targets

    proto = harness.protocol("pspgen-paper-case1", scale)
    epochs = epochs or proto["train_epochs"]
    work = __import__("pathlib").Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    train_ds, _ = harness._dataset("pspgen-paper-case1-train", scale, work, progress=progress)
    test_ds, _ = harness._dataset("pspgen-paper-case1-test", scale, work, progress=progress)
    ref_ds, _ = harness._dataset("pspgen-paper-case1-reference", scale, work,
                                 per_phi=per_phi or proto["reference_per_phi"], progress=progress)
    train, val = split(train_ds, (0.9, 0.1), seed=seed)
    test = harness._test_tensors(test_ds)
    dt = torch.get_default_dtype()
    boxes = paper_targets("case1")
    rows = []
    for name, ctor, fit_kw in STUDY_VARIANTS:
        if only and name not in only:
            continue
        try:
            gen = PSPGen.from_dataset(train_ds, beta=2.0, seed=seed, **ctor)
        except TypeError as err:
            rows.append({"variant": name, "error": f"not available: {err}"})
            continue
        t0 = time.perf_counter()
        try:
            hist = gen.fit(train, val, epochs=epochs, batch_size=50, lr=1e-3, patience=epochs,
                           lr_patience=proto["lr_patience"], seed=seed, progress=progress,
                           **fit_kw)
        except TypeError as err:
            rows.append({"variant": name, "error": f"not available: {err}"})
            continue
        wall = time.perf_counter() - t0
        with torch.no_grad():
            ll = log_marginal_density(gen, test["phi"].to(dt), test["m"].to(dt), num_samples,
                                      seed=seed + 1)
        ok = torch.isfinite(ll)
        prob = cal.probability_calibration(gen, boxes, ref_ds, num_samples, seed + 2)
        cov = cal.interval_coverage(gen, test["phi"].to(dt), test["m"], 0.9, num_samples,
                                    seed + 3)
        train_loss = hist.get("train_loss", hist.get("loss"))
        rows.append({
            "variant": name, "wall": wall, "best_epoch": hist.get("best_epoch"),
            "test_m_loglik": float(ll[ok].mean()),
            "val_loss_best": float(min(v for v in hist["val_loss"] if v == v)),
            "gap_last": float(hist["val_loss"][-1] - train_loss[-1]),
            "mean_abs_dP": {t: c["mean_abs_error"] for t, c in prob.items()},
            "coverage90": cov,
        })
    n_tr = int(train_ds.sizes["sample"])
    print(f"Anti-memorization study, Case 1 at scale {scale:g} ({n_tr} triads, 90/10 split), "
          f"{epochs} epochs, batch 50; test log p(m | phi) per triad (higher is better; z0 from "
          f"the prior, {num_samples} draws); mean |P_model - P_sim| over the reference grid")
    print(f"   {'variant':<22} {'log p(m|phi)':>12} {'best ep':>8} {'val-train gap':>14} "
          f"{'|dP| L':>7} {'|dP| M':>7} {'|dP| R':>7} {'cov90':>12} {'wall s':>7}")
    for r in rows:
        if "error" in r:
            print(f"   {r['variant']:<22} {r['error'][:90]}")
            continue
        d = r["mean_abs_dP"]
        cov = "/".join(f"{c:.2f}" for c in r["coverage90"])
        print(f"   {r['variant']:<22} {r['test_m_loglik']:>12.3f} {str(r['best_epoch']):>8} "
              f"{r['gap_last']:>14.1f} {d['L']:>7.3f} {d['M']:>7.3f} {d['R']:>7.3f} {cov:>12} "
              f"{r['wall']:>7.0f}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--data", default=None, help="training store (default: generate a preset)")
    ap.add_argument("--test", default=None, help="test store (default: generate a preset)")
    ap.add_argument("--preset", default="pspgen-case1", help="preset family (…-train/…-test)")
    ap.add_argument("--scale", type=float, default=0.1, help="preset scale when generating")
    ap.add_argument("--properties", default=None, help="override the preset's property map")
    ap.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "results", "pspgen"))
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs (default 30; --study: the harness's at --scale)")
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
    ap.add_argument("--speed", action="store_true", help="only the before/after s/epoch table")
    ap.add_argument("--baseline-rev", default="c000bd0",
                    help="git revision timed as 'before' by --speed ('' for none)")
    ap.add_argument("--speed-epochs", type=int, default=2)
    ap.add_argument("--study", action="store_true", help="only the anti-memorization study")
    ap.add_argument("--per-phi", type=int, default=None, help="--study: reference per grid point")
    ap.add_argument("--variants", nargs="*", default=None, help="--study: run only these")
    ap.add_argument("--num-samples", type=int, default=1000, help="--study: z draws")
    args = ap.parse_args(argv)
    if args.speed:
        speed(args.baseline_rev, args.speed_epochs, args.threads or 1)
        return 0
    if args.study:
        if args.threads:
            torch.set_num_threads(args.threads)
        study(args.scale, args.per_phi, args.epochs,
              args.workdir, args.seed, args.num_samples, args.progress,
              args.variants)
        return 0
    if args.epochs is None:
        args.epochs = 30
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
