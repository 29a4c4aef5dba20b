r"""The registry of design methods: ``register_method(name, runner)`` and what a runner returns.

A design method is one *runner*, a function

.. code-block:: python

    def run_mymethod(model, target, seed=0, progress=False, *, option_a=1, option_b=0.5):
        ...
        return MethodOutput(samples=..., ...)          # or phi_star=... for an optimizer

called by :func:`~psppyro.design.infer_design` with a :class:`~psppyro.design.protocol.CheckedModel`
(the user's model, validated once), a target, the run's ``seed`` and ``progress``, and the user's
options. Its options are the keyword parameters after ``progress`` (read with ``inspect``), unless
``register_method(..., options=...)`` lists them; ``infer_design`` refuses any other option with a
``ValueError`` listing the method's options. A runner should validate its options before any
expensive work. The built-in methods (``sga``, ``svi``, ``nuts``, ``flow``) are each one module
of :mod:`psppyro.design` registered this way.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "MethodOutput",
    "MethodSpec",
    "describe_methods",
    "get_method",
    "method_names",
    "method_options",
    "register_method",
    "unregister_method",
]

#: parameters of ``infer_design`` itself: no method may use them as option names.
RESERVED = (
    "model",
    "target",
    "method",
    "seed",
    "progress",
    "point",
    "num_eval_samples",
    "num_candidates",
)


@dataclass
class MethodOutput:
    """What a runner returns (every field optional; give ``samples`` or ``phi_star``).

    Attributes:
        samples: Tensor (chains, draws, d_φ) of posterior draws, or None (optimizers).
        phi_star: Tensor (d_φ,), the method's own design (optimizers); None lets ``infer_design``
            choose it from ``samples`` with its ``point`` rule.
        sample_stats: dict name → Tensor (chains, draws) of per-draw statistics (``diverging``,
            ``energy``, ``lp``, ...), stored in ``idata.sample_stats``.
        log_weights: Tensor (chains, draws) of importance log-weights log p − log q of guide draws;
            ``infer_design`` computes PSIS k̂ from them and stores them as ``log_weight``.
        endpoints: Tensor (restarts, d_φ) of optimizer end points (``idata.optimization``).
        endpoint_objective: Tensor (restarts,) of their log objectives.
        diagnostics: dict of JSON-serializable diagnostics (``divergences``, ``r_hat`` ...).
        history: dict of traces (``elbo``, per-epoch ``objective`` ...).
        extras: anything else (a fitted guide, a flow); not serialized.

    Example::

        >>> MethodOutput(phi_star=torch.zeros(2)).samples is None
        True
    """

    samples: torch.Tensor | None = None
    phi_star: torch.Tensor | None = None
    sample_stats: dict = field(default_factory=dict)
    log_weights: torch.Tensor | None = None
    endpoints: torch.Tensor | None = None
    endpoint_objective: torch.Tensor | None = None
    diagnostics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``name``, ``runner``, ``options`` (name → default) and ``summary``."""

    name: str
    runner: Callable[..., MethodOutput]
    options: dict
    summary: str


_REGISTRY: dict[str, MethodSpec] = {}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def _options_from_signature(name, runner):
    try:
        sig = inspect.signature(runner)
    except (TypeError, ValueError) as err:
        raise TypeError(f"runner for method {name!r} has no inspectable signature") from err
    params = list(sig.parameters.values())
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < 2:
        raise TypeError(
            f"runner for method {name!r} must accept (model, target, seed=..., progress=..., "
            f"**options); got signature {sig}"
        )
    names = {p.name for p in params}
    for needed in ("seed", "progress"):
        if needed not in names and not any(p.kind == p.VAR_KEYWORD for p in params):
            raise TypeError(
                f"runner for method {name!r} must accept a {needed!r} keyword argument; got "
                f"signature {sig}"
            )
    out = {}
    for p in params[2:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("seed", "progress"):
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(
                f"runner for method {name!r}: option {p.name!r} needs a default value"
            )
        out[p.name] = p.default
    return out


def register_method(
    name: str,
    runner: Callable[..., MethodOutput],
    options: dict | list | tuple | None = None,
    replace: bool = False,
) -> MethodSpec:
    """Register a design method so that ``infer_design(..., method=name)`` and the CLI can run it.

    Args:
        name: method name (letters, digits, ``_``, ``-``; starting with a letter).
        runner: ``runner(model, target, seed=..., progress=..., **options) -> MethodOutput``
            (module docstring); ``model`` is a :class:`~psppyro.design.protocol.CheckedModel`.
        options: the option names (a sequence) or names with defaults (a dict); None (default)
            reads them from the runner's signature (keyword parameters after ``progress``).
        replace: allow replacing an existing registration of ``name``.

    Returns:
        The :class:`MethodSpec`.

    Raises:
        ValueError: bad or already-registered name, an option named like an ``infer_design``
            parameter.
        TypeError: ``runner`` is not callable or its signature does not fit.

    Example::

        >>> def run_centre(model, target, seed=0, progress=False, shrink=1.0):
        ...     return MethodOutput(phi_star=model.bounds.mean(-1) * shrink)
        >>> spec = register_method("centre", run_centre)
        >>> spec.options
        {'shrink': 1.0}
        >>> unregister_method("centre")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be a string of letters, digits, '_' or '-' starting with a letter, got "
            f"{name!r}"
        )
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"method {name!r} is already registered (pass replace=True to replace it); "
            f"registered: {method_names()}"
        )
    if not callable(runner):
        raise TypeError(f"runner must be callable, got {type(runner).__name__}")
    if options is None:
        opts = _options_from_signature(name, runner)
    elif isinstance(options, dict):
        opts = dict(options)
    elif isinstance(options, (list, tuple)):
        opts = {str(o): None for o in options}
    else:
        raise TypeError(
            f"options must be None, a dict or a sequence of names, got {type(options).__name__}"
        )
    clash = sorted(set(opts) & set(RESERVED))
    if clash:
        raise ValueError(
            f"method {name!r}: options {clash} clash with infer_design's own parameters "
            f"{list(RESERVED)}"
        )
    doc = inspect.getdoc(runner) or ""
    spec = MethodSpec(name, runner, opts, doc.strip().splitlines()[0] if doc.strip() else "")
    _REGISTRY[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method.

    Raises:
        ValueError: ``name`` is not registered.

    Example::

        >>> register_method("tmp", lambda model, target, seed=0, progress=False: None).name
        'tmp'
        >>> unregister_method("tmp")
    """
    if name not in _REGISTRY:
        raise ValueError(f"method {name!r} is not registered; registered: {method_names()}")
    del _REGISTRY[name]


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order.

    Example::

        >>> import psppyro.design
        >>> method_names()[:4]
        ('sga', 'svi', 'nuts', 'flow')
    """
    return tuple(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names).

    Example::

        >>> import psppyro.design
        >>> get_method("sga").name
        'sga'
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"method must be one of {method_names()}, got {name!r}")
    return _REGISTRY[name]


def method_options(name: str) -> dict[str, Any]:
    """Option names of method ``name`` with their defaults.

    Example::

        >>> import psppyro.design
        >>> method_options("svi")["num_steps"]
        2000
    """
    return dict(get_method(name).options)


def describe_methods() -> str:
    """One paragraph per registered method: its summary and options with defaults.

    Example::

        >>> import psppyro.design
        >>> describe_methods().splitlines()[0].startswith("sga:")
        True
    """
    lines = []
    for spec in _REGISTRY.values():
        lines.append(f"{spec.name}: {spec.summary}")
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "(none)"
        lines.append(textwrap.fill(opts, 96, initial_indent=" " * 4 + "options: ",
                                   subsequent_indent=" " * 6))
    return "\n".join(lines)
