r"""``DesignResult``, what :func:`~psppyro.design.infer_design` returns: judged and kept.

**Judged.** :func:`judge` turns diagnostics into :class:`DesignWarning`\ s (Python ``warnings``,
also listed in ``DesignResult.warnings`` and the summary): PSIS k̂ > 0.7 (a guide that does not fit
the posterior), R̂ > 1.01 (chains that have not mixed), divergent NUTS transitions, and a
model-predicted objective at φ* below ``target.unreachable_below`` (an unreachable box: P̂ ≈ 0).

**Kept.** :meth:`DesignResult.save` writes a JSON summary (floats as float64 numbers: a float32
value is written with its shortest round-trip digits, so a box edge −6.74 stays −6.74) and the
``InferenceData`` as NetCDF next to it (``r.json`` → ``r.nc``): named φ coordinates, the seed, the
method and the target (JSON) in the attributes, NUTS ``energy``/``lp``/``diverging``, SVI/flow
``log_weight``, SGA restart end points in group ``optimization``. ``arviz.from_netcdf`` reads it.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["DesignResult", "DesignWarning", "judge", "to_json_value", "warn_all"]

#: thresholds of :func:`judge`.
KHAT_MAX = 0.7
RHAT_MAX = 1.01


class DesignWarning(UserWarning):
    """A design result whose diagnostics say it should not be trusted as it is."""


def to_json_value(x):
    """A JSON-ready copy of ``x``: tensors/arrays → (nested) lists of float64 numbers.

    float32 values are written with their shortest round-trip decimal (``-6.74``, not
    ``-6.739999771118164``); NaN and ±inf become ``None`` (JSON has no such numbers).

    Example::

        >>> to_json_value(torch.tensor([-6.74, float("nan")]))
        [-6.74, None]
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.dtype in (np.float32, np.float16):
            return _f32(x) if x.ndim == 0 else [to_json_value(v) for v in x]
        return to_json_value(x.tolist())
    if isinstance(x, np.floating):
        return _f32(x) if x.dtype in (np.float32, np.float16) else to_json_value(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, int) or x is None or isinstance(x, str):
        return x
    if isinstance(x, dict):
        return {str(k): to_json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json_value(v) for v in x]
    return repr(x)


def _f32(v):
    v = np.float32(v)
    if not np.isfinite(v):
        return None
    return float(np.format_float_positional(v, unique=True, trim="-"))


def judge(diagnostics: dict, target, value: float, se: float, method: str) -> list[str]:
    """Messages for untrustworthy diagnostics (module docstring); empty when all is well.

    Example::

        >>> from psppyro.design import Box
        >>> judge({"khat": 1.96}, Box([0.0], [1.0]), 0.3, 0.01, "svi")[0][:23]
        'PSIS k-hat = 1.96 > 0.7'
    """
    out = []
    khat = diagnostics.get("khat")
    if khat is not None and not (khat <= KHAT_MAX):  # NaN/inf count as failures
        out.append(
            f"PSIS k-hat = {khat:.3g} > {KHAT_MAX}: the {method} guide does not fit the design "
            "posterior, so its draws (and importance weights) are unreliable; run longer "
            "(num_steps), or use "
            + " or ".join(f"method={m!r}" for m in ("flow", "nuts") if m != method)
        )
    r_hat = [r for r in diagnostics.get("r_hat", []) or [] if r is not None and r == r]
    if r_hat and max(r_hat) > RHAT_MAX:
        out.append(
            f"R-hat = {max(r_hat):.4g} > {RHAT_MAX}: the {method} chains have not mixed; use more "
            "warmup_steps / num_samples or more chains"
        )
    div = diagnostics.get("divergences")
    if div:
        out.append(
            f"{int(div)} divergent transitions: {method} did not explore the posterior reliably; "
            "raise target_accept_prob (e.g. 0.95) or use full_mass=True"
        )
    if target.is_unreachable(value, se):
        out.append(
            f"model-predicted {target.objective_name} at phi* = {value:.3g} ± {se:.2g}: the target "
            f"{target!r} is practically unreachable under the model; check it against the "
            "property range the model predicts"
        )
    return out


@dataclass
class DesignResult:
    """The outcome of :func:`~psppyro.design.infer_design`.

    Attributes:
        method: the registered method name (``"sga" | "svi" | "nuts" | "flow"`` or a user's).
        target: the target it designed for.
        phi_star: Tensor (d_φ,), the design (see ``infer_design`` for each method's choice).
        objective: the model-predicted objective at φ* (float): P(m ∈ M_d | φ*) for a Box,
            E[u] for a TargetValue, the KL for a TargetDensity.
        objective_se: its Monte Carlo standard error. objective_name: ``target.objective_name``.
        samples: Tensor (S, d_φ) of posterior draws (all chains concatenated), or None for an
            optimizer (SGA), whose restart end points are ``endpoints`` (restarts, d_φ).
        idata: ``arviz.InferenceData`` (``posterior`` ``phi`` with dim ``phi_dim`` and
            ``sample_stats`` for posterior methods; group ``optimization`` for SGA).
        diagnostics: dict (NUTS: ``r_hat``, ``ess_bulk``, ``ess_tail``, ``divergences``,
            ``ess_per_s``; SVI/flow: ``khat``, ``final_elbo``; SGA: ``restart_objectives``).
        history: dict (SGA: per-epoch objectives and learning rates; SVI/flow: ``elbo``).
        warnings: the :class:`DesignWarning` messages this result raised.
        wall_time: seconds for the whole call. phi_names: φ component names.
        options: the options used. seed: the seed. extras: e.g. the fitted guide (not saved).

    ``probability`` / ``probability_se`` are ``objective`` / ``objective_se`` for utility targets
    (Box, TargetValue) and raise ``AttributeError`` for a TargetDensity (a KL is no probability).

    Example::

        >>> from psppyro.design import Box, infer_design
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain()
        >>> res = infer_design(model, Box([0.9], [1.1]), "sga", num_z=500, epochs=3, restarts=2)
        >>> res.objective_name, res.probability == res.objective
        ('probability', True)
    """

    method: str
    target: object
    phi_star: torch.Tensor
    objective: float
    objective_se: float
    objective_name: str
    samples: torch.Tensor | None = None
    endpoints: torch.Tensor | None = None
    idata: object = None
    diagnostics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    wall_time: float = 0.0
    phi_names: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    seed: int = 0
    extras: dict = field(default_factory=dict, repr=False)

    @property
    def probability(self) -> float:
        """The objective at φ* for a utility target (P(m ∈ M_d | φ*) for a Box)."""
        if getattr(self.target, "kind", "utility") != "utility":
            raise AttributeError(
                f"probability is defined for utility targets (Box, TargetValue) only; this result "
                f"is for {self.target!r}, whose objective is {self.objective_name!r}: use "
                "res.objective / res.objective_se"
            )
        return self.objective

    @property
    def probability_se(self) -> float:
        """The Monte Carlo standard error of :attr:`probability` (utility targets only)."""
        _ = self.probability
        return self.objective_se

    def summary(self) -> str:
        """A readable multi-line summary (φ*, objective ± SE, samples, diagnostics, warnings)."""
        lines = [f"DesignResult(method={self.method!r}, target={self.target!r}, seed={self.seed})"]
        phi = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(self.phi_names, self.phi_star))
        lines.append(f"  phi_star: {phi}")
        lines.append(
            f"  {self.objective_name} at phi_star (model): {self.objective:.4g} "
            f"± {self.objective_se:.2g} (MC s.e.)"
        )
        for kind, draws in (("posterior", self.samples), ("restart end points", self.endpoints)):
            if draws is None or draws.shape[0] < 2:
                continue
            q = torch.quantile(draws.double(), torch.tensor([0.05, 0.5, 0.95]).double(), dim=0)
            lines.append(f"  {kind} ({draws.shape[0]} draws): 5% / 50% / 95%")
            for i, n in enumerate(self.phi_names):
                lines.append(f"    {n}: {q[0, i]:.4g} / {q[1, i]:.4g} / {q[2, i]:.4g}")
        for k, v in self.diagnostics.items():
            if isinstance(v, (list, tuple)):
                v = "[" + ", ".join(f"{float(x):.3g}" for x in v) + "]"
            elif isinstance(v, float):
                v = f"{v:.4g}"
            lines.append(f"  {k}: {v}")
        lines.append(f"  wall time: {self.wall_time:.2f} s")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the result (no samples; those go to the NetCDF file).

        Example::

            >>> from psppyro.design import Box
            >>> r = DesignResult("sga", Box([0.0], [1.0]), torch.tensor([0.5]), 0.25, 0.01,
            ...                  "probability", phi_names=["a"])
            >>> r.to_dict()["phi_star"]
            {'a': 0.5}
        """
        return to_json_value(
            {
                "method": self.method,
                "seed": self.seed,
                "target": self.target.config(),
                "phi_names": list(self.phi_names),
                "phi_star": dict(zip(self.phi_names, to_json_value(self.phi_star))),
                "objective_name": self.objective_name,
                "direction": getattr(self.target, "direction", None),
                "objective": float(self.objective),
                "objective_se": float(self.objective_se),
                "diagnostics": self.diagnostics,
                "warnings": list(self.warnings),
                "options": self.options,
                "wall_time": float(self.wall_time),
            }
        )

    def save(self, path: str, extra: dict | None = None) -> tuple[str, str | None]:
        """Write the JSON summary to ``path`` and the InferenceData as NetCDF next to it.

        Args:
            path: the JSON file (``r.json``); the NetCDF file is ``r.nc`` (same stem).
            extra: optional entries added to the JSON (e.g. a simulation check).

        Returns:
            ``(json_path, netcdf_path)`` (``netcdf_path`` None when there is no ``idata``).

        Example::

            >>> import tempfile, os
            >>> from psppyro.design import Box, infer_design
            >>> from psppyro._doctest_fixtures import ToyChain
            >>> model = ToyChain()
            >>> res = infer_design(model, Box([0.9], [1.1]), "sga", num_z=200, epochs=2, restarts=2)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     print([os.path.basename(p) for p in res.save(os.path.join(d, "r.json"))])
            ['r.json', 'r.nc']
        """
        stem, _ = os.path.splitext(path)
        nc = None
        if self.idata is not None:
            nc = stem + ".nc"
            self.idata.to_netcdf(nc)
        out = self.to_dict()
        if nc is not None:
            out["posterior_file"] = os.path.basename(nc)
        if extra:
            out.update(to_json_value(extra))
        with open(path, "w") as f:
            json.dump(out, f, indent=2, allow_nan=False)
        return path, nc

    def __repr__(self):
        return (
            f"DesignResult(method={self.method!r}, "
            f"phi_star={[round(float(v), 4) for v in self.phi_star]}, "
            f"{self.objective_name}={self.objective:.4g}±{self.objective_se:.2g})"
        )


def warn_all(messages, stacklevel=3):
    """Emit each message as a :class:`DesignWarning`.

    Example::

        >>> warn_all([])
    """
    for msg in messages:
        warnings.warn(msg, DesignWarning, stacklevel=stacklevel)
