"""Traditional machine-learning kernels (domain ``ai.onnx.ml``): tree ensembles, linear and SVM
models, encoders, scalers and the map plumbing of converted scikit-learn pipelines.

Where the spec is vague (binary classifiers, post transforms of a single column, PROBIT's
inverse-erf approximation) these kernels follow onnxruntime, so converted models give its numbers.
Tree ensembles are evaluated for all rows and trees at once, one tree level per step, with
gathers over flat node arrays; the arrays are built once per node (``ctx.memo``).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import compute_dtype
from onnxpy.registry import kernel

ML = "ai.onnx.ml"
def _rows(x: np.ndarray) -> np.ndarray:
    """The input as [N, F]: a 1-D input is one row (onnxruntime's rule for every ml op)."""
    if x.ndim == 0:
        raise ValueError("the input must have at least one dimension")
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def _labels(ints: Sequence[int] | None, strings: Sequence[str] | None) -> np.ndarray:
    if strings:
        return np.array(strings, dtype=object)
    return np.asarray(ints if ints is not None else [], dtype=np.int64)


# Post transforms, applied row-wise to [N, K] scores in their own dtype.

def _logistic(s: np.ndarray) -> np.ndarray:
    e = 1 / (1 + np.exp(-np.abs(s)))
    return np.where(s < 0, 1 - e, e)


def _probit(s: np.ndarray) -> np.ndarray:
    # sqrt(2) * erfinv(2s - 1) with Winitzki's approximation (a = 0.147), as onnxruntime's
    # ComputeProbit and onnx.reference compute it, rather than the exact inverse normal CDF.
    x = 2 * s - 1
    with np.errstate(divide="ignore", invalid="ignore"):  # s outside (0, 1): +-inf or NaN, as in C
        ln = np.log((1 - x) * (1 + x))
        a = 2 / (np.pi * 0.147) + 0.5 * ln
        return math.sqrt(2) * np.sign(x + (x == 0)) * np.sqrt(-a + np.sqrt(a * a - ln / 0.147))


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_zero(s: np.ndarray) -> np.ndarray:
    # Scores within 1e-7 of zero stay (almost) zero and are left out of the sum (onnxruntime).
    m = s.max(axis=1, keepdims=True)
    nonzero = np.abs(s) > 1e-7
    e = np.where(nonzero, np.exp(s - m), s * np.exp(-m))
    return e / np.where(nonzero, e, 0).sum(axis=1, keepdims=True)


def _complement(v: np.ndarray, post_transform: str, signed: bool) -> np.ndarray:
    """One binary score as two columns, as onnxruntime writes them: LOGISTIC applied and
    complemented to 1, otherwise (1 - v, v), or (-v, v) for a signed margin."""
    if post_transform == "LOGISTIC":
        p = _logistic(v)
        return np.stack([1 - p, p], axis=1)
    return np.stack([-v if signed else 1 - v, v], axis=1)


_TRANSFORMS = {"NONE": None, "LOGISTIC": _logistic, "SOFTMAX": _softmax, "SOFTMAX_ZERO": _softmax_zero,
               "PROBIT": _probit}
_TRANSFORM_CODES = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")  # TreeEnsemble's enum


def _post_transform(scores: np.ndarray, post_transform: str) -> np.ndarray:
    """``post_transform`` applied to [N, K] scores; a single column only takes PROBIT, as in
    onnxruntime's write_scores."""
    if post_transform not in _TRANSFORMS:
        raise ValueError(f"unknown post_transform {post_transform!r}: expected one of {list(_TRANSFORMS)}")
    fn = _TRANSFORMS[post_transform]
    if fn is None or (scores.shape[1] == 1 and post_transform != "PROBIT"):
        return scores
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return fn(scores).astype(scores.dtype, copy=False)


# Tree ensembles: every tree of every row advances one level per step over flat node arrays.

_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
          "BRANCH_MEMBER": 6, "LEAF": 7}
_MEMBER, _LEAF = 6, 7
_COMPARE = (np.less_equal, np.less, np.greater_equal, np.greater, np.equal, np.not_equal)
# Whether each mode branches true for each ordering of value and split: unordered (NaN), <, ==, >.
_GOES_TRUE = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 1, 0], [1, 1, 0, 1],
                       [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")  # TreeEnsemble's enum order
_CHUNK = 1 << 16  # rows x trees evaluated at once (cache-sized temporaries)
_DENSE_LIMIT = 1 << 24  # nodes x targets for a dense leaf-weight table


def _gather(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` for indices valid by construction; mode="wrap" skips numpy's bounds checks (~2x)."""
    return np.take(a, idx, mode="wrap")


class _Forest(NamedTuple):
    feature: np.ndarray        # intp [M]; leaves read feature 0 and point to themselves
    split: np.ndarray          # float64 [M]
    mode: np.ndarray           # int8 [M], _MODES codes
    children: np.ndarray       # intp [2M]: children[2i] false branch, children[2i + 1] true branch
    missing_true: np.ndarray | None   # bool [M], None when no node sends NaN to the true branch
    same_mode: int | None      # the one comparison every branch uses, if so
    members: tuple[np.ndarray, np.ndarray] | None  # sorted member values, sorted node*len+value keys
    roots: np.ndarray          # intp [T]
    depth: int
    w_start: np.ndarray        # intp [M]: each node's first weight (CSR over the weights below)
    w_count: np.ndarray        # intp [M]
    w_target: np.ndarray       # intp [W]
    w_value: np.ndarray        # float64 [W]
    one_weight: bool           # every leaf holds exactly one weight
    dense: tuple[np.ndarray, np.ndarray] | None  # summed weights [M, K] and their presence, for
    n_targets: int                               # leaves with several weights (random forests)


def _forest(feature, split, mode, true_child, false_child, missing, roots, leaf_of_weight, w_target, w_value,
            n_targets: int, members=None) -> _Forest:
    """Assemble a _Forest from per-node arrays (leaves included) and per-weight arrays."""
    m = len(mode)
    leaf = mode == _LEAF
    own = np.arange(m)
    children = np.stack([np.where(leaf, own, false_child), np.where(leaf, own, true_child)], axis=1)
    if children.size and (children.min() < 0 or children.max() >= m):
        raise ValueError("a tree node's child index is out of range")
    w_target = np.asarray(w_target, dtype=np.intp)
    if w_target.size and (w_target.min() < 0 or w_target.max() >= n_targets):
        raise ValueError(f"a leaf's target/class id is outside [0, {n_targets})")
    order = np.argsort(leaf_of_weight, kind="stable")
    count = np.bincount(leaf_of_weight, minlength=m).astype(np.intp)
    one_weight = bool((count[leaf] == 1).all())
    dense = None
    if not one_weight and m * n_targets <= _DENSE_LIMIT:
        weights, present = np.zeros((m, n_targets)), np.zeros((m, n_targets), bool)
        np.add.at(weights, (leaf_of_weight, w_target), np.asarray(w_value, dtype=np.float64))
        present[leaf_of_weight, w_target] = True
        dense = weights, present
    branch_modes = np.unique(mode[~leaf])
    missing = np.asarray(missing, dtype=bool) if missing is not None and len(missing) else None
    if missing is not None:
        missing = np.concatenate([missing, np.zeros(max(0, m - len(missing)), bool)])[:m] & ~leaf
    return _Forest(
        feature=np.where(leaf, 0, feature).astype(np.intp), split=np.where(leaf, 0, split).astype(np.float64),
        mode=mode.astype(np.int8), children=children.ravel().astype(np.intp),
        missing_true=missing if missing is not None and missing.any() else None,
        same_mode=int(branch_modes[0]) if len(branch_modes) == 1 and branch_modes[0] != _MEMBER else None,
        members=members, roots=np.asarray(roots, dtype=np.intp), depth=_depth(children, leaf, roots),
        w_start=(np.cumsum(count) - count).astype(np.intp), w_count=count,
        w_target=w_target[order], w_value=np.asarray(w_value, dtype=np.float64)[order],
        one_weight=one_weight, dense=dense, n_targets=n_targets,
    )


def _depth(children: np.ndarray, leaf: np.ndarray, roots: np.ndarray) -> int:
    frontier, depth = np.unique(np.asarray(roots, dtype=np.intp)), 0
    while True:
        inner = frontier[~leaf[frontier]]
        if inner.size == 0:
            return depth
        depth += 1
        if depth > len(leaf):
            raise ValueError("the tree ensemble has a cycle: a node is its own descendant")
        frontier = np.unique(children[inner].ravel())


def _forest_v3(treeids, nodeids, featureids, modes, values, truenodeids, falsenodeids, missing,
               w_treeids, w_nodeids, w_ids, weights, n_targets: int) -> _Forest:
    """A _Forest from the (tree id, node id) encoding of TreeEnsembleClassifier/Regressor."""
    tree = np.asarray(treeids if treeids is not None else [], dtype=np.int64)
    node = np.asarray(nodeids if nodeids is not None else [], dtype=np.int64)
    m = len(tree)
    arrays = {"nodes_nodeids": node, "nodes_featureids": featureids, "nodes_modes": modes,
              "nodes_values": values, "nodes_truenodeids": truenodeids, "nodes_falsenodeids": falsenodeids}
    for name, arr in arrays.items():
        if arr is None or len(arr) != m:
            raise ValueError(f"{name} must have one entry per node ({m}), got {0 if arr is None else len(arr)}")
    if m == 0:
        raise ValueError("the tree ensemble has no nodes")
    if node.min() < 0:
        raise ValueError("node ids must be non-negative")
    try:
        mode = np.array([_MODES[s] for s in modes], dtype=np.int8)
    except KeyError as e:
        raise ValueError(f"unknown node mode {e.args[0]!r}: expected one of {list(_MODES)[:6] + ['LEAF']}") from None
    if (mode == _MEMBER).any():
        raise ValueError("BRANCH_MEMBER is only valid in TreeEnsemble (ai.onnx.ml opset 5)")
    span = int(node.max()) + 1
    keys = tree * span + node
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if (sorted_keys[1:] == sorted_keys[:-1]).any():
        raise ValueError("a (tree id, node id) pair appears twice")

    def find(trees, nodes):
        q = np.asarray(trees, dtype=np.int64) * span + np.asarray(nodes, dtype=np.int64)
        pos = np.searchsorted(sorted_keys, q).clip(max=m - 1)
        ok = (sorted_keys[pos] == q) & (np.asarray(nodes) >= 0) & (np.asarray(nodes) < span)
        return order[pos], ok

    leaf = mode == _LEAF
    true_child, ok_t = find(tree, truenodeids)
    false_child, ok_f = find(tree, falsenodeids)
    if not (ok_t & ok_f | leaf).all():
        raise ValueError("a branch node's true or false node id does not exist in its tree")
    w_tree = np.asarray(w_treeids if w_treeids is not None else [], dtype=np.int64)
    w_node = np.asarray(w_nodeids if w_nodeids is not None else [], dtype=np.int64)
    w_target = np.asarray(w_ids if w_ids is not None else [], dtype=np.int64)
    w_value = np.asarray(weights if weights is not None else [], dtype=np.float64)
    if not len(w_tree) == len(w_node) == len(w_target) == len(w_value):
        raise ValueError("the *_treeids, *_nodeids, *_ids and *_weights of the leaves must have equal lengths")
    at, ok = find(w_tree, w_node)
    if not ok.all():
        raise ValueError("a leaf weight refers to a (tree id, node id) that does not exist")
    on_leaf = leaf[at]  # onnxruntime ignores weights attached to branch nodes (old converters emit them)
    _, first = np.unique(tree, return_index=True)
    return _forest(np.asarray(featureids), np.asarray(values, dtype=np.float64), mode, true_child, false_child,
                   missing, np.sort(first), at[on_leaf], w_target[on_leaf], w_value[on_leaf], n_targets)


def _forest_v5(featureids, modes, splits, truenodeids, falsenodeids, trueleafs, falseleafs, missing,
               leaf_targetids, leaf_weights, tree_roots, membership_values, n_targets: int) -> _Forest:
    """A _Forest from TreeEnsemble's encoding: branch nodes in nodes_*, leaves in leaf_*."""
    mode = np.asarray(modes).astype(np.int8).ravel()
    n, n_leaves = len(mode), len(np.ravel(leaf_weights))
    for name, arr in {"nodes_featureids": featureids, "nodes_splits": np.ravel(splits),
                      "nodes_truenodeids": truenodeids, "nodes_falsenodeids": falsenodeids,
                      "nodes_trueleafs": trueleafs, "nodes_falseleafs": falseleafs}.items():
        if len(arr) != n:
            raise ValueError(f"{name} must have one entry per node ({n}), got {len(arr)}")
    if len(leaf_targetids) != n_leaves:
        raise ValueError("leaf_targetids and leaf_weights must have equal lengths")
    if mode.size and (mode.min() < 0 or mode.max() > _MEMBER):
        raise ValueError("nodes_modes must be codes 0 (BRANCH_LEQ) to 6 (BRANCH_MEMBER)")
    t_leaf, f_leaf = np.asarray(trueleafs, bool), np.asarray(falseleafs, bool)
    true_child = np.where(t_leaf, n + np.asarray(truenodeids), truenodeids)
    false_child = np.where(f_leaf, n + np.asarray(falsenodeids), falsenodeids)
    roots = np.asarray(tree_roots, dtype=np.intp)
    if roots.size and (roots.min() < 0 or roots.max() >= n):
        raise ValueError("tree_roots must index nodes_*")
    # A tree that is one leaf: its root entry points both ways to the same leaf; like onnxruntime
    # and onnx.reference, the leaf read is leaf_*[root].
    single = t_leaf[roots] & f_leaf[roots] & (true_child[roots] == false_child[roots])
    roots = np.where(single, n + roots, roots)
    all_modes = np.concatenate([mode, np.full(n_leaves, _LEAF, np.int8)])
    members = _members(all_modes, membership_values)
    return _forest(np.concatenate([np.asarray(featureids), np.zeros(n_leaves, np.int64)]),
                   np.concatenate([np.asarray(splits, dtype=np.float64).ravel(), np.zeros(n_leaves)]), all_modes,
                   np.concatenate([true_child, np.zeros(n_leaves, np.intp)]),
                   np.concatenate([false_child, np.zeros(n_leaves, np.intp)]), missing, roots,
                   n + np.arange(n_leaves), leaf_targetids, np.asarray(leaf_weights, np.float64).ravel(),
                   n_targets, members)


def _members(mode: np.ndarray, membership_values) -> tuple[np.ndarray, np.ndarray] | None:
    """Sets of BRANCH_MEMBER nodes, NaN-delimited in node order, as sorted value/key arrays."""
    member_nodes = np.flatnonzero(mode == _MEMBER)
    if member_nodes.size == 0:
        return None
    values = np.asarray(membership_values if membership_values is not None else [], np.float64).ravel()
    delimiter = np.isnan(values)
    if delimiter.sum() != member_nodes.size:
        raise ValueError(f"membership_values must hold one NaN-terminated set per BRANCH_MEMBER node "
                         f"({member_nodes.size}), found {int(delimiter.sum())}")
    group = np.cumsum(delimiter) - delimiter
    values, owner = values[~delimiter], member_nodes[group[~delimiter]]
    if values.size == 0:  # only empty sets: nothing is a member
        return np.array([np.nan]), np.array([-1], np.int64)
    uniq = np.unique(values)
    return uniq, np.unique(owner.astype(np.int64) * len(uniq) + np.searchsorted(uniq, values))


def _tree_leaves(forest: _Forest, x: np.ndarray) -> np.ndarray:
    """The leaf each tree reaches for each row of x [N, F]: an intp array [N, T]."""
    n, f = x.shape
    if forest.feature.size and forest.feature.max() >= f:
        raise ValueError(f"the trees read feature {int(forest.feature.max())} but the input has {f} features")
    split = forest.split.astype(x.dtype)
    flat, t = x.ravel(), len(forest.roots)
    leaves = np.empty((n, t), dtype=np.intp)
    step = max(1, _CHUNK // max(t, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        base = (np.arange(start, stop) * f)[:, None]
        idx = np.broadcast_to(forest.roots, (stop - start, t))
        for _ in range(forest.depth):
            v = _gather(flat, base + _gather(forest.feature, idx))
            idx = _gather(forest.children, 2 * idx + _goes_true(forest, idx, v, split))
        leaves[start:stop] = idx
    return leaves


def _goes_true(forest: _Forest, idx: np.ndarray, v: np.ndarray, split: np.ndarray) -> np.ndarray:
    s = _gather(split, idx)
    if forest.same_mode is not None:
        go = _COMPARE[forest.same_mode](v, s)
    else:
        order = (v < s) + 2 * (v == s) + 3 * (v > s)
        go = _GOES_TRUE[_gather(forest.mode, idx), order]
    if forest.members is not None:
        uniq, keys = forest.members
        values = uniq.astype(v.dtype)
        pos = np.searchsorted(values, v).clip(max=len(values) - 1)
        key = idx * len(values) + pos
        hit = (values[pos] == v) & (keys[np.searchsorted(keys, key).clip(max=len(keys) - 1)] == key)
        go = np.where(forest.mode[idx] == _MEMBER, hit, go)
    if forest.missing_true is not None:
        go = go | (np.isnan(v) & _gather(forest.missing_true, idx))
    return go


def _tree_scores(forest: _Forest, x: np.ndarray, aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """Aggregated leaf weights [N, K] (float64; 0 where no leaf weighs in) and whether any did."""
    if aggregate not in _AGGREGATES:
        raise ValueError(f"unknown aggregate_function {aggregate!r}: expected one of {list(_AGGREGATES)}")
    work = compute_dtype(x.dtype, np.float32)
    rows = _rows(x)
    if rows.dtype != work:
        rows = rows.astype(work)
    leaves = _tree_leaves(forest, rows)
    n, k = rows.shape[0], forest.n_targets
    if forest.one_weight and k == 1:
        values = _gather(forest.w_value, _gather(forest.w_start, leaves))
        reduce = {"MIN": np.min, "MAX": np.max}.get(aggregate, np.sum)
        return reduce(values, axis=1, keepdims=True), np.full((n, 1), leaves.shape[1] > 0)
    if forest.dense is not None and aggregate in ("SUM", "AVERAGE"):
        return _dense_sum(forest.dense, leaves)
    leaves = leaves.ravel()
    if forest.one_weight:
        row, pos = np.arange(leaves.size) // max(len(forest.roots), 1), _gather(forest.w_start, leaves)
    else:
        count = _gather(forest.w_count, leaves)
        row = np.repeat(np.arange(leaves.size) // max(len(forest.roots), 1), count)
        start = np.repeat(_gather(forest.w_start, leaves), count)
        pos = start + np.arange(start.size) - np.repeat(np.cumsum(count) - count, count)
    key = row * k + forest.w_target[pos]
    value = forest.w_value[pos]
    has = np.bincount(key, minlength=n * k).reshape(n, k) > 0
    if aggregate in ("SUM", "AVERAGE"):
        return np.bincount(key, weights=value, minlength=n * k).reshape(n, k), has
    scores = np.full(n * k, np.inf if aggregate == "MIN" else -np.inf)
    (np.minimum if aggregate == "MIN" else np.maximum).at(scores, key, value)
    return np.where(has, scores.reshape(n, k), 0.0), has


def _dense_sum(dense: tuple[np.ndarray, np.ndarray], leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed leaf weights [N, K] and presence from the dense per-node tables, by row blocks."""
    weights, present = dense
    n, t, k = leaves.shape[0], leaves.shape[1], weights.shape[1]
    scores, has = np.empty((n, k)), np.empty((n, k), bool)
    step = max(1, _CHUNK // max(t * k, 1))
    for start in range(0, n, step):
        block = leaves[start:start + step]
        scores[start:start + step] = np.take(weights, block, axis=0, mode="wrap").sum(axis=1)
        has[start:start + step] = np.take(present, block, axis=0, mode="wrap").any(axis=1)
    return scores, has


def _tree_regression(forest: _Forest, x: np.ndarray, aggregate: str, base, post_transform: str,
                     dtype) -> np.ndarray:
    """Scores of TreeEnsembleRegressor / TreeEnsemble: aggregate, add base values, post transform."""
    scores, has = _tree_scores(forest, x, aggregate)
    if aggregate == "AVERAGE":
        scores /= len(forest.roots)
    base = np.asarray(base if base is not None else [], dtype=np.float64).ravel()
    if len(base) == forest.n_targets:  # onnxruntime ignores base values of any other length
        scores += base
    # A target no reached leaf weighs in on is 0, base value left out (onnxruntime 1.2x).
    return _post_transform(np.where(has, scores, 0).astype(dtype), post_transform)


def _tree_classification(forest: _Forest, x: np.ndarray, base, labels: np.ndarray, class_ids,
                         class_weights, post_transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores of TreeEnsembleClassifier, with onnxruntime's binary special cases."""
    scores, has = _tree_scores(forest, x, "SUM")
    scores = scores.astype(np.float32)
    base = np.asarray(base if base is not None else [], dtype=np.float32).ravel()
    k = len(labels)
    if k > 2:
        scores[:, :len(base)] += base
        has[:, :len(base)] = True
        best = np.argmax(np.where(has, scores, -np.inf), axis=1)
        return labels[best], _post_transform(np.where(has, scores, 0), post_transform)
    if k == 1:
        scores = scores + (base[0] if len(base) == 1 else 0)
        return _positive(scores[:, 0] > 0, labels), _post_transform(scores, post_transform)
    return _binary_trees(scores, has, base, labels, len(set(class_ids or [])) == 1,
                         all(w >= 0 for w in class_weights), post_transform)


def _positive(positive: np.ndarray, labels: np.ndarray) -> np.ndarray:
    # onnxruntime answers 1 / 0 (not classlabels_int64s) outside its binary case, and the label at
    # index 1 / 0 for string labels.
    if labels.dtype == object:
        if len(labels) < 2:
            raise ValueError("a string-labelled classifier with one class cannot name the negative class")
        return labels[positive.astype(np.intp)]
    return positive.astype(np.int64)


def _binary_trees(scores, has, base, labels, binary_case: bool, all_positive: bool, post_transform: str):
    """onnxruntime's TreeAggregatorClassifier for two classes, row by row but vectorized. A class
    no reached leaf weighs in on scores 0 (onnxruntime's ScoreValue), whatever its base value."""
    s0, s1, h0, h1 = scores[:, 0], scores[:, 1], has[:, 0], has[:, 1]
    two = np.ones(len(s0), bool)     # whether a row still holds two scores
    extra = -1                       # onnxruntime's write_additional_scores
    if len(base) == 2:
        # With a class-1 score onnxruntime rebuilds both scores from class 0's (base_values[0] unused).
        s1 = np.where(h1, base[1] + s0, s1 + base[1])
        s0 = np.where(h1, -s1, s0 + base[0])
    elif len(base) <= 1:
        s0 = s0 + (base[0] if len(base) else 0)
        two = h1
        extra = -1 if len(base) else 3
    positive_score = np.where(two & h1, s1, np.where(h0, s0, 0))
    if binary_case:
        positive = positive_score > (0.5 if all_positive else 0)
        extra = np.where(positive, 0, 1) if all_positive else np.where(positive, 2, 3)
        label = labels[positive.astype(np.intp)]
    else:
        label = _positive(positive_score > 0, labels)
    v0, v1 = np.where(h0, s0, 0), np.where(h1, s1, 0)
    pair = _post_transform(np.stack([v0, v1], axis=1), post_transform)
    # One score left: onnxruntime fills in the other class, or leaves it uninitialised (0 here).
    extra = np.broadcast_to(extra, v0.shape)[:, None]
    unset = np.zeros_like(v0)
    if post_transform == "PROBIT":
        single = np.stack([_probit(v0), unset], axis=1)
    else:
        single = np.where(extra >= 0, np.where(extra >= 2, _complement(v0, post_transform, True),
                                               _complement(v0, post_transform, False)),
                          np.stack([v0, unset], axis=1))
    return label, np.where(two[:, None], pair, single).astype(np.float32)


def _forest_of(a: dict, prefix: str, n_targets: int) -> _Forest:
    """The _Forest of a TreeEnsembleClassifier (prefix "class") or TreeEnsembleRegressor ("target")."""
    return _forest_v3(a["nodes_treeids"], a["nodes_nodeids"], a["nodes_featureids"], a["nodes_modes"],
                      _pick(a, "nodes_values"), a["nodes_truenodeids"], a["nodes_falsenodeids"],
                      a["nodes_missing_value_tracks_true"], a[f"{prefix}_treeids"], a[f"{prefix}_nodeids"],
                      a[f"{prefix}_ids"], _pick(a, f"{prefix}_weights"), n_targets)


def _pick(a: dict, name: str):
    """An attribute or, from opset 3, its ``*_as_tensor`` twin (which onnxruntime prefers)."""
    tensor = a.get(name + "_as_tensor")
    return a[name] if tensor is None else tensor


def _tree_classifier(X, a: dict, ctx) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(a["classlabels_int64s"], a["classlabels_strings"])
    forest = ctx.memo("forest", lambda: _forest_of(a, "class", max(len(labels), 1)))
    weights = _pick(a, "class_weights")
    return _tree_classification(forest, X, _pick(a, "base_values"), labels, a["class_ids"],
                                weights if weights is not None else [], a["post_transform"])


@kernel("TreeEnsembleClassifier", since=1, domain=ML)
def tree_ensemble_classifier_1(X, *, base_values=None, class_ids=None, class_nodeids=None, class_treeids=None,
                               class_weights=None, classlabels_int64s=None, classlabels_strings=None,
                               nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                               nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_nodeids=None,
                               nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                               post_transform="NONE", ctx):
    """Top class and per-class scores of a tree ensemble."""
    return _tree_classifier(X, locals(), ctx)


@kernel("TreeEnsembleClassifier", since=3, domain=ML)
def tree_ensemble_classifier(X, *, base_values=None, base_values_as_tensor=None, class_ids=None,
                             class_nodeids=None, class_treeids=None, class_weights=None,
                             class_weights_as_tensor=None, classlabels_int64s=None, classlabels_strings=None,
                             nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                             nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None,
                             nodes_modes=None, nodes_nodeids=None, nodes_treeids=None, nodes_truenodeids=None,
                             nodes_values=None, nodes_values_as_tensor=None, post_transform="NONE", ctx):
    """Top class and per-class scores of a tree ensemble; opset 3 adds the *_as_tensor attributes."""
    return _tree_classifier(X, locals(), ctx)


def _tree_regressor(X, a: dict, ctx) -> np.ndarray:
    n_targets = a["n_targets"] if a["n_targets"] is not None else max(a["target_ids"] or [0]) + 1
    return _tree_regression(ctx.memo("forest", lambda: _forest_of(a, "target", n_targets)), X, a["aggregate_function"], _pick(a, "base_values"),
                            a["post_transform"], np.float32)


@kernel("TreeEnsembleRegressor", since=1, domain=ML)
def tree_ensemble_regressor_1(X, *, aggregate_function="SUM", base_values=None, n_targets=None,
                              nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                              nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_nodeids=None,
                              nodes_treeids=None, nodes_truenodeids=None, nodes_values=None, post_transform="NONE",
                              target_ids=None, target_nodeids=None, target_treeids=None, target_weights=None,
                              ctx):
    """Regression scores [N, n_targets] of a tree ensemble."""
    return _tree_regressor(X, locals(), ctx)


@kernel("TreeEnsembleRegressor", since=3, domain=ML)
def tree_ensemble_regressor(X, *, aggregate_function="SUM", base_values=None, base_values_as_tensor=None,
                            n_targets=None, nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                            nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None, nodes_modes=None,
                            nodes_nodeids=None, nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                            nodes_values_as_tensor=None, post_transform="NONE", target_ids=None,
                            target_nodeids=None, target_treeids=None, target_weights=None,
                            target_weights_as_tensor=None, ctx):
    """Regression scores of a tree ensemble; opset 3 adds the *_as_tensor attributes."""
    return _tree_regressor(X, locals(), ctx)


@kernel("TreeEnsemble", since=5, domain=ML)
def tree_ensemble(X, *, aggregate_function=1, leaf_targetids, leaf_weights, membership_values=None,
                  n_targets=None, nodes_falseleafs, nodes_falsenodeids, nodes_featureids, nodes_hitrates=None,
                  nodes_missing_value_tracks_true=None, nodes_modes, nodes_splits, nodes_trueleafs,
                  nodes_truenodeids, post_transform=0, tree_roots, ctx):
    """Scores [N, n_targets] of a tree ensemble, in X's dtype, with set-membership branches."""
    if not 0 <= aggregate_function <= 3 or not 0 <= post_transform <= 4:
        raise ValueError(f"aggregate_function must be 0-3 and post_transform 0-4, got "
                         f"{aggregate_function} and {post_transform}")

    def build():
        targets = n_targets if n_targets is not None else max(leaf_targetids or [0]) + 1
        return _forest_v5(nodes_featureids, nodes_modes, nodes_splits, nodes_truenodeids, nodes_falsenodeids,
                          nodes_trueleafs, nodes_falseleafs, nodes_missing_value_tracks_true, leaf_targetids,
                          leaf_weights, tree_roots, membership_values, targets)

    out = np.float32 if X.dtype == np.float16 else X.dtype
    scores = _tree_regression(ctx.memo("forest", build), X, _AGGREGATES[aggregate_function],
                              None, _TRANSFORM_CODES[post_transform], out)
    return scores.astype(X.dtype, copy=False)


# Linear models and support vector machines.

def _float_rows(X) -> np.ndarray:
    return _rows(X).astype(np.float32, copy=False)


@kernel("LinearClassifier", since=1, domain=ML)
def linear_classifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients, intercepts=None,
                      multi_class=0, post_transform="NONE"):
    """Top class and scores of ``X @ coefficients.T + intercepts`` (``multi_class`` is informational:
    onnxruntime ignores it too)."""
    labels = _labels(classlabels_ints, classlabels_strings)
    x = _float_rows(X)
    k = len(intercepts) if intercepts else max(len(labels), 1)
    coef = np.asarray(coefficients, dtype=np.float32)
    if coef.size != k * x.shape[1]:
        raise ValueError(f"coefficients has {coef.size} values, expected {k} classes x {x.shape[1]} features")
    scores = x @ coef.reshape(k, -1).T + np.asarray(intercepts or 0, dtype=np.float32)
    if k > 1:
        return labels[np.argmax(scores, axis=1)], _post_transform(scores, post_transform)
    s = scores[:, 0]
    if len(labels) == 2:
        label = labels[(s > 0).astype(np.intp)]
        if post_transform == "PROBIT":
            s = _post_transform(scores, "PROBIT")[:, 0]
        return label, _complement(s, post_transform, False)
    label = np.where(s > 0, "1", "0").astype(object) if labels.dtype == object else (s > 0).astype(np.int64)
    return label, _post_transform(scores, post_transform)


@kernel("LinearRegressor", since=1, domain=ML)
def linear_regressor(X, *, coefficients=None, intercepts=None, post_transform="NONE", targets=1):
    """``X @ coefficients.T + intercepts`` for ``targets`` outputs."""
    x = _float_rows(X)
    coef = np.asarray(coefficients or [], dtype=np.float32)
    if coef.size != targets * x.shape[1]:
        raise ValueError(f"coefficients has {coef.size} values, expected {targets} targets x {x.shape[1]} features")
    scores = x @ coef.reshape(targets, -1).T
    if intercepts is not None and len(intercepts) == targets:
        scores += np.asarray(intercepts, dtype=np.float32)
    return _post_transform(scores, post_transform)


def _svm_kernel(x: np.ndarray, vectors: np.ndarray, kernel_type: str, kernel_params) -> np.ndarray:
    """The SVM kernel between rows of x [N, F] and vectors [V, F], in float64."""
    gamma, coef0, degree = (list(kernel_params or []) + [0.0, 0.0, 0.0])[:3]
    x, vectors = x.astype(np.float64), vectors.astype(np.float64)
    if kernel_type == "RBF":
        sq = (x * x).sum(axis=1)[:, None] + (vectors * vectors).sum(axis=1)[None, :] - 2 * (x @ vectors.T)
        return np.exp(-gamma * np.maximum(sq, 0))
    dot = x @ vectors.T
    if kernel_type == "LINEAR":
        return dot
    if kernel_type == "POLY":
        return (gamma * dot + coef0) ** degree
    if kernel_type == "SIGMOID":
        return np.tanh(gamma * dot + coef0)
    raise ValueError(f"unknown kernel_type {kernel_type!r}: expected LINEAR, POLY, RBF or SIGMOID")


def _svm_vectors(x: np.ndarray, support_vectors, count: int) -> np.ndarray:
    sv = np.asarray(support_vectors or [], dtype=np.float32)
    if sv.size != count * x.shape[1]:
        raise ValueError(f"support_vectors has {sv.size} values, expected {count} vectors x {x.shape[1]} features")
    return sv.reshape(count, -1)


@kernel("SVMClassifier", since=1, domain=ML)
def svm_classifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients=None, kernel_params=None,
                   kernel_type="LINEAR", post_transform="NONE", prob_a=None, prob_b=None, rho=None,
                   support_vectors=None, vectors_per_class=None):
    """Top class and scores of a (one-vs-one) support vector classifier."""
    labels = _labels(classlabels_ints, classlabels_strings)
    k, x = max(len(labels), 1), _float_rows(X)
    coef = np.asarray(coefficients or [], dtype=np.float32)
    rho = np.asarray(rho or [0.0], dtype=np.float32)
    per_class = np.asarray(vectors_per_class or [], dtype=np.intp)
    if per_class.sum() == 0:  # liblinear: one coefficient row per class, rho[0] as intercept
        scores = (_svm_kernel(x, coef.reshape(k, -1), "LINEAR", None) + rho[0]).astype(np.float32)
        best = np.argmax(scores, axis=1)
        if k == 2 and not prob_a:
            top = scores[np.arange(len(best)), best]
            positive = (top > 0) if (coef < 0).any() else (top >= 0.5)
            best = np.where(positive, 1, best)
        return labels[best], _post_transform(scores, post_transform)
    kernels = _svm_kernel(x, _svm_vectors(x, support_vectors, int(per_class.sum())), kernel_type, kernel_params)
    coef = coef.reshape(k - 1, -1)
    start = np.cumsum(per_class) - per_class
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    votes = np.zeros((len(x), k), dtype=np.int64)
    decisions = np.empty((len(x), len(pairs)), dtype=np.float64)
    for p, (i, j) in enumerate(pairs):
        si, sj = slice(start[i], start[i] + per_class[i]), slice(start[j], start[j] + per_class[j])
        d = kernels[:, si] @ coef[j - 1, si] + kernels[:, sj] @ coef[i, sj] + rho[p]
        decisions[:, p] = d
        votes[:, i] += d > 0
        votes[:, j] += d <= 0
    label = labels[np.argmax(votes, axis=1)]
    if prob_a:
        return label, _post_transform(_svm_probabilities(decisions, prob_a, prob_b, pairs, k), post_transform)
    scores = decisions.astype(np.float32)
    if k > 2:
        return label, _post_transform(scores, post_transform)
    s = scores[:, 0]
    if post_transform == "PROBIT":
        return label, np.stack([_probit(s), np.zeros_like(s)], axis=1)
    return label, _complement(s, post_transform, post_transform == "NONE")


def _svm_probabilities(decisions, prob_a, prob_b, pairs, k: int) -> np.ndarray:
    """Platt-scaled pairwise probabilities coupled into class probabilities (libsvm's method 2,
    https://www.csie.ntu.edu.tw/~cjlin/papers/svmprob/svmprob.pdf), for all rows at once."""
    n = len(decisions)
    pairwise = 1 - _logistic(decisions * np.asarray(prob_a, np.float64) + np.asarray(prob_b, np.float64))
    pairwise = np.clip(pairwise, 1e-7, 1 - 1e-7)
    r = np.zeros((n, k, k))
    for p, (i, j) in enumerate(pairs):
        r[:, i, j], r[:, j, i] = pairwise[:, p], 1 - pairwise[:, p]
    q = -np.swapaxes(r, 1, 2) * r
    q[:, np.arange(k), np.arange(k)] = (r * r).sum(axis=1)
    p = np.full((n, k), 1.0 / k)
    eps = 0.005 / k
    for _ in range(max(100, k)):
        qp = np.einsum("nij,nj->ni", q, p)
        pqp = (p * qp).sum(axis=1)
        active = np.abs(qp - pqp[:, None]).max(axis=1) >= eps
        if not active.any():
            break
        for t in range(k):
            diff = np.where(active, (pqp - qp[:, t]) / q[:, t, t], 0.0)
            p[:, t] += diff
            pqp = (pqp + diff * (diff * q[:, t, t] + 2 * qp[:, t])) / (1 + diff) ** 2
            qp = (qp + diff[:, None] * q[:, t, :]) / (1 + diff)[:, None]
            p /= (1 + diff)[:, None]
    return p.astype(np.float32)


@kernel("SVMRegressor", since=1, domain=ML)
def svm_regressor(X, *, coefficients=None, kernel_params=None, kernel_type="LINEAR", n_supports=0, one_class=0,
                  post_transform="NONE", rho=None, support_vectors=None):
    """Support vector regression [N, 1]; ``one_class`` answers +1 / -1. Like onnxruntime, no post
    transform is applied."""
    x = _float_rows(X)
    coef = np.asarray(coefficients or [], dtype=np.float64)
    bias = float(np.float32((rho or [0.0])[0]))
    if n_supports > 0:
        kernels = _svm_kernel(x, _svm_vectors(x, support_vectors, n_supports), kernel_type, kernel_params)
        y = kernels @ coef + bias
    else:
        if coef.size != x.shape[1]:
            raise ValueError(f"coefficients has {coef.size} values, expected one per feature ({x.shape[1]})")
        y = x.astype(np.float64) @ coef + bias
    if one_class:
        y = np.where(y > 0, 1.0, -1.0)
    return y.astype(np.float32).reshape(-1, 1)


# Encoders, scalers and feature plumbing.

def _lookup(keys: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each element of x sits in keys (the last one when keys repeat) and whether it is
    there at all; NaN keys match NaN inputs."""
    if (keys.dtype == object) != (x.dtype == object):
        raise TypeError(f"the input is tensor({'string' if x.dtype == object else x.dtype}) but the "
                        f"keys are {'strings' if keys.dtype == object else keys.dtype}")
    if keys.size == 0:
        return np.zeros(x.shape, np.intp), np.zeros(x.shape, bool)
    reverse = keys[::-1]
    order = np.argsort(reverse, kind="stable")
    ordered = reverse[order]
    pos = np.searchsorted(ordered, x).clip(max=len(keys) - 1)
    candidate = ordered[pos]
    found = np.asarray(candidate == x, dtype=bool)
    if keys.dtype.kind == "f":
        found |= np.isnan(candidate) & np.isnan(x)
    return len(keys) - 1 - order[pos], found


def _map_values(x: np.ndarray, keys: np.ndarray, values: np.ndarray, default: Any) -> np.ndarray:
    if len(keys) != len(values):
        raise ValueError(f"keys and values must have equal lengths, got {len(keys)} and {len(values)}")
    idx, found = _lookup(keys, x)
    default = np.asarray(default, dtype=values.dtype)
    if not len(values):
        return np.full(x.shape, default, dtype=values.dtype)
    return np.where(found, values[idx], default).astype(values.dtype, copy=False)


def _strings(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


@kernel("LabelEncoder", since=1, domain=ML)
def label_encoder_1(X, *, classes_strings=None, default_int64=-1, default_string="_Unused"):
    """Strings to their index in ``classes_strings``, or indices to strings."""
    classes = _strings(classes_strings or [])
    index = np.arange(len(classes), dtype=np.int64)
    if X.dtype == object:
        return _map_values(X, classes, index, default_int64)
    return _map_values(X.astype(np.int64), index, classes, default_string)


@kernel("LabelEncoder", since=2, domain=ML)
def label_encoder_2(X, *, default_float=-0.0, default_int64=-1, default_string="_Unused", keys_floats=None,
                    keys_int64s=None, keys_strings=None, values_floats=None, values_int64s=None,
                    values_strings=None):
    """Map each element through parallel ``keys_*`` / ``values_*`` lists."""
    return _label_encode(X, locals())


@kernel("LabelEncoder", since=4, domain=ML)
def label_encoder(X, *, default_float=-0.0, default_int64=-1, default_string="_Unused", default_tensor=None,
                  keys_floats=None, keys_int64s=None, keys_strings=None, keys_tensor=None, values_floats=None,
                  values_int64s=None, values_strings=None, values_tensor=None):
    """Map each element through parallel keys and values; opset 4 adds tensor keys and values."""
    return _label_encode(X, locals())


def _label_encode(X, a: dict) -> np.ndarray:
    def typed(kind: str) -> np.ndarray:
        lists = [(a[f"{kind}_floats"], np.float32), (a[f"{kind}_int64s"], np.int64), (a[f"{kind}_strings"], object)]
        given = [np.asarray(v, dtype=t) if t is not object else _strings(v) for v, t in lists if v]
        tensor = a.get(f"{kind}_tensor")
        if tensor is not None:
            given.append(np.asarray(tensor).ravel())
        if len(given) != 1:
            raise ValueError(f"LabelEncoder needs exactly one {kind}_* attribute, got {len(given)}")
        return given[0]

    keys, values = typed("keys"), typed("values")
    if a.get("default_tensor") is not None:
        default = np.asarray(a["default_tensor"]).ravel()[0]
    elif values.dtype == object:
        default = a["default_string"]
    else:
        default = a["default_int64"] if values.dtype.kind in "iu" else a["default_float"]
    return _map_values(X, keys, values, default)


@kernel("CategoryMapper", since=1, domain=ML)
def category_mapper(X, *, cats_int64s=None, cats_strings=None, default_int64=-1, default_string="_Unused"):
    """Strings to integers or integers to strings through the parallel ``cats_*`` lists."""
    ints, strings = np.asarray(cats_int64s or [], dtype=np.int64), _strings(cats_strings or [])
    if X.dtype == object:
        return _map_values(X, strings, ints, default_int64)
    return _map_values(X.astype(np.int64, copy=False), ints, strings, default_string)


@kernel("OneHotEncoder", since=1, domain=ML)
def one_hot_encoder(X, *, cats_int64s=None, cats_strings=None, zeros=1):
    """A trailing one-hot axis over the categories; numbers are truncated to int64 first."""
    count = len(cats_int64s or cats_strings or [])
    if count == 0:
        raise ValueError("OneHotEncoder needs cats_int64s or cats_strings")
    if X.dtype == object:
        idx, found = _lookup(_strings(cats_strings or []), X)
    else:
        with np.errstate(invalid="ignore"):
            idx, found = _lookup(np.asarray(cats_int64s or [], dtype=np.int64), X.astype(np.int64))
    if not zeros and not found.all():
        raise ValueError(f"OneHotEncoder with zeros=0 met a value outside its categories: {X[~found].ravel()[0]!r}")
    out = np.zeros((found.size, count), dtype=np.float32)
    hit = np.flatnonzero(found)
    out[hit, idx.ravel()[hit]] = 1
    return out.reshape(*X.shape, count)


@kernel("ArrayFeatureExtractor", since=1, domain=ML)
def array_feature_extractor(X, Y):
    """The entries of X's last axis at indices Y; a 1-D X gives [1, len(Y)]."""
    if X.ndim == 0:
        raise ValueError("ArrayFeatureExtractor needs an input with at least one dimension")
    idx = np.asarray(Y, dtype=np.int64).ravel()
    n = X.shape[-1]
    if ((idx >= n) | (idx < -n)).any():
        raise ValueError(f"ArrayFeatureExtractor index out of range for a last axis of {n}: {idx.tolist()}")
    z = np.take(X, idx, axis=-1)
    return z.reshape(1, -1) if X.ndim == 1 else z


@kernel("Binarizer", since=1, domain=ML)
def binarizer(X, *, threshold=0.0):
    """1 where X > threshold, else 0, in X's dtype."""
    return (X > threshold).astype(X.dtype)


def _per_feature(values, x: np.ndarray, dtype) -> np.ndarray:
    """A per-feature list matched to x the way onnxruntime does: one value for all, or one per
    column (flat index modulo dims[1])."""
    values = np.asarray(values, dtype=dtype)
    stride = x.shape[0] if x.ndim == 1 else x.shape[1]
    if values.size == 1:
        return values.reshape(())
    if values.size != stride:
        raise ValueError(f"expected 1 or {stride} (one per feature) values, got {values.size}")
    return np.resize(values, x.size).reshape(x.shape)


@kernel("Scaler", since=1, domain=ML)
def scaler(X, *, offset=None, scale=None):
    """``(X - offset) * scale`` as float."""
    work = compute_dtype(X.dtype, np.float32)
    x = X.astype(work, copy=False)
    return ((x - _per_feature(offset or [0.0], X, work)) * _per_feature(scale or [1.0], X, work)).astype(np.float32)


@kernel("Imputer", since=1, domain=ML)
def imputer(X, *, imputed_value_floats=None, imputed_value_int64s=None, replaced_value_float=0.0,
            replaced_value_int64=0):
    """Replace ``replaced_value_*`` (NaN matching NaN) with one value or one per feature."""
    floats = X.dtype.kind == "f"
    values = imputed_value_floats if floats else imputed_value_int64s
    if not values:
        raise ValueError(f"Imputer on tensor({X.dtype}) needs imputed_value_{'floats' if floats else 'int64s'}")
    replaced = np.asarray(replaced_value_float if floats else replaced_value_int64, dtype=X.dtype)
    stride = X.shape[0] if X.ndim == 1 else X.shape[1]
    fill = _per_feature(values if len(values) == stride else values[:1], X, X.dtype)
    hit = (X == replaced) | (np.isnan(X) & np.isnan(replaced)) if floats else X == replaced
    return np.where(hit, fill, X).astype(X.dtype, copy=False)


@kernel("Normalizer", since=1, domain=ML)
def normalizer(X, *, norm="MAX"):
    """Divide by the max, L1 or L2 norm along axis 1 (axis 0 for 1-D), as float."""
    if X.ndim == 0:
        raise ValueError("Normalizer needs an input with at least one dimension")
    x = X.astype(np.float32)
    axis = 0 if X.ndim == 1 else 1
    if norm == "MAX":
        total = x.max(axis=axis, keepdims=True) if x.size else x
        out = x / np.where(total == 0, 1, total)
    elif norm == "L1":
        total = np.abs(x).sum(axis=axis, keepdims=True)
        out = x / np.where(total == 0, 1, total)
    elif norm == "L2":
        total = (x * x).sum(axis=axis, keepdims=True)
        out = np.where(total == 0, x, x / np.sqrt(np.where(total == 0, 1, total)))
    else:
        raise ValueError(f"unknown norm {norm!r}: expected MAX, L1 or L2")
    return out.astype(np.float32, copy=False)


@kernel("FeatureVectorizer", since=1, domain=ML)
def feature_vectorizer(*X, inputdimensions=None):
    """Concatenate inputs as float columns, each cut or zero-padded to its ``inputdimensions``."""
    dims = list(inputdimensions or [])
    if len(dims) != len(X):
        raise ValueError(f"FeatureVectorizer has {len(X)} inputs but {len(dims)} inputdimensions")
    rows = [_rows(x) for x in X]
    out = np.zeros((rows[0].shape[0] if rows else 0, sum(dims)), dtype=np.float32)
    offset = 0
    for r, d in zip(rows, dims):
        w = min(d, r.shape[1])
        out[:, offset:offset + w] = r[:, :w]
        offset += d
    return out


@kernel("ZipMap", since=1, domain=ML)
def zip_map(X, *, classlabels_int64s=None, classlabels_strings=None):
    """One dict per row, from the class labels to that row's scores (onnxruntime's list of dicts)."""
    labels = list(classlabels_strings) if classlabels_strings else list(classlabels_int64s or [])
    rows = _rows(X)
    if rows.shape[1] != len(labels):
        raise ValueError(f"ZipMap has {len(labels)} class labels but the input has {rows.shape[1]} columns")
    return [dict(zip(labels, row)) for row in rows.tolist()]


def _map_value_dtype(ctx, values: list) -> np.dtype:
    t = ctx.input_types[0] if ctx.input_types else None
    if isinstance(t, ir.SequenceType):
        t = t.elem
    if isinstance(t, ir.MapType) and isinstance(t.value, ir.TensorType):
        return t.value.dtype
    if any(isinstance(v, str) for v in values):
        return np.dtype(object)
    return np.dtype(np.int64) if all(isinstance(v, (int, np.integer)) for v in values) else np.dtype(np.float32)


@kernel("DictVectorizer", since=1, domain=ML)
def dict_vectorizer(X, *, int64_vocabulary=None, string_vocabulary=None, ctx):
    """The map's values at the vocabulary's keys (zero where absent): [1, V], or [N, V] for a list."""
    vocabulary = list(string_vocabulary or int64_vocabulary or [])
    maps = X if isinstance(X, list) else [X]
    if not all(isinstance(m, dict) for m in maps):
        raise TypeError(f"DictVectorizer expects a map (dict), got {type(X).__name__}")
    dtype = _map_value_dtype(ctx, [v for m in maps for v in m.values()])
    zero = "" if dtype == object else 0
    return np.array([[m.get(k, zero) for k in vocabulary] for m in maps], dtype=dtype).reshape(len(maps), -1)


@kernel("CastMap", since=1, domain=ML)
def cast_map(X, *, cast_to="TO_FLOAT", map_form="DENSE", max_map=1):
    """An int64-keyed map as a [1, n] tensor ordered by key, dense or padded to ``max_map``."""
    if not isinstance(X, dict):
        raise TypeError(f"CastMap expects a map (dict), got {type(X).__name__}")
    keys = sorted(X)
    if map_form == "DENSE":
        values, pad = [X[k] for k in keys], None
    elif map_form == "SPARSE":
        if keys and keys[0] < 0:
            raise ValueError(f"CastMap SPARSE needs non-negative keys, got {keys[0]}")
        pad = {"TO_FLOAT": 0.0, "TO_INT64": 0, "TO_STRING": "0.f"}.get(cast_to)  # onnxruntime's pads
        values = [X.get(i) for i in range(max_map)]
    else:
        raise ValueError(f"unknown map_form {map_form!r}: expected DENSE or SPARSE")
    if cast_to == "TO_FLOAT":
        out = [pad if v is None else float(v) for v in values]
        return np.array(out, dtype=np.float32).reshape(1, -1)
    if cast_to == "TO_INT64":
        out = [pad if v is None else int(v) if isinstance(v, str) else int(np.float32(v)) for v in values]
        return np.array(out, dtype=np.int64).reshape(1, -1)
    if cast_to == "TO_STRING":
        out = [pad if v is None else v if isinstance(v, str) else f"{float(np.float32(v)):f}" for v in values]
        return np.array(out, dtype=object).reshape(1, -1)
    raise ValueError(f"unknown cast_to {cast_to!r}: expected TO_FLOAT, TO_STRING or TO_INT64")
