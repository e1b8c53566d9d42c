"""String operators: StringConcat, StringSplit, RegexFullMatch, StringNormalizer, TfIdfVectorizer.

Strings are numpy object arrays of ``str``; per-string work runs at Python speed, vectorized
where numpy can (broadcasting, ``np.frompyfunc``).
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from onnxpy.registry import kernel


def _strings(x: np.ndarray, op: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "OU":
        raise TypeError(f"{op} expects a string tensor, got {x.dtype}")
    return x.astype(object, copy=False)


@kernel("StringConcat", since=20)
def string_concat(x, y):
    """Element-wise concatenation with multidirectional broadcasting."""
    out = np.add(_strings(x, "StringConcat"), _strings(y, "StringConcat"), dtype=object)
    return np.asarray(out, dtype=object)


@kernel("StringSplit", since=20)
def string_split(x, *, delimiter=None, maxsplit=None):
    """Split each string; substrings padded with "" to the longest split, and the counts."""
    x = _strings(x, "StringSplit")
    sep = delimiter or None  # "" or absent: split on runs of whitespace, like str.split()
    limit = -1 if maxsplit is None else int(maxsplit)
    parts = [s.split(sep, limit) for s in x.reshape(-1).tolist()]
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
    width = int(counts.max(initial=0))
    out = np.full((len(parts), width), "", dtype=object)
    for i, p in enumerate(parts):
        out[i, : len(p)] = p
    return out.reshape(*x.shape, width), counts


@kernel("RegexFullMatch", since=20)
def regex_full_match(x, *, pattern=None):
    """Whether each string matches ``pattern`` (RE2 syntax, run with Python's ``re``) entirely."""
    if pattern is None:
        raise ValueError("RegexFullMatch needs a 'pattern' attribute")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"RegexFullMatch pattern {pattern!r} is invalid: {exc}") from exc
    match = np.frompyfunc(lambda s: regex.fullmatch(s) is not None, 1, 1)
    return np.asarray(match(_strings(x, "RegexFullMatch")), dtype=np.bool_)


def _case_mapper(action: str, locale: str | None):
    """str -> str for case_change_action, honouring the Turkic dotted/dotless i; other locales
    use Unicode's default mapping, so a locale that is not installed never fails."""
    language = re.split(r"[_.@-]", locale or "")[0].lower()
    turkic = language in ("tr", "az")
    if action == "LOWER":
        return (lambda s: s.replace("I", "ı").replace("İ", "i").lower()) if turkic else str.lower
    if action == "UPPER":
        return (lambda s: s.replace("i", "İ").upper()) if turkic else str.upper
    if action == "NONE":
        return None
    raise ValueError(f"unsupported case_change_action {action!r}")


@kernel("StringNormalizer", since=10)
def string_normalizer(x, *, case_change_action="NONE", is_case_sensitive=0, locale=None, stopwords=None):
    """Drop the elements equal to a stopword, then change case. X is [C] or [1, C]."""
    x = _strings(x, "StringNormalizer")
    if not (x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1)):
        raise ValueError(f"StringNormalizer expects a [C] or [1, C] input, got shape {x.shape}")
    words = x.reshape(-1).tolist()
    if stopwords:
        if is_case_sensitive:
            stops = set(stopwords)
            words = [w for w in words if w not in stops]
        else:
            stops = {s.casefold() for s in stopwords}
            words = [w for w in words if w.casefold() not in stops]
    mapper = _case_mapper(case_change_action, locale)
    if mapper is not None:
        words = [mapper(w) for w in words]
    out = np.array(words or [""], dtype=object)
    return out.reshape(1, -1) if x.ndim == 2 else out


def _pool_ngrams(pool: list, ngram_counts: list[int], min_n: int, max_n: int) -> dict[tuple, int]:
    """Pool n-grams of the sizes in [min_n, max_n], as tuples, to their position in the pool."""
    table: dict[tuple, int] = {}
    ngram_id = 0
    for i, start in enumerate(ngram_counts):
        n = i + 1
        end = ngram_counts[i + 1] if i + 1 < len(ngram_counts) else len(pool)
        count = (end - start) // n
        if min_n <= n <= max_n:
            for j in range(count):
                table[tuple(pool[start + j * n: start + (j + 1) * n])] = ngram_id + j
        ngram_id += count
    return table


@kernel("TfIdfVectorizer", since=9)
def tfidf_vectorizer(x, *, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts,
                     ngram_indexes, pool_int64s=None, pool_strings=None, weights=None):
    """Count pool n-grams (with skips) per row and weight them: TF, IDF or TFIDF."""
    if mode not in ("TF", "IDF", "TFIDF"):
        raise ValueError(f"unsupported TfIdfVectorizer mode {mode!r}")
    if (pool_int64s is None) == (pool_strings is None):
        raise ValueError("TfIdfVectorizer needs exactly one of pool_int64s and pool_strings")
    pool = list(pool_strings if pool_int64s is None else pool_int64s)
    if x.ndim > 2 or (x.ndim == 2 and x.shape[0] == 0):
        raise ValueError(f"TfIdfVectorizer expects a [C] or [N, C] input with N > 0, got shape {x.shape}")
    if pool_int64s is not None and x.dtype.kind not in "iu":
        raise TypeError(f"pool_int64s needs an integer input, got {x.dtype}")
    table = _pool_ngrams(pool, list(ngram_counts), min_gram_length, max_gram_length)
    columns = np.asarray(ngram_indexes, dtype=np.int64)
    size = int(columns.max(initial=-1)) + 1
    rows = x.reshape(1 if x.ndim < 2 else x.shape[0], -1).tolist()
    counts = np.zeros((len(rows), size), dtype=np.float32)
    for r, row in enumerate(rows):
        found: Counter = Counter()
        for skip in range(max_skip_count + 1):
            step = skip + 1
            # unigrams do not depend on the skip: count them in the first pass only
            for n in range(max(min_gram_length, 1 if skip == 0 else 2), max_gram_length + 1):
                span = (n - 1) * step
                grams = zip(*(row[k * step: len(row) - span + k * step] for k in range(n)))
                found.update(table[g] for g in grams if g in table)
        for ngram_id, c in found.items():
            counts[r, columns[ngram_id]] += c
    if mode != "TF":
        w = np.ones(size, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        counts = w * (counts > 0) if mode == "IDF" else w * counts
    out = counts.astype(np.float32, copy=False)
    return out if x.ndim == 2 else out.reshape(size)
