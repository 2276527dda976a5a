"""The real encoder (all-MiniLM-L6-v2 from its wheel), against sentence-transformers' own output."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommendations.ml import encoder as encoder_module
from recommendations.ml.encoder import Encoder, choose_runtime, resolve_model_path

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "waterproof hiking boots for winter",
    "My parcel has not arrived after ten days, what can I do?",
    "保温杯可以装热水多久？",
    "会员到期自动扣费了，我想取消自动续费并退款。",
    "Loved it 😍🔥👍 would buy again",
    "🙂",
    "x",
    " ".join(["A very long review that goes on and on about the build quality and the delivery."] * 60),
]


@pytest.fixture(scope="module")
def reference_vectors():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, batch_size=4)


@pytest.fixture(scope="module")
def fp32_encoder():
    return Encoder("all-MiniLM-L6-v2", runtime="fp32")


@pytest.fixture(scope="module")
def onnx_encoder(tmp_path_factory):
    return Encoder("all-MiniLM-L6-v2", runtime="onnx", cache_dir=tmp_path_factory.mktemp("onnx"))


def _cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (left * right).sum(axis=1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1))


def test_fp32_vectors_match_sentence_transformers(fp32_encoder, reference_vectors):
    encoded = fp32_encoder.encode(TEXTS, kind="passage", batch_size=3)

    assert encoded.vectors.shape == (len(TEXTS), 384) and encoded.vectors.dtype == np.float32
    assert _cosines(encoded.vectors, reference_vectors).min() >= 0.999
    assert np.allclose(np.linalg.norm(encoded.vectors, axis=1), 1.0, atol=1e-5)


def test_onnx_vectors_match_sentence_transformers_in_mixed_length_batches(onnx_encoder, reference_vectors):
    # One batch with texts of very different lengths: the padding must not leak into the mean.
    encoded = onnx_encoder.encode(TEXTS, kind="passage", batch_size=len(TEXTS))

    assert onnx_encoder.runtime == "onnx"
    assert _cosines(encoded.vectors, reference_vectors).min() >= 0.999


@pytest.mark.skipif(
    not encoder_module.cpu_has_bf16(), reason="bf16 runs only on a CPU with native bf16 (the fallback is tested below)"
)
def test_bf16_vectors_stay_within_the_issue_bar_of_fp32(reference_vectors):
    # bf16 weights round every product: not the 0.999 of the exact runtimes, but >= 0.99
    # (measured 0.9999 here), the bar a runtime must pass to be offered.
    encoder = Encoder("all-MiniLM-L6-v2", runtime="bf16")
    encoded = encoder.encode(TEXTS, kind="passage", batch_size=len(TEXTS))

    assert encoder.runtime == "bf16" and encoded.vectors.dtype == np.float32
    assert _cosines(encoded.vectors, reference_vectors).min() >= 0.99
    assert np.allclose(np.linalg.norm(encoded.vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(not encoder_module.cpu_has_bf16(), reason="the mixed runtime needs a CPU with native bf16")
def test_mixed_runtime_sends_a_few_texts_to_onnx_and_batches_to_bf16(onnx_encoder, tmp_path):
    mixed = Encoder("all-MiniLM-L6-v2", runtime="mixed", cache_dir=tmp_path)
    bf16 = Encoder("all-MiniLM-L6-v2", runtime="bf16")
    few, many = TEXTS[:3], (TEXTS * 2)[: encoder_module.MIXED_BF16_FROM_TEXTS]

    assert mixed.runtime == "mixed"
    assert np.allclose(
        mixed.encode(few, kind="passage").vectors, onnx_encoder.encode(few, kind="passage").vectors, atol=1e-6
    )
    assert np.allclose(mixed.encode(many, kind="passage").vectors, bf16.encode(many, kind="passage").vectors, atol=1e-6)
    # The two paths agree with each other as well as with fp32: vectors stay comparable.
    assert (
        _cosines(mixed.encode(few, kind="passage").vectors, mixed.encode(many, kind="passage").vectors[:3]).min()
        >= 0.99
    )


def test_results_come_back_in_the_order_given(fp32_encoder):
    forward = fp32_encoder.encode(TEXTS, kind="passage").vectors
    backward = fp32_encoder.encode(TEXTS[::-1], kind="passage").vectors[::-1]

    assert np.allclose(forward, backward, atol=1e-5)


def test_text_longer_than_the_model_reads_is_flagged_truncated(fp32_encoder):
    encoded = fp32_encoder.encode(TEXTS, kind="passage")

    assert fp32_encoder.max_tokens == 256
    assert encoded.truncated == [False] * (len(TEXTS) - 1) + [True]


def test_no_texts_gives_an_empty_matrix(fp32_encoder):
    assert fp32_encoder.encode([], kind="passage").vectors.shape == (0, 384)


def test_runtimes_fall_back_to_what_the_machine_can_run(monkeypatch):
    monkeypatch.setattr(encoder_module, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)
    assert choose_runtime("bf16") == "fp32"
    assert choose_runtime("mixed") == "onnx"
    assert choose_runtime("auto") == "onnx"

    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: True)
    assert choose_runtime("auto") == "mixed"
    monkeypatch.setattr(encoder_module, "onnxruntime_available", lambda: False)
    assert choose_runtime("auto") == "bf16" == choose_runtime("mixed")
    assert choose_runtime("onnx") == "fp32"


def test_unknown_runtime_and_missing_model_are_clear_errors(tmp_path):
    with pytest.raises(encoder_module.EncoderUnavailableError, match="runtime must be one of"):
        choose_runtime("tpu")
    with pytest.raises(OSError):
        Encoder(str(tmp_path / "no-such-model"), runtime="fp32")


def test_get_encoder_loads_once_and_reset_drops_it(settings):
    encoder_module.reset_encoder()
    first = encoder_module.get_encoder()

    assert encoder_module.get_encoder() is first
    encoder_module.reset_encoder()
    assert not encoder_module.encoder_is_loaded()


def test_web_process_does_not_import_torch_until_a_request_needs_it():
    code = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
import django
django.setup()
from django.test import Client
from django.urls import reverse
import config.urls, recommendations.tasks, recommendations.vectors.embedding
Client().get(reverse("admin:login"))
print("torch" in sys.modules, "transformers" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip().splitlines()[-1] == "False False"
