"""How many CPU threads torch uses: one per CPU that other processes leave free.

Why: torch's CPU build runs its kernels in OpenMP thread teams, one thread per CPU, whose
threads *spin* at every barrier waiting for the others. Next to a CPU-bound process one thread
of the team is often waiting for a CPU while the other spins, every kernel: on the 2-CPU
development machine one epoch of the main job (``vaecodec train --dataset mnist``) took
70-78 s next to one CPU-bound process instead of 8.6 s idle. A passive OpenMP wait policy or a
short spin count must be set before torch starts and costs the idle machine 13-20 % (codec
training nearly 2x); one thread costs the idle machine 50 %. So the count follows the load
when the command starts: with the load of other engineers' jobs on the same machine (1-1.5
CPUs busy) an epoch took 18.5-30.2 s instead of 130-205 s with torch's 2 threads, and
61.5 s instead of 311 s with one more CPU-bound process (BENCHMARKS.md, "Training on a busy
machine").

The rule, in :func:`configure`, which ``vaecodec.cli.main`` calls once after parsing the
arguments of a command with ``--threads`` (not ``serve``, whose workers set their own):

- ``--threads N`` given: N threads (checked: 1 .. ``THREADS_PER_CPU`` x the CPU count),
  nothing else.
- otherwise: the CPUs this process may run on (``os.sched_getaffinity``) less those that
  other processes kept busy between the start of ``main`` and the end of argument parsing
  (importing torch takes seconds, so sampling costs nothing; at least
  ``MIN_SAMPLE_SECONDS``), from ``/proc/stat`` less this process's own CPU time; at least 1
  and at most torch's default (``OMP_NUM_THREADS`` is respected). A CPU counts as busy from
  ``BUSY_FRACTION`` of it. Time of processes niced above ours (``/proc/stat``'s ``nice``
  column) is not counted: the scheduler gives a nice-19 job about 1.5 % of a CPU next to one
  of ours. (A process at nice 1-5 still takes 25-45 % and is missed: a known gap.) Without
  ``/proc/stat`` torch's default stays.

The count is chosen once: a competitor that starts later in a long training run still slows
it (re-checking while training was tried, but its benefit could not be measured on the shared
machine, so it is not done). A choice other than torch's default prints one line to stderr,
``vaecodec: using 1 torch thread: 1 of 2 CPUs busy with other processes (...)``, when the
command starts its work (:func:`announce`: the commands that code files and the trainers call
it after their argument checks), or once a command that does not call it has succeeded; a
command that fails on its arguments prints its error alone (issue 27 point 8).
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

BUSY_FRACTION = 0.5
"""Another process's share of a CPU from which that CPU counts as busy."""

THREADS_HELP = (
    "torch CPU threads (default: one per CPU that other processes leave free when the command "
    "starts)"
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
    process, at ``when`` (``time.monotonic()``)."""

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
    return CpuSample(time.monotonic(), busy / hz, _own_seconds())


def _niced() -> bool:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) > 0
    except (OSError, AttributeError):
        return False


def _own_seconds() -> float:
    """CPU seconds of this process, all threads."""
    t = os.times()
    return t.user + t.system


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
_note: str | None = None


def announce(log: TextIO | None = None) -> None:
    """Print the thread-count line that :func:`configure` held back (``defer=True``), once;
    nothing if there is none. Called where a command starts its work, so that a command
    that fails on its arguments does not print it first."""
    global _note
    if _note is not None:
        print(_note, file=log or sys.stderr, flush=True)
        _note = None


def drop_note() -> None:
    """Forget a held-back thread-count line (the command failed or ended)."""
    global _note
    _note = None


def start_sample(sampler: Callable[[], CpuSample | None] | None = None) -> None:
    """Take the first sample of the load; :func:`configure` takes the second. Called at the
    start of ``main``, before torch is imported, so the import is the sampling interval."""
    global _baseline
    _baseline = (sampler or read_sample)()


def configure(
    threads: int | None,
    *,
    sampler: Callable[[], CpuSample | None] | None = None,
    cpus: int | None = None,
    most: int | None = None,
    log: TextIO | None = None,
    defer: bool = False,
) -> int:
    """Set torch's thread count for a command and return it: ``threads`` when given
    (checked), else chosen from the load since :func:`start_sample` (see the module's
    docstring). ``sampler`` (default :func:`read_sample`), ``cpus`` (default
    :func:`available_cpus`) and ``most`` (default: torch's count now) are for tests; the line
    that says why goes to ``log`` (default stderr), or with ``defer`` is held until
    :func:`announce`."""
    global _baseline, _note
    import torch

    sampler = sampler or read_sample
    log = log or sys.stderr

    if check_threads(threads) is not None:
        torch.set_num_threads(threads)
        return threads
    most = most or torch.get_num_threads()
    if most == 1:  # nothing to choose: no need to sample the load (which may wait 0.15 s)
        return 1
    before = _baseline if _baseline is not None else sampler()
    if before is None:
        return most
    wait = MIN_SAMPLE_SECONDS - (time.monotonic() - before.when)
    if wait > 0:
        time.sleep(wait)
    after = sampler()
    if after is None:
        return most
    _baseline = after
    cpus = cpus or available_cpus()
    busy = busy_elsewhere(before, after)
    chosen = choose_threads(cpus, busy, most)
    if chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    if chosen != most:
        _note = f"vaecodec: {describe(chosen, cpus, busy)}"
        if not defer:
            announce(log)
    return chosen
