"""Seeds and generators.

Sample ``i`` of a run with seed ``s`` draws from a generator seeded by
:func:`derive_seed`\\(s, i), so results do not depend on chunking or on the number of workers
(``docs/architecture.md`` § "Randomness and seeding").
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and integer ``keys`` through NumPy's ``SeedSequence``.

    Example::

        >>> derive_seed(0, 5) == derive_seed(0, 5) != derive_seed(0, 6)
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for k in keys:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"seed keys must be non-negative integers, got {k!r}")
    ss = np.random.SeedSequence([int(seed), *[int(k) for k in keys]])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def make_generator(
    seed: int | torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: from an int seed, or ``seed`` itself if it is one.

    ``seed=None`` draws a fresh seed from torch's global generator (so ``pyro.set_rng_seed``
    applies).

    Example::

        >>> g = make_generator(0)
        >>> torch.randn(2, generator=g).shape
        torch.Size([2])
    """
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"seed must be a non-negative integer, a torch.Generator or None, got {seed!r}"
        )
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
