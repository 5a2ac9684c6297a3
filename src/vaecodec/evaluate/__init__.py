"""Evaluation: likelihoods and image-codec quality.

Modules (import the one you need; this package imports nothing heavy on its own):

- :mod:`vaecodec.evaluate.metrics`: PSNR, MS-SSIM, bpp on 8-bit RGB.
- :mod:`vaecodec.evaluate.classical`: JPEG, WebP, AVIF, JPEG 2000 and JPEG XL through Pillow
  and imagecodecs, as ``encode(codec, rgb, setting) -> bytes`` / ``decode(codec, data)``.
- :mod:`vaecodec.evaluate.bdrate`: Bjøntegaard delta rate and delta PSNR (VCEG-M33).
- :mod:`vaecodec.evaluate.rd`: rate-distortion sweeps over a folder of images, per-image CSV,
  summary JSON and BD-rate tables, for classical and learned codecs alike.
"""
