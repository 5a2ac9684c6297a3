"""How many CPU threads torch uses: the CPUs other processes leave free, unless ``--threads``.

Why: torch's CPU build runs its kernels in OpenMP thread teams, one thread per CPU, whose
threads *spin* at every barrier waiting for the others. Next to one CPU-bound process on a
2-CPU machine one of the two threads is always waiting for a CPU, and the other spins
meanwhile: one epoch of the main job (``vaecodec train --dataset mnist``) took 70-78 s instead
of 8.6 s (BENCHMARKS.md, "Training on a busy machine"). One thread fewer than there are CPUs
busy elsewhere avoids that (10.7 s busy), but costs the idle machine 50 % (12.9 s), and a
passive OpenMP wait policy costs the idle machine 20 % and codec training nearly 2x. So the
count is chosen from the load, for every command with ``--threads``, by :func:`configure`,
which ``vaecodec.cli.main`` calls once after parsing the arguments:

- ``--threads N`` given: N threads (checked: 1 .. ``THREADS_PER_CPU`` x the CPU count), nothing
  sampled, never changed.
- otherwise: the CPUs this process may run on (``os.sched_getaffinity``), less those other
  processes kept busy between the start of ``main`` and the end of argument parsing (importing
  torch takes seconds, so the sample costs no time; at least ``MIN_SAMPLE_SECONDS``), read from
  ``/proc/stat`` less this process's own CPU time; at least 1, at most torch's default. A CPU
  counts as busy when other processes used half of it or more. Time spent by processes at a
  higher nice value than ours (the ``nice`` column) does not count: the scheduler gives such a
  process a few percent of a CPU next to ours, and it does not make our threads wait. Without
  ``/proc/stat`` the count is torch's default.
- while a model trains (a module's forward in training mode), the count is chosen again from
  the load of the last ``RECHECK_SECONDS``, so a run that outlives its competitor gets its
  threads back, and one that gets a competitor gives one up.

Each choice that differs from torch's default (one thread per CPU) prints one line to stderr saying why.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

THREADS_PER_CPU = 4
"""``--threads`` may be 1 .. this many times ``os.cpu_count()``."""

MIN_SAMPLE_SECONDS = 0.15
"""The shortest interval the load at start is sampled over."""

RECHECK_SECONDS = 10.0
"""While training, the thread count is chosen again from the load of this many seconds."""

BUSY_FRACTION = 0.5
"""Another process's share of a CPU from which that CPU counts as busy."""

THREADS_HELP = (
    "torch CPU threads (default: one per CPU that other processes leave free when the command "
    "starts, re-checked every 10 s while training)"
)


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is None or in 1 .. THREADS_PER_CPU * os.cpu_count(), else a
    VaecodecError (torch segfaults on huge counts and raises on negative ones)."""
    from vaecodec.errors import VaecodecError

    if threads is None:
        return None
    limit = THREADS_PER_CPU * (os.cpu_count() or 1)
    if not 1 <= threads <= limit:
        raise VaecodecError(
            f"--threads {threads}: give a number of threads from 1 to {limit} (this machine "
            f"has {os.cpu_count() or 1} CPUs)"
        )
    return threads


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU time at one moment: ``busy`` on all CPUs (seconds of user, system, irq,
    softirq and steal time, plus nice time when this process is itself niced), ``own`` of this
    process and its direct children, at ``when`` (``time.monotonic()``)."""

    when: float
    busy: float
    own: float


def read_sample(stat: str = "/proc/stat") -> CpuSample | None:
    """The CPU times now, or None where ``stat`` cannot be read (not Linux)."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
        ticks = [int(v) for v in fields[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(ticks) < 4:
        return None
    ticks += [0] * (8 - len(ticks))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    busy = user + system + irq + softirq + steal + (nice if _niced() else 0)
    return CpuSample(time.monotonic(), busy / hz, _own_seconds(hz))


def _niced() -> bool:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) > 0
    except (OSError, AttributeError):
        return False


def _own_seconds(hz: int) -> float:
    """CPU seconds of this process (all threads) and its running children (data loaders)."""
    t = os.times()
    own = t.user + t.system
    me = str(os.getpid())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        return own
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(rest) > 12 and rest[1] == me:  # ppid, then utime and stime at 11 and 12
            own += (int(rest[11]) + int(rest[12])) / hz
    return own


def busy_elsewhere(before: CpuSample, after: CpuSample) -> float:
    """How many CPUs other processes kept busy between two samples, on average."""
    seconds = after.when - before.when
    if seconds <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / seconds)


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(cpus: int, busy: float, most: int | None = None) -> int:
    """One thread per CPU not busy elsewhere (a CPU is busy from ``BUSY_FRACTION`` of it),
    at least 1 and at most ``most``."""
    free = cpus - int(busy + 1 - BUSY_FRACTION)
    return max(1, min(free, most or free))


def describe(threads: int, cpus: int, busy: float) -> str:
    """The line that says why: ``using 1 torch thread: 1 of 2 CPUs busy ...``."""
    s = "" if threads == 1 else "s"
    n_busy = min(cpus, int(busy + 1 - BUSY_FRACTION))
    return (
        f"using {threads} torch thread{s}: {n_busy} of {cpus} CPUs busy with other processes "
        f"({busy:.1f} CPUs used; give --threads to override)"
    )


_baseline: CpuSample | None = None


def start_sample(sampler: Callable[[], CpuSample | None] = read_sample) -> None:
    """Take the first sample of the load; :func:`configure` takes the second. Called at the
    start of ``main``, before torch is imported, so the import is the sampling interval."""
    global _baseline
    _baseline = sampler()


class Governor:
    """Chooses the thread count again every ``RECHECK_SECONDS`` while a model trains: a global
    forward pre-hook, so it runs in the thread that calls the model (torch's thread count is
    per thread) and between kernels. It leaves alone a count someone else has set since (the
    bits-back coder pins 1 thread while it codes)."""

    def __init__(self, threads: int, cpus: int, most: int, sample: CpuSample,
                 sampler: Callable[[], CpuSample | None], log: TextIO | None):  # fmt: skip
        self.threads, self.cpus, self.most, self.sample = threads, cpus, most, sample
        self.sampler, self.log = sampler, log
        self.next_check = sample.when + RECHECK_SECONDS
        self.handle = None
        import torch

        self._compiling = torch.compiler.is_compiling

    def __call__(self, module, inputs) -> None:
        if not module.training or time.monotonic() < self.next_check or self._compiling():
            return None
        self.check()
        return None

    def check(self) -> int:
        import torch

        self.next_check = time.monotonic() + RECHECK_SECONDS
        if torch.get_num_threads() != self.threads:
            return self.threads
        now = self.sampler()
        if now is None:
            return self.threads
        busy = busy_elsewhere(self.sample, now)
        self.sample = now
        threads = choose_threads(self.cpus, busy, self.most)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            if self.log is not None:
                print(f"vaecodec: now {describe(threads, self.cpus, busy)}", file=self.log,
                      flush=True)  # fmt: skip
        return threads

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def configure(
    threads: int | None,
    *,
    sampler: Callable[[], CpuSample | None] = read_sample,
    cpus: int | None = None,
    log: TextIO | None = sys.stderr,
    recheck: bool = True,
) -> tuple[int, Governor | None]:
    """Set torch's thread count for a command: ``threads`` when given (checked), else chosen
    from the load since :func:`start_sample` (see the module's docstring). Returns the count
    and the :class:`Governor` installed to re-check it while training (None when ``threads``
    was given, the load cannot be read, or ``recheck`` is False); ``Governor.remove`` stops it."""
    global _baseline
    import torch

    if check_threads(threads) is not None:
        torch.set_num_threads(threads)
        return threads, None
    most = torch.get_num_threads()
    before = _baseline if _baseline is not None else sampler()
    if before is None:
        return most, None
    wait = MIN_SAMPLE_SECONDS - (time.monotonic() - before.when)
    if wait > 0:
        time.sleep(wait)
    after = sampler()
    if after is None:
        return most, None
    _baseline = after
    cpus = cpus or available_cpus()
    busy = busy_elsewhere(before, after)
    chosen = choose_threads(cpus, busy, most)
    if chosen != most:
        torch.set_num_threads(chosen)
    if chosen != most and log is not None:
        print(f"vaecodec: {describe(chosen, cpus, busy)}", file=log, flush=True)
    if not recheck:
        return chosen, None
    governor = Governor(chosen, cpus, most, after, sampler, log)
    governor.handle = torch.nn.modules.module.register_module_forward_pre_hook(governor)
    return chosen, governor
