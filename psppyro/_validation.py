"""Argument checks shared by every layer.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the argument, shows the
offending value and states what is allowed; nothing is silently clipped or reshaped
(``docs/architecture.md`` § "Verification and errors"). This module imports only torch and numpy so
that every layer may use it.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_binary",
    "check_finite",
    "check_int",
    "check_seed",
    "check_in_bounds",
    "check_interval",
    "check_last_dim",
    "check_paired_rows",
    "check_positive",
    "check_choice",
]


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_tensor(name, value, dtype=None, device=None):
    """Convert ``value`` to a tensor, refusing things that are not numbers.

    Example::

        >>> as_tensor("phi", [1.0, 2.0]).shape
        torch.Size([2])
    """
    if isinstance(value, torch.Tensor):
        t = value
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        return t
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(
            f"{name} must be a number, sequence of numbers or tensor, got {_short(value)}"
        )
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a number, sequence of numbers or tensor, got {_short(value)}"
        ) from err
    return torch.as_tensor(arr, dtype=dtype or torch.get_default_dtype(), device=device)


def check_int(name: str, value, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` after checking its type and range.

    Python and NumPy integers are accepted; ``bool``, floats (even ``3.0``), strings, tensors and
    ``None`` are refused.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        minimum: smallest allowed value (inclusive); ``None`` for no lower bound.
        maximum: largest allowed value (inclusive); ``None`` for no upper bound.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (or is a ``bool``).
        ValueError: ``value`` lies outside ``[minimum, maximum]``.

    Example::

        >>> check_int("num_samples", np.int64(5))
        5
        >>> check_int("warmup_steps", 0, minimum=0)
        0
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {_short(value)} ({type(value).__name__})")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            allowed = f">= {minimum}"
        elif minimum is None:
            allowed = f"<= {maximum}"
        else:
            allowed = f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {v}")
    return v


_SEED_MAX = 2**63 - 1


def check_seed(name: str, seed, allow_none: bool = False) -> int | None:
    """Return ``seed`` as a Python ``int`` in ``[0, 2**63 - 1]``.

    Args:
        name: the argument's name, used in the error message.
        seed: a Python or NumPy integer (not ``bool``).
        allow_none: if true, ``None`` is returned unchanged (callers that draw a fresh seed).

    Returns:
        ``int(seed)``, or ``None`` when ``seed is None`` and ``allow_none``.

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is negative or larger than ``2**63 - 1``.

    Example::

        >>> check_seed("seed", np.uint32(7))
        7
    """
    if seed is None and allow_none:
        return None
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(
            f"{name} must be a non-negative integer seed, got {_short(seed)} "
            f"({type(seed).__name__})"
        )
    v = int(seed)
    if not 0 <= v <= _SEED_MAX:
        raise ValueError(f"{name} must be an integer seed in [0, 2**63 - 1], got {v}")
    return v


def check_finite(name, t):
    """Raise ``ValueError`` if ``t`` contains NaN or infinity.

    Example::

        >>> check_finite("phi", torch.tensor([1.0, 2.0]))
    """
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{name} must be finite, got a value containing NaN or inf: {_short(t)}"
            )
    elif isinstance(t, Real) and not math.isfinite(float(t)):
        raise ValueError(f"{name} must be finite, got {t!r}")


def check_positive(name, value, allow_zero=False):
    """Raise ``ValueError`` unless ``value`` (a real number) is > 0 (or >= 0).

    Example::

        >>> check_positive("eps", 25.0)
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    v = float(value)
    ok = (v >= 0 if allow_zero else v > 0) and math.isfinite(v)
    if not ok:
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_interval(name, value, low, high, closed=(False, False)):
    """Raise ``ValueError`` unless ``low < value < high`` (ends closed as requested).

    Example::

        >>> check_interval("volume_fraction", 0.5, 0.0, 1.0)
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    v = float(value)
    lo_ok = v >= low if closed[0] else v > low
    hi_ok = v <= high if closed[1] else v < high
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lb = "[" if closed[0] else "("
        rb = "]" if closed[1] else ")"
        raise ValueError(f"{name} must lie in {lb}{low}, {high}{rb}, got {value!r}")


def check_choice(name, value, choices):
    """Raise ``ValueError`` unless ``value`` is one of ``choices``.

    Example::

        >>> check_choice("threshold", "hard", ("hard", "relaxed"))
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_last_dim(name, t, size):
    """Raise ``ValueError`` unless ``t.shape[-1] == size``.

    Example::

        >>> check_last_dim("phi", torch.zeros(3, 2), 2)
    """
    if t.dim() == 0 or t.shape[-1] != size:
        raise ValueError(
            f"{name} must have last dimension {size} (shape (..., {size})), "
            f"got shape {tuple(t.shape)}"
        )


def check_paired_rows(name_x, x, d_x, name_y, y, d_y, dtype=torch.float32):
    """Two finite 2-D tensors (n, d_x) and (n, d_y) with the same n (training pairs), as tensors.

    Example::

        >>> x, y = check_paired_rows("phi", [[0.0, 1.0]], 2, "m", [[3.0]], 1)
        >>> tuple(x.shape), tuple(y.shape)
        ((1, 2), (1, 1))
    """
    x = as_tensor(name_x, x, dtype=dtype)
    y = as_tensor(name_y, y, dtype=dtype)
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name_x} and {name_y} must be (n, {d_x}) and (n, {d_y}) with the same n, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    check_last_dim(name_x, x, d_x)
    check_last_dim(name_y, y, d_y)
    check_finite(name_x, x)
    check_finite(name_y, y)
    return x, y


def check_in_bounds(name, t, bounds, atol=1e-6):
    """Raise ``ValueError`` unless every ``t[..., i]`` lies in ``[bounds[i, 0], bounds[i, 1]]``.

    Example::

        >>> check_in_bounds("phi", torch.tensor([1.0, 0.5]), torch.tensor([[1.0, 9.0], [0.2, 2.0]]))
    """
    lo = bounds[:, 0].to(t)
    hi = bounds[:, 1].to(t)
    bad = (t < lo - atol) | (t > hi + atol)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        allowed = ", ".join(f"[{float(a):g}, {float(b):g}]" for a, b in bounds.tolist())
        raise ValueError(
            f"{name} is outside its bounds at index {idx}: value {float(t[idx]):g}; "
            f"allowed per component: {allowed}"
        )


def check_binary(name, x):
    """Raise ``ValueError`` unless ``x`` holds only the values 0 and 1.

    Phases: ``docs/architecture.md`` § "Phases".

    Example::

        >>> check_binary("x", torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    """
    check_finite(name, x)
    if not bool(((x == 0) | (x == 1)).all()):
        bad = x[(x != 0) & (x != 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must be a binary image with values 0 and 1 only, found {bad}")
