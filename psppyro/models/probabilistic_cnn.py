r"""Probabilistic CNN surrogate of the structure–property link (Rixner & Koutsourelakis 2022).

The surrogate replaces the expensive solver κ(x) by a heteroscedastic Gaussian

.. math::

    p_M(κ \mid x, D) = \mathcal N\big(κ;\ m_θ(x),\ \mathrm{diag}\, S_θ(x)\big),

with the mean and the diagonal covariance computed by one convolutional network (the paper's
Figure 2 and its Supplementary Information "Probabilistic Surrogate"):

- the two phases are encoded as −1 / +1 (``2x − 1``; relaxed images in (0, 1) map into (−1, 1)),
- four blocks of [3×3 convolution (padding 1, size kept) → LeakyReLU → 2×2 average pooling] with
  4, 8, 12 and 16 channels, so a 64² image becomes 16 × 4 × 4 features,
- dropout (p = 0.05) before the first dense layer, a shared dense layer of width 30 (LeakyReLU),
- two heads: the mean m_θ(x) and the log-variance (``S_θ = exp(·)`` keeps it positive).

θ is the maximum-likelihood estimate on the data D = {(x_n, κ_n)} (Adam, batch 128, weight
decay 1e-5), i.e. the negative log-likelihood

.. math::

    -\log p(D \mid θ) = \sum_n \sum_i \tfrac12\Big[\log S_{θ,i}(x_n)
        + \frac{(κ_{n,i} - m_{θ,i}(x_n))^2}{S_{θ,i}(x_n)}\Big] + \text{const}

is minimized. Properties are standardized internally (per component, with the training data's
mean and standard deviation, stored as buffers) so the same learning rate fits K_11 ≈ 10 and
C ≈ 7; :meth:`ProbabilisticCNN.property_dist` returns the distribution in the user's units. A
held-out fraction of D (``validation_fraction``) picks the epoch with the lowest validation NLL
(early stopping; the paper states no epoch count). The surrogate only sees images, never φ: the
surrogate chain (:class:`~psppyro.models.SurrogateChain`) puts it behind the true process.

See ``docs/architecture.md`` § "The design protocol" for how a surrogate enters design.

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). Self-supervised optimization of random material
    microstructures in the small-data regime. npj Computational Materials 8, 46.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .._random import derive_seed, make_generator
from .._validation import as_tensor, check_int, check_interval, check_positive, check_seed

__all__ = ["ProbabilisticCNN"]


class ProbabilisticCNN(nn.Module):
    r"""p(κ | x) = N(m_θ(x), diag S_θ(x)) from a small CNN (module docstring).

    Args:
        image_shape: ``(H, W)``, each divisible by 2 ** len(channels) (16 by default).
        d_m: number of properties κ.
        channels: channels of the convolution blocks (paper: 4, 8, 12, 16).
        hidden: width of the shared dense layer (paper: 30).
        dropout: dropout probability before the dense layer (paper: 0.05).
        negative_slope: LeakyReLU slope.
        seed: seed of the initial weights (a forked RNG; the global one is untouched).

    Raises:
        ValueError: an image side not divisible by 2 ** len(channels), bad sizes or probabilities.

    Example::

        >>> cnn = ProbabilisticCNN((16, 16), d_m=2)
        >>> cnn.property_dist(torch.zeros(3, 16, 16)).batch_shape
        torch.Size([3])
    """

    def __init__(
        self,
        image_shape: tuple[int, int] = (64, 64),
        d_m: int = 2,
        channels: tuple[int, ...] = (4, 8, 12, 16),
        hidden: int = 30,
        dropout: float = 0.05,
        negative_slope: float = 0.01,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
            raise ValueError(f"image_shape must be (H, W), got {image_shape!r}")
        channels = tuple(check_int(f"channels[{i}]", c) for i, c in enumerate(channels))
        if not channels:
            raise ValueError("channels must name at least one convolution block, got ()")
        f = 2 ** len(channels)
        shape = tuple(check_int(f"image_shape[{i}]", n) for i, n in enumerate(image_shape))
        if any(n % f for n in shape):
            raise ValueError(
                f"image_shape must be divisible by 2**len(channels) = {f} (one 2x2 pooling per "
                f"block), got {shape}"
            )
        self.image_shape = shape
        self.d_m = check_int("d_m", d_m)
        self.channels = channels
        self.hidden = check_int("hidden", hidden)
        check_interval("dropout", dropout, 0.0, 1.0, closed=(True, False))
        self.dropout_p = float(dropout)
        check_positive("negative_slope", negative_slope, allow_zero=True)
        self.negative_slope = float(negative_slope)
        self.seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, 0))
            blocks, c_in = [], 1
            for c in channels:
                blocks += [nn.Conv2d(c_in, c, 3, padding=1, padding_mode="circular"),
                           nn.LeakyReLU(self.negative_slope), nn.AvgPool2d(2)]
                c_in = c
            self.features = nn.Sequential(*blocks)
            n_feat = c_in * (shape[0] // f) * (shape[1] // f)
            self.shared = nn.Sequential(
                nn.Flatten(), nn.Dropout(self.dropout_p), nn.Linear(n_feat, self.hidden),
                nn.LeakyReLU(self.negative_slope),
            )
            self.mean_head = nn.Linear(self.hidden, self.d_m)
            self.logvar_head = nn.Linear(self.hidden, self.d_m)
        self.register_buffer("m_shift", torch.zeros(self.d_m))
        self.register_buffer("m_scale", torch.ones(self.d_m))

    # ------------------------------------------------------------------ prediction
    def _check_x(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"x must be a torch.Tensor of images (..., H, W), got {type(x).__name__}"
            )
        if x.dim() < 2 or tuple(x.shape[-2:]) != self.image_shape:
            raise ValueError(
                f"x must have shape (..., {self.image_shape[0]}, {self.image_shape[1]}), got "
                f"{tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized mean and log-variance, each ``(*x.shape[:-2], d_m)``.

        Example::

            >>> mu, logvar = ProbabilisticCNN((16, 16), 1)(torch.ones(2, 16, 16))
            >>> mu.shape, logvar.shape
            (torch.Size([2, 1]), torch.Size([2, 1]))
        """
        self._check_x(x)
        batch = x.shape[:-2]
        w = self.mean_head.weight
        h = (2.0 * x.reshape(-1, 1, *self.image_shape).to(w.dtype) - 1.0)
        h = self.shared(self.features(h))
        mu = self.mean_head(h)
        logvar = self.logvar_head(h).clamp(-20.0, 10.0)
        return mu.reshape(*batch, self.d_m), logvar.reshape(*batch, self.d_m)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean m_θ(x) and variance S_θ(x) in the user's units, each ``(*x.shape[:-2], d_m)``.

        Example::

            >>> mean, var = ProbabilisticCNN((16, 16), 2).predict(torch.zeros(4, 16, 16))
            >>> bool((var > 0).all())
            True
        """
        mu, logvar = self(x)
        mean = self.m_shift + self.m_scale * mu
        var = self.m_scale**2 * logvar.exp()
        return mean, var

    def property_dist(self, x: torch.Tensor) -> Independent:
        """p_M(κ | x): ``Independent(Normal(m_θ(x), √S_θ(x)), 1)``, batch shape ``x.shape[:-2]``.

        Differentiable in ``x`` (relaxed images), so usable inside Pyro models.

        Example::

            >>> d = ProbabilisticCNN((16, 16), 2).property_dist(torch.zeros(5, 16, 16))
            >>> d.event_shape
            torch.Size([2])
        """
        mean, var = self.predict(x)
        return Independent(Normal(mean, var.sqrt()), 1)

    # ------------------------------------------------------------------ training
    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the initial weights (seeded; default: the constructor's seed).

        Example::

            >>> cnn = ProbabilisticCNN((16, 16), 1)
            >>> w = cnn.mean_head.weight.clone(); cnn.reset_parameters(seed=3)
            >>> bool((cnn.mean_head.weight != w).any())
            True
        """
        seed = self.seed if seed is None else check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 0))
            for mod in self.modules():
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    mod.reset_parameters()
        self.m_shift.zero_()
        self.m_scale.fill_(1.0)

    def nll(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sample (user's units, constants included).

        Example::

            >>> cnn = ProbabilisticCNN((16, 16), 1)
            >>> bool(torch.isfinite(cnn.nll(torch.zeros(2, 16, 16), torch.zeros(2, 1))))
            True
        """
        return -self.property_dist(x).log_prob(m.to(self.m_shift)).mean()

    def fit(
        self,
        x: torch.Tensor,
        m: torch.Tensor,
        epochs: int = 300,
        lr: float = 3e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-5,
        validation_fraction: float = 0.1,
        patience: int = 40,
        seed: int = 0,
        progress: bool = False,
    ) -> dict:
        """Maximum-likelihood training (Adam, mini-batches, early stopping on held-out NLL).

        Args:
            x: images ``(N, H, W)``, 0/1 (or relaxed values in [0, 1]).
            m: properties ``(N, d_m)``, finite.
            epochs: maximum number of epochs. lr: Adam learning rate. batch_size: paper 128.
            weight_decay: Adam weight decay (paper 1e-5).
            validation_fraction: share of D held out to choose the best epoch, in [0, 1); 0 keeps
                the last epoch.
            patience: stop after this many epochs without a better validation NLL.
            seed: seed of the split and the batch order.
            progress: tqdm bar over epochs.

        Returns:
            dict with ``train_nll`` and ``val_nll`` (per-epoch lists) and ``best_epoch``.

        Raises:
            ValueError: shapes that do not match the network, non-finite properties, bad options.

        Example::

            >>> g = torch.Generator().manual_seed(0)
            >>> x = (torch.rand(64, 16, 16, generator=g) < 0.5).float()
            >>> cnn = ProbabilisticCNN((16, 16), 1)
            >>> hist = cnn.fit(x, x.mean((-2, -1))[:, None], epochs=3)
            >>> len(hist["train_nll"])
            3
        """
        x = as_tensor("x", x)
        m = as_tensor("m", m)
        self._check_x(x)
        if x.dim() != 3:
            raise ValueError(f"x must be (N, H, W), got shape {tuple(x.shape)}")
        if m.dim() != 2 or m.shape != (x.shape[0], self.d_m):
            raise ValueError(
                f"m must have shape ({x.shape[0]}, {self.d_m}) to match x, got {tuple(m.shape)}"
            )
        if not bool(torch.isfinite(m).all()):
            raise ValueError("m must be finite (a solver failure must be removed before training)")
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size)
        patience = check_int("patience", patience)
        check_positive("lr", lr)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_interval("validation_fraction", validation_fraction, 0.0, 1.0, closed=(True, False))
        seed = check_seed("seed", seed)
        dtype = self.m_shift.dtype
        x = x.to(dtype)
        m = m.to(dtype)
        g = make_generator(derive_seed(seed, 1))
        n = x.shape[0]
        perm = torch.randperm(n, generator=g)
        n_val = int(round(validation_fraction * n)) if validation_fraction > 0 else 0
        if n_val > 0 and n - n_val < 2:
            raise ValueError(f"too few samples ({n}) for validation_fraction={validation_fraction}")
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        shift = m[tr_idx].mean(0)
        scale = m[tr_idx].std(0) if len(tr_idx) > 1 else torch.ones_like(shift)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.m_shift.copy_(shift)
        self.m_scale.copy_(scale)
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        hist = {"train_nll": [], "val_nll": [], "best_epoch": None}
        best, best_state, stalled = math.inf, None, 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, desc="surrogate", unit="epoch")
        was_training = self.training
        try:
            for epoch in range(epochs):
                self.train()
                order = tr_idx[torch.randperm(len(tr_idx), generator=g)]
                total = 0.0
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(derive_seed(seed, 2, epoch))  # dropout masks
                    for start in range(0, len(order), batch_size):
                        idx = order[start : start + batch_size]
                        mu, logvar = self(x[idx])
                        r = (m[idx] - shift) / scale
                        loss = 0.5 * (logvar + (r - mu) ** 2 * torch.exp(-logvar)).sum(-1).mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * len(idx)
                hist["train_nll"].append(total / len(order))
                if n_val:
                    self.eval()
                    with torch.no_grad():
                        v = float(self.nll(x[val_idx], m[val_idx]))
                    hist["val_nll"].append(v)
                    if v < best:
                        best, stalled = v, 0
                        best_state = copy.deepcopy(self.state_dict())
                        hist["best_epoch"] = epoch
                    else:
                        stalled += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(train=f"{hist['train_nll'][-1]:.3g}",
                                    val=f"{hist['val_nll'][-1]:.3g}" if n_val else "-")
                if n_val and stalled >= patience:
                    break
        finally:
            if bar is not None:
                bar.close()
            self.train(was_training)
        if best_state is not None:
            self.load_state_dict(best_state)
        else:
            hist["best_epoch"] = len(hist["train_nll"]) - 1
        self.eval()
        return hist

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        """Constructor arguments (JSON-serializable).

        Example::

            >>> ProbabilisticCNN((16, 16), 2).config()["channels"]
            [4, 8, 12, 16]
        """
        return {
            "image_shape": list(self.image_shape),
            "d_m": self.d_m,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "negative_slope": self.negative_slope,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> None:
        """Write the configuration and the weights (incl. the property scaling) to ``path``.

        Example::

            >>> import tempfile, os
            >>> cnn = ProbabilisticCNN((16, 16), 2)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     cnn.save(os.path.join(d, "cnn.pt"))
            ...     ProbabilisticCNN.load(os.path.join(d, "cnn.pt")).d_m
            2
        """
        from psppyro import __version__

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"config": json.dumps(self.config()), "version": __version__,
                    "state_dict": self.state_dict()}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> ProbabilisticCNN:
        """Load a surrogate written by :meth:`save` (``weights_only`` unpickling).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a file written by :meth:`save`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no surrogate file at {str(path)!r}")
        try:
            blob = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # noqa: BLE001 - reported as what the file is not
            raise ValueError(
                f"{str(path)!r} is not a ProbabilisticCNN file (torch could not read it: "
                f"{type(err).__name__})"
            ) from err
        if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
            raise ValueError(f"{str(path)!r} is not a ProbabilisticCNN file (no config/state_dict)")
        cfg = json.loads(blob["config"])
        cfg["image_shape"] = tuple(cfg["image_shape"])
        cfg["channels"] = tuple(cfg["channels"])
        model = cls(**cfg)
        model.load_state_dict(blob["state_dict"])
        model.eval()
        return model
