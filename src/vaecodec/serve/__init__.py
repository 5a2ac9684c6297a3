"""``vaecodec serve``: a local web application to look at codecs and at a VAE's latent space.

Two pages, served by Starlette under uvicorn, all assets shipped in this package (no CDN, works
offline):

- **Compare** (``/``): an image (an upload or a bundled example) coded by two codecs, ours (a
  zoo codec family at a quality, real ``.vcz`` bytes through the same ``encode_image`` /
  ``decode_image`` as ``vaecodec compress`` / ``decompress``) or a classical one (JPEG, WebP,
  AVIF, JPEG 2000, JPEG XL via :mod:`vaecodec.evaluate.classical`), shown in a split view with a
  draggable divider and zoom, each side labelled with bytes, bpp, PSNR and MS-SSIM; an "equal
  bytes" switch gives the classical side the setting whose file is nearest the other side's
  size; the coded file and the decoded PNG can be downloaded.
- **Explore** (``/explore``): a zoo VAE's samples, one slider per latent dimension (highest KL
  first) that redraws the decoded image live, and an interpolation strip between two test
  digits picked by the user.

Modules: :mod:`.config` (settings), :mod:`.store` (the server's temporary folder, files found by random id only),
:mod:`.compare` (uploads, codec model pool, one compare request), :mod:`.explore` (the VAE side),
:mod:`.app` (routes, worker pools, error handling). Run it with ``vaecodec serve``.
"""

from vaecodec.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(config: ServeConfig | None = None):
    """:func:`vaecodec.serve.app.create_app` (imported on use: it needs Starlette)."""
    from vaecodec.serve.app import create_app as _create_app

    return _create_app(config)
