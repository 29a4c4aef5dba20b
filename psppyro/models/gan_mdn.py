r"""GAN + mixture density network (Mao et al.): one-shot inversion through a GAN's latent space.

A DCGAN (Radford et al. 2016) learns binary microstructures x ∈ {0, 1}^{N×N} (mapped to ±1): a
generator G(z), z ~ N(0, I_{d_z}), of transposed convolutions with batch norm and ReLU and a tanh
output (thresholded at 0 to give a binary image), and a discriminator D(x) of strided convolutions
with batch norm and LeakyReLU(0.2), trained with the non-saturating loss

.. math::

    \mathcal L_D = -\mathbb E\log D(x) - \mathbb E\log(1 - D(G(z))), \qquad
    \mathcal L_G = -\mathbb E \log D(G(z)).

Then latents z_i ~ N(0, I) are *labelled by the true solver*: y_i = 𝓜(threshold(G(z_i))) with a
property map 𝓜, and a mixture density network (Bishop 1994) learns the one-to-many inverse

.. math::

    p(z \mid y) = \sum_{k=1}^K \pi_k(y)\,
        \mathcal N\big(z;\ \mu_k(y), \operatorname{diag}\sigma_k^2(y)\big),
    \qquad \mathcal L_{\rm MDN} = -\log p(z \mid y),

with four densely connected layers of 16 units (each layer sees the input and all earlier layers;
batch norm, ReLU), linear heads for π (softmax) and μ and ELU(·) + 1 for σ, K = 40 — the paper's
network. The inverse for a target y* samples z ~ p(z | y*) (component by its weight, then the
Gaussian), generates and thresholds: one forward pass, no optimization.
:meth:`GANMDN.latent_optimization` is the optimization baseline: a (1 + λ) evolution strategy in
the latent space that calls the true property map in its loop (a simple stand-in for the paper's
metamodel-based Bayesian optimization, with the same structure: an initial sample, then
iterations; every iteration costs λ true simulations).

The paper's property (optical absorption by rigorous coupled-wave analysis) is not available; any
scalar component of a :class:`~psppyro.properties.PropertyMap` takes its place (phase convention:
``docs/architecture.md`` § "Phases"). The paper's GAN is fully convolutional with a spatial
latent (2×2 for 64² images); here z is a vector mapped linearly to the coarsest grid, which for
d_z = 4 and 64² is the same size.

References:
    Mao, Y., Yang, Z., Jha, D., et al. Generative adversarial networks and mixture density networks
    based inverse modeling for microstructural materials design. (seed paper).
    Radford, A., Metz, L. and Chintala, S. (2016). Unsupervised representation learning with deep
    convolutional generative adversarial networks. ICLR.
    Bishop, C. M. (1994). Mixture density networks. Technical report, Aston University.

Example::

    >>> import torch
    >>> gm = GANMDN((16, 16), latent_dim=2, seed=0)
    >>> gm.generate(torch.zeros(3, 2)).shape
    torch.Size([3, 16, 16])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._random import derive_seed, make_generator
from .._validation import as_tensor, check_finite, check_int, check_positive, check_seed

__all__ = ["GANMDN", "MDN"]


def _check_images(name, x, shape):
    x = as_tensor(name, x, dtype=torch.float32)
    if x.dim() != 3 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape (B, {shape[0]}, {shape[1]}), got {tuple(x.shape)}")
    return x


class MDN(nn.Module):
    """Densely connected mixture density network p(z | y) with diagonal Gaussian components.

    Args:
        d_y (int): input (property) dimension.
        d_z (int): output (latent) dimension.
        components (int): K (paper 40).
        width (int): units per dense layer (paper 16).
        layers (int): densely connected layers (paper 4).
        seed (int): seed of the initial weights.

    Raises:
        ValueError: on non-positive sizes.

    Example::

        >>> mdn = MDN(1, 2, components=3, seed=0)
        >>> log_pi, loc, scale = mdn(torch.zeros(5, 1))
        >>> log_pi.shape, loc.shape, bool(torch.allclose(log_pi.exp().sum(-1), torch.ones(5)))
        (torch.Size([5, 3]), torch.Size([5, 3, 2]), True)
    """

    def __init__(self, d_y: int, d_z: int, components: int = 40, width: int = 16,
                 layers: int = 4, seed: int = 0):
        super().__init__()
        self.d_y = check_int("d_y", d_y)
        self.d_z = check_int("d_z", d_z)
        self.components = check_int("components", components)
        width = check_int("width", width)
        layers = check_int("layers", layers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(check_seed("seed", seed), 21))
            self.dense = nn.ModuleList()
            d_in = d_y
            for _ in range(layers):
                self.dense.append(nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width),
                                                nn.ReLU()))
                d_in += width
            k = self.components
            self.logits = nn.Linear(d_in, k)
            self.loc = nn.Linear(d_in, k * d_z)
            self.scale = nn.Linear(d_in, k * d_z)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``log π (B, K)``, ``loc (B, K, d_z)``, ``scale (B, K, d_z)`` at standardized ``y``."""
        h = y
        for layer in self.dense:
            h = torch.cat([h, layer(h)], dim=-1)
        k, d = self.components, self.d_z
        scale = nn.functional.elu(self.scale(h)) + 1.0 + 1e-3
        return (torch.log_softmax(self.logits(h), -1), self.loc(h).reshape(-1, k, d),
                scale.reshape(-1, k, d))

    def nll(self, y: Tensor, z: Tensor) -> Tensor:
        """−log p(z | y) per sample, ``(B,)``."""
        log_pi, loc, scale = self(y)
        comp = torch.distributions.Normal(loc, scale).log_prob(z.unsqueeze(-2)).sum(-1)
        return -torch.logsumexp(log_pi + comp, dim=-1)

    @torch.no_grad()
    def sample(self, y: Tensor, num_samples: int, generator: torch.Generator) -> Tensor:
        """``num_samples`` draws of z for each row of ``y``: ``(B, num_samples, d_z)``."""
        was = self.training
        self.eval()
        log_pi, loc, scale = self(y)
        self.train(was)
        k = torch.multinomial(log_pi.exp(), num_samples, replacement=True, generator=generator)
        idx = k[..., None].expand(-1, -1, self.d_z)
        mu, sd = loc.gather(1, idx), scale.gather(1, idx)
        return mu + sd * torch.randn(mu.shape, generator=generator)


class _Generator(nn.Module):
    def __init__(self, d_z, shape, channels):
        super().__init__()
        n = shape[0]
        levels = 0
        while levels < len(channels) and n % 2 == 0 and n // 2 >= 2:
            n //= 2
            levels += 1
        self.coarse = n
        chans = list(channels[:levels])
        self.c0 = chans[0]
        self.input = nn.Sequential(nn.Linear(d_z, self.c0 * n * n), nn.BatchNorm1d(self.c0 * n * n),
                                   nn.ReLU())
        layers, c_in = [], self.c0
        for c_out in chans[1:]:
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, 1, 4, stride=2, padding=1), nn.Tanh()]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        h = self.input(z).reshape(-1, self.c0, self.coarse, self.coarse)
        return self.deconvs(h)[:, 0]


class _Discriminator(nn.Module):
    def __init__(self, shape, channels):
        super().__init__()
        layers, c_in, n = [], 1, shape[0]
        for i, c_out in enumerate(channels):
            if n % 2 or n // 2 < 2:
                break
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in, n = c_out, n // 2
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(c_in * n * n, 1)

    def forward(self, x):
        return self.out(self.convs(x[:, None]).flatten(1))[:, 0]


class GANMDN(nn.Module):
    """DCGAN on binary 2-D microstructures plus an MDN p(z | y) for one-shot inversion.

    Args:
        shape (tuple): ``(N, N)`` image shape, N divisible by 4.
        latent_dim (int): d_z of the GAN.
        d_y (int): property dimension of the MDN.
        components (int): MDN components (paper 40).
        channels (tuple): generator filters from the coarsest level (paper 128, 64, 32, 16); the
            discriminator uses them reversed.
        seed (int): seed of all initial weights.

    Raises:
        ValueError: on a shape that is not square with N divisible by 4, or bad sizes.

    Example::

        >>> gm = GANMDN((16, 16), latent_dim=2, components=3, seed=0)
        >>> x = torch.zeros(4, 16, 16); x[:, :, :8] = 1.0
        >>> d0 = gm.discriminator_step(x, seed=0)
        >>> isinstance(d0, float)
        True
    """

    def __init__(self, shape, latent_dim: int = 4, d_y: int = 1, components: int = 40,
                 channels: tuple = (128, 64, 32, 16), seed: int = 0):
        super().__init__()
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2 or shape[0] != shape[1]
                or check_int("shape", shape[0], minimum=4) % 4):
            raise ValueError(f"shape must be (N, N) with N divisible by 4 and ≥ 4, got {shape!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.latent_dim = check_int("latent_dim", latent_dim)
        self.d_y = check_int("d_y", d_y)
        self.seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, 20))
            self.generator = _Generator(self.latent_dim, self.shape, tuple(channels))
            self.discriminator = _Discriminator(self.shape, tuple(channels)[::-1])
        self.mdn = MDN(self.d_y, self.latent_dim, components=components, seed=derive_seed(seed, 1))
        self.register_buffer("y_mean", torch.zeros(self.d_y))
        self.register_buffer("y_std", torch.ones(self.d_y))
        self._opt_g = self._opt_d = self._opt_m = None  # created on the first training step

    def _adam(self, which):
        if which == "g" and self._opt_g is None:
            self._opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        if which == "d" and self._opt_d is None:
            self._opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4,
                                           betas=(0.5, 0.999))
        return self._opt_g if which == "g" else self._opt_d

    # ------------------------------------------------------------------ GAN
    def _z(self, n, seed):
        return torch.randn(n, self.latent_dim, generator=make_generator(seed))

    def generate(self, z: Tensor) -> Tensor:
        """Binary images ``threshold(G(z))`` ``(B, N, N)`` (generator in eval mode, no grad)."""
        z = as_tensor("z", z, dtype=torch.float32)
        if z.dim() != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        was = self.generator.training
        self.generator.eval()
        with torch.no_grad():
            out = (self.generator(z) > 0).float()
        self.generator.train(was)
        return out

    def _noisy(self, images, noise, seed):
        # instance noise (Sønderby et al. 2017): the same N(0, noise²) corruption of real and fake
        # images, so D cannot separate exact ±1 pixels from tanh outputs
        if noise <= 0:
            return images
        return images + noise * torch.randn(images.shape, generator=make_generator(seed))

    def discriminator_step(self, x_real: Tensor, seed: int = 0, update: bool = True,
                           noise: float = 0.0) -> float:
        """One Adam step on L_D with a batch of real images (in {0, 1}); returns L_D before it.
        ``noise`` is the instance-noise standard deviation added to real and fake images."""
        x_real = _check_images("x_real", x_real, self.shape)
        self.generator.train()
        self.discriminator.train()
        with torch.no_grad():
            fake = self.generator(self._z(x_real.shape[0], seed))
        bce = nn.functional.binary_cross_entropy_with_logits
        d_real = self.discriminator(self._noisy(2 * x_real - 1, noise, derive_seed(seed, 1)))
        d_fake = self.discriminator(self._noisy(fake, noise, derive_seed(seed, 2)))
        loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        if update:
            opt = self._adam("d")
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    def generator_step(self, batch_size: int, seed: int = 0, update: bool = True,
                       noise: float = 0.0) -> float:
        """One Adam step on the non-saturating L_G; returns L_G before it (``noise``: as for
        :meth:`discriminator_step`)."""
        batch_size = check_int("batch_size", batch_size, minimum=2)
        self.generator.train()
        self.discriminator.train()
        fake = self._noisy(self.generator(self._z(batch_size, seed)), noise, derive_seed(seed, 2))
        d_fake = self.discriminator(fake)
        loss = nn.functional.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        if update:
            opt = self._adam("g")
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    def fit_gan(self, x, *, epochs: int = 20, batch_size: int = 64, seed: int = 0,
                instance_noise: float = 0.0, progress: bool = False) -> dict:
        """Train the DCGAN on binary images ``x`` ``(N_img, N, N)``: one D and one G step per batch
        (Adam lr 2e-4, β = (0.5, 0.999) as in DCGAN; the batch is at most the number of images).

        ``instance_noise`` σ0 ≥ 0 adds N(0, σ²) to the real (±1) and the generated images that D
        sees, σ annealed linearly from σ0 to 0 over the steps: real binary images are exactly ±1,
        which D can tell from tanh outputs long before the textures match (D's loss → 0).

        Returns:
            dict: mean ``d_loss`` and ``g_loss`` per epoch.

        Raises:
            ValueError: on images of the wrong shape or non-binary values.
        """
        from tqdm.auto import tqdm

        x = _check_images("x", x, self.shape)
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError("x must be binary (values 0 and 1)")
        epochs = check_int("epochs", epochs)
        batch_size = min(check_int("batch_size", batch_size, minimum=2), x.shape[0])
        seed = check_seed("seed", seed)
        check_positive("instance_noise", instance_noise, allow_zero=True)
        gen = make_generator(derive_seed(seed, 0))
        hist = {"d_loss": [], "g_loss": []}
        step = 0
        total = epochs * (x.shape[0] // batch_size)
        bar = tqdm(range(epochs), disable=not progress, desc="DCGAN")
        for _ in bar:
            perm = torch.randperm(x.shape[0], generator=gen)
            d_sum = g_sum = 0.0
            nb = 0
            for start in range(0, x.shape[0] - batch_size + 1, batch_size):
                batch = x[perm[start:start + batch_size]]
                noise = instance_noise * (1.0 - step / total)
                d_sum += self.discriminator_step(batch, seed=derive_seed(seed, 1, step),
                                                 noise=noise)
                g_sum += self.generator_step(batch_size, seed=derive_seed(seed, 2, step),
                                             noise=noise)
                step += 1
                nb += 1
            hist["d_loss"].append(d_sum / max(nb, 1))
            hist["g_loss"].append(g_sum / max(nb, 1))
            bar.set_postfix(d=hist["d_loss"][-1], g=hist["g_loss"][-1])
        self.generator.eval()
        return hist

    # ------------------------------------------------------------------ MDN
    def label_latents(self, n: int, property_fn: Callable[[Tensor], Tensor], seed: int = 0,
                      batch_size: int = 64, progress: bool = False) -> tuple[Tensor, Tensor]:
        """Draw ``n`` latents z ~ N(0, I), generate, and label them with the true solver.

        Args:
            n (int): number of latents.
            property_fn (callable): binary images ``(B, N, N)`` → properties ``(B, d_y)``.
            seed (int): seed of the latents.
            batch_size (int): images per solver call.
            progress (bool): tqdm bar.

        Returns:
            tuple[Tensor, Tensor]: ``z (n, d_z)`` and ``y (n, d_y)`` (float32).
        """
        from tqdm.auto import tqdm

        n = check_int("n", n)
        z = self._z(n, check_seed("seed", seed))
        ys = []
        for i in tqdm(range(0, n, batch_size), disable=not progress, desc="label z"):
            ys.append(self._property(property_fn, self.generate(z[i:i + batch_size])))
        return z, torch.cat(ys)

    def _property(self, property_fn, x):
        y = torch.as_tensor(property_fn(x)).float()
        if y.dim() == 1:
            y = y[:, None]
        if y.shape != (x.shape[0], self.d_y):
            raise ValueError(f"property_fn must return shape (B, {self.d_y}), got {tuple(y.shape)}")
        return y

    def mdn_step(self, y: Tensor, z: Tensor, lr: float = 1e-3) -> float:
        """One Adam step on the MDN NLL at (standardized-by-the-model) ``y`` and ``z``; returns the
        NLL before the step."""
        if self._opt_m is None:
            self._opt_m = torch.optim.Adam(self.mdn.parameters(), lr=lr)
        self.mdn.train()
        loss = self.mdn.nll((y - self.y_mean) / self.y_std, z).mean()
        self._opt_m.zero_grad()
        loss.backward()
        self._opt_m.step()
        return float(loss.detach())

    def fit_mdn(self, z, y, *, epochs: int = 200, batch_size: int = 128, lr: float = 1e-3,
                validation_fraction: float = 0.3, patience: int = 50, seed: int = 0,
                progress: bool = False) -> dict:
        """Train the MDN on labelled latents (paper: Adam lr 1e-3, batch 128, 70/30 split,
        early stopping with patience 50); keeps the best validation state.

        Returns:
            dict: ``train`` and ``validation`` NLL per epoch and ``best_epoch``.

        Raises:
            ValueError: on mismatched shapes or non-finite values.
        """
        from tqdm.auto import tqdm

        z = as_tensor("z", z, dtype=torch.float32)
        y = as_tensor("y", y, dtype=torch.float32)
        if y.dim() == 1:
            y = y[:, None]
        if z.shape != (y.shape[0], self.latent_dim) or y.shape[-1] != self.d_y:
            raise ValueError(f"z (n, {self.latent_dim}) and y (n, {self.d_y}) must match, got "
                             f"{tuple(z.shape)} and {tuple(y.shape)}")
        check_finite("y", y)
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size, minimum=2)
        patience = check_int("patience", patience)
        gen = make_generator(derive_seed(check_seed("seed", seed), 3))
        perm = torch.randperm(y.shape[0], generator=gen)
        n_val = int(round(validation_fraction * y.shape[0]))
        val, tr = perm[:n_val], perm[n_val:]
        self.y_mean.copy_(y[tr].mean(0))
        self.y_std.copy_(y[tr].std(0).clamp_min(1e-8))
        self._opt_m = torch.optim.Adam(self.mdn.parameters(), lr=lr)
        hist = {"train": [], "validation": [], "best_epoch": None}
        best, best_state, bad = math.inf, None, 0
        bar = tqdm(range(epochs), disable=not progress, desc="MDN")
        for epoch in bar:
            order = tr[torch.randperm(len(tr), generator=gen)]
            tot, nb = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2:
                    continue
                tot += self.mdn_step(y[idx], z[idx])
                nb += 1
            hist["train"].append(tot / max(nb, 1))
            if n_val:
                self.mdn.eval()
                with torch.no_grad():
                    v = float(self.mdn.nll((y[val] - self.y_mean) / self.y_std, z[val]).mean())
                hist["validation"].append(v)
                if v < best:
                    best, bad, hist["best_epoch"] = v, 0, epoch
                    best_state = {k: t.clone() for k, t in self.mdn.state_dict().items()}
                else:
                    bad += 1
                if bad >= patience:
                    break
        if best_state is not None:
            self.mdn.load_state_dict(best_state)
        self.mdn.eval()
        return hist

    # ------------------------------------------------------------------ inversion
    def sample_latents(self, y, num_samples: int = 30, seed: int = 0) -> Tensor:
        """z ~ p(z | y) from the MDN, ``(T, num_samples, d_z)`` for targets ``y`` ``(T, d_y)``."""
        y = as_tensor("y", y, dtype=torch.float32)
        if y.dim() == 1 and self.d_y == 1:
            y = y[:, None]
        if y.dim() != 2 or y.shape[-1] != self.d_y:
            raise ValueError(f"y must have shape (T, {self.d_y}), got {tuple(y.shape)}")
        check_finite("y", y)
        num_samples = check_int("num_samples", num_samples)
        gen = make_generator(check_seed("seed", seed))
        return self.mdn.sample((y - self.y_mean) / self.y_std, num_samples, gen)

    def inverse(self, y, num_samples: int = 30, seed: int = 0) -> Tensor:
        """One-shot inverse: binary microstructures ``(T, num_samples, N, N)`` for targets ``y``.

        Example::

            >>> gm = GANMDN((16, 16), latent_dim=2, components=3, seed=0)
            >>> gm.inverse([0.5, 1.0], num_samples=4).shape
            torch.Size([2, 4, 16, 16])
        """
        z = self.sample_latents(y, num_samples, seed)
        return self.generate(z.reshape(-1, self.latent_dim)).reshape(*z.shape[:2], *self.shape)

    def latent_optimization(self, target, property_fn: Callable[[Tensor], Tensor], *,
                            n_init: int = 16, iterations: int = 20, offspring: int = 4,
                            step: float = 0.5, seed: int = 0) -> dict:
        """Baseline: a (1 + λ) evolution strategy on z minimizing |y(G(z)) − y*| / |y*|.

        Starts from the best of ``n_init`` z ~ N(0, I); each iteration proposes ``offspring``
        Gaussian perturbations of scale ``step`` (halved after an iteration without improvement,
        doubled after one with, as the 1/5th rule in its simplest form) and keeps the best. Every
        proposal is evaluated by ``property_fn`` (the true solver).

        Returns:
            dict: ``image`` (N, N), ``z``, ``y``, ``rep`` (percent), ``history`` (best REP per
            iteration), ``simulations`` and ``seconds``.

        Raises:
            ValueError: on a bad target or sizes.
        """
        target = as_tensor("target", target, dtype=torch.float32).reshape(-1)
        if target.numel() != self.d_y:
            raise ValueError(f"target must have {self.d_y} entries, got {target.numel()}")
        check_finite("target", target)
        n_init = check_int("n_init", n_init)
        iterations = check_int("iterations", iterations, minimum=0)
        offspring = check_int("offspring", offspring)
        check_positive("step", step)
        gen = make_generator(check_seed("seed", seed))
        t0 = time.perf_counter()

        def rep(z):
            y = self._property(property_fn, self.generate(z))
            return (100 * ((y - target).abs() / target.abs()).mean(-1)), y

        z = torch.randn(n_init, self.latent_dim, generator=gen)
        r, y = rep(z)
        i = int(r.argmin())
        best_z, best_r, best_y = z[i], float(r[i]), y[i]
        history, sims = [best_r], n_init
        for _ in range(iterations):
            cand = best_z + step * torch.randn(offspring, self.latent_dim, generator=gen)
            r, y = rep(cand)
            sims += offspring
            i = int(r.argmin())
            if float(r[i]) < best_r:
                best_z, best_r, best_y = cand[i], float(r[i]), y[i]
                step *= 2.0
            else:
                step *= 0.5
            history.append(best_r)
        return {"image": self.generate(best_z[None])[0], "z": best_z, "y": best_y, "rep": best_r,
                "history": history, "simulations": sims, "seconds": time.perf_counter() - t0}
