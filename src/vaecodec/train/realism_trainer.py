"""Fine-tuning a codec's synthesis transform with a conditional PatchGAN (``train-realism``).

Usage::

    cfg = RealismTrainConfig(codec="cb-vr10", levels=[0, 1, 2], data="photos/",
                             val_pattern="bsd100__*", hours=1.0, out="runs/realism")
    summary = train_realism(cfg)

HiFiC (Mentzer et al. 2020) with the decoder-only recipe of MS-ILLM (Muckley et al. 2023):
the codec's ``g_a``, gains and entropy model are frozen (the bitstream does not change); only
``g_s`` is trained, warm-started from the MSE weights, against

    L_G = k_mse * 255^2 * MSE(x, x^) + beta * g_loss(D(x^, c)) + spectral_weight * S(x^, x)
          + peak_weight * P(x^, x)
    L_D = d_loss(D(x, c), D(x^, c))

``S`` (:func:`spectral_excess_db`, off by default: ``spectral_weight`` 0) penalises power the
decoded crops have *above* the originals' at high spatial frequencies, per 2-D frequency bin:
the periodic grid of the stride-2 transposed convolutions of ``g_s`` (peaks at multiples of
1/16 cycle/pixel, up to Nyquist) that an adversarially tuned decoder grows, and that no-reference
scores such as NIQE read as unnatural, while leaving the energy it restores below the
original's level free. ``P`` (:func:`spectral_peaks_db`, off by default) penalises only the
grid: how far the decoded/original power ratio (dB) at the multiples of 1/16 cycle/pixel (g_s
upsamples 16x) stands above the ratio in the bins around them, so a uniformly restored (or
lacking) band costs nothing (the ratio's level does not enter; ``S`` at weight 10 had pulled the
whole band down with the grid, BENCHMARKS "Generative decoder").

``x^ = g_s(inv_gain * y^)`` with ``y^`` the *rounded* latents the decoder sees
(:func:`vaecodec.models.realism.decoder_input`), one level per image drawn uniformly from
``levels``. ``D`` is :class:`vaecodec.models.gan.PatchDiscriminator` (spectral norm, one logit
per patch) conditioned, as in HiFiC, on the decoded latents: ``c`` is ``y^`` through a 1x1
convolution to ``cond_channels`` maps, upsampled (nearest) to the image size. Defaults: the
non-saturating loss and HiFiC's weights ``k_mse = 0.075 * 2^-5``, ``beta = 0.15`` (HiFiC also
has an LPIPS term; its backbone weights cannot be downloaded here, so there is none).
One D step, then one G step per batch; Adam for both, the discriminator at 4x the learning
rate (TTUR): at 1e-4 its logits had not separated real from decoded after 100 steps.

Stability (GAN training is unstable by nature): every step checks that the losses and logits
are finite, and every ``log_every`` steps :class:`vaecodec.models.gan.GANMonitor` checks that
the discriminator neither wins outright nor says the same thing for every input. Either
failure raises :class:`~vaecodec.errors.TrainingError` with a message naming the last good
checkpoint, which is kept: checkpoints are written only right after a healthy window.

The run directory holds::

    g_s.safetensors, realism.json   the latest good generative decoder (what
                                    ``load_realism_decoder(codec, RUN)`` loads)
    last/train_state.*              g_s, D, both optimizers, RNG, step (for ``resume``)
    metrics.jsonl                   one JSON line per log step ("train") and validation ("val")

Every write is atomic (:mod:`vaecodec.checkpoint`). ``hours`` stops this invocation (after a
checkpoint) once that much wall-clock time has passed; ``resume`` continues the run in ``out``
with its saved settings (``steps``, ``hours``, ``threads``, ``log_every``, ``val_every``,
``progress`` from the new invocation; ``beta``, ``spectral_weight``, ``spectral_low``, ``peak_weight`` too
when given: other weights from the checkpoint on, recorded in ``realism.json``'s ``commands``).
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vaecodec import runtime
from vaecodec.checkpoint import (
    TRAIN_STATE_JSON,
    atomic_save_tensors,
    load_train_state,
    provenance,
    read_json,
    save_train_state,
)
from vaecodec.errors import DatasetError, TrainingError
from vaecodec.fileio import atomic_write_json
from vaecodec.models.gan import GAN_LOSSES, GANMonitor, PatchDiscriminator, d_loss, g_loss
from vaecodec.models.realism import decoder_input
from vaecodec.zoo.realism import REALISM_CONFIG, REALISM_WEIGHTS

DEFAULT_BETA = 0.15
"""HiFiC's adversarial weight (Mentzer et al. 2020)."""
DEFAULT_SPECTRAL_LOW = 0.25
"""Lowest radial frequency (cycles/pixel) of the band :func:`spectral_excess_db` watches."""
RUNTIME_FIELDS = ("steps", "hours", "threads", "log_every", "val_every", "progress")


@dataclass
class RealismTrainConfig:
    codec: str = "cb-vr10"  # codec family (zoo) or run directory
    levels: list[int] = field(default_factory=lambda: [0, 1, 2])  # 0-based rate levels
    data: str = ""  # folder of training photos
    val_pattern: str | None = "bsd100__*"  # files of data held out for validation
    val_max_images: int = 16
    crop: int = 128
    batch_size: int = 8
    steps: int = 100_000
    hours: float | None = None
    lr_g: float = 5e-5
    lr_d: float = 4e-4  # TTUR (Heusel et al. 2017): the spectral-norm D learns slowly at 1e-4
    k_mse: float = 0.075 * 2**-5
    beta: float | None = None  # None: 0.15 (HiFiC's), or with resume the run's saved value
    gan_loss: str = "ns"
    spectral_weight: float | None = None  # None: 0 (off), or with resume the run's saved value
    spectral_low: float | None = None  # None: 0.25 cycles/pixel, or with resume the saved value
    peak_weight: float | None = None  # None: 0 (off), or with resume the run's saved value
    d_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    cond_channels: int = 12
    log_every: int = 25
    val_every: int = 200
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    out: str = "runs/realism"


def _power(x: torch.Tensor, onesided: bool = True) -> torch.Tensor:
    """Batch-mean periodogram ``[C, H, W//2+1]`` (``[C, H, W]`` when not ``onesided``) of the
    mean-removed, Hann-windowed channels."""
    h, w = x.shape[-2:]
    win = torch.outer(torch.hann_window(h, periodic=False, dtype=x.dtype),
                      torch.hann_window(w, periodic=False, dtype=x.dtype))  # fmt: skip
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) * win
    f = torch.fft.rfft2(x) if onesided else torch.fft.fft2(x)
    return (f.abs() ** 2).mean(dim=0) / (h * w)


def spectral_excess_db(x_hat: torch.Tensor, x: torch.Tensor, low: float = DEFAULT_SPECTRAL_LOW,
                       floor: float = 1e-8) -> torch.Tensor:  # fmt: skip
    """Mean over the 2-D frequency bins of radius >= ``low`` cycles/pixel (corners up to
    (0.5, 0.5) included) and over channels of ``relu(10 log10(P(x^) / P(x)))``, P the
    periodogram averaged over the batch (images ``[B, C, H, W]`` in [0, 1]). Zero when the
    decoded crops have no more power than the originals in any such bin; a periodic grid shows
    as a few bins many dB above. Differentiable in ``x_hat``."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=x.dtype)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=x.dtype)[None, :]
    band = (fx * fx + fy * fy).sqrt() >= low
    if not bool(band.any()):
        raise TrainingError(f"--spectral-low {low}: no frequency bin of a {h}x{w} crop is that high")
    ratio = 10 * torch.log10((_power(x_hat) + floor) / (_power(x.detach()) + floor))
    return F.relu(ratio[:, band]).mean()


def spectral_peaks_db(x_hat: torch.Tensor, x: torch.Tensor, low: float = DEFAULT_SPECTRAL_LOW,
                      period: int = 16, floor: float = 1e-8) -> torch.Tensor:  # fmt: skip
    """The grid of a decoder whose upsampling strides multiply to ``period``: its energy sits at
    the multiples of ``1 / period`` cycles/pixel. With ``r = 10 log10(P(x^) / P(x))`` (dB, the
    batch-mean periodograms, per channel), the mean over those lattice bins of radius >= ``low``
    of ``relu(r - ring(r))``, ``ring`` the mean of ``r`` over the 7x7 neighbourhood without its
    inner 3x3 (the Hann window's main lobe). Adding a constant to ``r`` (more or less energy
    everywhere) leaves it unchanged. Images ``[B, C, H, W]`` with H and W multiples of
    ``period``; differentiable in ``x_hat``."""
    h, w = x.shape[-2:]
    if h % period or w % period:
        raise TrainingError(f"the spectral peak penalty needs crops that are multiples of {period}")
    fy = torch.fft.fftfreq(h, dtype=x.dtype)[:, None]
    fx = torch.fft.fftfreq(w, dtype=x.dtype)[None, :]
    iy = torch.arange(h)[:, None] % (h // period) == 0
    ix = torch.arange(w)[None, :] % (w // period) == 0
    lattice = iy & ix & ((fx * fx + fy * fy).sqrt() >= low)
    if not bool(lattice.any()):
        raise TrainingError(f"--spectral-low {low}: no lattice bin of period {period} that high")

    p_hat, p = _power(x_hat, onesided=False), _power(x.detach(), onesided=False)
    r = 10 * torch.log10((p_hat + floor) / (p + floor))[None]
    s7 = 49 * F.avg_pool2d(F.pad(r, (3, 3, 3, 3), mode="circular"), 7, stride=1)
    s3 = 9 * F.avg_pool2d(F.pad(r, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    ring = (s7 - s3) / 40
    return F.relu(r - ring)[0][:, lattice].mean()


class ConditionalD(nn.Module):
    """HiFiC's discriminator input: the image and the decoded latents, the latter through a
    1x1 convolution (M -> ``cond_channels``, leaky ReLU) and nearest upsampling to the image
    size; then a spectral-norm :class:`PatchDiscriminator` on the image scaled to [-1, 1]."""

    def __init__(self, M: int, cond_channels: int = 12, channels=(32, 64, 128)):
        super().__init__()
        self.cond = nn.Sequential(
            nn.utils.parametrizations.spectral_norm(nn.Conv2d(M, cond_channels, 1)),
            nn.LeakyReLU(0.2),
        )
        self.patch = PatchDiscriminator(3, cond_channels, channels, spectral_norm=True)

    def forward(self, x: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        c = F.interpolate(self.cond(y_hat), size=x.shape[-2:], mode="nearest")
        return self.patch(2 * x - 1, c)  # images in [-1, 1]: spectral norm bounds the gain


def _split(cfg: RealismTrainConfig):
    from vaecodec.data import list_images

    if not cfg.data:
        raise DatasetError("no training images: pass --data DIR")
    files = list_images(cfg.data)
    val = [f for f in files if cfg.val_pattern and fnmatch.fnmatch(f.name, cfg.val_pattern)]
    train = [f for f in files if f not in set(val)]
    if not train:
        raise DatasetError(f"no training images left in {cfg.data}")
    return train, val[: cfg.val_max_images]


def _check(cfg: RealismTrainConfig, model) -> None:
    if cfg.gan_loss not in GAN_LOSSES:
        raise TrainingError(f"--gan-loss {cfg.gan_loss!r}: choose one of {', '.join(GAN_LOSSES)}")
    for k in ("spectral_weight", "peak_weight"):
        if not (getattr(cfg, k) or 0) >= 0:
            raise TrainingError(f"--{k.replace('_', '-')} must be >= 0, not {getattr(cfg, k)}")
    if cfg.spectral_low is not None and not 0 <= cfg.spectral_low < 0.5 * 2**0.5:
        raise TrainingError(f"--spectral-low {cfg.spectral_low}: choose 0 <= f < 0.707 "
                            "cycles/pixel")  # fmt: skip
    if cfg.hours is not None and not cfg.hours > 0:
        raise TrainingError(f"--hours must be a positive number of hours, not {cfg.hours}")
    n = max(getattr(model, "levels", 0), 1)
    if not cfg.levels or any(not 0 <= int(v) < n for v in cfg.levels):
        raise TrainingError(f"--levels {cfg.levels}: this codec has levels 0..{n - 1}")
    if cfg.crop % model.multiple:
        raise TrainingError(f"--crop {cfg.crop} must be a multiple of {model.multiple}")
    if not hasattr(model, "h_a"):
        raise TrainingError("train-realism needs a hyperprior codec (it has no h_a)")


@torch.no_grad()
def validate(model, g_s_mse, loader, levels) -> dict:
    """Mean PSNR (dB, 8-bit) per level of the MSE and the current decoder on ``loader``."""
    from vaecodec.evaluate.metrics import psnr, to_uint8
    from vaecodec.models.codecs import crop_image, pad_image

    out = {}
    for lv in levels:
        ours, base = [], []
        for x in loader:
            xp, size = pad_image(x, model.multiple)
            inp = decoder_input(model, xp, int(lv))
            ref = to_uint8(x[0])
            ours.append(psnr(ref, to_uint8(crop_image(model.g_s(inp).clamp(0, 1), size)[0])))
            base.append(psnr(ref, to_uint8(crop_image(g_s_mse(inp).clamp(0, 1), size)[0])))
        out[f"psnr_l{lv}"] = sum(ours) / len(ours)
        out[f"psnr_mse_l{lv}"] = sum(base) / len(base)
    return out


def _meta(cfg, model, family: str, step: int, commands: list[str]) -> dict:
    lmbdas = None
    try:
        from vaecodec.zoo.codecs import codec_families

        fam = codec_families().get(family)
        if fam:
            by_level = {e.get("level"): e for e in fam["qualities"]}
            lmbdas = [by_level.get(lv, {}).get("lmbda") for lv in cfg.levels]
    except Exception:  # informative only
        lmbdas = None
    return {
        "kind": "realism-decoder",
        "base_codec": family,
        "base_model": getattr(getattr(model, "codec_id", None), "model", None),
        "base_config": model.config_dict(),
        "levels": [int(v) for v in cfg.levels],
        "qualities": [int(v) + 1 for v in cfg.levels],
        "lmbdas": lmbdas,
        "steps": step,
        "train": asdict(cfg),
        **provenance(),
        "commands": commands,
    }


def train_realism(cfg: RealismTrainConfig) -> dict:
    """Run (or resume) a realism fine-tune; returns a summary dict. See the module docstring.

    Raises:
        TrainingError: bad settings, a non-finite loss, or a collapsed discriminator (the last
            good checkpoint is kept).
        DatasetError: no training images.
    """
    from vaecodec.data.images import CenterCropImages, RandomCropImages
    from vaecodec.zoo.codecs import load_codec

    out = Path(cfg.out)
    state = None
    if (out / "last" / TRAIN_STATE_JSON).is_file() and getattr(cfg, "_resume", False):
        state = load_train_state(out / "last")
        saved = RealismTrainConfig(**{k: v for k, v in state["cfg"].items()
                                      if k in RealismTrainConfig.__dataclass_fields__})  # fmt: skip
        for k in RUNTIME_FIELDS:
            setattr(saved, k, getattr(cfg, k))
        for k in ("beta", "spectral_weight", "spectral_low", "peak_weight"):
            if getattr(cfg, k) is not None:  # a new weight from here on (recorded in commands)
                setattr(saved, k, getattr(cfg, k))
        saved.out = cfg.out
        cfg = saved
    elif getattr(cfg, "_resume", False):
        raise TrainingError(f"--resume: {out / 'last'} holds no saved state")
    if cfg.beta is None:
        cfg.beta = DEFAULT_BETA
    if cfg.spectral_weight is None:
        cfg.spectral_weight = 0.0
    if cfg.spectral_low is None:
        cfg.spectral_low = DEFAULT_SPECTRAL_LOW
    if cfg.peak_weight is None:
        cfg.peak_weight = 0.0
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)

    model = load_codec(cfg.codec)
    family = getattr(getattr(model, "codec_id", None), "name", str(cfg.codec))
    _check(cfg, model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    import copy

    g_s_mse = copy.deepcopy(model.g_s).eval()
    g_s = model.g_s
    for p in g_s.parameters():
        p.requires_grad_(True)
    disc = ConditionalD(model.M, cfg.cond_channels, cfg.d_channels)
    opt_g = torch.optim.Adam(g_s.parameters(), lr=cfg.lr_g)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d)
    step = 0
    commands = []
    if state is not None:
        g_s.load_state_dict(state["g_s"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        commands = list(state.get("commands") or [])
    commands.append(provenance()["command"])

    train_files, val_files = _split(cfg)
    train_set = RandomCropImages(train_files, crop=cfg.crop, cache=True)
    batch = min(cfg.batch_size, len(train_set))
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True,
                                         drop_last=True, num_workers=0)  # fmt: skip
    val_loader = None
    if val_files:
        val_set = CenterCropImages(val_files, crop=256, cache=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=1, num_workers=0)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    if state is not None and metrics_path.is_file():  # cut the log at the checkpoint
        keep = [ln for ln in metrics_path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]  # fmt: skip
        metrics_path.write_text("".join(ln + "\n" for ln in keep))
    levels = torch.tensor([int(v) for v in cfg.levels])
    runtime.announce()  # the run is set up: its thread count, if chosen from the load
    monitor = GANMonitor()
    show_bar = cfg.progress and sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not show_bar)
    say = (lambda m: bar.write(m)) if show_bar else (lambda m: print(m, flush=True))
    start = time.monotonic()
    budget = cfg.hours * 3600.0 if cfg.hours else math.inf
    last_good = [step if state is not None else None]

    def log(rec: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def checkpoint() -> None:
        for k, v in g_s.state_dict().items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                fail(f"the decoder's weights hold NaN or infinite values ({k})")
        save_train_state(out / "last", {
            "step": step, "g_s": g_s.state_dict(), "disc": disc.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "rng": torch.get_rng_state(), "cfg": asdict(cfg), "commands": commands,
        })  # fmt: skip
        atomic_save_tensors(out / REALISM_WEIGHTS, g_s.state_dict())
        atomic_write_json(out / REALISM_CONFIG, _meta(cfg, model, family, step, commands))
        last_good[0] = step

    def fail(why: str) -> None:
        bar.close()
        kept = (f"the last good checkpoint (step {last_good[0]}) is kept in {out}; "
                f"resume from it with a smaller --beta, or use it as is"
                if last_good[0] is not None else "no checkpoint was written yet")  # fmt: skip
        raise TrainingError(f"training diverged at step {step}: {why}; {kept}")

    say(f"train-realism: {family} levels {list(cfg.levels)}, {len(train_set)} training photos, "
        f"{len(val_files)} validation, {cfg.crop}px crops x {batch}, beta {cfg.beta}, "
        f"k_mse {cfg.k_mse:.5g}, {cfg.gan_loss} loss, spectral weight {cfg.spectral_weight}, peak "
        f"weight {cfg.peak_weight} (>= {cfg.spectral_low} cycles/px), {torch.get_num_threads()} thread(s)")
    sums = {"g_mse": 0.0, "g_adv": 0.0, "d": 0.0, "spec": 0.0, "peaks": 0.0, "n": 0}
    stop = False
    epoch = step // max(1, len(loader))
    while not stop:
        torch.manual_seed(cfg.seed + 1000 * epoch + step)
        for x in loader:
            lv = levels[torch.randint(len(levels), (x.shape[0],))]
            inp = decoder_input(model, x, lv)
            x_hat = g_s(inp)
            # discriminator step
            real = disc(x, inp)
            fake = disc(x_hat.detach(), inp)
            ld = d_loss(real, fake, cfg.gan_loss)
            if not monitor.update(real, fake) or not torch.isfinite(ld):
                fail("the discriminator's logits or loss are NaN or infinite")
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            # decoder step
            mse = F.mse_loss(x_hat, x)
            adv = g_loss(disc(x_hat, inp), cfg.gan_loss)
            lg = cfg.k_mse * 255.0**2 * mse + cfg.beta * adv
            if cfg.spectral_weight:
                spec = spectral_excess_db(x_hat, x, cfg.spectral_low)
                lg = lg + cfg.spectral_weight * spec
            if cfg.peak_weight:
                peaks = spectral_peaks_db(x_hat, x, cfg.spectral_low)
                lg = lg + cfg.peak_weight * peaks
            if not torch.isfinite(lg):
                fail("the decoder's loss is NaN or infinite")
            opt_g.zero_grad(set_to_none=True)
            lg.backward()
            opt_g.step()
            step += 1
            bar.update(1)
            sums["g_mse"] += float(mse.detach())
            sums["g_adv"] += float(adv.detach())
            sums["d"] += float(ld.detach())
            if cfg.spectral_weight:
                sums["spec"] += float(spec.detach())
            if cfg.peak_weight:
                sums["peaks"] += float(peaks.detach())
            sums["n"] += 1
            done = step >= cfg.steps or time.monotonic() - start >= budget
            if step % cfg.log_every == 0 or done:
                s = monitor.summary()
                n = max(sums["n"], 1)
                rec = {"kind": "train", "step": step, "psnr": -10 * math.log10(sums["g_mse"] / n),
                       "g_adv": sums["g_adv"] / n, "d_loss": sums["d"] / n,
                       **{k: v for k, v in s.items() if k != "collapsed"},
                       "elapsed_s": time.monotonic() - start}  # fmt: skip
                if cfg.spectral_weight:
                    rec["spectral_excess_db"] = sums["spec"] / n
                if cfg.peak_weight:
                    rec["spectral_peaks_db"] = sums["peaks"] / n
                log(rec)
                sums = {"g_mse": 0.0, "g_adv": 0.0, "d": 0.0, "spec": 0.0, "peaks": 0.0, "n": 0}
                bar.set_postfix(psnr=f"{rec['psnr']:.2f}", d_acc=f"{s['d_accuracy']:.2f}")
                if not show_bar:
                    say(f"step {step}: train PSNR {rec['psnr']:.2f} dB, D loss "
                        f"{rec['d_loss']:.3f}, D accuracy {s['d_accuracy']:.3f}, G adv "
                        f"{rec['g_adv']:.3f}")  # fmt: skip
                if s["collapsed"]:
                    fail(s["collapsed"])
                if step % cfg.val_every == 0 or done:
                    checkpoint()
                    if val_loader is not None:
                        v = validate(model, g_s_mse, val_loader, cfg.levels)
                        log({"kind": "val", "step": step, **v})
                        say(f"step {step}: validation " + ", ".join(
                            f"L{lv} {v[f'psnr_l{lv}']:.2f} dB (MSE {v[f'psnr_mse_l{lv}']:.2f})"
                            for lv in cfg.levels))  # fmt: skip
            if done:
                stop = True
                break
        epoch += 1
    bar.close()
    return {"step": step, "out": str(out), "elapsed_s": time.monotonic() - start}


def load_run_config(out: str | Path) -> dict:
    """The ``realism.json`` of a run directory."""
    return read_json(Path(out) / REALISM_CONFIG)


def export_realism(run: str | Path, dest: str | Path, description: str = "") -> Path:
    """Copy a run's realism decoder into a zoo folder: ``g_s`` in float16 (about half the
    size; the decoder's convolutions run in float32 after loading) and ``realism.json``.

    Raises:
        ModelError: the run has no decoder, or its weights are not finite.
    """
    from vaecodec.checkpoint import load_tensors
    from vaecodec.errors import ModelError

    run, dest = Path(run), Path(dest)
    meta = read_json(run / REALISM_CONFIG)
    tensors = load_tensors(run / REALISM_WEIGHTS)
    if not all(bool(torch.isfinite(v).all()) for v in tensors.values() if v.is_floating_point()):
        raise ModelError(f"{run / REALISM_WEIGHTS} holds NaN or infinite values")
    dest.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(dest / REALISM_WEIGHTS, {k: v.half() if v.is_floating_point() else v
                                                 for k, v in tensors.items()})  # fmt: skip
    meta = {**meta, "description": description or meta.get("description", ""),
            "weights_dtype": "float16", "exported_from": str(run)}  # fmt: skip
    atomic_write_json(dest / REALISM_CONFIG, meta)
    return dest
