"""``vaecodec serve``: the local web application (compare codecs, explore a VAE).

Usage::

    vaecodec serve [--host 127.0.0.1] [--port 8000] [--workers 2] [--threads 1]
        [--max-upload-mb 16] [--max-pixels 4194304] [--vae mnist-vae] [--codec DIR ...]

Prints the address to open and serves until Ctrl-C. Binds to localhost unless ``--host`` says
otherwise. See :mod:`vaecodec.serve`.
"""

from __future__ import annotations

from vaecodec.errors import VaecodecError


def register(sub) -> None:
    from vaecodec.serve.config import ServeConfig

    d = ServeConfig()
    p = sub.add_parser("serve", help="local web app: codecs side by side, a VAE's latent space")
    p.add_argument("--host", default=d.host,
                   help="address to bind (127.0.0.1: this machine only; 0.0.0.0: every "
                        "network interface)")  # fmt: skip
    p.add_argument("--port", type=int, default=d.port, help="TCP port (0: any free port)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="coding threads: compare requests coded at once")  # fmt: skip
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads per worker")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                   help="largest upload in MiB")  # fmt: skip
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="largest upload in pixels (width x height)")  # fmt: skip
    p.add_argument("--max-pending", type=int, default=d.max_pending,
                   help="compare requests waiting or running at most (more: HTTP 503)")  # fmt: skip
    p.add_argument("--vae", default=d.vae, help="zoo VAE or run directory for the explore page")
    p.add_argument("--dataset", help="the VAE's test dataset, if not the one it records")
    p.add_argument("--examples", metavar="DIR",
                   help="a folder of photos offered first on the compare page, which opens on "
                        "the first of them (the bundled examples are synthetic), e.g. Kodak")  # fmt: skip
    p.add_argument("--codec", action="append", default=[], metavar="DIR",
                   help="also offer this codec family or run directory (repeatable), e.g. one "
                        "from `vaecodec import-compressai`")  # fmt: skip
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    import socket

    from vaecodec.cli.codec import keep_freed_memory
    from vaecodec.serve.config import ServeConfig

    try:
        import uvicorn

        from vaecodec.serve.app import create_app
    except ImportError:
        raise VaecodecError(
            "vaecodec serve needs starlette and uvicorn: pip install -e '.[serve]' (or ./setup.sh)"
        ) from None
    for name, v in (("--workers", args.workers), ("--threads", args.threads),
                    ("--max-pixels", args.max_pixels), ("--max-pending", args.max_pending)):  # fmt: skip
        if v < 1:
            raise VaecodecError(f"{name} must be at least 1")
    if args.max_upload_mb <= 0:
        raise VaecodecError("--max-upload-mb must be positive")
    keep_freed_memory()
    config = ServeConfig(
        host=args.host, port=args.port, workers=args.workers, threads=args.threads,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
        max_pending=args.max_pending, vae=args.vae, vae_dataset=args.dataset,
        codecs=tuple(args.codec),
        examples=args.examples,
    )  # fmt: skip
    # bind first, so the printed address is the real one (also with --port 0) and a busy port
    # is a one-line error
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise VaecodecError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = sock.getsockname()[:2]
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    print(f"vaecodec serve: open http://{shown}:{port}/ (compare codecs) and "
          f"http://{shown}:{port}/explore ({config.vae}); Ctrl-C stops", flush=True)  # fmt: skip
    if host not in ("127.0.0.1", "::1", "localhost"):
        print("vaecodec serve: note: listening beyond this machine; anyone who can reach it can "
              "upload images", flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0
