""".vcz container: layout round trip and every way a file can be wrong."""

import struct
import zlib

import numpy as np
import pytest
import torch

from vaecodec.coding.container import FORMAT_VERSION, MAGIC, CodecId, Header, pack, unpack
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
    for streams in ([b"abcd" * 3, b"", b"xyz0" * 100], [b""], [b"q"]):
        data = pack(header, streams)
        assert data[:4] == MAGIC and data[4] == FORMAT_VERSION
        assert unpack(data) == (header, streams)
    assert len(pack(header, [b""])) == 25 + 3  # 25 bytes + the name (one stream)


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
    off = _size_offset(header) + 4  # the varint length of the first stream
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
