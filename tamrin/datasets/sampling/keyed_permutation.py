"""A keyed pseudo-random permutation of ``[0, n)``, evaluated on demand from a position.

The samplers shuffle with it: the order of an epoch is ``KeyedPermutation(n, seed, epoch)``
applied to the positions the sampler yields, so any position's sample costs the same to find and
no index list of the dataset's length is ever built. `CHUNK` and `FIRST_CHUNK` are how many
positions a sampler permutes per vectorised step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHUNK", "FIRST_CHUNK", "MASK64", "KeyedPermutation", "splitmix64"]

MASK64 = (1 << 64) - 1
_ROUNDS = 6  # Luby-Rackoff needs 4 for a PRP; 2 more make small domains mix well too
CHUNK = 4096  # positions per vectorised step: big enough to amortise numpy, small in memory
FIRST_CHUNK = 256  # chunks start small and double, so the first batch after a resume is quick
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: int) -> int:
    """Return the splitmix64 hash of ``x`` (a Python int); used to derive the round keys."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class KeyedPermutation:
    """A bijection on ``[0, n)`` keyed by (seed, epoch), evaluated on uint64 numpy arrays.

    An unbalanced Feistel network runs on the smallest power-of-two domain ``>= n``; values that
    land outside ``[0, n)`` are sent through it again (cycle-walking) until they land inside,
    which keeps the map a bijection on ``[0, n)`` and costs < 2 passes on average.
    """

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        self.n = n
        bits = max((n - 1).bit_length(), 1)
        self.hi_bits, self.lo_bits = bits // 2, bits - bits // 2
        state = splitmix64(splitmix64(seed & MASK64) ^ epoch)
        self.keys = []
        for _ in range(_ROUNDS):
            state = splitmix64(state)
            self.keys.append(np.uint64(state))

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        hi, lo = self.hi_bits, self.lo_bits
        for key in self.keys:
            left, right = x >> np.uint64(lo), x & np.uint64((1 << lo) - 1)
            f = right ^ key  # round function: splitmix64's finaliser of (right xor key)
            f ^= f >> np.uint64(30)
            f *= _MIX1
            f ^= f >> np.uint64(27)
            f *= _MIX2
            f ^= f >> np.uint64(31)
            # (left, right) -> (right, left ^ F(right)); the halves swap widths each round
            x = (right << np.uint64(hi)) | (left ^ (f & np.uint64((1 << hi) - 1)))
            hi, lo = lo, hi
        return x

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        x = self._feistel(positions)
        outside = np.flatnonzero(x >= self.n)
        while outside.size:  # cycle-walk only the stragglers
            walked = self._feistel(x[outside])
            x[outside] = walked
            outside = outside[walked >= self.n]
        return x
