"""Intra-op parallelism: each session's own worker threads, with BLAS held at one thread.

OpenBLAS's own threads spin for about 0.1 s after every multi-threaded call, holding the second
core that the next node's compiled loop or numpy pass would want, so a run neither scales nor
stays fast between GEMMs. Instead, a session runs BLAS at one thread and splits the large kernels
itself: GEMMs by column or batch blocks, convolutions by bands of output, compiled loops by
chunks. numpy's BLAS calls, ufunc loops and the ``nogil`` compiled kernels all release the GIL, so
the pieces run at the same time. Between regions a helper polls for about a millisecond without
the GIL (``_spin``: the regions of one run follow each other closely, and waking a sleeping
thread costs 40-170 us here), and for as long as a run is in progress (``Pool.holding``), then
sleeps on its queue; the thread that waits for the helpers polls the same way.

A compiled kernel split by ``in_ranges`` runs as a compiled region where it can (``_spin.region``):
during a run the polling helpers take its pieces without the GIL, so a piece need only repay a few
microseconds (``_MIN_PIECE``), not a helper taking the GIL (``_MIN_WORK``).

For a run, the thread that runs it and each polling helper have a CPU of their own
(``Pool._place``): left to the scheduler, after the CPUs were idle for a while (runs 0.1 s apart)
it put a helper on the calling thread's CPU and left it there, where the two took turns instead of
working at once and a region's wait for its helper lasted a time slice (squeezenet1_1 at 2
threads: 35-37 ms a run against 5.5 back to back, 8 with the threads placed).

A session's pool is installed for the calling thread only during ``run`` (``using``). Kernels call
``for_each`` / ``matmul`` / ``in_ranges``, which fall back to the calling thread alone when no pool
is installed, when the work is too small to repay waking a helper (``_MIN_WORK`` multiply-adds per
piece), inside a piece (no nesting) or while another thread's run holds the pool.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import queue
import threading
import weakref
from types import ModuleType
from typing import Callable, Iterator

import numpy as np

_MIN_WORK = 3 << 20  # GEMM multiply-adds (or as long other work) a piece needs to repay waking a thread
# the same for a piece of a compiled region, which polling helpers take up at once. Measured at 2
# threads against 1 << 20 (interleaved, 20-30 runs): with 1 << 18 mobilenet_v3_small and efficientnet_b0
# 1.06x slower, mobilenet_v2 1.03x faster; 1 << 19 and 1 << 21 within the noise (0.97-1.07x)
_MIN_PIECE = 1 << 20
_SPIN_US = 1000  # how long an idle helper (or a thread waiting for helpers) polls before it blocks
_COLUMN_ALIGN = 64  # column blocks of a split GEMM start at multiples of this many columns
PASS_COST = 10  # GEMM multiply-adds as long as one element of a few arithmetic operations (measured)

_local = threading.local()
_placing = threading.Lock()  # held by the one run in the process whose threads are placed on CPUs


def _cpu_reader() -> Callable[[], int] | None:
    """glibc's ``sched_getcpu`` (the CPU the calling thread runs on), where threads can be placed."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        read = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    read.restype, read.argtypes = ctypes.c_int, []
    return read


_current_cpu = _cpu_reader()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity masks
        return os.cpu_count() or 1


def _guarded(job: Callable[[], None]) -> BaseException | None:
    try:
        job()
    except BaseException as exc:  # noqa: BLE001 - handed back to the thread that started the region
        return exc
    return None


def _wake() -> None:
    """Posted to a blocked helper when a run starts: it goes back to polling, doing nothing else."""


def _serve(jobs: queue.SimpleQueue, done: queue.SimpleQueue, posted: np.ndarray, finished: np.ndarray,
           index: int, spin: ModuleType, rounds: int, hold: np.ndarray, asleep: np.ndarray,
           control: np.ndarray) -> None:
    """A helper thread: run the jobs posted to it, polling for the next one (and taking pieces of
    the compiled regions opened in ``control`` meanwhile) for ``rounds`` polls, or while ``hold`` is
    set, before it blocks on its queue (marked in ``asleep``, then ``hold`` checked again: a run
    that began to hold the pool in between wakes only the helpers marked). A job is counted finished from
    compiled code, the GIL released: counted before, the thread waiting for it woke only to block on
    the GIL, 10 us a region."""
    polled = spin.serve(posted, finished, index, rounds, hold, control)
    while True:
        if not polled:
            asleep[index] = 1
            if hold[0]:  # a run began to hold the pool as the polls ran out: it saw no sleeper to wake
                asleep[index] = 0
                polled = spin.serve(posted, finished, index, rounds, hold, control)
                continue
        job = jobs.get()
        asleep[index] = 0
        if job is None:
            return
        if job is _wake:
            polled = spin.serve(posted, finished, index, rounds, hold, control)
        else:
            done.put(_guarded(job))
            polled = spin.finish_then_serve(finished, posted, index, rounds, hold, control)


def _stop(queues: list[queue.SimpleQueue]) -> None:
    for q in queues:
        q.put(None)


class Pool:
    """``threads - 1`` helper threads plus the thread that starts a parallel region. The helpers
    start with the first region that needs them, so that a session that never splits work (or
    only runs at one thread) costs neither threads nor the compiled spin loop's import. With
    ``spin``, the helpers poll for work for as long as a run holds the pool (``holding``)."""

    def __init__(self, threads: int, spin: bool = True):
        self.threads = max(1, threads)
        self.spin = spin
        self._busy = threading.Lock()  # one parallel region at a time
        self._jobs: list[queue.SimpleQueue] = []
        self._pid: int | None = None  # the process the helpers run in
        self._hold = np.zeros(1, dtype=np.int64)  # runs holding the pool: the helpers poll while not 0
        self._holders = threading.Lock()

    def _start(self) -> None:
        """Start the helpers (called holding ``_busy``); again in a forked child, which has none."""
        from onnxpy import _spin

        self._spin = _spin
        self._wait = _spin.wait_change
        self._rounds = round(_SPIN_US * _spin.prepare())
        self._pid = os.getpid()
        self._posted = np.zeros(self.threads, dtype=np.int64)  # jobs posted to / finished by each helper
        self._finished = np.zeros(self.threads, dtype=np.int64)
        self._asleep = np.zeros(self.threads, dtype=np.int64)
        self._control = np.zeros(_spin.CONTROL_SIZE, dtype=np.int64)  # the compiled regions' (``_spin.region``)
        self._slot = np.zeros(_spin.SLOT_BYTES // 8, dtype=np.int64)
        self._hold[0] = 0  # (a forked child's copy may count the parent's runs, which are not its own)
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._jobs = [queue.SimpleQueue() for _ in range(self.threads - 1)]
        self._cpus = os.sched_getaffinity(0) if _current_cpu is not None else set()  # (the helpers' own)
        self._tids = []
        self._around = None  # the CPU the helpers are placed around (on the others), if they are
        for i, jobs in enumerate(self._jobs):
            helper = threading.Thread(target=_serve, args=(jobs, self._done, self._posted, self._finished, i, _spin,
                                                           self._rounds, self._hold, self._asleep, self._control),
                                      name=f"onnxpy-intra-op-{i + 1}", daemon=True)
            helper.start()
            self._tids.append(helper.native_id)
        weakref.finalize(self, _stop, self._jobs)

    def for_each(self, fn: Callable[[int], None], count: int) -> None:
        """``fn(i)`` for every i in range(count), the pieces handed out one at a time to whichever
        thread is free; returns when all are done and re-raises the first error."""
        helpers = min(count, self.threads) - 1
        if helpers <= 0 or not self._busy.acquire(blocking=False):
            for i in range(count):
                fn(i)
            return
        try:
            if self._pid != os.getpid():
                self._start()
            counter = itertools.count()

            def job() -> None:
                while (i := next(counter)) < count:
                    fn(i)

            for i in range(helpers):
                self._jobs[i].put(job)
                self._posted[i] += 1
            errors = [_guarded(job)]
            for i in range(helpers):
                self._wait(self._finished, i, self._posted[i] - 1, self._rounds, self._hold)
                errors.append(self._done.get())
        finally:
            self._busy.release()
        for error in errors:
            if error is not None:
                raise error

    def compiled(self) -> bool:
        """Whether a compiled region's pieces go to the helpers now: they poll for the whole of a
        run (``holding``). Starts the helpers, for the next run, where they have not started."""
        if self.threads == 1 or not self.spin:
            return False
        if self._pid != os.getpid():
            if self._busy.acquire(blocking=False):
                try:
                    self._start()
                finally:
                    self._busy.release()
            return False
        return self._hold[0] > 0

    def run_compiled(self, kernel: Callable[..., object], head: tuple, tail: tuple, bounds: np.ndarray) -> bool:
        """``kernel(*head, bounds[i], bounds[i + 1], *tail)`` for each i as a compiled region
        (``_spin.region``); False, having run nothing, where the arguments cannot be stored or the
        pool is busy."""
        found = self._spin.entry(kernel, head, tail)
        if found is None or not self._busy.acquire(blocking=False):
            return False
        try:
            self._spin.region((found[0], bounds, head, tail), found[1], self._control, self._slot)
        finally:
            self._busy.release()
        return True

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the helpers polling for work until the block ends (a run: waking a blocked helper
        at every parallel region costs 40-170 us, where a small model's nodes take 10-300 us), with
        the threads placed on CPUs of their own (``_place``), and wake those blocked now. Without
        ``spin``, or before the first region started the helpers, the block runs as it is."""
        if not self.spin or not self._jobs or self._pid != os.getpid():
            yield
            return
        with self._holders:
            self._hold[0] += 1
        placed = self._place()
        for i, jobs in enumerate(self._jobs):
            if self._asleep[i]:
                jobs.put(_wake)
        try:
            yield
        finally:
            if placed is not None:
                self._unplace(placed)
            with self._holders:
                self._hold[0] -= 1

    def _place(self) -> set[int] | None:
        """Pin the calling thread to the CPU it runs on and, unless they are already, each helper to
        another one, the CPUs after it in turn (so that the pools of several processes, whose
        threads run on different CPUs, are not all placed on the first ones; the helpers stay there
        between runs: pinning them anew each run cost 10-30 us); not where another run in the
        process has placed its threads, or there are fewer CPUs than threads. Returns the calling
        thread's CPUs before (to give back, ``_unplace``), or None where nothing was placed."""
        if _current_cpu is None or not _placing.acquire(blocking=False):
            return None
        mine = os.sched_getaffinity(0)
        cpu = _current_cpu()
        others = sorted(self._cpus - {cpu}, key=lambda c: (c - cpu) % (max(self._cpus) + 1))  # the next ones up
        if cpu in mine and len(others) >= len(self._tids):
            try:
                if self._around != cpu:
                    self._around = None
                    for tid, other in zip(self._tids, others):
                        os.sched_setaffinity(tid, {other})
                    self._around = cpu
                os.sched_setaffinity(0, {cpu})
                return mine
            except OSError:  # (a CPU taken away meanwhile): the helpers free again
                self._around = None
                for tid in self._tids:
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(tid, self._cpus)
        _placing.release()
        return None

    def _unplace(self, mine: set[int]) -> None:
        """Give the calling thread back the CPUs it had before ``_place`` (``mine``)."""
        try:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, mine)
        finally:
            _placing.release()


@contextlib.contextmanager
def using(pool: Pool | None) -> Iterator[None]:
    """Install ``pool`` for the calling thread's kernels for the duration of the block, holding
    its helpers (``Pool.holding``)."""
    previous = getattr(_local, "pool", None)
    _local.pool = pool
    try:
        if pool is None:
            yield
        else:
            with pool.holding():
                yield
    finally:
        _local.pool = previous


def threads() -> int:
    """Threads the calling thread's kernels may use now."""
    pool = getattr(_local, "pool", None)
    return 1 if pool is None else pool.threads


def compiled() -> bool:
    """Whether the calling thread's compiled kernels can split as compiled regions now
    (``Pool.compiled``)."""
    pool = getattr(_local, "pool", None)
    return pool is not None and pool.compiled()


def pieces(work: float, most: int, available: int | None = None, regions: bool = False) -> int:
    """How many pieces to cut ``work`` multiply-adds into: at most ``most``, each worth a thread,
    for ``available`` threads (the calling thread's, by default); pieces of a compiled region
    (``regions``) may be smaller."""
    least = _MIN_PIECE if regions else _MIN_WORK
    return max(1, min(most, threads() if available is None else available, int(work // least)))


def serial(work: float) -> bool:
    """Whether ``work`` multiply-adds are too few to cut into pieces for any number of threads."""
    return work < 2 * _MIN_WORK


def for_each(fn: Callable[[int], None], count: int) -> None:
    """``fn(i)`` for i in range(count) on the calling thread's pool (or on the thread alone)."""
    pool = getattr(_local, "pool", None)
    if pool is None or count <= 1:
        for i in range(count):
            fn(i)
    else:
        pool.for_each(fn, count)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` for operands of rank >= 2, split over the pool's threads: by
    index along the first batch axis with as many as the threads (attention's heads after a batch
    of one: T5's 8 heads of 128 x 64 x 128 at 2 threads, 259 -> 161 us against column blocks),
    else by column blocks of b, else by row blocks of a. Each piece is one single-threaded BLAS
    call writing its block of ``out`` in place."""
    if a.ndim < 2 or b.ndim < 2 or threads() == 1:
        return np.matmul(a, b, out=out)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    axis = next((i for i, d in enumerate(batch) if d >= threads()), None)
    lead = 1 if axis is None else batch[axis]
    count = pieces(math.prod(batch) * m * k * n, lead if lead > 1 else max(n // _COLUMN_ALIGN, m // 8))
    if count == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty(batch + (m, n), dtype=np.result_type(a, b))
    if lead >= count:
        a = a.reshape((1,) * (out.ndim - a.ndim) + a.shape)
        b = b.reshape((1,) * (out.ndim - b.ndim) + b.shape)

        def piece(i: int) -> None:
            part = (slice(None),) * axis + (slice(lead * i // count, lead * (i + 1) // count),)
            np.matmul(a[part] if a.shape[axis] > 1 else a, b[part] if b.shape[axis] > 1 else b, out=out[part])
    elif n >= count * _COLUMN_ALIGN:
        edges = [n * i // count // _COLUMN_ALIGN * _COLUMN_ALIGN for i in range(count)] + [n]

        def piece(i: int) -> None:
            cols = slice(edges[i], edges[i + 1])
            np.matmul(a, b[..., cols], out=out[..., cols])
    else:
        def piece(i: int) -> None:
            rows = slice(m * i // count, m * (i + 1) // count)
            np.matmul(a[..., rows, :], b, out=out[..., rows, :])
    for_each(piece, count)
    return out


def in_ranges(total: int, work: float, kernel: Callable[..., object], head: tuple, tail: tuple) -> None:
    """``kernel(*head, lo, hi, *tail)`` over contiguous ranges [lo, hi) covering range(total), as
    many as ``work`` (in GEMM multiply-adds, for all of it) repays, spread over the calling thread's
    pool; ``kernel`` is a compiled (numba) function that releases the GIL."""
    regions = compiled()
    in_pieces(total, pieces(work, total, regions=regions), kernel, head, tail, regions)


def in_pieces(total: int, count: int, kernel: Callable[..., object], head: tuple, tail: tuple,
              regions: bool) -> None:
    """``in_ranges`` cut into ``count`` ranges, as a compiled region where ``regions`` (``compiled``)."""
    if count == 1:  # (most calls: a direct call saves the ranges and the pool's bookkeeping, ~4 us)
        kernel(*head, 0, total, *tail)
        return
    ranges = split(total, count)
    if regions and _local.pool.run_compiled(kernel, head, tail,
                                            np.array([lo for lo, _ in ranges] + [total], dtype=np.int64)):
        return
    for_each(lambda i: kernel(*head, *ranges[i], *tail), len(ranges))


def split(total: int, count: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges cutting range(total) into ``count`` near-equal non-empty parts."""
    count = max(1, min(count, total))
    return [(total * i // count, total * (i + 1) // count) for i in range(count)]


class Scratch:
    """A work buffer per thread for the pieces of one parallel region (made on a thread's first use)."""

    def __init__(self, make: Callable[[], np.ndarray]):
        self._make = make
        self._buffers: dict[int, np.ndarray] = {}

    def get(self) -> np.ndarray:
        key = threading.get_ident()
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = self._make()
        return buffer


def binary(ufunc: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ufunc(a, b)`` with numpy broadcasting, split over the pool's threads by blocks of the
    output's first axis long enough to cut (ufunc loops release the GIL)."""
    if threads() == 1 or max(a.size, b.size) * PASS_COST < 2 * _MIN_WORK:
        return ufunc(a, b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    count = pieces(PASS_COST * math.prod(shape), max(shape))
    axis = next((i for i, d in enumerate(shape) if d >= count), 0)
    if count == 1:
        return ufunc(a, b)
    out = np.empty(shape, np.result_type(a, b))
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    blocks = [(slice(None),) * axis + (slice(lo, hi),) for lo, hi in split(shape[axis], count)]
    for_each(lambda i: ufunc(a[blocks[i]], b[blocks[i]], out=out[blocks[i]]), len(blocks))
    return out
