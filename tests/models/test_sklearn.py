"""Converted scikit-learn, XGBoost and LightGBM models: onnxpy against the original library's
predictions (labels exactly, scores to 1e-5 relative) and against onnxruntime.

scikit-learn, skl2onnx, onnxmltools, xgboost, lightgbm and pandas are test dependencies
(pyproject.toml's ``test`` extra): a missing one is an error, not a skip.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import pytest

import onnxpy

import skl2onnx  # noqa: E402

from sklearn.cluster import KMeans  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.svm import SVC, SVR  # noqa: E402

OPSETS = {"": 17, "ai.onnx.ml": 3}
RTOL, ATOL = 1e-5, 1e-6


def run_onnxpy(model_proto, feeds: dict) -> list:
    """onnxpy's outputs, checked equal at both optimization levels."""
    data = model_proto.SerializeToString()
    results = []
    for level in (onnxpy.GraphOptimizationLevel.ORT_DISABLE_ALL, onnxpy.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = onnxpy.SessionOptions()
        options.graph_optimization_level = level
        results.append(onnxpy.InferenceSession(data, options).run(None, feeds))
    for a, b in zip(*results):
        if isinstance(a, list):
            assert a == b
        else:
            np.testing.assert_array_equal(a, b)
    return results[-1]


def check(model_proto, feeds, label=None, scores=None, rtol=RTOL, atol=ATOL, onnxruntime_oracle=True) -> list:
    """Compare onnxpy with the library's labels / scores and, unless ``onnxruntime_oracle`` is
    off, with onnxruntime on every output."""
    ours = run_onnxpy(model_proto, feeds)
    if onnxruntime_oracle:
        ort = onnxruntime.InferenceSession(model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"]).run(None, feeds)
        assert len(ours) == len(ort)
        for a, b in zip(ours, ort):
            if isinstance(b, list):
                assert len(a) == len(b) and all(x.keys() == y.keys() for x, y in zip(a, b))
                np.testing.assert_allclose([list(x.values()) for x in a], [list(y.values()) for y in b], rtol, atol)
                continue
            assert np.asarray(a).dtype == np.asarray(b).dtype and np.shape(a) == np.shape(b)
            if np.asarray(b).dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            else:
                np.testing.assert_array_equal(a, b)
    if label is not None:
        np.testing.assert_array_equal(np.asarray(ours[0]).ravel(), np.asarray(label).ravel())
    if scores is not None:
        np.testing.assert_allclose(np.asarray(ours[-1], dtype=np.float64).reshape(np.shape(scores)), scores,
                                   rtol=rtol, atol=atol)
    return ours


def convert(model, x, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skl2onnx.to_onnx(model, x[:1], target_opset=OPSETS, options=options or None)


@pytest.fixture(scope="module")
def multiclass():
    x, y = make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def binary():
    x, y = make_classification(300, 6, random_state=1)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def regression():
    x, y = make_regression(300, 6, random_state=0)
    return x.astype(np.float32), (y / 100).astype(np.float32)


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_logistic_regression(data, request):
    x, y = request.getfixturevalue(data)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    check(convert(model, x, zipmap=False), {"X": x}, model.predict(x), model.predict_proba(x))


def test_logistic_regression_zipmap_outputs_list_of_dicts(multiclass):
    x, y = multiclass
    model = LogisticRegression(max_iter=1000).fit(x, y)
    ours = check(convert(model, x), {"X": x}, model.predict(x))
    assert isinstance(ours[1], list) and isinstance(ours[1][0], dict)
    np.testing.assert_allclose([list(d.values()) for d in ours[1]], model.predict_proba(x), RTOL, ATOL)


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_random_forest_classifier(data, request):
    x, y = request.getfixturevalue(data)
    model = RandomForestClassifier(20, max_depth=8, random_state=0).fit(x, y)
    check(convert(model, x, zipmap=False), {"X": x}, model.predict(x), model.predict_proba(x))


def test_random_forest_regressor(regression):
    x, y = regression
    model = RandomForestRegressor(20, max_depth=8, random_state=0).fit(x, y)
    check(convert(model, x), {"X": x}, scores=model.predict(x).reshape(-1, 1))


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_gradient_boosting_classifier(data, request):
    x, y = request.getfixturevalue(data)
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(x, y)
    check(convert(model, x, zipmap=False), {"X": x}, model.predict(x), model.predict_proba(x))


def test_gradient_boosting_regressor(regression):
    x, y = regression
    model = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(x, y)
    check(convert(model, x), {"X": x}, scores=model.predict(x).reshape(-1, 1), atol=1e-5)


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_svc_with_probabilities(data, request):
    x, y = request.getfixturevalue(data)
    model = SVC(probability=True, random_state=0).fit(x, y)
    check(convert(model, x, zipmap=False), {"X": x}, model.predict(x), model.predict_proba(x))


def test_svr(regression):
    x, y = regression
    model = SVR(C=10).fit(x, y)
    check(convert(model, x), {"X": x}, scores=model.predict(x).reshape(-1, 1), atol=1e-5)


def test_kmeans(multiclass):
    x, _ = multiclass
    model = KMeans(4, n_init=3, random_state=0).fit(x)
    check(convert(model, x), {"X": x}, model.predict(x), model.transform(x), rtol=1e-4, atol=1e-4)


def test_k_nearest_neighbors(multiclass):
    x, y = multiclass
    model = KNeighborsClassifier(5).fit(x[:200], y[:200])
    check(convert(model, x, zipmap=False), {"X": x[200:]}, model.predict(x[200:]), model.predict_proba(x[200:]))


def test_column_transformer_with_string_columns():
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 200).astype(np.float32),
                          "income": rng.normal(5, 2, 200).astype(np.float32),
                          "city": rng.choice(["paris", "rome", "oslo"], 200),
                          "plan": rng.choice(["free", "pro"], 200)})
    target = (frame.age / 10 + (frame.city == "rome") * 2 + rng.normal(0, 1, 200) > 5).astype(int)
    model = make_pipeline(ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])]),
                          LogisticRegression(max_iter=1000)).fit(frame, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = skl2onnx.to_onnx(model, frame[:1], target_opset=OPSETS, options={"zipmap": False})
    feeds = {c: frame[[c]].to_numpy().astype(np.float32 if frame[c].dtype.kind == "f" else object) for c in frame}
    check(proto, feeds, model.predict(frame), model.predict_proba(frame))


def test_tfidf_text_pipeline():
    from skl2onnx.common.data_types import StringTensorType

    texts = np.array(["the cat sat on the mat", "dogs and cats", "a dog barked", "the mat was red",
                      "cats sleep all day", "a red dog", "the cat and the dog", "mats and hats"] * 5)
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0] * 5)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = skl2onnx.convert_sklearn(model, initial_types=[("text", StringTensorType([None, 1]))],
                                         target_opset=OPSETS, options={id(model.steps[-1][1]): {"zipmap": False}})
    # onnxruntime's StringNormalizer needs the en_US.UTF-8 locale installed on the machine and
    # fails to load the model without it, so scikit-learn alone is the oracle here.
    check(proto, {"text": texts.reshape(-1, 1).astype(object)}, model.predict(texts), model.predict_proba(texts),
          onnxruntime_oracle=False)


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_xgboost_classifier(data, request):
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = request.getfixturevalue(data)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=4, random_state=0, n_jobs=1).fit(x, y)
    proto = onnxmltools.convert_xgboost(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))],
                                        target_opset=15)
    check(proto, {"X": x}, model.predict(x), model.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("data", ["multiclass", "binary"])
def test_lightgbm_classifier(data, request):
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = request.getfixturevalue(data)
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, random_state=0, verbose=-1, n_jobs=1).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = onnxmltools.convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))],
                                             target_opset=15, zipmap=False)
    check(proto, {"X": x}, model.predict(x), model.predict_proba(x), atol=1e-5)
