"""The order in which training reads instances: an endless stream over epochs, a pure
function of (dataset size, seed, shuffle) and the global sample index, so a resumed run
and every rank agree on it without communicating."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from miniplm.data import DatasetView, TokenDataset

Source = TokenDataset | DatasetView


class SampleOrder:
    """Global sample ``i`` -> index into the source: epoch ``i // n`` is a permutation of
    ``range(n)`` drawn from ``seed`` and the epoch (or corpus order without shuffle)."""

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self._epoch = -1
        self._perm: npt.NDArray[np.int64] | None = None

    def _permutation(self, epoch: int) -> npt.NDArray[np.int64]:
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = rng.permutation(self.n).astype(np.int64)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm

    def take(self, start: int, count: int) -> npt.NDArray[np.int64]:
        """Source indices of global samples ``[start, start + count)``."""
        idx = np.arange(start, start + count, dtype=np.int64)
        if not self.shuffle:
            return idx % self.n
        out = np.empty(count, dtype=np.int64)
        epochs = idx // self.n
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._permutation(int(e))[idx[sel] % self.n]
        return out
