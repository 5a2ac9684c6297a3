"""The compare page's bundled example images, made here (no third-party photographs: the
Kodak set and the training photos may not be redistributed).

``python -m vaecodec.serve.examples`` rewrites ``static/examples/*.png`` (deterministic):

- ``landscape``: a synthetic scene: sky gradient, sun, fractal ridges (midpoint displacement),
  textured ground and grass, i.e. smooth areas, edges and fine texture;
- ``test-pattern``: colour bars, grey ramps, a zone plate and text: the hard cases for a
  transform codec (sharp colour edges, high frequencies, thin strokes);
- ``rd-chart``: a crop of this project's own Kodak rate-distortion plot
  (``benchmarks/results/codec_kodak_rd.png``): a chart, lines and text on white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent / "static" / "examples"
ROOT = Path(__file__).resolve().parents[3]


def _ridge(rng, n: int, rough: float) -> np.ndarray:
    """A 1-D fractal profile of ``n`` points in about [-1, 1] by midpoint displacement."""
    size = 1
    while size < n - 1:
        size *= 2
    h = np.zeros(size + 1)
    h[0], h[-1] = rng.uniform(-0.5, 0.5, 2)
    step, scale = size, 1.0
    while step > 1:
        half = step // 2
        mids = (h[0:-1:step] + h[step::step]) / 2 + rng.normal(0, scale, size // step)
        h[half::step] = mids
        step, scale = half, scale * rough
    return h[:n]


def landscape(w: int = 480, h: int = 320, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - yy) * np.array([70, 120, 200]) + yy * np.array([230, 200, 170])
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    xx = np.arange(w)
    cy, cx, r = int(0.25 * h), int(0.72 * w), 0.07 * w
    d = np.hypot(np.arange(h)[:, None] - cy, xx[None] - cx)
    glow = np.clip(1 - d / (4 * r), 0, 1) ** 2
    img += glow[..., None] * np.array([60, 40, 0])
    img[d < r] = [255, 236, 170]
    for base, amp, colour, rough in ((0.45, 0.12, (95, 105, 140), 0.55),
                                     (0.58, 0.10, (60, 90, 80), 0.6),
                                     (0.72, 0.06, (70, 120, 50), 0.5)):  # fmt: skip
        top = ((base + amp * _ridge(rng, w, rough)) * h).astype(int)
        mask = np.arange(h)[:, None] >= top[None]
        shade = 0.85 + 0.15 * rng.random((h, w))
        layer = np.array(colour)[None, None] * shade[..., None]
        img = np.where(mask[..., None], layer, img)
    ground = np.arange(h)[:, None] >= int(0.86 * h)
    noise = np.asarray(Image.fromarray((rng.random((h // 4, w // 4)) * 255).astype(np.uint8))
                       .resize((w, h), Image.BICUBIC), dtype=np.float64) / 255  # fmt: skip
    soil = np.array([120, 90, 55])[None, None] * (0.7 + 0.5 * noise[..., None])
    img = np.where(ground[..., None], soil, img)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(260):  # grass blades
        x0, y0 = rng.uniform(0, w), rng.uniform(0.86 * h, h)
        draw.line([(x0, y0), (x0 + rng.normal(0, 3), y0 - rng.uniform(4, 12))],
                  fill=(40 + int(rng.integers(0, 40)), 110 + int(rng.integers(0, 60)), 40))
    for _ in range(7):  # trees
        x0 = rng.uniform(0.05, 0.6) * w
        y0 = rng.uniform(0.74, 0.84) * h
        draw.rectangle([x0 - 2, y0 - 4, x0 + 2, y0 + 14], fill=(80, 55, 30))
        draw.ellipse([x0 - 11, y0 - 30, x0 + 11, y0], fill=(35, 85 + int(rng.integers(0, 40)), 40))
    return im.filter(ImageFilter.SMOOTH)


def test_pattern(w: int = 480, h: int = 320) -> Image.Image:
    img = np.zeros((h, w, 3), np.uint8)
    bars = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16),
            (235, 16, 235), (235, 16, 16), (16, 16, 235), (16, 16, 16)]  # fmt: skip
    bh = h // 3
    for i, c in enumerate(bars):
        img[:bh, i * w // 8 : (i + 1) * w // 8] = c
    ramp = np.linspace(0, 255, w)[None, :, None]
    rh = h // 12
    img[bh : bh + rh] = np.broadcast_to(ramp, (rh, w, 3)).astype(np.uint8)
    img[bh + rh : bh + 2 * rh] = (np.broadcast_to(ramp, (rh, w, 1))
                                  * np.array([1.0, 0.3, 0.1])).astype(np.uint8)  # fmt: skip
    y0 = bh + 2 * rh
    zh = h - y0
    yy, xx = np.mgrid[0:zh, 0 : w // 2]
    r2 = (xx - w / 4) ** 2 + (yy - zh / 2) ** 2
    zone = 127.5 + 127.5 * np.cos(np.pi * r2 / (1.6 * zh))
    img[y0:, : w // 2] = zone[..., None].astype(np.uint8)
    img[y0:, w // 2 :] = (250, 250, 245)
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    lines = ["vaecodec serve", "Equal bytes: which codec", "keeps these strokes?",
             "0123456789 bpp PSNR MS-SSIM", "The quick brown fox jumps"]  # fmt: skip
    for i, t in enumerate(lines):
        draw.text((w // 2 + 10, y0 + 8 + 18 * i), t, fill=(20, 20, 20))
    for i in range(12):
        draw.line([(w // 2 + 10 + 9 * i, h - 30), (w // 2 + 14 + 9 * i, h - 8)],
                  fill=(200, 30, 30), width=1)
    return im


def rd_chart(w: int = 480) -> Image.Image:
    """The left panel (PSNR) of the Kodak RD plot, scaled to width ``w``."""
    src = ROOT / "benchmarks" / "results" / "codec_kodak_rd.png"
    with Image.open(src) as im:
        im = im.convert("RGB")
        cw, ch = im.size[0] // 2, im.size[1]
        return im.crop((0, 0, cw, ch)).resize((w, round(w * ch / cw)), Image.LANCZOS)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in (("landscape", landscape), ("test-pattern", test_pattern),
                     ("rd-chart", rd_chart)):  # fmt: skip
        path = OUT / f"{name}.png"
        fn().save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
