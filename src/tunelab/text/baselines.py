"""What the raw-input baseline of a text run reads: the texts, as TF-IDF of word 1-2-grams
(:mod:`tunelab.baselines` fits the logistic regression on them)."""

from __future__ import annotations

from typing import Any

import numpy as np


def tfidf_features() -> Any:
    """An unfitted TF-IDF of word 1-2-grams (sublinear term frequencies, at most 100,000 of them)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=100_000)


def raw_texts(split: Any, rows: np.ndarray | None = None) -> list[str]:
    """The texts of a text set (all of them, or ``rows``)."""
    return list(split.texts) if rows is None else [split.texts[i] for i in rows]


class TfidfInputs:
    """The text baseline's inputs: the texts, as TF-IDF of word 1-2-grams fitted on the training texts."""

    name = "tfidf"

    def inputs(self, split: Any, rows: np.ndarray | None = None) -> list[str]:
        return raw_texts(split, rows)

    def features(self, x: Any) -> tuple[Any, Any]:
        features = tfidf_features()
        return features, features.fit_transform(x)
