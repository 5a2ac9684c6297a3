"""Random crops streamed from WebDataset tar shards, split across ranks and data workers.

::

    train = ShardCrops("shards/shard-{000000..000123}.tar", crop=256, rank=r, world_size=n)
    loader = DataLoader(train, batch_size=8, num_workers=2, collate_fn=ShardCrops.collate)
    for x, info in loader:          # x float32 [B, 3, 256, 256] in [0, 1], info B tuples of 9
        train.consumed(info)        # keeps the resumable position and the statistics
        ...

Who reads what: every data worker of every rank is a *slot*, ``slot = rank * workers + worker``
of ``slots = world_size * workers``. Each slot reads the shards endlessly, pass after pass;
pass ``p`` orders the shards by a permutation seeded ``(seed, p)``, the same on every slot, and
slot ``s`` reads shards ``s, s + slots, ...`` of that order (all of them, keeping every
``slots``-th sample, when there are fewer shards than slots). A pass of all slots therefore
reads every shard once. Samples pass through a shuffle buffer of ``shuffle_buffer`` encoded
photos (seeded ``(seed, p, slot)``) and are decoded only when they leave it: memory per worker
is about ``shuffle_buffer`` times the mean encoded photo (e.g. 1000 x 200 kB = 200 MB) plus the
loader's prefetched batches. Each crop and flip draws from a generator seeded
``(seed, p, slot, k)``, ``k`` the sample's place in the slot's shuffled pass.

Equal batches on every rank: the streams do not end, so a rank never runs out before another;
the trainer asks every rank for the same number of batches (its steps). Passes of different
slots drift apart by the slots' different shard sizes: over many passes every photo is used
equally often, not within each nominal epoch.

Resume: every sample carries ``(slot, pass, k)``; :meth:`ShardStream.consumed` keeps the last
one per slot and :meth:`state_dict` returns them. :meth:`load_state_dict` with the same world
size and number of workers restarts each slot at the sample after its last consumed one,
re-reading (not decoding) its pass up to there, and starts the DataLoader's round-robin at the
worker whose batch was next: with the same batch size too, the batches are then exactly those
of an uninterrupted run. With another world size or number of workers the slots change: each starts
the earliest recorded pass afresh (the data order is then approximate: some photos of that
pass are seen twice, none skipped).

Bad data is skipped and counted, never fatal: a shard that cannot be opened or is truncated
(the samples read before the damage are kept), an empty shard, a sample with no image member
(``.jpg``, ``.png``, ``.webp``, ...), an image that cannot be decoded. The counts travel with the
batches (:attr:`ShardStream.skipped`) and each bad shard gets one warning. A slot whose whole
pass yields nothing raises :class:`~vaecodec.errors.DatasetError`; a local shard that does not
exist is refused when the dataset is made.
"""

from __future__ import annotations

import itertools
import re
import tarfile
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from vaecodec.data.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    _random_crop_flip,
    decode_image,
    pad_to,
    to_tensor,
)
from vaecodec.data.seeds import mix_seed
from vaecodec.data.shards import expand_shards, is_remote, read_manifest, samples_in
from vaecodec.errors import DatasetError

SKIPS = ("unreadable_shards", "truncated_shards", "empty_shards", "non_image_samples",
         "undecodable_images")  # fmt: skip
"""What :attr:`ShardStream.skipped` counts."""
_INFO = ("slot", "pass", "k", "shard")  # the first columns of a sample's info vector
_IMAGE_EXTS = {e.lstrip(".") for e in IMAGE_EXTENSIONS}


def _open(url: str):
    """A binary stream of the shard ``url``: a local file, or what ``webdataset.gopen`` opens."""
    if not is_remote(url):
        return open(url, "rb")
    from webdataset.gopen import gopen

    return gopen(url)


def read_shard(url: str, counts: dict[str, int]) -> Iterator[tuple[str, str, bytes, bytes | None]]:
    """``(key, ext, encoded image, json member or None)`` of each sample of the shard ``url``,
    in stored order.

    Members are grouped into samples by key (the name up to its first dot, WebDataset's rule);
    a sample's image is its member with an image extension. Problems are counted in ``counts``
    (keys :data:`SKIPS`) with one warning per bad shard, never raised.
    """
    from webdataset.tariterators import base_plus_ext

    n, cur, found, err, failed = 0, None, {}, None, False
    try:
        stream = _open(url)
    except Exception as e:  # noqa: BLE001 - any opener failure (OSError, ValueError, ...)
        counts["unreadable_shards"] += 1
        warnings.warn(f"skipping shard {url}: cannot open it ({e})", stacklevel=2)
        return

    def sample():
        image = next(((e, d) for e, d in found.items() if e in _IMAGE_EXTS), None)
        if image is None:
            counts["non_image_samples"] += 1
            return None
        return cur, image[0], image[1], found.get("json")

    try:
        for name, data in _members(stream):
            key, ext = base_plus_ext(name)
            if key is None:
                continue
            if key != cur and cur is not None:
                s = sample()
                if s is not None:
                    n += 1
                    yield s
                found = {}
            cur = key
            found[ext.lower()] = data
    except Exception as e:  # noqa: BLE001 - tarfile.ReadError, EOFError, OSError
        err = e
    try:
        stream.close()  # a pipe's command (curl, gsutil, ...) reports its failure here
    except Exception as e:  # noqa: BLE001
        err, failed = err or e, True
    if cur is not None and (s := sample()) is not None:
        n += 1
        yield s
    if failed and n == 0:
        counts["unreadable_shards"] += 1
        warnings.warn(f"skipping shard {url}: cannot read it ({err})", stacklevel=2)
    elif err is not None and not (n == 0 and cur is None and "empty file" in str(err)):
        counts["truncated_shards"] += 1
        warnings.warn(f"shard {url} is damaged after {n} samples, skipping the rest ({err})",
                      stacklevel=2)  # fmt: skip
    elif cur is None:
        counts["empty_shards"] += 1
        warnings.warn(f"shard {url} holds no sample", stacklevel=2)


class _Tail:
    """A reader that notes whether the end of its stream was reached and the last 1024 bytes
    before it: a whole tar file ends with two zero blocks (and zero padding), which tarfile's
    stream mode may stop before (fine) but does not check when the data runs out first."""

    def __init__(self, stream):
        self.stream, self.tail, self.eof = stream, b"", False

    def read(self, n=-1):
        data = self.stream.read(n)
        self.tail = (self.tail + data[-1024:])[-1024:]
        self.eof = self.eof or n is None or n < 0 or len(data) < n
        return data


def _members(stream) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of the regular members of a tar stream, in order; EOFError when a
    member or the archive is cut short (tarfile itself would end quietly).

    A local file is read with seeks (one read per member); a pipe or a download through
    tarfile's stream mode (its 10 kB records)."""
    seekable = getattr(stream, "seekable", lambda: False)()
    reader = stream if seekable else _Tail(stream)
    tar = tarfile.open(fileobj=reader, mode="r:*" if seekable else "r|*")
    for info in tar:
        if not info.isreg():
            continue
        data = tar.extractfile(info).read()
        if len(data) < info.size:
            raise EOFError(f"{info.name} is cut at {len(data)} of its {info.size} bytes")
        tar.members = []  # keep no index
        yield info.name, data
    if seekable:  # tarfile stopped at the first zero block: the two must be there
        stream.seek(tar.offset)
        whole = stream.read(1024) == bytes(1024)
    else:
        whole = not (reader.eof and reader.tail.strip(b"\0"))
    if not whole:
        raise EOFError("the archive ends without its end-of-archive blocks")


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse in this process (a data worker): no
    separate mapping for blocks under 64 MB, no giving the heap's top back to the system.

    Why: a shuffle buffer holds photos of about 200 kB that are freed as they leave it and read
    again a moment later; by default each is a fresh mapping or a re-grown heap, and its pages
    fault in again (24-29 page faults a photo, 0.1 ms of CPU), and so do the decoded photos
    and crops. Measured: 0.4 ms less CPU a 256² crop (BENCHMARKS.md, issue 26). Not glibc
    (macOS, musl): nothing happens. The process keeps its peak memory (the buffer's) until it
    ends."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def probe(url: str) -> None:
    """Read the first tar header of ``url``: :class:`DatasetError` (one line) when it cannot
    be opened or gives no data (a wrong URL, a failing ``pipe:`` command)."""
    head = b""
    try:
        stream = _open(url)
        try:
            head = stream.read(512)
        finally:
            try:
                stream.close()
            except Exception as e:  # noqa: BLE001 - the pipe's exit status
                if len(head) < 512:
                    raise e from None
    except Exception as e:  # noqa: BLE001
        status = re.search(r"exit (\d+) \(read\)", str(e))  # webdataset's Pipe: the status
        why = f"its command exited with status {status[1]}" if status else str(e).strip()
        raise DatasetError(f"cannot read shard {url}: {why or type(e).__name__}") from None
    if len(head) < 512:
        raise DatasetError(f"cannot read shard {url}: it gave {len(head)} bytes, not a tar file")


def shuffled(items, size: int, rng: np.random.Generator, initial: int = 64):
    """Items of ``items`` through a shuffle buffer of up to ``size`` (``size <= 1``: in order).

    Output starts once ``initial`` items are buffered; until the buffer is full it takes two
    items for each one it lets out (a random buffered one), then one for one; at the end it
    drains in random order. Starting early matters with data-loading workers: a worker that
    first filled the whole buffer would hold up the loader's round-robin at each pass."""
    if size <= 1:
        yield from items
        return
    it = iter(items)
    buf = []
    for item in it:
        buf.append(item)
        if len(buf) < size:
            buf.extend(itertools.islice(it, 1))
        if len(buf) >= min(initial, size):
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


class ShardStream(torch.utils.data.IterableDataset):
    """Endless samples of the photos in tar shards, one tensor each (module docstring: how
    shards are split, shuffled and resumed, what memory it needs, what it skips): the machinery
    that :class:`ShardCrops` (the codec's random crops) and
    :class:`~vaecodec.data.shard_images.ShardImages` (a VAE's whole images) share. A subclass
    says what a sample becomes (:meth:`_item`) and which samples it takes (:meth:`_keep`).

    Yields ``(x, info)``: ``x`` the sample's tensor; ``info`` a tuple of ``4 + len(SKIPS)``
    integers: slot, pass, k, shard index, then the slot's skip counts so far.

    Args:
        shards: a shard spec (``"DIR/shard-{000000..000123}.tar"``, ``pipe:...``, URLs) or a
            list of shard URLs.
        shuffle_buffer: encoded photos held per worker for shuffling (1: none).
        seed: seed of the shard order, the buffers and the subclass's random draws.
        rank, world_size: this process's rank and the number of ranks.

    Raises:
        DatasetError: no shard, a missing local shard, bad arguments.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if shuffle_buffer < 1:
            raise DatasetError(f"shuffle_buffer must be >= 1, not {shuffle_buffer}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DatasetError(f"need 0 <= rank < world_size, got {rank}, {world_size}")
        self.urls = expand_shards(shards) if isinstance(shards, str) else list(shards)
        if not self.urls:
            raise DatasetError("no shards given")
        if is_remote(self.urls[0]):
            probe(self.urls[0])  # a wrong URL is one error now, not a warning per worker
        # imported now, before a DataLoader forks its workers: importing webdataset costs
        # about a second of CPU, which each worker would otherwise pay again
        import webdataset.gopen  # noqa: F401
        import webdataset.tariterators  # noqa: F401
        from PIL import Image

        Image.init()  # Pillow's format plugins likewise (a folder's header scan loads them)
        self.samples = samples_in(self.urls, read_manifest(self.urls))
        """Samples in the shards according to their manifest (None: not known)."""
        self.shuffle_buffer, self.seed = int(shuffle_buffer), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self._start: dict[int, tuple[int, int]] = {}  # slot -> (pass, k) to start at
        self._rotate = 0
        # what the training process has consumed (consumed()), per slot
        self.positions: dict[int, tuple[int, int]] = {}
        self.skipped_by_slot: dict[int, list[int]] = {}
        self.shards_read: set[int] = set()
        self.batches = 0
        self.samples_consumed = 0
        self.workers: int | None = None

    def __len__(self):  # an IterableDataset of endless streams has none
        raise TypeError(f"{type(self).__name__} is an endless stream")

    # ------------------------------------------------------------------ what a subclass says
    def _keep(self, key: str, meta: bytes | None) -> bool:
        """Whether the sample ``key`` (its ``.json`` member ``meta``) is taken (all: True)."""
        return True

    def _item(self, data: bytes, name: str, where: tuple[int, int, int]) -> torch.Tensor:
        """The tensor of a sample: ``data`` its encoded image, ``name`` what an error calls it,
        ``where`` its ``(pass, slot, k)`` (to seed its random draws). Raises ImageError."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the workers' side
    def _slot(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        worker = (worker + self._rotate) % workers
        return self.rank * workers + worker, self.world_size * workers

    def _pass(self, p: int, slot: int, slots: int, counts: dict[int, int]):
        """``(shard index, key, ext, data)`` of slot ``slot``'s share of pass ``p``."""
        order = np.random.default_rng(mix_seed(self.seed, p)).permutation(len(self.urls))
        if len(self.urls) >= slots:
            for i in order[slot::slots]:
                for key, ext, data, meta in read_shard(self.urls[i], counts):
                    if self._keep(key, meta):
                        yield int(i), key, ext, data
            return
        j = 0  # fewer shards than slots: every slot reads all, keeping its samples
        for i in order:
            for key, ext, data, meta in read_shard(self.urls[i], counts):
                if j % slots == slot and self._keep(key, meta):
                    yield int(i), key, ext, data
                j += 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, tuple[int, ...]]]:
        if torch.utils.data.get_worker_info() is not None:  # not the training process's malloc
            keep_freed_memory()
        slot, slots = self._slot()
        p, k0 = self._start.get(slot, self._start.get(-1, (0, 0)))
        counts = dict.fromkeys(SKIPS, 0)
        while True:
            rng = np.random.default_rng(mix_seed(self.seed, p, slot))
            got = 0
            for k, (shard, key, ext, data) in enumerate(
                shuffled(self._pass(p, slot, slots, counts), self.shuffle_buffer, rng)
            ):
                got += 1
                if k < k0:
                    continue  # resuming: already consumed before the checkpoint
                try:
                    x = self._item(data, f"{self.urls[shard]}:{key}.{ext}", (p, slot, k))
                except ImageError as e:
                    counts["undecodable_images"] += 1
                    warnings.warn(f"skipping {e}", stacklevel=2)
                    continue
                yield x, (slot, p, k, shard, *(counts[s] for s in SKIPS))
            if got == 0:
                raise DatasetError(
                    f"no readable sample in pass {p} of data slot {slot} (rank {self.rank}) of "
                    f"{len(self.urls)} shards ({self.urls[0]} ...): "
                    + ", ".join(f"{v} {s.replace('_', ' ')}" for s, v in counts.items() if v)
                )
            p, k0 = p + 1, 0

    @staticmethod
    def collate(batch: list) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """The DataLoader's ``collate_fn`` for this dataset: ``(x [B, 3, crop, crop], info)``
        with ``info`` the samples' tuples as a list (sent between processes as plain
        integers: a second tensor per batch would cost a shared-memory transfer).

        ``x`` is stacked as ``default_collate`` stacks: in a data worker, straight into shared
        memory (a plain ``torch.stack`` there was copied once more into shared memory when the
        batch was sent, about 0.5 ms of CPU a 256² crop)."""
        return default_collate([x for x, _ in batch]), [info for _, info in batch]

    # ------------------------------------------------------------ the training process's side
    def consumed(self, info) -> None:
        """Record a batch's ``info`` (rows of ``4 + len(SKIPS)`` integers: a list as
        :meth:`collate` gives, or an int64 tensor as ``default_collate`` does) once the
        training loop has taken it: the position to resume from and the statistics."""
        rows = info.tolist() if isinstance(info, torch.Tensor) else [list(r) for r in info]
        for slot, p, k, shard, *skips in rows:
            self.shards_read.add(shard)
            self.positions[slot] = (p, k + 1)
            self.skipped_by_slot[slot] = skips
        self.batches += 1
        self.samples_consumed += len(rows)

    @property
    def skipped(self) -> dict[str, int]:
        """What the slots of this rank skipped so far (:data:`SKIPS`), as of the batches
        consumed."""
        return {s: sum(v[i] for v in self.skipped_by_slot.values()) for i, s in enumerate(SKIPS)}

    def state_dict(self) -> dict:
        """Where each slot of this rank stands: ``{"positions": {slot: [pass, k]}, "batches",
        "samples" (consumed), "world_size", "workers"}`` (``workers`` as set by the caller)."""
        return {"positions": {str(s): list(v) for s, v in sorted(self.positions.items())},
                "batches": self.batches, "samples": self.samples_consumed,
                "world_size": self.world_size, "workers": self.workers}  # fmt: skip

    def load_state_dict(self, state: dict, workers: int) -> bool:
        """Start the next iteration where ``state`` (the merged :meth:`state_dict` of all ranks)
        left off. Returns True when the resume is exact (same world size and ``workers``,
        module docstring), False when the slots start the earliest recorded pass afresh."""
        pos = {int(s): (int(v[0]), int(v[1])) for s, v in state.get("positions", {}).items()}
        self.workers = workers
        self.batches = int(state.get("batches", 0))
        self.samples_consumed = int(state.get("samples", 0))
        if not pos:
            return False
        if state.get("world_size") == self.world_size and state.get("workers") == workers:
            self._start = pos
            self._rotate = self.batches % max(1, workers)
            self.positions = dict(pos)
            return True
        self._start = {-1: (min(p for p, _ in pos.values()), 0)}
        return False

class ShardCrops(ShardStream):
    """Endless random ``crop x crop`` RGB patches of the photos in tar shards (what
    ``train-codec --data 'DIR/shard-{...}.tar'`` trains on; the machinery: :class:`ShardStream`).

    Yields ``(x, info)``: ``x`` float32 ``[3, crop, crop]`` in ``[0, 1]``; ``info`` as
    :class:`ShardStream` says.

    Args:
        shards, shuffle_buffer, seed, rank, world_size: as :class:`ShardStream`'s (``seed``
            also seeds the crops and flips).
        crop: patch side in pixels; photos smaller than that are padded by reflection.
        flips: random horizontal and vertical flips.

    Raises:
        DatasetError: no shard, a missing local shard, bad arguments.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        crop: int = 256,
        flips: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if crop < 1:
            raise DatasetError(f"crop must be a positive number of pixels, not {crop}")
        super().__init__(shards, shuffle_buffer, seed, rank, world_size)
        self.crop, self.flips = int(crop), bool(flips)

    def _item(self, data: bytes, name: str, where: tuple[int, int, int]) -> torch.Tensor:
        a, _ = decode_image(data, name)
        g = torch.Generator().manual_seed(mix_seed(self.seed, *where))
        a = _random_crop_flip(pad_to(a, self.crop, self.crop), self.crop, self.flips, g)
        return to_tensor(a, contiguous=True)


def worker_errors(loader):
    """The batches of ``loader`` (a DataLoader over a :class:`ShardStream`); a data worker's
    :class:`DatasetError` is raised again as the one line it said (the DataLoader wraps it in
    the worker's traceback). Closing this generator drops the loader's iterator, which stops
    its workers."""
    try:
        yield from loader
    except DatasetError as e:
        raise DatasetError(str(e).strip().splitlines()[-1].split("DatasetError: ", 1)[-1]) from None


def gather_streams(stream: ShardStream, world: int, step: int) -> tuple[dict, dict]:
    """Every rank's stream position and statistics (with ``world > 1`` a collective call of
    ``torch.distributed``: all ranks make it at the same step). Returns the merged position to
    checkpoint (:meth:`ShardStream.load_state_dict` takes it) and a record for the run's log:
    ``{"step", "batches" and "samples" (a list, one per rank), "shards_read" (by any rank, in
    this invocation), "shards" (given), "skipped" (summed over ranks)}``."""
    mine = {"state": stream.state_dict(), "shards": sorted(stream.shards_read),
            "skipped": stream.skipped}  # fmt: skip
    every = [mine]
    if world > 1:
        import torch.distributed as dist

        every = [None] * world
        dist.all_gather_object(every, mine)
    positions = {k: v for r in every for k, v in r["state"]["positions"].items()}
    state = {**mine["state"], "positions": positions}
    read = set().union(*(r["shards"] for r in every))
    rec = {"step": step, "batches": [r["state"]["batches"] for r in every],
           "samples": [r["state"]["samples"] for r in every],
           "shards_read": len(read), "shards": len(stream.urls),
           "skipped": {k: sum(r["skipped"][k] for r in every) for k in mine["skipped"]}}  # fmt: skip
    return state, rec
