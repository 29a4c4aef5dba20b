"""Seeds and generators.

Sample ``i`` of a run with seed ``s`` draws from a generator seeded by
:func:`derive_seed`\\(s, i), so results do not depend on chunking or on the number of workers
(``docs/architecture.md`` § "Randomness and seeding").
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import check_int, check_seed

__all__ = ["derive_seed", "make_generator"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and integer ``keys`` through NumPy's ``SeedSequence``.

    Example::

        >>> derive_seed(0, 5) == derive_seed(0, 5) != derive_seed(0, 6)
        True
    """
    seed = check_seed("seed", seed)
    keys = [check_int("seed keys", k, minimum=0) for k in keys]
    ss = np.random.SeedSequence([seed, *keys])
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
    try:
        seed = check_seed("seed", seed)
    except TypeError as err:
        raise TypeError(f"{err}; a torch.Generator or None is accepted too") from None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
