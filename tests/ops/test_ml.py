"""ai.onnx.ml kernels against onnxruntime (whose binary-classifier and single-column quirks the
kernels follow) and onnx.reference, on hand-built one-node models, every registered version."""
from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.ops._oracle import LEVELS, assert_close, check, node_model, run_onnxpy, run_onnxruntime, run_reference

ML = "ai.onnx.ml"
MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
SPLITS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)


FLOAT_OUTPUT = {"TreeEnsembleRegressor", "LinearRegressor", "SVMRegressor", "Normalizer", "Scaler",
                "FeatureVectorizer", "OneHotEncoder"}
SAME_TYPE_OUTPUT = {"Imputer", "Binarizer", "ArrayFeatureExtractor"}


def ml_model(op, inputs, outputs, *, opset, output_types=None, **attrs):
    """A one-node ai.onnx.ml model with typed outputs (onnxruntime needs them): float for
    regressors and encoders, labels and float scores for classifiers, else onnx shape inference."""
    types = dict.fromkeys(outputs, TensorProto.FLOAT) if op in FLOAT_OUTPUT else {}
    if op in SAME_TYPE_OUTPUT:
        types = {outputs[0]: helper.np_dtype_to_tensor_dtype(next(iter(inputs.values())).dtype)}
    if op.endswith("Classifier"):
        strings = any(k.startswith("classlabels_strings") for k in attrs)
        types = {"Y": TensorProto.STRING if strings else TensorProto.INT64, "Z": TensorProto.FLOAT}
    types.update(output_types or {})
    attrs = {k: v for k, v in attrs.items() if not (isinstance(v, list) and not v)}  # empty: omitted
    model = node_model(op, inputs, outputs, opset=opset, domain=ML, output_types=types, **attrs)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.output}
    for out in model.graph.output:
        if out.type.tensor_type.elem_type == 0:
            out.type.tensor_type.elem_type = inferred[out.name].type.tensor_type.elem_type
    return model


def check_ort(model, feeds, rtol=1e-5, atol=1e-6):
    return check(model, feeds, oracle="onnxruntime", rtol=rtol, atol=atol)


def features(rng, n=64, f=4, nan=True, dtype=np.float32):
    x = rng.choice(np.concatenate([SPLITS, rng.normal(size=5).astype(np.float32)]), size=(n, f)).astype(dtype)
    if nan:
        x[rng.random(x.shape) < 0.1] = np.nan
    return x


def random_trees(rng, n_trees, depth, n_features, modes, n_targets, weights_per_leaf=1, missing=True):
    """A random forest in the (tree id, node id) encoding; node ids shuffled within each tree."""
    nodes = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids",
                             "falsenodeids", "missing")}
    leaves = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    for t in range(n_trees):
        ids = iter(rng.permutation(2 ** (depth + 1)))

        def grow(level):
            me = int(next(ids))
            leaf = level == depth or (level > 0 and rng.random() < 0.2)
            row = {"treeids": t, "nodeids": me, "featureids": int(rng.integers(n_features)),
                   "modes": "LEAF" if leaf else str(rng.choice(modes)), "values": float(rng.choice(SPLITS)),
                   "missing": int(missing and rng.random() < 0.5)}
            at = len(nodes["treeids"])
            for k, v in row.items():
                nodes[k].append(v)
            nodes["truenodeids"].append(0)
            nodes["falsenodeids"].append(0)
            if leaf:
                for target in rng.choice(n_targets, size=min(weights_per_leaf, n_targets), replace=False):
                    for k, v in zip(leaves, (t, me, int(target), float(np.round(rng.normal(), 3)))):
                        leaves[k].append(v)
            else:
                nodes["truenodeids"][at] = grow(level + 1)
                nodes["falsenodeids"][at] = grow(level + 1)
            return me

        grow(0)
    return nodes, leaves


def tree_attrs(nodes, leaves, prefix):
    attrs = {f"nodes_{k}": v for k, v in nodes.items() if k != "missing"}
    attrs["nodes_missing_value_tracks_true"] = nodes["missing"]
    attrs.update({f"{prefix}_{k}": v for k, v in leaves.items()})
    return attrs


@pytest.mark.parametrize("opset", [1, 3])
@pytest.mark.parametrize("aggregate,post", [("SUM", "NONE"), ("AVERAGE", "LOGISTIC"), ("MIN", "SOFTMAX"),
                                            ("MAX", "SOFTMAX_ZERO"), ("SUM", "PROBIT"), ("AVERAGE", "NONE"),
                                            ("MIN", "NONE"), ("MAX", "LOGISTIC")])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_tree_regressor_matches_onnxruntime(opset, aggregate, post, n_targets):
    rng = np.random.default_rng(n_targets * 7 + len(post) + len(aggregate) + opset)
    nodes, leaves = random_trees(rng, 5, 4, 4, MODES, n_targets, weights_per_leaf=2)
    if post == "PROBIT":  # keep scores inside (0, 1)
        leaves["weights"] = [abs(w) / 20 for w in leaves["weights"]]
    model = ml_model("TreeEnsembleRegressor", {"X": features(rng)}, ["Y"], opset=opset, n_targets=n_targets,
                     aggregate_function=aggregate, post_transform=post,
                     base_values=list(rng.normal(size=n_targets) / 10), **tree_attrs(nodes, leaves, "target"))
    check_ort(model, {"X": features(rng)}, rtol=1e-4, atol=1e-5)


def test_tree_regressor_tensor_attributes_and_double_input():
    rng = np.random.default_rng(3)
    nodes, leaves = random_trees(rng, 4, 3, 3, ["BRANCH_LEQ"], 2)
    attrs = tree_attrs(nodes, leaves, "target")
    values, weights = attrs.pop("nodes_values"), attrs.pop("target_weights")
    model = ml_model("TreeEnsembleRegressor", {"X": features(rng, f=3, dtype=np.float64)}, ["Y"], opset=3,
                     n_targets=2, nodes_values_as_tensor=numpy_helper.from_array(np.array(values, np.float64)),
                     target_weights_as_tensor=numpy_helper.from_array(np.array(weights, np.float64)),
                     base_values_as_tensor=numpy_helper.from_array(np.array([0.25, -1.5])), **attrs)
    x = features(rng, f=3, dtype=np.float64)
    y = check_ort(model, {"X": x})
    assert y[0].dtype == np.float32


@pytest.mark.parametrize("ids", [[1], [0], [0, 1]])
@pytest.mark.parametrize("positive", [True, False])
@pytest.mark.parametrize("base", [[], [0.3], [0.1, -0.2]])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "PROBIT"])
def test_tree_classifier_binary_cases_match_onnxruntime(ids, positive, base, post):
    rng = np.random.default_rng(len(ids) * 100 + len(base) * 10 + len(post) + positive)
    nodes, leaves = random_trees(rng, 3, 3, 4, MODES, 2, missing=False)
    leaves["ids"] = [int(rng.choice(ids)) for _ in leaves["ids"]]
    leaves["weights"] = [abs(w) / 3 if positive else w for w in leaves["weights"]]
    if post == "PROBIT":
        leaves["weights"] = [abs(w) / 10 for w in leaves["weights"]]
        base = [abs(b) for b in base]
    model = ml_model("TreeEnsembleClassifier", {"X": features(rng, nan=False)}, ["Y", "Z"], opset=3,
                     classlabels_int64s=[0, 1], base_values=base, post_transform=post,
                     **tree_attrs(nodes, leaves, "class"))
    feeds = {"X": features(rng, nan=False)}
    one_score_left = len(base) < 2 and ids != [1]
    if not (one_score_left and (post == "PROBIT" or (len(base) == 1 and len(ids) == 2))):
        check_ort(model, feeds, rtol=1e-4, atol=1e-5)
        return
    # onnxruntime leaves the second score of rows without a class-1 leaf uninitialised: compare the
    # labels and the first score, which it defines
    want_y, want_z = run_onnxruntime(model, feeds)
    for level in LEVELS:
        y, z = run_onnxpy(model, feeds, level)
        assert_close([y, z[:, 0]], [want_y, want_z[:, 0]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [1, 3])
@pytest.mark.parametrize("labels", [{"classlabels_int64s": [3, 5, 9]}, {"classlabels_strings": ["a", "b", "c", "d"]}])
@pytest.mark.parametrize("post", ["NONE", "SOFTMAX", "SOFTMAX_ZERO", "LOGISTIC"])
def test_tree_classifier_multiclass_matches_onnxruntime(opset, labels, post):
    rng = np.random.default_rng(opset + len(post))
    k = len(next(iter(labels.values())))
    nodes, leaves = random_trees(rng, 6, 4, 4, MODES, k, weights_per_leaf=2)
    model = ml_model("TreeEnsembleClassifier", {"X": features(rng)}, ["Y", "Z"], opset=opset, post_transform=post,
                     base_values=list(rng.normal(size=k) / 10), **labels, **tree_attrs(nodes, leaves, "class"))
    check_ort(model, {"X": features(rng)}, rtol=1e-4, atol=1e-5)


def test_tree_classifier_string_labels_binary():
    rng = np.random.default_rng(11)
    nodes, leaves = random_trees(rng, 4, 3, 4, ["BRANCH_LT"], 2)
    leaves["ids"] = [1] * len(leaves["ids"])
    leaves["weights"] = [abs(w) / 4 for w in leaves["weights"]]
    model = ml_model("TreeEnsembleClassifier", {"X": features(rng)}, ["Y", "Z"], opset=3,
                     classlabels_strings=["no", "yes"], **tree_attrs(nodes, leaves, "class"))
    y = check_ort(model, {"X": features(rng)})
    assert y[0].dtype == object


def v5_attrs(rng, n_trees=3, depth=4, n_features=3, n_targets=2, member=True, dtype=np.float32):
    """A random TreeEnsemble (opset 5) encoding with set-membership nodes."""
    a = {k: [] for k in ("nodes_featureids", "nodes_modes", "nodes_splits", "nodes_truenodeids",
                         "nodes_falsenodeids", "nodes_trueleafs", "nodes_falseleafs",
                         "nodes_missing_value_tracks_true", "leaf_targetids", "leaf_weights", "tree_roots")}
    members = []

    def grow(level):  # returns (is_leaf, index)
        if level == depth or (level > 0 and rng.random() < 0.2):
            a["leaf_targetids"].append(int(rng.integers(n_targets)))
            a["leaf_weights"].append(float(np.round(rng.normal(), 3)))
            return 1, len(a["leaf_weights"]) - 1
        me = len(a["nodes_modes"])
        mode = int(rng.integers(7 if member else 6))
        for k, v in (("nodes_featureids", int(rng.integers(n_features))), ("nodes_modes", mode),
                     ("nodes_splits", float(rng.choice(SPLITS))),
                     ("nodes_missing_value_tracks_true", int(rng.random() < 0.5))):
            a[k].append(v)
        if mode == 6:
            members.extend(list(rng.choice([-1.0, 1.0, 2.0], size=2, replace=False)) + [np.nan])
        for k in ("nodes_truenodeids", "nodes_falsenodeids", "nodes_trueleafs", "nodes_falseleafs"):
            a[k].append(0)
        for side in ("true", "false"):
            leaf, idx = grow(level + 1)
            a[f"nodes_{side}leafs"][me], a[f"nodes_{side}nodeids"][me] = leaf, idx
        return 0, me

    for _ in range(n_trees):
        a["tree_roots"].append(grow(0)[1])
    t = lambda v, d=dtype: numpy_helper.from_array(np.array(v, dtype=d))  # noqa: E731
    a["nodes_modes"], a["nodes_splits"], a["leaf_weights"] = (t(a["nodes_modes"], np.uint8), t(a["nodes_splits"]),
                                                              t(a["leaf_weights"]))
    if members:
        a["membership_values"] = t(members)
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aggregate,post", [(1, 0), (0, 2), (2, 1), (3, 3), (1, 4)])
def test_tree_ensemble_5_matches_reference_and_onnxruntime(dtype, aggregate, post):
    rng = np.random.default_rng(aggregate * 5 + post)
    attrs = v5_attrs(rng, dtype=dtype)
    x = features(rng, n=40, f=3, dtype=dtype)
    # onnxruntime tests membership on the value truncated to an integer: keep inputs integral there
    x = np.where(np.isin(x, SPLITS) | np.isnan(x), x, np.round(x)).astype(dtype)
    model = ml_model("TreeEnsemble", {"X": x}, ["Y"], opset=5, n_targets=2, aggregate_function=aggregate,
                     post_transform=post, **attrs)
    if post == 0:  # onnx.reference ignores post_transform
        check(model, {"X": x}, oracle="reference")
    # onnxruntime reads post_transform 1 as LOGISTIC and 2 as SOFTMAX, the spec's codes swapped
    # (its enum order); give it the swapped code so both compute the spec's transform.
    ort_model = ml_model("TreeEnsemble", {"X": x}, ["Y"], opset=5, n_targets=2, aggregate_function=aggregate,
                         post_transform={1: 2, 2: 1}.get(post, post), **attrs)
    if post != 4:  # onnxruntime's PROBIT goes through its float path; checked by the regressor tests
        assert_close(run_onnxpy(model, {"X": x}), run_onnxruntime(ort_model, {"X": x}), rtol=1e-4, atol=1e-5)


def test_tree_ensemble_single_leaf_tree():
    x = np.array([[0.0], [1.0]], np.float32)
    model = ml_model("TreeEnsemble", {"X": x}, ["Y"], opset=5, n_targets=1, tree_roots=[0, 1],
                     nodes_featureids=[0, 0], nodes_modes=numpy_helper.from_array(np.array([0, 0], np.uint8)),
                     nodes_splits=numpy_helper.from_array(np.array([0.5, 0.0], np.float32)),
                     nodes_truenodeids=[0, 1], nodes_falsenodeids=[2, 1], nodes_trueleafs=[1, 1],
                     nodes_falseleafs=[1, 1], leaf_targetids=[0, 0, 0],
                     leaf_weights=numpy_helper.from_array(np.array([1.0, 10.0, 100.0], np.float32)))
    check(model, {"X": x}, oracle="reference", expected=[np.array([[11.0], [110.0]], np.float32)])


def test_tree_ensemble_is_vectorized_over_rows():
    rng = np.random.default_rng(5)
    nodes, leaves = random_trees(rng, 30, 6, 8, ["BRANCH_LEQ"], 1, missing=False)
    x = features(rng, n=20000, f=8, nan=False)
    model = ml_model("TreeEnsembleRegressor", {"X": x}, ["Y"], opset=3, n_targets=1,
                     **tree_attrs(nodes, leaves, "target"))
    start = time.perf_counter()
    ours = run_onnxpy(model, {"X": x})
    assert time.perf_counter() - start < 5.0  # a loop over rows takes minutes; generous for busy machines
    assert_close(ours, run_onnxruntime(model, {"X": x}), rtol=1e-5, atol=1e-5)


def test_tree_ensemble_rejects_bad_trees():
    x = np.zeros((1, 1), np.float32)
    model = ml_model("TreeEnsembleRegressor", {"X": x}, ["Y"], opset=3, n_targets=1, nodes_treeids=[0, 0],
                     nodes_nodeids=[0, 1], nodes_featureids=[0, 0], nodes_modes=["BRANCH_LEQ", "LEAF"],
                     nodes_values=[0.0, 0.0], nodes_truenodeids=[1, 0], nodes_falsenodeids=[7, 0],
                     target_treeids=[0], target_nodeids=[1], target_ids=[0], target_weights=[1.0])
    with pytest.raises(Exception, match="does not exist"):
        run_onnxpy(model, {"X": x})


@pytest.mark.parametrize("labels", [{"classlabels_ints": [0, 1, 2]}, {"classlabels_strings": ["x", "y", "z"]}])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_linear_classifier_multiclass(labels, post):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    model = ml_model("LinearClassifier", {"X": x}, ["Y", "Z"], opset=1, post_transform=post,
                     coefficients=list(rng.normal(size=12)), intercepts=[0.1, -0.2, 0.3], **labels)
    check_ort(model, {"X": x})


@pytest.mark.parametrize("labels", [{"classlabels_ints": [4, 7]}, {"classlabels_strings": ["n", "p"]}])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_linear_classifier_binary(labels, post, dtype):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(10, 3)) * 3).astype(dtype)
    model = ml_model("LinearClassifier", {"X": x}, ["Y", "Z"], opset=1, post_transform=post,
                     coefficients=[0.5, -0.25, 0.125], intercepts=[0.05], **labels)
    check_ort(model, {"X": x})


@pytest.mark.parametrize("targets,post", [(1, "NONE"), (1, "LOGISTIC"), (2, "NONE"), (2, "SOFTMAX"),
                                          (3, "LOGISTIC")])
def test_linear_regressor(targets, post):
    rng = np.random.default_rng(targets)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    model = ml_model("LinearRegressor", {"X": x}, ["Y"], opset=1, targets=targets, post_transform=post,
                     coefficients=list(rng.normal(size=4 * targets)), intercepts=list(rng.normal(size=targets)))
    check_ort(model, {"X": x})


def svc_attrs(rng, k, f, kernel):
    per_class = [int(v) for v in rng.integers(1, 4, size=k)]
    v = sum(per_class)
    return dict(kernel_type=kernel, kernel_params=[0.3, 0.5, 2.0], vectors_per_class=per_class,
                support_vectors=list(rng.normal(size=v * f)), coefficients=list(rng.normal(size=(k - 1) * v)),
                rho=list(rng.normal(size=k * (k - 1) // 2)))


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("proba", [False, True])
def test_svm_classifier_svc(kernel, k, proba):
    rng = np.random.default_rng(k * 10 + len(kernel))
    x = rng.normal(size=(12, 3)).astype(np.float32)
    attrs = svc_attrs(rng, k, 3, kernel)
    if proba:
        attrs.update(prob_a=list(-rng.random(k * (k - 1) // 2) - 0.5), prob_b=list(rng.normal(size=k * (k - 1) // 2) / 5))
    model = ml_model("SVMClassifier", {"X": x}, ["Y", "Z"], opset=1, classlabels_ints=list(range(10, 10 + k)), **attrs)
    check_ort(model, {"X": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
def test_svm_classifier_binary_scores_and_string_labels(post):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    model = ml_model("SVMClassifier", {"X": x}, ["Y", "Z"], opset=1, classlabels_strings=["a", "b"],
                     post_transform=post, **svc_attrs(rng, 2, 3, "RBF"))
    check_ort(model, {"X": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k,coefficients", [(3, None), (2, "positive"), (2, "mixed")])
def test_svm_classifier_linear_mode(k, coefficients):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    coef = rng.normal(size=k * 3) / 3
    if coefficients == "positive":
        coef = np.abs(coef)
    model = ml_model("SVMClassifier", {"X": x}, ["Y", "Z"], opset=1, classlabels_ints=list(range(k)),
                     coefficients=list(coef), rho=[0.2], kernel_type="LINEAR", kernel_params=[0.0, 0.0, 0.0])
    check_ort(model, {"X": x})


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("one_class", [0, 1])
def test_svm_regressor(kernel, one_class):
    rng = np.random.default_rng(len(kernel))
    x = rng.normal(size=(9, 3)).astype(np.float32)
    model = ml_model("SVMRegressor", {"X": x}, ["Y"], opset=1, kernel_type=kernel, kernel_params=[0.2, 0.1, 3.0],
                     n_supports=4, support_vectors=list(rng.normal(size=12)), coefficients=list(rng.normal(size=4)),
                     rho=[0.3], one_class=one_class)
    check_ort(model, {"X": x}, rtol=1e-4, atol=1e-5)


def test_svm_regressor_linear_mode():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = ml_model("SVMRegressor", {"X": x}, ["Y"], opset=1, coefficients=[0.5, -1.0, 0.25], rho=[2.0],
                     kernel_params=[0.0, 0.0, 0.0])
    check_ort(model, {"X": x})


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("x", [np.array([[1, -2, 3], [0, 0, 0], [-4, 5, -6]], np.float32),
                               np.array([3, -4, 0], np.float64), np.array([[1, 2], [3, -4]], np.int64)])
def test_normalizer(norm, x):
    check_ort(ml_model("Normalizer", {"X": x}, ["Y"], opset=1, norm=norm), {"X": x})


@pytest.mark.parametrize("x", [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6).reshape(2, 3),
                               np.arange(3, dtype=np.float64)])
@pytest.mark.parametrize("offset,scale", [([1.0], [2.0]), ([0.5, 1.0, -1.0], [1.0, 2.0, 3.0])])
def test_scaler(x, offset, scale):
    check_ort(ml_model("Scaler", {"X": x}, ["Y"], opset=1, offset=offset, scale=scale), {"X": x})


@pytest.mark.parametrize("x,cats", [(np.array([["a", "b"], ["z", "a"]], dtype=object), {"cats_strings": ["a", "b", "c"]}),
                                    (np.array([1, 5, 3, 1], np.int64), {"cats_int64s": [1, 3, 4]}),
                                    (np.array([[1.7, 3.2]], np.float64), {"cats_int64s": [1, 3]})])
def test_one_hot_encoder(x, cats):
    check_ort(ml_model("OneHotEncoder", {"X": x}, ["Y"], opset=1, **cats), {"X": x})


def test_one_hot_encoder_zeros_0_rejects_unknown():
    x = np.array(["a", "q"], dtype=object)
    with pytest.raises(Exception, match="outside its categories"):
        run_onnxpy(ml_model("OneHotEncoder", {"X": x}, ["Y"], opset=1, cats_strings=["a"], zeros=0), {"X": x})


def test_label_encoder_1():
    s = np.array(["b", "zz", "a"], dtype=object)
    check_ort(ml_model("LabelEncoder", {"X": s}, ["Y"], opset=1, classes_strings=["a", "b"], default_int64=-7),
              {"X": s})
    i = np.array([1, 0, 5], np.int64)
    check_ort(ml_model("LabelEncoder", {"X": i}, ["Y"], opset=1, classes_strings=["a", "b"], default_string="?",
                       output_types={"Y": TensorProto.STRING}), {"X": i})


@pytest.mark.parametrize("opset", [2, 4])
@pytest.mark.parametrize("x,keys,values", [
    (np.array(["a", "c", "q"], dtype=object), {"keys_strings": ["a", "c"]}, {"values_floats": [0.5, 1.5]}),
    (np.array([1, 2, 9], np.int64), {"keys_int64s": [1, 2]}, {"values_strings": ["one", "two"]}),
    (np.array([1.5, 2.5, 7.0], np.float32), {"keys_floats": [1.5, 7.0]}, {"values_int64s": [10, 20]}),
])
def test_label_encoder_2_and_4(opset, x, keys, values):
    check_ort(ml_model("LabelEncoder", {"X": x}, ["Y"], opset=opset, **keys, **values), {"X": x})


@pytest.mark.parametrize("opset", [2, 4])
def test_label_encoder_nan_key_matches_nan(opset):
    # https://onnx.ai/onnx/operators/onnx_aionnxml_LabelEncoder.html: "Float keys with value 'NaN'
    # match any input 'NaN' value regardless of bit value" (onnxruntime's opset-2 kernel does not).
    x = np.array([1.5, np.nan, 7.0], np.float32)
    model = ml_model("LabelEncoder", {"X": x}, ["Y"], opset=opset, keys_floats=[1.5, np.nan], values_int64s=[10, 20])
    check(model, {"X": x}, expected=[np.array([10, 20, -1], np.int64)])


def test_label_encoder_repeated_key_takes_the_last_value():
    # https://onnx.ai/onnx/operators/onnx_aionnxml_LabelEncoder.html: "the last key takes precedence"
    # (onnxruntime keeps the first).
    x = np.array([3, 3, 4], np.int64)
    model = ml_model("LabelEncoder", {"X": x}, ["Y"], opset=4, keys_int64s=[3, 4, 3], values_int64s=[1, 2, 5])
    check(model, {"X": x}, expected=[np.array([5, 5, 2], np.int64)])


def test_label_encoder_4_tensor_keys_and_default():
    x = np.array([2.5, 1.0, -3.0], np.float64)
    model = ml_model("LabelEncoder", {"X": x}, ["Y"], opset=4,
                     keys_tensor=numpy_helper.from_array(np.array([1.0, 2.5])),
                     values_tensor=numpy_helper.from_array(np.array([10.0, 20.0])),
                     default_tensor=numpy_helper.from_array(np.array([-1.0])))
    check_ort(model, {"X": x})


@pytest.mark.parametrize("x", [np.array(["a", "x", "c"], dtype=object), np.array([[3, 1], [2, 9]], np.int64)])
def test_category_mapper(x):
    model = ml_model("CategoryMapper", {"X": x}, ["Y"], opset=1, cats_strings=["a", "b", "c"], cats_int64s=[1, 2, 3],
                     default_int64=-5, default_string="none",
                     output_types={"Y": TensorProto.INT64 if x.dtype == object else TensorProto.STRING})
    check_ort(model, {"X": x})


@pytest.mark.parametrize("x", [np.arange(5, dtype=np.float32), np.arange(24, dtype=np.int64).reshape(2, 3, 4),
                               np.array([["a", "b", "c"]], dtype=object)])
def test_array_feature_extractor(x):
    model = ml_model("ArrayFeatureExtractor", {"X": x, "Y": np.array([2, 0, 2], np.int64)}, ["Z"], opset=1)
    check_ort(model, {"X": x, "Y": np.array([2, 0, 2], np.int64)})


def test_array_feature_extractor_rejects_out_of_range():
    x, y = np.zeros((2, 3), np.float32), np.array([3], np.int64)
    with pytest.raises(Exception, match="out of range"):
        run_onnxpy(ml_model("ArrayFeatureExtractor", {"X": x, "Y": y}, ["Z"], opset=1), {"X": x, "Y": y})


@pytest.mark.parametrize("x", [np.array([[-1.0, 0.5, 2.0]], np.float32), np.array([-2.0, 0.0, 3.5], np.float64)])
def test_binarizer(x):
    check(ml_model("Binarizer", {"X": x}, ["Y"], opset=1, threshold=0.5), {"X": x})


@pytest.mark.parametrize("x,attrs", [
    (np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, 6.0]], np.float32),
     {"imputed_value_floats": [10.0, 20.0, 30.0], "replaced_value_float": np.nan}),
    (np.array([[1.0, 0.0], [0.0, 5.0]], np.float32), {"imputed_value_floats": [-1.0]}),
    (np.array([[1, -1], [-1, 5]], np.int64), {"imputed_value_int64s": [7, 8], "replaced_value_int64": -1}),
])
def test_imputer(x, attrs):
    check_ort(ml_model("Imputer", {"X": x}, ["Y"], opset=1, **attrs), {"X": x})


def test_feature_vectorizer():
    feeds = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([[7], [8]], np.float32),
             "c": np.arange(8, dtype=np.float32).reshape(2, 4)}
    model = ml_model("FeatureVectorizer", feeds, ["Y"], opset=1, inputdimensions=[3, 2, 2])
    check_ort(model, feeds)


def map_model(op, in_type, out_type, **attrs):
    node = helper.make_node(op, ["X"], ["Y"], domain=ML, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_value_info("X", in_type)],
                              [helper.make_value_info("Y", out_type)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(ML, 1)])
    model.ir_version = 8
    return model


def run_both(model, feeds):
    ours = [run_onnxpy(model, feeds, level) for level in LEVELS]
    return ours, run_onnxruntime(model, feeds)


@pytest.mark.parametrize("labels", [{"classlabels_int64s": [5, 6]}, {"classlabels_strings": ["a", "b"]}])
def test_zip_map_returns_list_of_dicts(labels):
    key = TensorProto.INT64 if "classlabels_int64s" in labels else TensorProto.STRING
    out = helper.make_sequence_type_proto(helper.make_map_type_proto(key, helper.make_tensor_type_proto(1, None)))
    model = map_model("ZipMap", helper.make_tensor_type_proto(TensorProto.FLOAT, [None, 2]), out, **labels)
    ours, expected = run_both(model, {"X": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)})
    for result in ours:
        assert result == expected


@pytest.mark.parametrize("key,value,vocab,feed", [
    (TensorProto.STRING, TensorProto.FLOAT, {"string_vocabulary": ["a", "b", "c"]}, {"c": 2.5, "a": 1.0}),
    (TensorProto.INT64, TensorProto.FLOAT, {"int64_vocabulary": [0, 2, 4]}, {4: 1.5, 0: -2.0}),
])
def test_dict_vectorizer(key, value, vocab, feed):
    model = map_model("DictVectorizer", helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, None)),
                      helper.make_tensor_type_proto(value, None), **vocab)
    ours, expected = run_both(model, {"X": feed})
    for result in ours:
        assert_close(result, expected)


def test_dict_vectorizer_of_strings_and_lists():
    # onnxruntime's Python binding cannot feed map(int64, string); the spec's rule: absent keys give
    # the zero value, here "" for strings.
    model = map_model("DictVectorizer", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(8, None)),
                      helper.make_tensor_type_proto(TensorProto.STRING, None), int64_vocabulary=[3, 1])
    for level in LEVELS:
        assert_close(run_onnxpy(model, {"X": {1: "x"}}, level), [np.array([["", "x"]], dtype=object)])


@pytest.mark.parametrize("cast_to,out", [("TO_FLOAT", TensorProto.FLOAT), ("TO_INT64", TensorProto.INT64),
                                         ("TO_STRING", TensorProto.STRING)])
@pytest.mark.parametrize("form", [{"map_form": "DENSE"}, {"map_form": "SPARSE", "max_map": 5}])
def test_cast_map(cast_to, out, form):
    value, feed = TensorProto.FLOAT, {3: 1.5, 0: -2.25}
    model = map_model("CastMap", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(value, None)),
                      helper.make_tensor_type_proto(out, None), cast_to=cast_to, **form)
    ours, expected = run_both(model, {"X": feed})
    for result in ours:
        assert_close(result, expected)


@pytest.mark.parametrize("cast_to,expected", [("TO_FLOAT", np.array([[1.0, 0.0, 7.5]], np.float32)),
                                              ("TO_INT64", np.array([[1, 0, 7]], np.int64)),
                                              ("TO_STRING", np.array([["1", "0.f", "7.5"]], object))])
def test_cast_map_of_strings(cast_to, expected):
    # onnxruntime's Python binding cannot feed map(int64, string); values from its cast_map.cc rules
    feed = {0: "1", 2: "7" if cast_to == "TO_INT64" else "7.5"}
    model = map_model("CastMap", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(8, None)),
                      helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(expected.dtype), None),
                      cast_to=cast_to, map_form="SPARSE", max_map=3)
    for level in LEVELS:
        assert_close(run_onnxpy(model, {"X": feed}, level), [expected])


def test_ml_registry_versions_cover_every_schema():
    from onnxpy.registry import REGISTRY

    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain != ML:
            continue
        spec = REGISTRY.resolve(ML, schema.name, schema.since_version)
        assert spec is not None, (schema.name, schema.since_version)
        assert spec.attributes == set(schema.attributes), (schema.name, schema.since_version)


def test_tree_ensemble_5_float16_keeps_its_dtype():
    rng = np.random.default_rng(9)
    attrs32, x32 = v5_attrs(rng, member=False), features(rng, n=20, f=3, nan=False)
    attrs16 = {k: numpy_helper.from_array(numpy_helper.to_array(v).astype(np.float16))
               if k in ("nodes_splits", "leaf_weights") else v for k, v in attrs32.items()}
    x16 = x32.astype(np.float16)
    model32 = ml_model("TreeEnsemble", {"X": x16.astype(np.float32)}, ["Y"], opset=5, n_targets=2,
                       **{k: numpy_helper.from_array(numpy_helper.to_array(v).astype(np.float32))
                          if k in ("nodes_splits", "leaf_weights") else v for k, v in attrs16.items()})
    expected = run_reference(model32, {"X": x16.astype(np.float32)})[0].astype(np.float16)
    model16 = ml_model("TreeEnsemble", {"X": x16}, ["Y"], opset=5, n_targets=2, **attrs16)
    check(model16, {"X": x16}, expected=[expected], rtol=1e-3, atol=1e-3)
