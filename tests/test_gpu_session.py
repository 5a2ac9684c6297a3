"""benchmarks/gpu_session.py: a run directory packed into pieces of a size limit and back."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_session", ROOT / "benchmarks/gpu_session.py")
gpu_session = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_session)


def _run(tmp_path):
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    (run / "model.safetensors").write_bytes(bytes(range(256)) * 300)  # 75 kB
    (run / "config.json").write_text('{"step": 3}')
    (run / "last" / "train_state.safetensors").write_bytes(b"\1" * 50_000)
    (run / "other.txt").write_text("not packed")
    return run


def test_pieces_stay_under_the_limit_and_unpack_to_the_same_files(tmp_path, capsys):
    run = _run(tmp_path)
    gpu_session.pack(run, tmp_path / "p", piece_mib=20_000 / 2**20, max_mib=1.0, with_state=True)
    pieces = sorted((tmp_path / "p").glob("run.tar.part*"))
    assert len(pieces) >= 7 and all(p.stat().st_size <= 20_000 for p in pieces)
    gpu_session.main(["unpack", str(tmp_path / "p"), str(tmp_path / "back")])
    for name in ("model.safetensors", "config.json", "last/train_state.safetensors"):
        assert (tmp_path / "back" / name).read_bytes() == (run / name).read_bytes()
    assert not (tmp_path / "back" / "other.txt").exists()
    # the optimizer state is left out when it does not fit, with a note
    gpu_session.pack(run, tmp_path / "q", piece_mib=1.0, max_mib=0.1, with_state=True)
    assert "continue with --init-from" in capsys.readouterr().out
    gpu_session.main(["unpack", str(tmp_path / "q"), str(tmp_path / "back2")])
    assert not (tmp_path / "back2" / "last").exists()


def test_a_damaged_piece_is_refused(tmp_path):
    run = _run(tmp_path)
    gpu_session.pack(run, tmp_path / "p", piece_mib=20_000 / 2**20, max_mib=1.0, with_state=False)
    piece = tmp_path / "p" / "run.tar.part01"
    data = bytearray(piece.read_bytes())
    data[5] ^= 1
    piece.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="part01 is damaged"):
        gpu_session.main(["unpack", str(tmp_path / "p"), str(tmp_path / "back")])
