"""String operators against onnx.reference, onnxruntime and hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy


def _strings(*values, shape=None) -> np.ndarray:
    arr = np.array(values, dtype=object)
    return arr if shape is None else arr.reshape(shape)


def test_string_concat_broadcasts():
    feeds = {"x": _strings("a", "bc", "", "é", shape=(2, 2)), "y": _strings("!", "?")}
    check(node_model("StringConcat", feeds, ["z"], opset=20), feeds,
          expected=[_strings("a!", "bc?", "!", "é?", shape=(2, 2))])


@pytest.mark.parametrize("attrs", [{}, {"delimiter": ","}, {"delimiter": ",", "maxsplit": 1}, {"maxsplit": 0}])
def test_string_split(attrs):
    feeds = {"x": _strings("a,b,,c", " one  two ", "", "x", shape=(2, 2))}
    check(node_model("StringSplit", feeds, ["y", "n"], opset=20, **attrs), feeds)


def test_string_split_by_hand():
    feeds = {"x": _strings("a-b", "c")}
    check(node_model("StringSplit", feeds, ["y", "n"], opset=20, delimiter="-"), feeds,
          expected=[_strings("a", "b", "c", "", shape=(2, 2)), np.array([2, 1], dtype=np.int64)])


def test_regex_full_match():
    feeds = {"x": _strings("www.google.com", "www.facebook.com", "google", "", shape=(2, 2))}
    check(node_model("RegexFullMatch", feeds, ["y"], opset=20, pattern=r"www\.[\w.-]+\.\bcom\b"), feeds)


def test_regex_full_match_bad_pattern_fails():
    feeds = {"x": _strings("a")}
    with pytest.raises(Exception, match="pattern"):
        run_onnxpy(node_model("RegexFullMatch", feeds, ["y"], opset=20, pattern="("), feeds)


def _normalizer(x, **attrs):
    return node_model("StringNormalizer", {"x": x}, ["y"], opset=10,
                      output_types={"y": TensorProto.STRING}, **attrs)


@pytest.mark.parametrize("action", ["NONE", "LOWER", "UPPER"])
@pytest.mark.parametrize("sensitive", [0, 1])
def test_string_normalizer_matches_onnxruntime(action, sensitive):
    x = _strings("Monday", "tuesday", "MONDAY", "wednesday", "monday", shape=(1, 5))
    # onnxruntime fails where its default en_US.UTF-8 locale is not installed; "C" always exists
    model = _normalizer(x, case_change_action=action, is_case_sensitive=sensitive, stopwords=["monday"], locale="C")
    check(model, {"x": x}, oracle="onnxruntime")


def test_string_normalizer_all_removed_gives_one_empty_string():
    x = _strings("monday", "monday")
    check(_normalizer(x, stopwords=["monday"]), {"x": x}, expected=[_strings("")])


def test_string_normalizer_locales():
    x = _strings("Iİi", "straße")
    check(_normalizer(x, case_change_action="UPPER", locale="tr_TR.UTF-8"), {"x": x},
          expected=[_strings("Iİİ", "STRASSE")])
    check(_normalizer(x, case_change_action="LOWER", locale="tr"), {"x": x}, expected=[_strings("ıii", "straße")])
    # a locale that is not installed falls back to Unicode's default case mapping
    check(_normalizer(x, case_change_action="UPPER", locale="xx_NOWHERE"), {"x": x},
          expected=[_strings("IİI", "STRASSE")])


POOL_INTS = dict(pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7], ngram_counts=[0, 4], ngram_indexes=[0, 1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
@pytest.mark.parametrize("grams,skip", [((1, 1), 0), ((2, 2), 0), ((1, 2), 3), ((2, 2), 5)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_tfidf_vectorizer_int_pool(mode, grams, skip, dtype):
    x = np.array([[1, 1, 3, 3, 3, 7], [8, 6, 7, 5, 6, 8]], dtype=dtype)
    model = node_model("TfIdfVectorizer", {"x": x}, ["y"], opset=9, mode=mode, min_gram_length=grams[0],
                       max_gram_length=grams[1], max_skip_count=skip,
                       weights=[0.5, 1, 2, 1.5, 1, 3, 0.25], **POOL_INTS)
    check(model, {"x": x})


def test_tfidf_vectorizer_string_pool_1d():
    x = _strings("a", "b", "a", "c", "b", "a")
    model = node_model("TfIdfVectorizer", {"x": x}, ["y"], opset=9, mode="TF", min_gram_length=1,
                       max_gram_length=2, max_skip_count=1, pool_strings=["a", "b", "c", "a", "b", "b", "a"],
                       ngram_counts=[0, 3], ngram_indexes=[2, 1, 0, 3, 4])
    # unigrams a:3 b:2 c:1; bigrams (a,b) at skips 0 and 1: 1 + 1, (b,a) at skip 0: 2, at skip 1: 0
    expected = np.array([1, 2, 3, 2, 2], dtype=np.float32)
    check(model, {"x": x}, expected=[expected])
    check(model, {"x": x})
