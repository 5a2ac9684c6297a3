"""Rate-distortion sweeps: code every image at every setting, measure, average, compare.

A codec enters a sweep through a small adaptor interface (:class:`CodecAdaptor`): a ``name``,
the ``qualities`` (settings) it sweeps, ``encode(rgb_uint8, quality) -> bytes`` and
``decode(bytes) -> rgb_uint8``. Classical codecs come as
:class:`vaecodec.evaluate.classical.ClassicalCodec`; a learned codec from the zoo as
:class:`LearnedCodecAdaptor`; anything else (a test double, an external codec) just needs the
four members. Rates are always ``8 * len(bytes) / (H * W)`` of the real bytes returned.

Per-image records (one per image x codec x setting)::

    {"image", "codec", "setting", "height", "width", "bytes", "bpp", "psnr", "ms_ssim",
     "enc_s", "dec_s"}

``psnr`` in dB on 8-bit RGB (``inf`` if lossless), ``ms_ssim`` in [0, 1] (``nan`` for images
smaller than 161 px on a side, where MS-SSIM is undefined), times in seconds of wall clock for
one ``encode`` / ``decode`` call.

Summary rows (:func:`summarize`, one per codec x setting) average over images the way
CompressAI and the literature report Kodak: mean bpp, mean of per-image PSNR, mean MS-SSIM
(and ``ms_ssim_db = -10 log10(1 - mean MS-SSIM)``), mean times.

Typical use::

    images = load_images("kodak/")
    records = evaluate_classical(images, ["jpeg", "webp"])
    rows = summarize(records)
    table = bd_rate_table(curves(rows), anchors=["jpeg"])

Why one module of this size: a sweep, its two codec adaptors, and the summaries and BD-rate
tables it feeds are one pipeline (images -> records -> curves -> tables).
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.errors import DatasetError, FormatError, ImageError, ModelError, VaecodecError
from vaecodec.evaluate import classical
from vaecodec.evaluate.bdrate import BDRateError, bd_rate
from vaecodec.evaluate.metrics import MS_SSIM_MIN_SIDE, bpp, ms_ssim, ms_ssim_db, psnr
from vaecodec.fileio import atomic_write_text
from vaecodec.zoo import codecs as zoo_codecs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
RECORD_FIELDS = (
    "image",
    "codec",
    "setting",
    "height",
    "width",
    "bytes",
    "bpp",
    "psnr",
    "ms_ssim",
    "enc_s",
    "dec_s",
)

Images = Sequence[tuple[str, np.ndarray]]
Progress = Callable[[int], Any] | None


@runtime_checkable
class CodecAdaptor(Protocol):
    """What an RD sweep needs from a codec (classical or learned).

    Attributes:
        name: label used in records, tables and plots (e.g. ``"jpeg"``, ``"ours"``).
        qualities: the settings to sweep when none are given.
    """

    name: str
    qualities: Sequence

    def encode(self, rgb_uint8: np.ndarray, quality) -> bytes:
        """Code an 8-bit RGB image ``[H, W, 3]`` at ``quality``; return the complete file."""
        ...

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a file made by :meth:`encode` to an 8-bit RGB image ``[H, W, 3]``."""
        ...


# --------------------------------------------------------------------------- images


def load_images(
    folder: str | os.PathLike, max_images: int | None = None
) -> list[tuple[str, np.ndarray]]:
    """Read the images directly inside ``folder`` as ``(file name, uint8 [H, W, 3])`` pairs.

    Files are taken in sorted name order (``kodim01.png`` ...), converted to RGB; at most
    ``max_images`` are read.

    Raises:
        DatasetError: if the folder does not exist or holds no image.
        ImageError: if an image file cannot be read.
    """
    from PIL import Image

    d = Path(folder)
    if not d.is_dir():
        raise DatasetError(f"no image folder {d}: pass --data DIR with PNG/JPEG/WebP images")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if max_images is not None:
        files = files[: max(0, int(max_images))]
    if not files:
        raise DatasetError(f"{d} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                out.append((p.name, np.asarray(im.convert("RGB"))))
        except Exception as e:
            raise ImageError(f"cannot read image {p}: {e}") from e
    return out


# --------------------------------------------------------------------------- sweeps


def evaluate_codec(
    images: Images,
    codec: CodecAdaptor,
    settings: Sequence | None = None,
    progress: Progress = None,
    compute_ms_ssim: bool = True,
) -> list[dict]:
    """Code every image at every setting with ``codec``; one record per (image, setting).

    Args:
        images: ``(name, uint8 [H, W, 3])`` pairs (see :func:`load_images`).
        codec: a :class:`CodecAdaptor`.
        settings: settings to sweep; default ``codec.qualities``.
        progress: called with ``1`` after each (image, setting), e.g. ``tqdm.update``.
        compute_ms_ssim: set False to skip MS-SSIM (it is most of the metric time).

    Raises:
        VaecodecError: if a decoded image has another shape than its input.
    """
    settings = list(codec.qualities if settings is None else settings)
    records = []
    for s in settings:
        for name, rgb in images:
            t0 = time.perf_counter()
            data = bytes(codec.encode(rgb, s))
            t1 = time.perf_counter()
            rec = codec.decode(data)
            t2 = time.perf_counter()
            rec = np.asarray(rec)
            if rec.shape != rgb.shape:
                raise VaecodecError(
                    f"{codec.name} at setting {s} decoded {name} to shape {rec.shape}, "
                    f"expected {rgb.shape}"
                )
            h, w = rgb.shape[:2]
            m = math.nan
            if compute_ms_ssim and min(h, w) >= MS_SSIM_MIN_SIDE:
                m = ms_ssim(rgb, rec)
            records.append(
                {
                    "image": name,
                    "codec": codec.name,
                    "setting": s,
                    "height": h,
                    "width": w,
                    "bytes": len(data),
                    "bpp": bpp(len(data), h, w),
                    "psnr": psnr(rgb, rec),
                    "ms_ssim": m,
                    "enc_s": t1 - t0,
                    "dec_s": t2 - t1,
                }
            )
            if progress is not None:
                progress(1)
    return records


def evaluate_classical(
    images: Images,
    codecs: Iterable[str] = classical.CLASSICAL_CODECS,
    settings: dict[str, Sequence] | None = None,
    progress: Progress = None,
    compute_ms_ssim: bool = True,
) -> list[dict]:
    """RD sweep of classical codecs (see :mod:`vaecodec.evaluate.classical`).

    Args:
        codecs: codec names; those the installed libraries lack are skipped with a warning
            (check :func:`vaecodec.evaluate.classical.available_codecs` first to report them).
        settings: optional ``{codec: [settings]}`` overriding
            :data:`~vaecodec.evaluate.classical.DEFAULT_SETTINGS`.

    Returns:
        Per-image records (module doc), codec by codec.
    """
    settings = settings or {}
    records = []
    for name in codecs:
        ok, detail = classical.codec_status(name)
        if not ok:
            warnings.warn(f"skipping {name}: {detail}", stacklevel=2)
            continue
        adaptor = classical.ClassicalCodec(name, settings.get(name))
        records += evaluate_codec(images, adaptor, None, progress, compute_ms_ssim)
    return records


def evaluate_learned(
    images: Images,
    codec_fn: CodecAdaptor,
    qualities: Sequence | None = None,
    progress: Progress = None,
    compute_ms_ssim: bool = True,
) -> list[dict]:
    """RD sweep of a learned codec supplied as an adaptor (e.g. :class:`LearnedCodecAdaptor`).

    Identical to :func:`evaluate_codec`; kept as the named entry point for learned codecs.
    """
    return evaluate_codec(images, codec_fn, qualities, progress, compute_ms_ssim)


# --------------------------------------------------------------------------- learned codecs


class LearnedCodecAdaptor:
    """A zoo codec family (or a run directory) behind the :class:`CodecAdaptor` interface.

    Codes through :mod:`vaecodec.compression.lossy` (``encode_image`` / ``decode_image``), the
    route ``vaecodec compress`` / ``decompress`` take, so a sweep times and measures the files
    a user gets. The qualities come from ``qualities``, else the zoo family's
    list (``codec_summary()``), a family folder's ``family.json``, or ``(1,)`` for a single
    trained model (a run directory).

    ``decode`` uses the model of the most recent ``encode`` quality unless the stream itself
    names another; sweeps always decode right after encoding.

    Raises:
        ModelError: if the codec zoo is missing or the codec cannot be loaded.
    """

    learned = True

    def __init__(self, name_or_dir: str, qualities: Sequence | None = None, label: str = "ours",
                 effort: int = 0):  # fmt: skip
        self._zoo = zoo_codecs
        self.effort = int(effort)
        self.source = str(name_or_dir)
        self.name = label
        if qualities is None:
            qualities = self._default_qualities(Path(self.source))
        if not qualities:
            raise ModelError(
                f"no qualities known for codec {self.source!r}: pass them explicitly "
                "(--qualities) or use a zoo codec family (see `vaecodec zoo`)"
            )
        self.qualities = tuple(qualities)
        self._models: dict = {}
        self._last = None

    def _default_qualities(self, p: Path):
        fam = zoo_codecs.codec_summary().get("codecs", {}).get(self.source)
        if fam:
            return fam.get("qualities")
        family_json = p / getattr(zoo_codecs, "FAMILY_FILE", "family.json")
        if family_json.is_file():  # a family folder outside the zoo
            import json

            entries = json.loads(family_json.read_text()).get("qualities") or []
            return sorted(int(e["quality"]) for e in entries)
        if (p / "config.json").is_file():  # a run directory: one point, or its rate levels
            import json

            return tuple(zoo_codecs.run_qualities(json.loads((p / "config.json").read_text())))
        return None

    def _model(self, quality):
        if quality not in self._models:
            self._models[quality] = self._zoo.load_codec(self.source, quality)
        return self._models[quality]

    def encode(self, rgb_uint8: np.ndarray, quality) -> bytes:
        """File bytes of ``rgb_uint8`` compressed by the model of ``quality``: the ``.vcz``
        file ``vaecodec compress`` writes (the same call, :func:`encode_image`)."""
        data = encode_image(self._model(quality), rgb_uint8, effort=self.effort)
        self._last = quality
        return data

    def decode(self, data: bytes) -> np.ndarray:
        """8-bit RGB ``[H, W, 3]`` image decompressed from ``data`` (as ``vaecodec decompress``
        does, :func:`decode_image`)."""
        if self._last is None:
            raise FormatError("decode() before any encode(): the adaptor has no model yet")
        return decode_image(data, self._model(self._last)).image

    def info(self) -> dict:
        """Recorded in the summary next to the classical codecs' options."""
        return {"codec": self.name, "source": self.source, "qualities": list(self.qualities),
                "effort": self.effort}  # fmt: skip


# --------------------------------------------------------------------------- summaries


def _mean(values) -> float:
    v = [float(x) for x in values]
    return float(np.mean(v)) if v else math.nan


def summarize(records: Iterable[dict]) -> list[dict]:
    """Average per-image records into one row per (codec, setting), sorted by codec then bpp.

    Row keys: ``codec, setting, n_images, bytes, bpp, psnr, ms_ssim, ms_ssim_db, enc_s,
    dec_s`` (means over images; ``psnr`` is the mean of per-image PSNR; ``ms_ssim`` is
    ``nan`` if any image lacks it).
    """
    groups: dict[tuple, list[dict]] = {}
    order: list[str] = []
    for r in records:
        key = (r["codec"], r["setting"])
        groups.setdefault(key, []).append(r)
        if r["codec"] not in order:
            order.append(r["codec"])
    rows = []
    for (codec, setting), rs in groups.items():
        m = _mean(r["ms_ssim"] for r in rs)
        rows.append(
            {
                "codec": codec,
                "setting": setting,
                "n_images": len(rs),
                "bytes": _mean(r["bytes"] for r in rs),
                "bpp": _mean(r["bpp"] for r in rs),
                "psnr": _mean(r["psnr"] for r in rs),
                "ms_ssim": m,
                "ms_ssim_db": ms_ssim_db(m),
                "enc_s": _mean(r["enc_s"] for r in rs),
                "dec_s": _mean(r["dec_s"] for r in rs),
            }
        )
    rows.sort(key=lambda r: (order.index(r["codec"]), r["bpp"]))
    return rows


def curves(rows: Iterable[dict]) -> dict[str, dict[str, list]]:
    """Summary rows -> ``{codec: {"setting": [...], "bpp": [...], "psnr": [...],
    "ms_ssim": [...], "ms_ssim_db": [...]}}``, codecs in order of first appearance, points in
    increasing bpp."""
    out: dict[str, dict[str, list]] = {}
    rows = list(rows)
    order = {c: i for i, c in reversed(list(enumerate(r["codec"] for r in rows)))}
    for r in sorted(rows, key=lambda r: (order[r["codec"]], r["bpp"])):
        c = out.setdefault(
            r["codec"], {k: [] for k in ("setting", "bpp", "psnr", "ms_ssim", "ms_ssim_db")}
        )
        for k in c:
            c[k].append(r[k])
    return out


def value_at_bpp(curve: dict, target_bpp: float, key: str = "psnr") -> float:
    """``curve[key]`` interpolated at ``target_bpp`` (pchip in log bpp); nan outside the curve.

    No extrapolation: a codec whose sweep does not reach ``target_bpp`` gets ``nan``.
    """
    from scipy.interpolate import PchipInterpolator

    x = np.log(np.asarray(curve["bpp"], float))
    y = np.asarray(curve[key], float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    x, idx = np.unique(x, return_index=True)
    y = y[idx]
    t = math.log(target_bpp)
    if x.size < 2 or not x[0] <= t <= x[-1]:
        return math.nan
    return float(PchipInterpolator(x, y)(t))


def bd_rate_table(
    codec_curves: dict[str, dict],
    anchors: Iterable[str],
    tests: Iterable[str] | None = None,
    metric: str = "psnr",
    method: str = "pchip",
) -> dict[str, dict[str, float | None]]:
    """BD-rate (percent) of every test codec against every anchor codec.

    Args:
        codec_curves: output of :func:`curves`.
        anchors: anchor codec names (rows of the table are tests, columns anchors).
        tests: test codec names; default all codecs in ``codec_curves``.
        metric: ``"psnr"`` or ``"ms_ssim_db"``.
        method: ``"pchip"`` or ``"cubic"`` (:func:`vaecodec.evaluate.bdrate.bd_rate`).

    Returns:
        ``{test: {anchor: percent or None}}``; ``None`` where the curves do not overlap (or
        lack the metric).
    """
    anchors = [a for a in anchors if a in codec_curves]
    tests = list(codec_curves if tests is None else tests)
    table: dict[str, dict[str, float | None]] = {}
    for t in tests:
        table[t] = {}
        for a in anchors:
            ca, ct = codec_curves[a], codec_curves[t]
            try:
                table[t][a] = bd_rate(ca["bpp"], ca[metric], ct["bpp"], ct[metric], method=method)
            except BDRateError:
                table[t][a] = None
    return table


def bd_table_markdown(table: dict[str, dict[str, float | None]], title: str = "") -> str:
    """A markdown table of :func:`bd_rate_table` (rows: test codecs; columns: anchors)."""
    anchors = list(next(iter(table.values()), {}))
    lines = [f"**{title}**", ""] if title else []
    lines.append("| codec | " + " | ".join(f"vs {a}" for a in anchors) + " |")
    lines.append("|---|" + "---:|" * len(anchors))
    for t, row in table.items():
        cells = ["—" if t == a else ("n/a" if v is None else f"{v:+.1f} %") for a, v in row.items()]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def json_safe(obj):
    """Replace non-finite floats (inf PSNR, nan MS-SSIM) by ``None`` so the JSON is strict."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as strict, indented JSON (non-finite numbers become null), atomically."""
    import json

    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_records_csv(records: Iterable[dict], path: str | os.PathLike) -> None:
    """Write per-image records as CSV (columns :data:`RECORD_FIELDS`), atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_records_csv(path: str | os.PathLike) -> list[dict]:
    """Read per-image records written by :func:`write_records_csv` (numbers parsed back;
    an empty ``ms_ssim`` becomes ``nan``).

    Raises:
        FormatError: unreadable file, or columns other than :data:`RECORD_FIELDS`.
    """
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != list(RECORD_FIELDS):
                raise FormatError(
                    f"{path}: columns {reader.fieldnames} are not a bench-codec CSV "
                    f"({', '.join(RECORD_FIELDS)})"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FormatError(f"cannot read {path}: {e}") from None
    out = []
    for r in rows:
        rec = dict(r)
        for k in ("height", "width", "bytes"):
            rec[k] = int(float(rec[k]))
        for k in ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s"):
            rec[k] = float(rec[k]) if rec[k] not in ("", None) else math.nan
        try:
            v = float(rec["setting"])
            rec["setting"] = int(v) if v.is_integer() and "." not in r["setting"] else v
        except ValueError:
            pass
        out.append(rec)
    return out


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file (e.g. the BD-rate markdown) atomically."""
    atomic_write_text(path, text)
