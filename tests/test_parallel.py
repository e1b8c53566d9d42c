"""Intra-op parallelism: the pool itself, and every kernel that splits its work, against numpy and
onnxruntime with the work threshold lowered so that small tensors are split too."""
import os
import queue
import threading
import time
import zlib

import numba
import numpy as np
import onnx
import pytest
from numba import njit
from onnx import helper

import onnxpy
from onnxpy import _spin, parallel
from tests.ops._oracle import node_model, run_onnxruntime

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _seeded(request):
    """Each test draws the same data however the tests are spread over workers."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def split_everything(monkeypatch):
    """Every kernel that can split its work does so, even for a few multiply-adds."""
    monkeypatch.setattr(parallel, "_MIN_WORK", 1)
    monkeypatch.setattr(parallel, "_MIN_PIECE", 1)


@njit(nogil=True)
def _meet(started, first, stop, seen):
    """Each piece marks itself started, then waits (a bounded while) for every other piece to have
    started too: pieces run one after the other see only those before them."""
    for piece in range(first, stop):
        _spin._add(started, piece, 1)
        polls = 0
        while polls < 100_000_000 and _count_started(started) < started.size:
            polls += 1
        seen[piece] = _count_started(started)


@njit(nogil=True)
def _count_started(started):
    total = 0
    for piece in range(started.size):
        total += _spin._load_acquire(started, piece)
    return total


def test_a_compiled_region_runs_its_pieces_at_once_on_the_helpers_without_python():
    pool = parallel.Pool(2)
    started, seen = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    with parallel.using(pool):
        assert not parallel.compiled()  # this run did not hold the helpers: it starts them, for the next
    with parallel.using(pool):
        assert parallel.compiled()
        jobs = pool._finished.copy()
        parallel.in_pieces(2, 2, _meet, (started,), (seen,), regions=True)
        assert pool._control[_spin.NUMBER] == 1
        np.testing.assert_array_equal(pool._finished, jobs)  # no Python job ran
    np.testing.assert_array_equal(started, [1, 1])
    np.testing.assert_array_equal(seen, [2, 2])  # both ran at the same time
    with parallel.using(pool):  # the next region's pieces start afresh
        started[:], seen[:] = 0, 0
        parallel.in_pieces(2, 2, _meet, (started,), (seen,), regions=True)
    np.testing.assert_array_equal(seen, [2, 2])
    assert pool._control[_spin.NUMBER] == 2 and pool._control[_spin.INSIDE] == 0


def test_arguments_a_kernel_cannot_take_are_left_to_its_own_call():
    seen = np.zeros(2, dtype=np.int64)
    assert _spin.entry(_meet, (np.zeros(2, dtype=np.int64),), (seen,)) is not None
    assert _spin.entry(_meet, ("not an array",), (seen,)) is None  # typed as the call would: it says why
    pool = parallel.Pool(2)
    with parallel.using(pool):
        parallel.compiled()  # starts the helpers
    with parallel.using(pool), pytest.raises(numba.TypingError):
        assert parallel.compiled()
        parallel.in_pieces(2, 2, _meet, ("not an array",), (seen,), regions=True)
    assert pool._control[_spin.NUMBER] == 0


def test_a_pool_that_does_not_poll_runs_compiled_pieces_as_python_jobs():
    pool = parallel.Pool(2, spin=False)
    started, seen = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    with parallel.using(pool):
        assert not parallel.compiled()
        parallel.in_ranges(2, 2 * parallel._MIN_WORK, _meet, (started,), (seen,))
    np.testing.assert_array_equal(seen, [2, 2])  # the helper took the second piece


def test_for_each_runs_each_piece_once_on_several_threads():
    pool = parallel.Pool(3)
    seen, names = [], set()

    def piece(i):
        time.sleep(0.002)  # long enough that the helpers take pieces too
        seen.append(i)
        names.add(threading.current_thread().name)

    pool.for_each(piece, 12)
    assert sorted(seen) == list(range(12))
    assert len(names) == 3


def test_for_each_reraises_the_error_and_the_pool_still_works():
    pool = parallel.Pool(2)

    def piece(i):
        time.sleep(0.001)
        if i == 3:
            raise ValueError("piece 3")

    with pytest.raises(ValueError, match="piece 3"):
        pool.for_each(piece, 6)
    done = []
    pool.for_each(done.append, 5)
    assert sorted(done) == list(range(5))


def test_nested_and_concurrent_regions_run_on_the_calling_thread():
    pool = parallel.Pool(2)
    results = []

    def outer(i):
        inner = []
        pool.for_each(inner.append, 4)  # the pool is busy: runs here, in order
        results.append((i, inner))

    threads = [threading.Thread(target=pool.for_each, args=(outer, 3)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert sorted(i for i, _ in results) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(inner == [0, 1, 2, 3] for _, inner in results)


def test_kernels_outside_a_run_use_one_thread():
    assert parallel.threads() == 1
    with parallel.using(parallel.Pool(2)):
        assert parallel.threads() == 2
    assert parallel.threads() == 1


def _wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)
    return condition()


def test_a_run_keeps_the_helpers_polling_and_lets_them_block_after():
    """While a run holds the pool its helpers poll for work however long the gap between regions
    (waking a blocked thread costs 40-170 us); a helper that blocked before the run is woken at its
    start; after the run they block again (no thread keeps spinning between runs)."""
    pool = parallel.Pool(2)
    pool.for_each(lambda i: time.sleep(0.001), 2)  # starts the helper
    assert _wait_for(lambda: pool._asleep[0] == 1)  # its polling time over, it blocks
    with parallel.using(pool):
        assert pool._hold[0] == 1
        assert _wait_for(lambda: pool._asleep[0] == 0)  # woken by the run's start
        time.sleep(0.05)  # far longer than a helper polls between runs
        assert pool._asleep[0] == 0
        seen = set()
        pool.for_each(lambda i: (time.sleep(0.002), seen.add(threading.current_thread().name)), 4)
        assert len(seen) == 2
    assert pool._hold[0] == 0
    assert _wait_for(lambda: pool._asleep[0] == 1)


@pytest.mark.skipif(parallel._current_cpu is None or len(os.sched_getaffinity(0)) < 2,
                    reason="threads are placed where the CPU a thread runs on can be read and set")
def test_a_run_places_its_threads_on_cpus_of_their_own_and_gives_them_back():
    """During a run the calling thread stays on its CPU and the helper gets another, where it stays
    between runs; a second run at the same time (another pool, another thread) leaves its threads
    where they are; after the run the calling thread has its CPUs back."""
    pool, other = parallel.Pool(2), parallel.Pool(2)
    for p in (pool, other):
        p.for_each(lambda i: None, 2)  # starts the helpers
    before = os.sched_getaffinity(0)
    helper_before = os.sched_getaffinity(pool._tids[0])
    seen, go = {}, threading.Event()

    def concurrent_run():
        go.wait(30)
        with parallel.using(other):
            seen["thread"] = os.sched_getaffinity(0)
            seen["helper"] = os.sched_getaffinity(other._tids[0])

    thread = threading.Thread(target=concurrent_run)  # (a thread started during the run would inherit its CPU)
    thread.start()
    with parallel.using(pool):
        mine, helper = os.sched_getaffinity(0), os.sched_getaffinity(pool._tids[0])
        assert len(mine) == 1 and len(helper) == 1 and not mine & helper
        assert mine <= before and helper <= helper_before
        go.set()
        thread.join(timeout=30)
    assert seen == {"thread": before, "helper": helper_before}
    assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(pool._tids[0]) == helper


def test_helpers_are_placed_on_the_cpus_after_the_calling_threads(monkeypatch):
    """On a larger machine the helpers take the CPUs after the calling thread's, in turn (wrapping
    around), not the first ones: the pools of several processes then spread out; a run whose
    thread is on the same CPU again leaves them where they are."""
    calls = []
    monkeypatch.setattr(parallel, "_current_cpu", lambda: 5)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda tid: set(range(8)))
    monkeypatch.setattr(parallel.os, "sched_setaffinity", lambda tid, cpus: calls.append((tid, set(cpus))))
    pool = parallel.Pool(4)
    pool._cpus, pool._tids, pool._around = set(range(8)), [101, 102, 103], None
    mine = pool._place()
    assert mine == set(range(8))
    assert calls == [(101, {6}), (102, {7}), (103, {0}), (0, {5})]
    pool._unplace(mine)
    assert calls[-1] == (0, set(range(8)))
    calls.clear()
    pool._unplace(pool._place())
    assert calls == [(0, {5}), (0, set(range(8)))]  # the helpers stay placed


def test_helpers_started_anew_after_a_fork_do_not_inherit_the_parents_runs():
    """A child forked while another thread's run held the pool has the count in its copy; the
    helpers it starts must not poll forever for a run that is not its own."""
    pool = parallel.Pool(2)
    pool.for_each(lambda i: time.sleep(0.001), 2)
    pool._hold[0] = 1  # as copied from a parent in the middle of a run
    pool._pid = -1  # as seen from the child: its helpers are started on its first region
    pool.for_each(lambda i: time.sleep(0.001), 2)
    assert pool._hold[0] == 0
    assert _wait_for(lambda: pool._asleep[0] == 1)


def test_a_session_without_spinning_leaves_its_helpers_blocked(split_everything):
    feeds = {"X": RNG.standard_normal((2, 16, 20, 20)).astype(np.float32)}
    inits = {"W": RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)}
    model = node_model("Conv", feeds, ["Y"], opset=17, initializers=inits, output_types={"Y": 1}, pads=[1, 1, 1, 1])
    expected = run_onnxruntime(model, feeds)[0]
    options = onnxpy.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxpy.InferenceSession(model.SerializeToString(), options)
    assert not session._pool.spin and _session(model)._pool.spin
    for _ in range(3):
        np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-4, atol=1e-4)
    with parallel.using(session._pool):
        assert session._pool._hold[0] == 0


@pytest.mark.parametrize("a_shape, b_shape", [
    ((12, 40, 24), (12, 24, 16)),  # by batch
    ((2, 12, 40, 24), (24, 200)),  # broadcast matrix, by columns
    ((1, 40, 24), (6, 24, 16)),  # broadcast batch of a
    ((1, 8, 40, 24), (1, 8, 24, 16)),  # by the second batch axis (heads after a batch of one)
    ((1, 1, 40, 24), (1, 6, 24, 16)),  # ... with a broadcast along it
    ((1, 5, 40, 24), (24, 16)),  # ... against a matrix
    ((40, 24), (24, 200)),  # by columns
    ((64, 24), (24, 20)),  # narrow: by rows
    ((24,), (24, 200)),  # 1-D operands are left to numpy
])
def test_parallel_matmul_matches_numpy(split_everything, a_shape, b_shape):
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    with parallel.using(parallel.Pool(2)):
        got = parallel.matmul(a, b)
        out = np.empty_like(got)
        into = parallel.matmul(a, b, out=out)
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-5)
    assert into is out
    np.testing.assert_array_equal(out, got)


def _session(model: onnx.ModelProto, threads: int = 2) -> onnxpy.InferenceSession:
    options = onnxpy.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxpy.InferenceSession(model.SerializeToString(), options)


def _split_runs(model: onnx.ModelProto, feeds: dict, compiled: bool = True) -> list[list[np.ndarray]]:
    """The outputs of three runs of one two-thread session: the first splits its compiled kernels
    into Python jobs (and starts the helpers), the next ones into compiled regions (checked, where
    ``compiled``)."""
    session = _session(model)
    runs = [session.run(None, feeds) for _ in range(3)]
    assert session._pool._control[_spin.NUMBER] > 0 or not compiled
    return runs


@pytest.mark.parametrize("x_shape, w_shape, attrs, compiled", [
    ((2, 16, 20, 20), (32, 16, 1, 1), {}, True),  # 1x1 (pointwise kernel): column blocks
    ((1, 16, 5, 5), (96, 16, 1, 1), {}, True),  # 1x1 with few columns: row blocks
    ((2, 8, 21, 19), (24, 8, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, False),  # im2col row bands
    ((2, 3, 21, 70), (16, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True),  # direct, row bands
    ((1, 32, 6, 6), (64, 32, 3, 3), {"pads": [1, 0, 1, 0]}, False),  # im2col, channel blocks
    ((1, 12, 30, 30), (12, 4, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}, False),  # grouped
    ((2, 24, 30, 30), (24, 1, 3, 3), {"group": 24, "pads": [1, 1, 1, 1]}, True),  # depthwise, by channel
    ((2, 32, 6, 6), (32, 1, 5, 5), {"group": 32, "pads": [2, 2, 2, 2]}, True),  # depthwise, channels-last
    ((2, 16, 40, 40), (8, 16, 3, 3), {"pads": [1, 1, 1, 1]}, False),  # Winograd, by tile-row bands
    ((1, 6, 900), (10, 6, 5), {"pads": [2, 2]}, False),  # 1-D
    ((1, 4, 12, 12, 12), (6, 4, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}, False),  # 3-D: numpy windows
])
def test_split_convolutions_match_onnxruntime(split_everything, x_shape, w_shape, attrs, compiled):
    feeds = {"X": RNG.standard_normal(x_shape).astype(np.float32)}
    inits = {"W": RNG.standard_normal(w_shape).astype(np.float32),
             "B": RNG.standard_normal(w_shape[0]).astype(np.float32)}
    model = node_model("Conv", feeds, ["Y"], opset=17, initializers=inits, output_types={"Y": 1}, **attrs)
    expected = run_onnxruntime(model, feeds)[0]
    for outputs in _split_runs(model, feeds, compiled=compiled):
        np.testing.assert_allclose(outputs[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape, w_shape, group, compiled", [
    ((2, 16, 12, 12), (32, 16, 1, 1), 1, True),  # pointwise
    ((1, 8, 40, 40), (8, 8, 3, 3), 1, False),  # Winograd
    ((2, 16, 12, 12), (16, 1, 3, 3), 16, True),  # depthwise
])
def test_split_fused_conv_with_residual_and_clip(split_everything, x_shape, w_shape, group, compiled):
    x = RNG.standard_normal(x_shape).astype(np.float32)
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32)
    z = RNG.standard_normal((x_shape[0], w_shape[0], *x_shape[2:])).astype(np.float32)
    feeds = {"X": x, "Z": z}
    nodes = [helper.make_node("FusedConv", ["X", "W", "B", "Z"], ["Y"], domain="com.microsoft", group=group,
                              pads=[w_shape[2] // 2] * 4, activation="Clip", activation_params=[-1.0, 2.0])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, 1, v.shape) for n, v in feeds.items()],
                              [helper.make_tensor_value_info("Y", 1, None)],
                              initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    expected = run_onnxruntime(model, feeds)[0]
    for outputs in _split_runs(model, feeds, compiled=compiled):
        np.testing.assert_allclose(outputs[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dilations", [[1, 1], [2, 1]])  # separable rows, or the sliding window
def test_split_max_pool_matches_onnxruntime(split_everything, dilations):
    feeds = {"X": RNG.standard_normal((2, 10, 17, 17)).astype(np.float32)}
    model = node_model("MaxPool", feeds, ["Y"], opset=17, output_types={"Y": 1}, kernel_shape=[3, 3],
                       strides=[2, 2], pads=[1, 1, 1, 1], dilations=dilations)
    expected = run_onnxruntime(model, feeds)[0]
    for outputs in _split_runs(model, feeds):
        np.testing.assert_array_equal(outputs[0], expected)


@pytest.mark.parametrize("op, feeds, attrs", [
    ("MatMul", {"A": (2, 6, 40, 24), "B": (2, 6, 24, 30)}, {}),
    ("MatMul", {"A": (3, 40, 24), "B": (24, 300)}, {}),
    ("Gemm", {"A": (24, 40), "B": (300, 24), "C": (300,)}, {"transA": 1, "transB": 1, "alpha": 0.5}),
])
def test_split_matrix_products_match_onnxruntime(split_everything, op, feeds, attrs):
    feeds = {k: RNG.standard_normal(s).astype(np.float32) for k, s in feeds.items()}
    model = node_model(op, feeds, ["Y"], opset=17, output_types={"Y": 1}, **attrs)
    expected = run_onnxruntime(model, feeds)[0]
    np.testing.assert_allclose(_session(model).run(None, feeds)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op, feeds, attrs, dtype", [
    ("Gemm", {"A": (1, 40), "B": (301, 40), "C": (301,)}, {"transB": 1}, np.float32),  # rows of B: dot products
    ("Gemm", {"A": (1, 41), "B": (41, 299), "C": (1, 299)}, {"alpha": 0.5, "beta": 2.0}, np.float64),  # B as it is
    ("MatMul", {"A": (1, 43), "B": (43, 37)}, {}, np.float32),
])
def test_split_matrix_vector_products_match_onnxruntime(split_everything, op, feeds, attrs, dtype):
    """One row times a matrix runs as a compiled region split by columns, in both layouts of the
    matrix and with rows that are not a multiple of the four the kernel takes at a time."""
    feeds = {k: RNG.standard_normal(s).astype(dtype) for k, s in feeds.items()}
    model = node_model(op, feeds, ["Y"], opset=17, output_types={"Y": onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(dtype))}, **attrs)
    expected = run_onnxruntime(model, feeds)[0]
    for outputs in _split_runs(model, feeds):
        np.testing.assert_allclose(outputs[0], expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_one_session_run_from_many_threads(split_everything):
    feeds = {"X": RNG.standard_normal((2, 16, 20, 20)).astype(np.float32)}
    inits = {"W": RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)}
    model = node_model("Conv", feeds, ["Y"], opset=17, initializers=inits, output_types={"Y": 1}, pads=[1, 1, 1, 1])
    expected = run_onnxruntime(model, feeds)[0]
    session = _session(model)
    inputs = [{"X": feeds["X"] * (i + 1)} for i in range(6)]
    results = [None] * 6

    def run(i):
        for _ in range(5):
            results[i] = session.run(None, inputs[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, got in enumerate(results):
        np.testing.assert_allclose(got, expected * (i + 1), rtol=1e-4, atol=1e-3 * (i + 1))


def test_session_threads_default_to_the_usable_cpus():
    feeds = {"X": np.ones((2, 2), np.float32)}
    model = node_model("Relu", feeds, ["Y"], opset=17, output_types={"Y": 1})
    assert onnxpy.InferenceSession(model.SerializeToString())._pool.threads == parallel.usable_cpus()
    assert _session(model, threads=3)._pool.threads == 3


@pytest.mark.parametrize("user_threads", [1, 2])
def test_a_run_holds_blas_at_one_thread_and_restores_the_callers_setting(monkeypatch, user_threads):
    from threadpoolctl import threadpool_info, threadpool_limits

    from onnxpy import session as session_module

    def blas_threads():  # of the BLAS libraries a session manages: those loaded when the first run began
        managed = {lib.filepath for lib in session_module._BLAS_LIBRARIES or ()}
        return [lib["num_threads"] for lib in threadpool_info() if lib["filepath"] in managed]

    during = []

    def recording(plan, values):
        during.append(blas_threads())
        return execute(plan, values)

    execute = session_module.execute
    monkeypatch.setattr(session_module, "execute", recording)
    feeds = {"X": np.ones((2, 2), np.float32)}
    sess = _session(node_model("Relu", feeds, ["Y"], opset=17, output_types={"Y": 1}), threads=2)
    sess.run(None, feeds)  # the first run takes the list of libraries
    during.clear()
    with threadpool_limits(limits=user_threads, user_api="blas"):
        expected_after = blas_threads()
        for _ in range(2):
            np.testing.assert_array_equal(sess.run(None, feeds)[0], feeds["X"])
            assert blas_threads() == expected_after
    assert during and all(threads and set(threads) == {1} for threads in during)
    assert expected_after and set(expected_after) == {user_threads}
    # a run from another, still living, thread leaves this thread able to set limits
    ran, finish = threading.Event(), threading.Event()

    def worker():
        sess.run(None, feeds)
        ran.set()
        finish.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert ran.wait(10)
        with threadpool_limits(limits=3, user_api="blas"):
            assert set(blas_threads()) == {3}
    finally:
        finish.set()
        thread.join()


@pytest.mark.parametrize("op, domain, attrs", [
    ("Sigmoid", "", {}),
    ("HardSigmoid", "", {"alpha": 0.3, "beta": 0.4}),
    ("HardSwish", "", {}),
    ("Erf", "", {}),
    ("Gelu", "com.microsoft", {}),
    ("QuickGelu", "com.microsoft", {"alpha": 1.5}),
    ("Softmax", "", {"axis": -1}),
])
def test_split_compiled_element_wise_ops_match_onnxruntime(split_everything, op, domain, attrs):
    feeds = {"X": (RNG.standard_normal((3, 70, 130)) * 4).astype(np.float32)}
    model = node_model(op, feeds, ["Y"], opset=1 if domain else 17, domain=domain, output_types={"Y": 1}, **attrs)
    alone = _session(model, threads=1).run(None, feeds)[0]
    for outputs in _split_runs(model, feeds):
        np.testing.assert_array_equal(outputs[0], alone)  # element by element
    np.testing.assert_allclose(alone, run_onnxruntime(model, feeds)[0], rtol=1e-5, atol=1e-5)


def test_split_layer_normalization_matches_onnxruntime(split_everything):
    feeds = {"X": RNG.standard_normal((3, 70, 130)).astype(np.float32)}
    inits = {"S": RNG.standard_normal(130).astype(np.float32), "B": RNG.standard_normal(130).astype(np.float32)}
    model = node_model("LayerNormalization", feeds, ["Y", "M", "I"], opset=17, initializers=inits,
                       output_types={"Y": 1, "M": 1, "I": 1})
    alone = _session(model, threads=1).run(None, feeds)
    for outputs in _split_runs(model, feeds):
        for got, expected in zip(outputs, alone):
            np.testing.assert_array_equal(got, expected)  # row by row
    for got, expected in zip(alone, run_onnxruntime(model, feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op, ufunc", [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply)])
@pytest.mark.parametrize("a_shape, b_shape, dtype", [
    ((1, 50, 64), (64,), np.float32),  # a bias: split along the second axis
    ((6, 1, 40), (6, 30, 1), np.float32),  # both broadcast
    ((1, 1, 90), (1, 1, 1), np.int64),  # only the last axis is long enough
    ((40, 33), (40, 33), np.float16),
])
def test_split_arithmetic_matches_numpy(split_everything, op, ufunc, a_shape, b_shape, dtype):
    feeds = {"A": (RNG.standard_normal(a_shape) * 100).astype(dtype),
             "B": (RNG.standard_normal(b_shape) * 100).astype(dtype)}
    model = node_model(op, feeds, ["Y"], opset=17, output_types={"Y": {np.float32: 1, np.int64: 7, np.float16: 10}[dtype]})
    got = _session(model).run(None, feeds)[0]
    expected = ufunc(feeds["A"], feeds["B"])
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_a_forked_child_starts_its_own_helpers(split_everything):
    """A child made by fork has none of its parent's threads: its first parallel region starts new
    helpers instead of waiting forever for the parent's."""
    import multiprocessing

    feeds = {"X": RNG.standard_normal((2, 16, 20, 20)).astype(np.float32)}
    inits = {"W": RNG.standard_normal((32, 16, 3, 3)).astype(np.float32)}
    model = node_model("Conv", feeds, ["Y"], opset=17, initializers=inits, output_types={"Y": 1}, pads=[1, 1, 1, 1])
    session = _session(model)
    expected = session.run(None, feeds)[0]  # the parent's helpers are running now
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=lambda: results.put(session.run(None, feeds)[0]))  # forked: not pickled
    child.start()
    got = results.get(timeout=60)
    child.join(timeout=60)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_split_attention_blocks_match_onnxruntime(split_everything, monkeypatch):
    from onnxpy.ops import transformer

    monkeypatch.setattr(transformer, "_SCORES_IN_CACHE", 0)
    monkeypatch.setattr(transformer, "_SCORES_BLOCK", 100)
    feeds = {n: RNG.standard_normal(s).astype(np.float32)
             for n, s in (("Q", (2, 3, 33, 8)), ("K", (2, 3, 8, 40)), ("V", (2, 3, 40, 6)), ("B", (33, 40)))}
    nodes = [helper.make_node("MatMul", ["Q", "K"], ["S"]), helper.make_node("Add", ["S", "B"], ["SB"]),
             helper.make_node("Softmax", ["SB"], ["P"], axis=-1), helper.make_node("MatMul", ["P", "V"], ["Y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, 1, v.shape) for n, v in feeds.items()],
                              [helper.make_tensor_value_info("Y", 1, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    np.testing.assert_allclose(_session(model).run(None, feeds)[0], run_onnxruntime(model, feeds)[0],
                               rtol=1e-5, atol=1e-5)


def test_a_helper_whose_polls_run_out_as_a_run_begins_to_hold_the_pool_polls_again():
    # the run marked the pool held after the helper's last poll but before it marked itself asleep:
    # the run found no sleeper to wake, so the helper must see the hold itself instead of blocking
    calls, hold, asleep = [], np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)

    class Spin:
        @staticmethod
        def serve(posted, finished, index, rounds, held, control):
            calls.append(int(held[0]))
            if len(calls) == 1:
                held[0] = 1  # the run begins to hold the pool as the polls run out
                return False
            return True  # then a job is posted: the None below, which ends the helper

    jobs = queue.SimpleQueue()
    jobs.put(None)
    parallel._serve(jobs, queue.SimpleQueue(), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 0, Spin,
                    10, hold, asleep, np.zeros(8, dtype=np.int64))
    assert calls == [0, 1] and asleep[0] == 0
