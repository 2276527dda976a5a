"""Language centring (recommendations/ml/language_centring.py): the arithmetic, on known vectors."""

import numpy as np
import pytest

from recommendations.ml.language_centring import REFERENCE_PAIRS, chinese_share, language_centred, language_means


@pytest.mark.parametrize(
    ("text", "share"),
    [("a teapot", 0.0), ("保温杯", 1.0), ("a 保温杯", 3 / 4), ("🍵 ☕", 0.0), ("", 0.0), ("保温杯 500ml", 3 / 8)],
)
def test_the_chinese_share_counts_han_characters_among_the_letters(text, share):
    assert chinese_share(text) == pytest.approx(share)


def test_each_text_loses_its_languages_mean_and_stays_unit_length():
    english_mean, chinese_mean = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])

    def encode(texts, kind):
        # A stand-in model whose vectors are only their language: centring must leave nothing of it.
        return np.stack([chinese_mean if chinese_share(text) else english_mean for text in texts])

    means = language_means(encode)
    vectors = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.75, 0.25]], dtype=np.float32)

    centred = language_centred(vectors, ["a teapot", "茶壶", "a 茶壶壶"], "query", means)

    assert np.allclose(centred, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6)
    assert means.english["query"] == pytest.approx(english_mean) and means.chinese["passage"] == pytest.approx(
        chinese_mean
    )


def test_the_reference_sentences_are_parallel_english_and_chinese():
    assert len(REFERENCE_PAIRS) >= 40
    assert all(chinese_share(english) == 0.0 and chinese_share(chinese) > 0.5 for english, chinese in REFERENCE_PAIRS)
