"""vaecodec.runtime: torch's thread count from the CPUs other processes leave free (issue 17,
point 1), with samples of /proc/stat injected, and --threads always winning."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vaecodec import runtime
from vaecodec.cli import main
from vaecodec.errors import VaecodecError
from vaecodec.runtime import CpuSample


@pytest.fixture(autouse=True)
def _threads_restored(monkeypatch):
    monkeypatch.setattr(runtime, "_baseline", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fake_sampler(*busy_own: tuple[float, float], seconds: float = 1.0):
    """Samples 1 s apart (ending now, so nothing waits) with these cumulative busy / own
    CPU seconds."""
    now = time.monotonic()
    samples = [
        CpuSample(now - seconds * (len(busy_own) - 1 - i), busy, own)
        for i, (busy, own) in enumerate(busy_own)
    ]
    it = iter(samples)
    return lambda: next(it)


def no_sampler():
    raise AssertionError("the load must not be sampled when --threads is given")


@pytest.mark.parametrize(
    "cpus, busy, most, expected",
    [
        (2, 0.0, 2, 2),
        (2, 0.4, 2, 2),  # a CPU counts as busy from half of it
        (2, 0.6, 2, 1),
        (2, 1.0, 2, 1),
        (2, 2.0, 2, 1),  # at least one
        (2, 5.0, 2, 1),
        (4, 2.7, 4, 1),
        (4, 1.2, 4, 3),
        (8, 0.0, 4, 4),  # never more than torch's default
    ],
)
def test_choose_threads(cpus, busy, most, expected):
    assert runtime.choose_threads(cpus, busy, most) == expected


def test_busy_elsewhere_subtracts_our_own_cpu_time():
    a, b = CpuSample(10.0, 100.0, 5.0), CpuSample(12.0, 103.0, 6.0)
    assert runtime.busy_elsewhere(a, b) == pytest.approx(1.0)  # (3 - 1) CPU-seconds over 2 s
    assert runtime.busy_elsewhere(a, a) == 0.0


def test_one_busy_cpu_of_two_gives_one_thread_and_says_why():
    log = io.StringIO()
    # 1 s: all CPUs together busy 1.9 s, 0.9 s of it ours: one CPU busy elsewhere
    n = runtime.configure(None, sampler=fake_sampler((0, 0), (1.9, 0.9)), cpus=2, most=2, log=log)
    assert (n, torch.get_num_threads()) == (1, 1)
    line = log.getvalue()
    assert line.startswith("vaecodec: using 1 torch thread: 1 of 2 CPUs busy")
    assert "give --threads to override" in line


def test_idle_machine_keeps_the_default_silently():
    log = io.StringIO()
    n = runtime.configure(None, sampler=fake_sampler((0, 0), (1.1, 1.0)), cpus=2, most=2, log=log)
    assert n == 2 and torch.get_num_threads() == 2 and log.getvalue() == ""


def test_without_proc_stat_the_default_stays(tmp_path):
    assert runtime.read_sample(str(tmp_path / "missing")) is None
    torch.set_num_threads(2)
    assert runtime.configure(None, sampler=lambda: None, cpus=2) == 2
    assert torch.get_num_threads() == 2


def test_read_sample_parses_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 50 30 800 5 1 2 3 0 0\ncpu0 50 25 15 400 2 0 1 1 0 0\n")
    hz = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(runtime, "_niced", lambda: False)
    assert runtime.read_sample(str(stat)).busy == pytest.approx((100 + 30 + 1 + 2 + 3) / hz)
    monkeypatch.setattr(runtime, "_niced", lambda: True)  # niced ourselves: nice time competes
    assert runtime.read_sample(str(stat)).busy == pytest.approx((100 + 50 + 30 + 1 + 2 + 3) / hz)
    stat.write_text("intr 1 2 3\n")
    assert runtime.read_sample(str(stat)) is None


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_given_always_wins(threads):
    log = io.StringIO()
    n = runtime.configure(threads, sampler=no_sampler, cpus=2, most=2, log=log)
    assert (n, torch.get_num_threads(), log.getvalue()) == (threads, threads, "")


@pytest.mark.parametrize("threads", [0, -1, 100000])
def test_bad_threads_keep_their_message(threads):
    with pytest.raises(VaecodecError, match=r"--threads .*: give a number of threads from 1 to"):
        runtime.configure(threads, sampler=no_sampler)


@pytest.mark.parametrize("cmd", [["train", "--dataset", "digits"], ["eval", "x"],
                                 ["experiment"], ["bench-lossless"], ["train-codec"],
                                 ["bench-codec", "--data", "x", "--out", "y"],
                                 ["decompress", "x", "-o", "y"]])  # fmt: skip
def test_bad_threads_are_a_one_line_error_in_every_command(cmd, capsys, tmp_path):
    rc = main([*cmd, "--threads", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--threads 0: give a number of threads from 1 to" in err, err


def test_main_chooses_from_the_load_and_leaves_torch_as_it_was(monkeypatch, capsys):
    """``main`` samples at its start and after parsing; a command sees the chosen count, and
    main() called in-process gives torch its count back."""
    samples = fake_sampler((0, 0), (1.9, 0.9))
    monkeypatch.setattr(runtime, "read_sample", lambda stat=None: samples())
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    torch.set_num_threads(2)
    seen = []
    import vaecodec.cli as cli

    parser = cli.build_parser()
    eval_parser = parser._subparsers._group_actions[0].choices["eval"]
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    eval_parser.set_defaults(func=lambda args: seen.append(torch.get_num_threads()))
    assert main(["eval", "some-model"]) == 0
    assert seen == [1] and torch.get_num_threads() == 2
    assert "using 1 torch thread: 1 of 2 CPUs busy" in capsys.readouterr().err


def _busy_machine(monkeypatch):
    """One of two CPUs busy elsewhere, torch at 2 threads: main() will choose 1 and say so."""
    samples = fake_sampler((0, 0), (1.9, 0.9))
    monkeypatch.setattr(runtime, "read_sample", lambda stat=None: samples())
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    torch.set_num_threads(2)


def test_the_thread_line_waits_until_the_arguments_are_checked(monkeypatch, capsys, tmp_path):
    """Issue 27 point 8: a command that fails on its arguments prints its error alone; one
    that starts its work says first how many threads it uses."""
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    for bad in (["--quality", "99"], ["--model", str(tmp_path / "no-such-run")]):
        _busy_machine(monkeypatch)
        rc = main(["compress", *bad, str(tmp_path / "a.png"), "-o", str(tmp_path / "m.vcz")])
        err = capsys.readouterr().err
        assert rc == 2 and "torch thread" not in err and len(err.strip().splitlines()) == 1, err
    _busy_machine(monkeypatch)
    from test_codec_cli import save_tiny_codec

    run = save_tiny_codec(tmp_path / "run")
    rc = main(["compress", "--model", str(run), str(tmp_path / "a.png"), "-o",
               str(tmp_path / "a.vcz")])  # fmt: skip
    assert rc == 0 and "using 1 torch thread" in capsys.readouterr().err


def test_threads_given_to_main_win(monkeypatch, capsys):
    """main() takes its first sample before it knows the arguments (a read of /proc/stat);
    with --threads it takes no second one and sets the count given, silently."""
    calls = []
    busy = fake_sampler((0, 0), (2, 0), (4, 0))  # both CPUs busy elsewhere
    monkeypatch.setattr(runtime, "read_sample", lambda stat=None: calls.append(1) or busy())
    import vaecodec.cli as cli

    parser = cli.build_parser()
    seen = []
    parser._subparsers._group_actions[0].choices["eval"].set_defaults(
        func=lambda args: seen.append(torch.get_num_threads())
    )
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["eval", "m", "--threads", "3"]) == 0 and seen == [3] and len(calls) == 1
    assert "torch thread" not in capsys.readouterr().err


def test_a_real_sample_is_sane():
    a = runtime.read_sample()
    if a is None:
        pytest.skip("no /proc/stat")
    time.sleep(0.05)
    b = runtime.read_sample()
    assert b.when > a.when and b.busy >= a.busy
    assert 0.0 <= runtime.busy_elsewhere(a, b) <= runtime.available_cpus() + 0.5


def test_the_cli_does_not_import_torch_before_the_first_sample():
    """The first sample is taken before torch is imported, so that the import (seconds) is
    the sampling interval and a command pays nothing for it."""
    code = (
        "import sys, vaecodec.runtime as r\n"
        "orig = r.start_sample\n"
        "def start(*a, **k):\n"
        "    assert 'torch' not in sys.modules\n"
        "    orig(*a, **k)\n"
        "    raise SystemExit(0)\n"
        "r.start_sample = start\n"
        "from vaecodec.cli import main\n"
        "main(['eval', 'x'])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
