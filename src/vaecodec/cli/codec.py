"""``vaecodec compress``, ``decompress`` and ``train-codec`` (``bench-codec``: cli/bench_codec).

Usage::

    vaecodec compress [--model NAME|RUN_DIR] [--quality Q] [--effort E] [--psnr] INPUT... [-o OUTPUT]
    vaecodec compress --lossless [--model NAME] INPUT... -o OUTPUT
    vaecodec decompress [--model NAME|RUN_DIR] INPUT... [-o OUTPUT]
    vaecodec train-codec --model mean-scale --data DIR --val-data DIR --lmbda 0.0067 \\
        --crop 256 --batch-size 8 --steps N --lr 1e-4 --out runs/x [--resume]

With one INPUT, OUTPUT is the output file, named for what it holds (``.vcz``; ``.png``: a name
of another image format is refused) in an existing folder; with several, OUTPUT is a directory
(created, with a note, if needed) that receives ``<stem>.vcz`` (compress) or ``<stem>.png``
(decompress). Without ``-o``, both write ``<stem>.vcz`` / ``<stem>.png`` next to each input,
never over an existing file. ``compress`` prints one line
per file (size, bytes, bpp, PSNR with ``--psnr``, codec and quality) and, for several files, a
total; a progress bar is drawn only when stderr is a terminal. ``--model`` is a codec family from
``vaecodec zoo`` or a run directory written by ``train-codec``; ``decompress`` finds the model
from the file's header when it is a bundled zoo family (never from a folder the file or the
working directory chooses). Lossless (``VCZL``) streams are handed to
``vaecodec.compression.lossless``; one decodes into the folder ``-o`` (created if needed,
or an existing folder, empty or not), or into a ``-o`` file ending in ``.png`` if it holds one
image.

An output that is one of the inputs (another spelling, a symlink or a hard link) is refused
before anything is written; every output is written to a temporary file in its folder and
renamed on success, so a failure leaves no partial file and never destroys an existing one.

Why one module of this size: the three codec commands (``compress``, ``decompress``, ``train-
codec``) share their argument checks, output rules and messages.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from vaecodec.cli import add_run_args
from vaecodec.compression.refine import EFFORT_HELP, MAX_EFFORT
from vaecodec.errors import FormatError, ImageError, VaecodecError
from vaecodec.fileio import (
    atomic_write_bytes,
    os_error_message,
    read_regular_file,
    refuse_overwriting_inputs,
)
from vaecodec.runtime import THREADS_HELP


def register(sub) -> None:
    p = sub.add_parser("compress", help="compress images to .vcz files with a learned codec")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (PNG, JPEG, WebP, ...)")
    p.add_argument("-o", "--output",
                   help="output file (one input) or directory (several); default: each input's "
                        "name with .vcz, next to it (never over an existing file); "
                        "--lossless writes one stream for all inputs and needs -o")  # fmt: skip
    p.add_argument("--model", help="codec family (see `vaecodec zoo`) or run directory "
                   "(default: the bundled default codec)")  # fmt: skip
    p.add_argument("--quality", type=int, help=_quality_help())
    p.add_argument("--effort", type=int, default=0, metavar="E", choices=range(MAX_EFFORT + 1),
                   help=EFFORT_HELP)
    p.add_argument("--psnr", action="store_true",
                   help="also decode each file and report its PSNR (dB, 8-bit) against the input")
    p.add_argument("--lossless", action="store_true", help="lossless bits-back coding instead")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(func=run_compress)

    p = sub.add_parser("decompress", help="decompress .vcz files to PNG")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".vcz files")
    p.add_argument("-o", "--output",
                   help="output PNG (one input) or directory (several; created if needed); "
                        "default: each input's name with .png, next to it (never over an "
                        "existing file)")  # fmt: skip
    p.add_argument("--model", help="codec family or run directory (default: from the header)")
    p.add_argument("--realism", action="store_true",
                   help="decode with the generative (GAN-fine-tuned) synthesis instead of the "
                        "MSE one: sharper, invented detail, lower PSNR; the same .vcz file. "
                        "The decoder bundled for the file's codec (cb-vr10-realism for "
                        "cb-vr10, trained for qualities 1-3), or --realism-decoder's")  # fmt: skip
    p.add_argument("--realism-decoder", metavar="DECODER",
                   help="the realism decoder to use (implies --realism): a zoo name or a folder "
                        "written by `vaecodec train-realism`")  # fmt: skip
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(func=run_decompress)

    _register_train(sub)


def _quality_help() -> str:
    """``compress --quality``'s help: which end means more bits, and the default family's
    range (read from the zoo, so it follows the bundled families)."""
    from vaecodec.zoo.codecs import codec_summary

    try:
        summary = codec_summary()
    except VaecodecError:  # a broken family folder: its own error when it is loaded
        summary = {"default_codec": None}
    name = summary.get("default_codec")
    rng = ""
    if name:
        info = summary["codecs"][name]
        q = info["qualities"]
        rng = f"; the default codec {name} has {q[0]}-{q[-1]}"
    return ("quality within the codec family: 1 = fewest bytes and lowest PSNR, each step up "
            f"more bytes and a higher PSNR{rng} (`vaecodec zoo` lists every family's; "
            "default: the family's default)")


def _register_train(sub) -> None:
    from vaecodec.train.codec_trainer import (
        DEVICE_CROPS,
        LEVEL_WEIGHTINGS,
        PRECISIONS,
        CodecTrainConfig,
    )

    d = CodecTrainConfig()
    p = sub.add_parser("train-codec", help="train a learned image codec (rate + lmbda * MSE)")
    p.add_argument(
        "--model", default=d.model, help="factorized | hyperprior | mean-scale | checkerboard"
    )
    p.add_argument("--data", help="folder of training images, a .npy of crops, or tar shards "
                   "('DIR/shard-{000000..000123}.tar', pipe:CMD, http(s):// URLs; made by "
                   "make-shards); not needed with --resume")  # fmt: skip
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer,
                   help="tar shards: encoded photos each data worker holds for shuffling")
    p.add_argument("--val-data", help="folder of validation images")
    p.add_argument("--val-pattern", help="hold out files of --data matching this glob")
    p.add_argument("--lmbda", type=float, nargs="+", default=d.lmbdas,
                   help="rate-distortion trade-off; several increasing values train one "
                        "variable-rate model with a gain level per value")  # fmt: skip
    p.add_argument("--level-weighting", choices=LEVEL_WEIGHTINGS, default=d.level_weighting,
                   help="weight of each rate level's loss (variable rate): uniform, "
                        "inverse-lmbda (w ~ 1/lmbda, so that the low rates get as much gradient "
                        "as the high ones) or inverse-sqrt-lmbda (w ~ lmbda**-0.5)")  # fmt: skip
    p.add_argument("--crop", type=int, default=d.crop, help="training crop size (pixels)")
    p.add_argument("--val-crop", type=int, default=d.val_crop, help="0: whole images")
    p.add_argument("--val-max-images", type=int, help="validate on at most this many images")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="optimizer steps in all (with --resume: the new total)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--lr-drop-at", type=float, default=d.lr_drop_at,
                   help="fraction of the steps (and of --hours) after which the lr is divided "
                        "by 10")  # fmt: skip
    p.add_argument("--hours", type=float,
                   help="wall-clock budget of this invocation: validate, save and stop after "
                        "this many hours, the lr dropping after --lr-drop-at of them (whichever "
                        "of steps and time comes first); --resume continues")  # fmt: skip
    p.add_argument("--N", type=int, default=d.N, help="channels of the transforms and of z")
    p.add_argument("--M", type=int, default=d.M, help="channels of y")
    p.add_argument("--ste", action="store_true",
                   help="straight-through rounding for g_s (with --init-from: switches it on "
                        "for a fine-tune of a model trained without it)")  # fmt: skip
    p.add_argument("--quality-index", type=int, help="quality index recorded in config.json")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="validate and checkpoint every this many steps")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="log (and read the statistics back) every this many steps")
    p.add_argument("--clip-grad", type=float, default=d.clip_grad, help="0: no clipping")
    p.add_argument("--workers", type=int, default=d.workers, help="data-loading processes")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (weights, crops, levels)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="g_a and g_s in bf16 autocast while training (auto: on CUDA); the "
                        "entropy models, likelihoods and loss stay float32")  # fmt: skip
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step's model (minutes to compile on a CPU)")
    p.add_argument("--device-crops", choices=DEVICE_CROPS, default=d.device_crops,
                   help="keep the decoded photos on the device and cut the crops there (auto: "
                        "on CUDA when they fit in a quarter of its free memory)")  # fmt: skip
    add_run_args(p, d.out, "--steps, --hours, --workers, --device, --threads, --log-every, "
                 "--val-every, --precision, --compile, --device-crops and --no-progress")  # fmt: skip
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from these weights (zoo codec family or run directory) with a "
                        "fresh optimizer, e.g. to continue training a shipped model")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for reuse instead of giving it back to the
    kernel (``mallopt``: mmap threshold 1 GiB, no trimming).

    By default every tensor above 32 MiB (and, after a trim, smaller ones too) is a fresh
    ``mmap``, so each large activation of a transform costs page faults: on the 2-core
    reference machine that made the elementwise operations of a 768x512 image (GDN, clamps)
    ~3x slower than the arithmetic, and a training step ~20 % slower. The cost: the process
    keeps its peak memory until it exits. For the CLI commands that run models; a no-op that
    returns False where ``mallopt`` is not available (non-glibc systems).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(
        mallopt(m_trim_threshold, (1 << 31) - 1)
    )


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm",
                   ".pgm", ".avif", ".jxl", ".jp2", ".heic"}  # fmt: skip
_WHAT = {".vcz": "a .vcz stream", ".png": "a PNG image"}


def check_output_name(out: Path, suffix: str) -> None:
    """Refuse an output file whose name says another format than the bytes it would get
    (``compress -o k.png`` wrote .vcz bytes into k.png, ``decompress -o x.jpg`` PNG bytes
    into x.jpg), and one in a folder that does not exist (it was created without a word);
    as gzip and cwebp do. ``suffix``: ``.vcz`` or ``.png``, what the command writes."""
    ext = out.suffix.lower()
    if ext != suffix and (ext in _IMAGE_SUFFIXES or ext == ".vcz"):
        hint = "" if suffix == ".vcz" else " (convert it to another format with an image tool)"
        raise VaecodecError(
            f"{out} would hold {_WHAT[suffix]}, not what its name says: name the output "
            f"{out.with_suffix(suffix).name}{hint}"
        )
    parent = out.parent
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise VaecodecError(f"cannot write {out}: {parent} is not a folder")
    if not os.path.isdir(parent):
        raise VaecodecError(f"cannot write {out}: its folder {parent} does not exist (create "
                            f"it first: mkdir -p {parent})")  # fmt: skip


def _output_paths(inputs: list[str], output: str | None, suffix: str,
                  command: str = "") -> list[Path]:  # fmt: skip
    """One output per input: ``output`` itself for a single input (or ``output/<stem>suffix``
    if it is an existing directory or ends with ``/``), else ``output/<stem>suffix`` for each
    (a folder that does not exist is created, and the command says so). Without ``output``:
    ``<stem>suffix`` next to each input, refused where that file exists (a file nobody named
    is never replaced). A single output file must be named for what it holds and be in an
    existing folder (:func:`check_output_name`); a folder for several outputs must not look
    like a file name (``-o single.png``)."""
    if output is None:
        paths = [Path(i).parent / (Path(i).stem + suffix) for i in inputs]
        for i, p in zip(inputs, paths):
            if os.path.lexists(p):
                raise VaecodecError(
                    f"{p} exists (the default output for {i}): give -o to choose the output "
                    f"(-o {p} replaces it)"
                )
    else:
        out = Path(output)
        try:
            is_dir, exists = out.is_dir(), out.exists()
        except OSError as e:  # e.g. a name too long
            raise VaecodecError(os_error_message(out, e, "use")) from None
        as_dir = is_dir or output.endswith(("/", os.sep))
        if len(inputs) == 1 and not as_dir:
            refuse_overwriting_inputs([out], inputs)  # the graver mistake is named first
            check_output_name(out, suffix)
            return [out]
        if exists and not is_dir:
            raise VaecodecError(f"{out} is a file: with several inputs, -o must be a directory")
        if not exists and (out.suffix.lower() in _IMAGE_SUFFIXES or out.suffix.lower() == ".vcz"):
            raise VaecodecError(
                f"with several inputs -o names a folder, and {out} looks like a file name: give "
                f"a folder (e.g. -o {out.with_suffix('')}/), or one input"
            )
        if not exists:
            import sys

            print(f"vaecodec {command}: note: creating the folder {out} for the outputs",
                  file=sys.stderr)  # fmt: skip
        paths = [out / (Path(i).stem + suffix) for i in inputs]
    seen: dict[Path, str] = {}
    for i, p in zip(inputs, paths):
        if p in seen:
            raise VaecodecError(f"{seen[p]} and {i} would both be written to {p}: rename one")
        seen[p] = i
    return paths


def _refuse_directories(inputs: list[str], kind: str, pattern: str) -> None:
    """A folder given as an input is refused up front, with the shell pattern that names its
    files (``kind``: e.g. ``"image files"``; ``pattern``: e.g. ``"*.png"``)."""
    for src in inputs:
        if os.path.isdir(src):
            raise VaecodecError(
                f"{src} is a directory: give {kind}, e.g. {Path(src) / pattern}"
            )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`vaecodec.fileio.atomic_write_bytes`, with OS errors (a full disk, a read-only
    folder, ...) as a VaecodecError."""
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise VaecodecError(os_error_message(path, e)) from None


def _run_files(jobs, work, what: str, total=None) -> int:
    """Run ``work(src, dst)`` on each job, printing the line it returns (or the first item of
    the ``(line, stats)`` pair it returns) for every file; report each failure on stderr and
    raise once at the end if any failed. With several jobs, a progress bar is drawn when
    stderr is a terminal (never into a log), and ``total(stats_list)`` (if given) makes the
    last line from the successful files' stats."""
    import sys

    from tqdm.auto import tqdm

    from vaecodec import runtime

    runtime.announce()  # the arguments are checked: the work starts
    failed, stats = [], []
    bar = tqdm(jobs, unit="file", desc=what, file=sys.stderr, leave=False,
               disable=None if len(jobs) > 1 else True)  # fmt: skip
    for src, dst in bar:
        try:
            msg = work(src, dst)
        except VaecodecError as e:
            if len(jobs) == 1:
                raise
            tqdm.write(f"vaecodec {what}: error: {src}: {e}", file=sys.stderr)
            failed.append(src)
            continue
        if isinstance(msg, tuple):
            msg, st = msg
            stats.append(st)
        if msg:
            tqdm.write(msg, file=sys.stdout)
    bar.close()
    if total is not None and len(jobs) > 1 and stats:
        print(total(stats))
    if failed:
        raise VaecodecError(f"{len(failed)} of {len(jobs)} files failed (see above)")
    return 0


def _model_kind(name: str | None) -> str | None:
    """``"codec"``, ``"vae"``, ... for a model name or run directory, None if unknown (the
    loaders then give their own message)."""
    from vaecodec.zoo.codecs import codec_families

    if name in codec_families():
        return "codec"
    try:
        from vaecodec.checkpoint import CONFIG_FILE, read_json
        from vaecodec.models.registry import get_model_class
        from vaecodec.zoo import resolve_model_dir

        meta = read_json(resolve_model_dir(name) / CONFIG_FILE)
        return meta.get("kind") or getattr(get_model_class(meta["model"]), "kind", None)
    except (VaecodecError, KeyError, TypeError, OSError):
        return None


def _check_model_kind(args) -> None:
    """Say what to do when ``--model`` names the wrong kind of model for the mode."""
    if args.model is None:  # the defaults fit their mode
        return
    kind = _model_kind(args.model)
    if args.lossless and kind == "codec":
        raise VaecodecError(
            f"{args.model} is a lossy image codec; --lossless needs a VAE with a discrete "
            "likelihood (mnist-vae, mnist-vae-8bit, or a run directory of vaecodec train): "
            f"drop --lossless to compress with {args.model}, or give --model mnist-vae"
        )
    if not args.lossless and kind == "vae":
        raise VaecodecError(
            f"{args.model} is a VAE, not an image codec: add --lossless to code greyscale "
            f"images losslessly with it (vaecodec compress --lossless --model {args.model} "
            "INPUT... -o STREAM.vcz), or leave out --model for the default image codec"
        )
    if not args.lossless and kind is not None and kind != "codec":
        raise VaecodecError(f"{args.model} is a {kind} model, not an image codec: see "
                            "`vaecodec zoo` for the codecs")  # fmt: skip


def run_compress(args) -> int:
    keep_freed_memory()  # --threads: vaecodec.runtime, from main()
    _refuse_directories(args.inputs, "image files", "*.png")
    _check_model_kind(args)
    if args.lossless:
        from vaecodec.compression.lossless import compress_files

        if args.output is None:
            raise VaecodecError(
                "--lossless writes one stream for all inputs: name it with -o, e.g. "
                "-o images.vcz"
            )
        from vaecodec import runtime

        runtime.announce()
        out = Path(args.output)
        try:
            is_dir = out.is_dir()
        except OSError as e:  # e.g. a name too long
            raise VaecodecError(os_error_message(out, e, "use")) from None
        if not is_dir:
            refuse_overwriting_inputs([out], args.inputs)
            check_output_name(out, ".vcz")
        compress_files(args.model, args.inputs, args.output)
        return 0

    import sys

    from vaecodec.compression.lossy import codec_id, decode_image, encode_image
    from vaecodec.data.images import GRAY_MODES, read_input_image
    from vaecodec.evaluate.metrics import psnr
    from vaecodec.zoo.codecs import load_codec

    outputs = _output_paths(args.inputs, args.output, ".vcz", "compress")
    refuse_overwriting_inputs(outputs, args.inputs)
    model = load_codec(args.model, args.quality)
    cid = codec_id(model)
    quality = f"{cid.name} quality {cid.quality}"
    if getattr(model, "family_quality", None):
        quality += " = {} quality {}".format(*model.family_quality)
    if args.effort:
        quality += f", effort {args.effort}"

    def work(src: str, dst: Path):
        rgba, original_mode, notes = read_input_image(src, mode="RGBA")
        for note in notes:
            print(f"vaecodec compress: note: {note}", file=sys.stderr)
        mode = "L" if original_mode in GRAY_MODES else "RGB"
        with _refine_bar(src, args.effort) as progress:
            data = encode_image(model, rgba, mode=mode, effort=args.effort, progress=progress)
        _atomic_write_bytes(dst, data)
        h, w = rgba.shape[:2]
        st = {"bytes": len(data), "pixels": h * w, "psnr": None}
        extra = ""
        if args.psnr:
            decoded, _ = decode_image(data, model)
            st["psnr"] = psnr(rgba[:, :, 0] if mode == "L" else rgba[:, :, :3], decoded)
            extra = f", PSNR {st['psnr']:.2f} dB"
        return (f"{src} -> {dst}: {w}x{h}, {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp"
                f"{extra} ({quality})", st)  # fmt: skip

    def total(stats) -> str:
        nbytes, pixels = sum(s["bytes"] for s in stats), sum(s["pixels"] for s in stats)
        files = f"{len(stats)} files" if len(stats) == len(outputs) else (
            f"{len(stats)} of {len(outputs)} files")  # fmt: skip
        extra = ""
        if args.psnr:
            mean = sum(s["psnr"] for s in stats) / len(stats)
            extra = f", mean PSNR {mean:.2f} dB"
        return (f"total: {files}, {nbytes} bytes, {8 * nbytes / pixels:.4f} bpp{extra} "
                f"({quality})")  # fmt: skip

    return _run_files(list(zip(args.inputs, outputs)), work, "compress", total)


@contextmanager
def _refine_bar(src: str, effort: int):
    """``with _refine_bar(src, effort) as progress``: a progress bar of the refinement steps of
    one image (encoder effort > 0), drawn on stderr when it is a terminal; ``progress`` is
    None at effort 0."""
    if not effort:
        yield None
        return
    import sys

    from tqdm.auto import tqdm

    with tqdm(total=1, unit="step", desc=f"effort {effort}: {Path(src).name}", file=sys.stderr,
              leave=False, disable=None) as bar:  # fmt: skip

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def _decompress_lossless(src: str, dst: Path, output: str | None, model: str | None,
                         inputs: list[str]) -> str:  # fmt: skip
    """A ``VCZL`` stream holds one or more images, written as ``<name>.png`` into a folder: the
    ``-o`` folder for a single input (created if needed; it may exist, empty or not), else the
    output folder (``dst.parent``). A single input whose ``-o`` is not a folder and ends in
    ``.png`` goes to that file if the stream holds exactly one image."""
    from vaecodec.compression import lossless as decoder
    from vaecodec.data import write_png

    header, images = decoder.decode_file(src, model)
    if output is None:
        out_dir = dst.parent
    else:
        target = Path(output)
        if target.suffix.lower() == ".png" and not target.is_dir():
            if len(images) != 1:
                raise VaecodecError(
                    f"{src} is a lossless stream of {len(images)} images: give a folder as -o "
                    f"(it is created if needed), not the file {target}"
                )
            try:
                write_png(target, images[0])
            except ImageError as e:
                raise VaecodecError(str(e)) from None
            return f"{src} -> {target} (lossless)"
        out_dir = target
    written = decoder.write_images(header, images, out_dir, protect=inputs)
    return f"{src} -> {len(written)} images in {out_dir} (lossless)"


def run_decompress(args) -> int:
    import sys

    keep_freed_memory()  # --threads: vaecodec.runtime, from main()
    from vaecodec.coding.container import LOSSLESS_MAGIC, quality_of_level, unpack
    from vaecodec.compression.lossy import decode_image
    from vaecodec.data import write_png
    from vaecodec.zoo.codecs import codec_families, load_codec

    args.realism = args.realism or args.realism_decoder is not None
    _refuse_directories(args.inputs, ".vcz files", "*.vcz")
    outputs = _output_paths(args.inputs, args.output, ".png", "decompress")
    refuse_overwriting_inputs(outputs, args.inputs)
    single = len(outputs) == 1
    models: dict = {}

    def model_for(header):
        cid = header.codec
        key = (args.model or cid.name, cid.quality)
        if key not in models:
            families = codec_families()
            if args.model is None and cid.name not in families:
                raise FormatError(
                    f"this file needs {cid.describe()}, which is not a bundled codec family: "
                    "pass the run directory that made it with --model"
                )
            # a header names a bundled family, never a folder (not one in the working directory)
            source = args.model or Path(families[cid.name]["_dir"])
            models[key] = load_codec(source, cid.quality)
            if args.realism:
                from vaecodec.zoo.realism import load_realism_decoder

                models[key] = load_realism_decoder(models[key], args.realism_decoder)
        return models[key]

    def work(src: str, dst: Path) -> str:
        data = read_regular_file(src, FormatError)
        if data[:4] == LOSSLESS_MAGIC:
            if args.realism:
                raise VaecodecError(f"{src} is a lossless stream: --realism applies to .vcz files "
                                    "of the lossy codec")  # fmt: skip
            return _decompress_lossless(src, dst, args.output if single else None, args.model,
                                        args.inputs)  # fmt: skip
        parsed = unpack(data)
        model = model_for(parsed[0])
        image, mode = decode_image(data, model, parsed)
        if parsed[0].check is None:
            print(f"vaecodec decompress: note: {src} is a version-1 .vcz file, written before "
                  "files carried a check of their decoded latents: it is decoded unverified",
                  file=sys.stderr)  # fmt: skip
        try:
            write_png(dst, image)
        except ImageError as e:
            raise VaecodecError(str(e)) from None
        line = f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]} {mode}"
        if args.realism:
            trained = [quality_of_level(lv) for lv in model.realism_levels]
            line += " (realism decoder)"
            if parsed[0].codec.quality not in trained:
                line += (f"; note: quality {parsed[0].codec.quality} is outside the qualities it "
                         f"was trained for ({', '.join(map(str, trained))})")  # fmt: skip
        return line

    return _run_files(list(zip(args.inputs, outputs)), work, "decompress")


def run_train(args) -> int:
    if not args.data and not args.resume:
        raise VaecodecError("train-codec needs --data DIR (a folder of training images)")
    keep_freed_memory()  # --threads: vaecodec.runtime, from main()
    from vaecodec.train.codec_trainer import CodecTrainConfig, train_codec

    cfg = CodecTrainConfig(
        model=args.model, data=args.data, val_data=args.val_data, val_pattern=args.val_pattern,
        lmbdas=args.lmbda,
        crop=args.crop, val_crop=args.val_crop or None,
        val_max_images=args.val_max_images, batch_size=args.batch_size, steps=args.steps,
        lr=args.lr, lr_drop_at=args.lr_drop_at, N=args.N, M=args.M, ste=args.ste,
        quality_index=args.quality_index, val_every=args.val_every, log_every=args.log_every,
        clip_grad=args.clip_grad, workers=args.workers, seed=args.seed, device=args.device,
        out=args.out, resume=args.resume, init_from=args.init_from,
        progress=not args.no_progress, hours=args.hours, level_weighting=args.level_weighting,
        precision=args.precision, compile=args.compile, device_crops=args.device_crops,
        shuffle_buffer=args.shuffle_buffer,
    )  # fmt: skip
    _, summary = train_codec(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    if summary.get("val_bpp") is not None:
        print(
            f"best validation: bpp {summary['val_bpp']:.4f}, PSNR {summary['val_psnr']:.2f} dB; "
            f"model in {cfg.out} (use --model {cfg.out})"
        )
    else:
        print(f"model in {cfg.out} (use --model {cfg.out})")
    return 0
