"""Settings of ``vaecodec serve`` (no web framework imported here, so that the CLI can list
its options without Starlette installed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    """Settings of ``vaecodec serve``.

    Attributes:
        host, port: where uvicorn listens (localhost by default).
        workers: coding threads (compare requests run on them concurrently).
        threads: torch threads per coding thread.
        max_upload_bytes: largest upload accepted, in bytes.
        max_pixels: largest upload accepted, in pixels (width x height), checked from the
            header before decoding.
        max_pending: compare requests waiting or running at most; more get HTTP 503.
        vae: zoo name or run directory of the explore page's VAE.
        vae_dataset: its test dataset, if not the one the model records.
        store_bytes: bytes of coded and decoded files kept for download (oldest go first).
        codecs: codec families or run directories offered besides the zoo's (named by the
            path as given), e.g. one written by ``vaecodec import-compressai``.
        examples: a folder of photos offered first on the compare page, which opens on the
            first of them (the bundled examples are synthetic: no photograph may be shipped).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 1
    max_upload_bytes: int = 16 << 20
    max_pixels: int = 1 << 22
    max_pending: int = 32
    vae: str = "mnist-vae"
    vae_dataset: str | None = None
    store_bytes: int = 512 << 20
    codecs: tuple[str, ...] = ()
    examples: str | None = None
