"""The stream of training images: a deterministic function of (seed, position), so a run can resume mid-epoch.

Global position i (counting every real image any process has consumed) maps to dataset index
`perm_e[i mod N]` with `perm_e` a fresh permutation per epoch e = i // N. Global batch t covers positions
[t*B, (t+1)*B); process r of W reads the contiguous slice [t*B + r*B/W, t*B + (r+1)*B/W). Resuming at
`cur_nimg` images is therefore exact for any world size, and W processes see the same images per step as one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class StreamSampler(torch.utils.data.Sampler):
    """Endless dataset indices for one process; `start` = global images consumed so far (a multiple of batch_size)."""

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start: int = 0,
        shuffle: bool = True,
    ):
        if dataset_size <= 0:
            raise ValueError("StreamSampler: the dataset is empty")
        if batch_size % world_size != 0:
            raise ValueError(f"StreamSampler: batch_size={batch_size} is not divisible by world_size={world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"StreamSampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if start % batch_size != 0:
            raise ValueError(f"StreamSampler: start={start} is not a multiple of batch_size={batch_size}")
        super().__init__()
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start
        self.shuffle = shuffle

    def permutation(self, epoch: int) -> np.ndarray:
        """int64 [N]: the dataset order of `epoch`."""
        if not self.shuffle:
            return np.arange(self.dataset_size, dtype=np.int64)
        return np.random.RandomState([self.seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF]).permutation(self.dataset_size)

    def global_indices(self, position: int, count: int) -> np.ndarray:
        """Dataset indices at global positions [position, position + count)."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            epoch, offset = divmod(position + done, self.dataset_size)
            take = min(count - done, self.dataset_size - offset)
            out[done : done + take] = self.permutation(epoch)[offset : offset + take]
            done += take
        return out

    def __iter__(self) -> Iterator[int]:
        per_rank = self.batch_size // self.world_size
        position = self.start + self.rank * per_rank
        cached_epoch, perm = -1, None
        while True:
            for pos in range(position, position + per_rank):
                epoch, offset = divmod(pos, self.dataset_size)
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self.permutation(epoch)
                yield int(perm[offset])
            position += self.batch_size
