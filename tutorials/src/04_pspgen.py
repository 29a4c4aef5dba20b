# %% [markdown]
# # Tutorial 4 — PSP-GEN: one generative model of the whole chain
#
# PSP-GEN (Zang & Koutsourelakis, Acta Materialia 284, 120600, 2025) learns p(x, m | φ) through two
# latents: a deterministic **process latent** z1 = g(φ) and a stochastic latent z0 ~ N(0, I) that
# carries everything φ does not fix:
#
# $$p(x, m \mid \varphi) = \int p(x \mid z_0, z_1)\, p(m \mid z_0, z_1)\,
# \mathcal N(z_0 \mid 0, I)\, dz_0, \qquad z_1 = g(\varphi).$$
#
# In psppyro it is a Pyro model/guide pair (`PSPGen.model`, `PSPGen.guide`) trained with
# `pyro.infer.SVI` and `Trace_ELBO` on the β-ELBO
# E_q[log p(x | z) + log p(m | z)] − β KL(q(z0 | x, m, φ) ‖ N(0, I)). This notebook trains one on
# triads of the paper-reconstructed simulator and looks at what z1 and z0 learn — the paper's
# Figures 5 and 6.
#
# **Run time** (full setting: 2 000 training and 400 test triads, 40 epochs): 12 min wall on the
# 2-core machine at load ≈ 23 (eight engineers shared it; a quiet machine is several times faster),
# most of it training. `PSPPYRO_SMOKE=1` trains 2 epochs on 120 triads. The paper's setting
# (10 000 triads, 500 epochs) is `psppyro train pspgen` on `pspgen-paper-case1-train` — about an
# hour on a quiet 2-core machine.

# %%
import json
import os
import tempfile

import matplotlib.pyplot as plt
import pyro
import torch

import psppyro as pp
from psppyro.models import PSPGen

SMOKE = os.environ.get("PSPPYRO_SMOKE", "0") == "1"
FIGDIR = os.environ.get("PSPPYRO_FIGDIR")
torch.set_num_threads(1)
SCALE_TRAIN, SCALE_TEST, EPOCHS = (0.012, 0.02, 2) if SMOKE else (0.2, 0.2, 40)
WIDTH = 64 if SMOKE else 256
WORKDIR = tempfile.mkdtemp(prefix="psppyro-tutorial04-")
pyro.clear_param_store()
summary = {}

# %% [markdown]
# ## 1. Data
#
# The dataset presets of the paper's case 1 (φ uniform on [1, 9] × [0.2, 2], 4 microstructures per
# φ, m = (ln k_xx, ln k_yy)); `scale` shrinks the number of φ values, never the physics.

# %%
train = pp.data.dataset_preset("pspgen-paper-case1-train", scale=SCALE_TRAIN).generate(
    os.path.join(WORKDIR, "train.zarr"), progress=not SMOKE)
test = pp.data.dataset_preset("pspgen-paper-case1-test", scale=SCALE_TEST).generate(
    os.path.join(WORKDIR, "test.zarr"), progress=not SMOKE)
print("train", dict(train.sizes), "test", dict(test.sizes))

# %% [markdown]
# ## 2. The model and the guide
#
# `from_dataset` sizes the model by the paper's rules (d_z0 ≈ 5 % of the pixels; d_z1 = the number
# of principal components of the two-point correlations explaining 90 % of their variance). As in
# the paper's Figure 5 we set d_z1 = 2, so z1 can be drawn. The Pyro trace shows the sites: the
# deterministic `z1`, the latent `z0` (scaled by β — Pyro's `poutine.scale` in model *and* guide
# makes the ELBO's KL term exactly β·KL), the Bernoulli image `x` and the Gaussian property `m`.

# %%
gen = PSPGen.from_dataset(train, d_z1=2, beta=2.0, width=WIDTH, seed=0)
phi_b = torch.as_tensor(train["phi"].values[:5], dtype=torch.float32)
x_b = torch.as_tensor(train["x"].values[:5], dtype=torch.float32)
m_b = torch.as_tensor(train["m"].values[:5], dtype=torch.float32)
model_tr = pyro.poutine.trace(gen.model).get_trace(phi_b, x_b, m_b)
guide_tr = pyro.poutine.trace(gen.guide).get_trace(phi_b, x_b, m_b)
for name, site in model_tr.nodes.items():
    if site["type"] == "sample" and not pyro.poutine.util.site_is_subsample(site):
        print(f"model site {name:>3}: shape {tuple(site['value'].shape)}, "
              f"observed {site['is_observed']}, scale {site['scale']}")
print("guide samples", [n for n, s in guide_tr.nodes.items()
                        if s["type"] == "sample" and not pyro.poutine.util.site_is_subsample(s)],
      f"— d_z0 = {gen.d_z0}, d_z1 = {gen.d_z1}, β = {gen.beta}")

# %% [markdown]
# ## 3. Training
#
# `fit` runs SVI with Adam on minibatches, lowers the learning rate on plateaus, stops early and
# restores the best weights. The history splits the loss per pair into its ELBO terms:
# loss = rec_x + rec_m + β·kl.

# %%
hist = gen.fit(train, val=test, epochs=EPOCHS, batch_size=50, seed=0, progress=not SMOKE)
print(f"epochs run: {len(hist['loss'])}, best epoch {hist['best_epoch']}, "
      f"{sum(hist['seconds']):.0f} s")
print(f"loss {hist['loss'][0]:.1f} → {hist['loss'][-1]:.1f}; "
      f"rec_m {hist['rec_m'][0]:.2f} → {hist['rec_m'][-1]:.2f}; kl {hist['kl'][-1]:.1f}")
summary["loss_first"], summary["loss_last"] = hist["loss"][0], hist["loss"][-1]
fig, ax = plt.subplots(figsize=(4.5, 3))
for key in ("loss", "val_loss"):
    ax.plot(hist["epoch"], hist[key], label=key)
ax.set_xlabel("epoch")
ax.set_ylabel("negative β-ELBO per pair")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 4. What z1 learns (the paper's Figure 5)
#
# z1 = g(φ) is a learned *coordinate* of the process: test φ values coloured by their mean ln k_xx,
# their z1, and the properties themselves. A smooth colour gradient in z1 means g has extracted the
# property-relevant direction of φ.

# %%
phi_t = torch.as_tensor(test["phi"].values, dtype=torch.float32)
m_t = torch.as_tensor(test["m"].values, dtype=torch.float32)
with torch.no_grad():
    z1 = gen.process_net(gen._normalize_phi(phi_t))
colour = m_t[:, 0].numpy()
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, pts, labels, title in (
    (axes[0], phi_t, ("φ1", "φ2"), "(a) φ of the test set"),
    (axes[1], z1, ("z1[0]", "z1[1]"), "(b) z1 = g(φ)"),
    (axes[2], m_t, ("ln k_xx", "ln k_yy"), "(c) m"),
):
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=colour, s=6, cmap="viridis")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
fig.colorbar(sc, ax=axes[2], label="ln k_xx")
fig.tight_layout()
if FIGDIR:
    os.makedirs(FIGDIR, exist_ok=True)
    fig.savefig(os.path.join(FIGDIR, "tutorial04_z1.png"), dpi=80)


def linear_r2(features, y):
    """R² of the least-squares fit of y on an affine function of the features."""
    design = torch.cat([features, torch.ones(len(features), 1)], 1)
    coef = torch.linalg.lstsq(design, y[:, None]).solution
    return 1 - float(((design @ coef - y[:, None]) ** 2).mean() / y.var())


# z1 is a learned coordinate: ln k_xx is closer to a *linear* function of z1 than of φ itself
r2_z1, r2_phi = linear_r2(z1, m_t[:, 0]), linear_r2(phi_t, m_t[:, 0])
print(f"R² of ln k_xx on an affine function of z1: {r2_z1:.2f} (of φ: {r2_phi:.2f})")
summary["z1_linear_r2"], summary["phi_linear_r2"] = r2_z1, r2_phi

# %% [markdown]
# ## 5. What z0 learns (the paper's Figure 6)
#
# For a microstructure x at φ, the guide q(z0 | x, φ) infers the latent that φ did not fix;
# pushing its draws through p(m | z0, g(φ)) gives a property distribution for *that*
# microstructure, which should surround its true m. Over the whole test set we count how often the
# true m falls inside the central 90 % interval (per component).

# %%
x_t = torch.as_tensor(test["x"].values, dtype=torch.float32)
samples = gen.posterior_property_samples(phi_t, x_t, num_samples=200, seed=1)  # (200, n, 2)
lo, hi = samples.quantile(0.05, dim=0), samples.quantile(0.95, dim=0)
coverage = ((m_t >= lo) & (m_t <= hi)).float().mean(0)
print("90 % interval coverage of p(m | φ, x):", [round(v, 3) for v in coverage.tolist()])
summary["coverage"] = coverage.tolist()

g = torch.Generator().manual_seed(0)
pick = torch.randperm(len(phi_t), generator=g)[:3]
fig, axes = plt.subplots(1, 4, figsize=(11, 2.8))
axes[0].scatter(phi_t[:, 0], phi_t[:, 1], s=3, c="0.8")
for j, i in enumerate(pick.tolist()):
    axes[0].scatter(*phi_t[i].tolist(), s=40, label=f"φ({j + 1})")
    axes[j + 1].scatter(samples[:100, i, 0], samples[:100, i, 1], s=4, c="k")
    axes[j + 1].scatter(*m_t[i].tolist(), s=60, marker="*", c=f"C{j}")
    axes[j + 1].set_title(f"m({j + 1}) and p(m | z0, g(φ({j + 1})))")
    axes[j + 1].set_xlabel("ln k_xx")
axes[0].set_title("(a) three test φ")
axes[0].legend(fontsize=7)
fig.tight_layout()
if FIGDIR:
    fig.savefig(os.path.join(FIGDIR, "tutorial04_z0.png"), dpi=80)

# %% [markdown]
# ## 6. The forward density p(m | φ) and new microstructures
#
# Marginalizing z0 gives the process–property density that design uses (`property_dist`, the design
# protocol); decoding z0 draws gives new microstructures at any φ.

# %%
phi_ref = torch.tensor([[1.0, 2.0], [9.0, 2.0]])
pred = gen.predict_properties(phi_ref, num_samples=2000, seed=2)  # (2000, 2, 2)
sim = pp.properties.property_map("log_permeability_paper")(
    pp.process.preset("pspgen36-paper").sample(phi_ref, num_samples=8 if SMOKE else 100, seed=3))
for i, p in enumerate(phi_ref.tolist()):
    print(f"φ = {p}: model mean m {pred[:, i].mean(0).numpy().round(2)}, "
          f"simulated mean m {sim[i].mean(0).numpy().round(2)}")
summary["pred_mean"] = pred.mean(0).tolist()
summary["sim_mean"] = sim.mean(1).tolist()
new = gen.sample_microstructures(phi_ref, num_samples=3, seed=4)  # (3, 2, 36, 36)
fig, axes = plt.subplots(2, 3, figsize=(5, 3.4))
for i in range(2):
    for j in range(3):
        axes[i, j].imshow(new[j, i].numpy(), cmap="gray")
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(f"φ = {tuple(phi_ref[i].tolist())}")
fig.tight_layout()

# %% [markdown]
# Save and reload the trained model (`PSPGen.load`); `psppyro design --model FILE` designs with it
# from the command line, and tutorial 5 shows the design API.

# %%
gen.save(os.path.join(WORKDIR, "pspgen.pt"))
same = torch.equal(PSPGen.load(os.path.join(WORKDIR, "pspgen.pt")).predict_properties(
    phi_ref, num_samples=10, seed=5), gen.predict_properties(phi_ref, num_samples=10, seed=5))
summary["reload_identical"] = same
print("reloaded model predicts identically:", same)
print("SUMMARY " + json.dumps(summary))
