""".vcz container: layout round trip and every way a file can be wrong."""

import struct
import zlib

import numpy as np
import pytest
import torch

from vaecodec.coding.container import (
    FORMAT_VERSION,
    MAGIC,
    CodecId,
    Header,
    pack,
    symbols_check,
    unpack,
)
from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.errors import FormatError, ImageError
from vaecodec.models.registry import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("hyperprior", {"N": 8, "M": 12})
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    return m.eval()


def _image(h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, c)).astype(np.float64)
    big = np.kron(small, np.ones((4, 4, 1)))[:h, :w]
    return big.astype(np.uint8)


@pytest.fixture(scope="module")
def vcz(model):
    return encode_image(model, _image(40, 70))


def test_pack_unpack_round_trip():
    header = Header(CodecId("fam", "mean-scale", b"12345678", 3), 37, 101, "L")
    symbols = [np.arange(24).reshape(2, 3, 4) - 5]
    for streams in ([b"abcd" * 3, b"", b"xyz0" * 100], [b""], [b"q"]):
        data = pack(header, streams, symbols)
        assert data[:4] == MAGIC and data[4] == FORMAT_VERSION == 2
        check = symbols_check(header, len(streams), symbols)
        assert unpack(data) == (_with(header, 2, check), streams)
        v1 = pack(header, streams, version=1)  # the old layout, still read
        assert v1[4] == 1 and unpack(v1) == (_with(header, 1, None), streams)
    assert len(pack(header, [b""], symbols)) == 29 + 3  # 29 bytes + the name (one stream)
    assert len(pack(header, [b""], version=1)) == 25 + 3
    with pytest.raises(ValueError, match="symbols"):
        pack(header, [b""])


def _with(header, version, check):
    from dataclasses import replace

    return replace(header, version=version, check=check)


def test_odd_size_round_trip(model):
    img = _image(37, 101)
    out, mode = decode_image(encode_image(model, img), model)
    assert out.shape == (37, 101, 3) and out.dtype == np.uint8 and mode == "RGB"


def test_grayscale_is_restored_as_grayscale(model):
    gray = _image(33, 65, c=1)[:, :, 0]
    data = encode_image(model, gray)
    assert unpack(data)[0].mode == "L"
    out, mode = decode_image(data, model)
    assert out.shape == (33, 65) and mode == "L"


def test_alpha_opaque_is_coded_transparent_is_refused(model):
    rgba = np.concatenate([_image(20, 20), np.full((20, 20, 1), 255, np.uint8)], axis=2)
    out, _ = decode_image(encode_image(model, rgba), model)
    assert out.shape == (20, 20, 3)
    rgba[3, 4, 3] = 128
    with pytest.raises(ImageError, match="transparent"):
        encode_image(model, rgba)


def test_images_too_large_are_refused_when_compressing(model):
    with pytest.raises(ImageError, match="outside the supported range"):
        encode_image(model, np.zeros((1, 2**15 + 1, 3), np.uint8))


def test_every_truncation_is_a_format_error(model, vcz):
    for n in range(len(vcz)):
        with pytest.raises(FormatError):
            decode_image(vcz[:n], model)


def test_every_bit_flip_is_a_format_error(model, vcz):
    rng = np.random.default_rng(0)
    for pos in range(len(vcz)):
        bad = bytearray(vcz)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(FormatError):
            decode_image(bytes(bad), model)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "not a .vcz"),
        (b"PNG\x89garbage", "not a .vcz"),
        (bytes(range(256)), "not a .vcz"),
        (b"VCZL\x01rest-of-a-lossless-stream", "lossless"),
        (b"VCZ1", "truncated"),
    ],
)
def test_garbage_is_a_format_error(model, data, match):
    with pytest.raises(FormatError, match=match):
        decode_image(data, model)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_other_version_is_refused_by_name(vcz):
    bad = bytearray(vcz[:-4])
    bad[4] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match=f"version {FORMAT_VERSION + 1}"):
        unpack(_recrc(bytes(bad)))


def _size_offset(header) -> int:
    # magic, version, model type, mode/streams, name, weights hash, quality (docs/format.md)
    return 4 + 3 + 1 + len(header.codec.name.encode()) + 8 + 1


_CHECK = 4  # the symbols check after the width (version 2)


def test_absurd_dimensions_are_refused_before_decoding(model, vcz):
    header, _ = unpack(vcz)
    body = bytearray(vcz[:-4])
    off = _size_offset(header)
    for h, w in [(40000, 16), (16, 65535), (2**15, 2**15), (0, 5)]:
        body[off : off + 4] = struct.pack(">HH", h, w)
        with pytest.raises(FormatError, match="size"):
            decode_image(_recrc(bytes(body)), model)


def test_inconsistent_lengths_with_valid_crc(vcz):
    header, _ = unpack(vcz)
    off = _size_offset(header) + 4 + _CHECK  # the varint length of the first stream
    body = vcz[:off] + b"\xff\xff\x7f" + vcz[off + 1 : -4]
    with pytest.raises(FormatError, match="exceed"):
        unpack(_recrc(body))
    with pytest.raises(FormatError, match="too long"):
        unpack(_recrc(vcz[:off] + b"\xff" * 6 + vcz[off + 1 : -4]))


def test_unknown_model_type_is_refused(vcz):
    body = bytearray(vcz[:-4])
    body[5] = 200
    with pytest.raises(FormatError, match="model type"):
        unpack(_recrc(bytes(body)))


def test_file_of_another_model_names_the_model_it_needs(model, vcz):
    torch.manual_seed(1)
    other = build_model("hyperprior", {"N": 8, "M": 12}).eval()
    with pytest.raises(FormatError, match="made by codec 'hyperprior' quality 1"):
        decode_image(vcz, other)
    ms = build_model("mean-scale", {"N": 8, "M": 12}).eval()
    with pytest.raises(FormatError, match="mean-scale"):
        decode_image(vcz, ms)
    with pytest.raises(FormatError):
        ms.decompress(vcz)


# -- issue 27 point 3: files that check themselves ------------------------------------------


@pytest.fixture(scope="module")
def vr_model():
    """A tiny variable-rate mean-scale codec (3 levels): a changed quality is another valid
    level."""
    torch.manual_seed(1)
    m = build_model("mean-scale", {"N": 8, "M": 12, "levels": 3})
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
        m.log_gain.copy_(torch.tensor([-1.0, 0.0, 1.0])[:, None].expand(3, 12))
    return m.eval()


def _edited(data: bytes, edit) -> bytes:
    """``data`` with its header and streams changed by ``edit(header, streams)`` (which
    returns new ones) and written again with a valid CRC, the old symbols check kept."""
    header, streams = unpack(data)
    new_header, new_streams = edit(header, streams)
    body = bytearray(pack(new_header, new_streams, version=1)[:-4])
    off = _size_offset(new_header) + 4  # after the width: where version 2 keeps its check
    body[4] = 2
    body[off:off] = header.check
    return _recrc(bytes(body))


_DAMAGE = {
    "payload zeroed": lambda h, s: (h, [bytes(len(x)) for x in s]),
    "payload emptied": lambda h, s: (h, [b"" for _ in s]),
    "another quality": lambda h, s: (_replace_codec(h, quality=3), s),
    "height": lambda h, s: (_replace(h, height=h.height - 1), s),
    "width": lambda h, s: (_replace(h, width=h.width + 1), s),
    "mode": lambda h, s: (_replace(h, mode="L"), s),
}


def _replace(header, **kw):
    from dataclasses import replace

    return replace(header, **kw)


def _replace_codec(header, **kw):
    from dataclasses import replace

    return replace(header, codec=replace(header.codec, **kw))


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
def test_damage_behind_a_valid_crc_is_refused_by_the_symbols_check(vr_model, damage):
    """What decoded with exit 0 to a wrong image before version 2 (a 4 dB grey image from a
    zeroed payload, another rate level, another size or mode) is refused with one line."""
    img = _image(40, 70, seed=3)
    data = encode_image(vr_model.set_level(1), img)
    assert decode_image(data, vr_model).image.shape == (40, 70, 3)
    bad = _edited(data, _DAMAGE[damage])
    assert unpack(bad)[0].check == unpack(data)[0].check  # the CRC is valid, the check old
    with pytest.raises(FormatError, match="symbols check|corrupt"):
        decode_image(bad, vr_model)


def test_a_version_1_file_still_decodes_unverified(vr_model):
    """Version-1 files (no symbols check) decode to the same pixels as the version-2 file of
    the same streams; damage in them is not seen (the reason for version 2)."""
    data = encode_image(vr_model.set_level(2), _image(40, 70, seed=4))
    header, streams = unpack(data)
    v1 = pack(header, streams, version=1)
    assert unpack(v1)[0].version == 1 and unpack(v1)[0].check is None
    assert np.array_equal(decode_image(v1, vr_model).image, decode_image(data, vr_model).image)
    other_level = pack(_replace_codec(header, quality=1), streams, version=1)
    assert decode_image(other_level, vr_model).image.shape == (40, 70, 3)  # unverified
