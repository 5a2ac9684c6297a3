"""Training crops cut on the device, from photos decoded once and kept in its memory.

On a GPU, a ``DataLoader`` of :class:`~vaecodec.data.images.RandomCropImages` costs a host-side
crop, a float conversion and a pageable host-to-device copy per batch, and the copy makes the
host wait for the device every step. :class:`DeviceCrops` uploads every (decoded, padded) photo
once as uint8 and cuts each batch there: random photos (each photo once per epoch, shuffled),
random ``crop x crop`` windows and flips as ``RandomCropImages`` draws them, then float32 in
``[0, 1]``. The random numbers are drawn on the host from torch's global generator, so nothing
is read back from the device.

Usage::

    photos = RandomCropImages("photos/", crop=256, cache=True)
    crops = DeviceCrops(photos, torch.device("cuda"))    # DatasetError if it does not fit
    x = crops.batch(16)                                   # float32 [16, 3, 256, 256] on cuda
"""

from __future__ import annotations

import numpy as np
import torch

from vaecodec.data.images import RandomCropImages, pad_to
from vaecodec.errors import DatasetError

__all__ = ["DEVICE_MEMORY_SHARE", "DeviceCrops"]

DEVICE_MEMORY_SHARE = 0.25
"""The photos may take at most this share of the device's free memory (the rest is for the
model, its activations and the optimizer)."""


class DeviceCrops:
    """Random crops of ``photos`` cut on ``device`` (see the module docstring).

    Args:
        photos: the training photos; its ``crop`` and ``flips`` are used, and its decoded
            images (cached when ``photos.cache``) are uploaded once.
        device: where the photos live and the batches are cut.
        rank, world: this process's shard of every epoch's permutation (distributed training:
            ranks see disjoint photos, as ``DistributedSampler`` gives them).
        max_bytes: refuse when the photos need more (default: :data:`DEVICE_MEMORY_SHARE` of
            the free memory of a CUDA device; no limit elsewhere).

    Raises:
        DatasetError: the photos do not fit in ``max_bytes`` (train with the host data loader).
    """

    def __init__(
        self,
        photos: RandomCropImages,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        max_bytes: int | None = None,
    ) -> None:
        self.crop, self.flips, self.device = photos.crop, photos.flips, torch.device(device)
        self.rank, self.world = rank, world
        if max_bytes is None and self.device.type == "cuda":
            max_bytes = int(torch.cuda.mem_get_info(self.device)[0] * DEVICE_MEMORY_SHARE)
        sizes = [(max(h, self.crop), max(w, self.crop)) for h, w in photos.sizes]
        need = sum(3 * h * w for h, w in sizes)
        if max_bytes is not None and need > max_bytes:
            raise DatasetError(
                f"the {len(sizes)} training photos need {need / 2**20:.0f} MiB on {self.device}, "
                f"more than the {max_bytes / 2**20:.0f} MiB allowed: cropping on the host instead"
            )
        self.nbytes = need
        self.images = [
            torch.from_numpy(np.ascontiguousarray(pad_to(photos._read(i), self.crop, self.crop)))
            .permute(2, 0, 1)
            .to(self.device)
            for i in range(len(photos))
        ]
        self._order: list[int] = []
        self.epoch = 0

    def __len__(self) -> int:
        """Photos per epoch on this rank."""
        return len(self.images) // self.world

    def _next_index(self) -> int:
        if not self._order:
            perm = torch.randperm(len(self.images)).tolist()
            self._order = perm[self.rank : self.world * len(self) : self.world]
            self.epoch += 1
        return self._order.pop()

    def batch(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` crops, float32 ``[B, 3, crop, crop]`` in ``[0, 1]`` on the device."""
        c, out = self.crop, []
        for _ in range(batch_size):
            a = self.images[self._next_index()]
            top = int(torch.randint(0, a.shape[1] - c + 1, ()))
            left = int(torch.randint(0, a.shape[2] - c + 1, ()))
            a = a[:, top : top + c, left : left + c]
            if self.flips:
                hflip, vflip = torch.rand(2).lt(0.5).tolist()
                dims = [d for d, f in ((2, hflip), (1, vflip)) if f]
                if dims:
                    a = a.flip(dims)
            out.append(a)
        return torch.stack(out).float().div_(255.0)
