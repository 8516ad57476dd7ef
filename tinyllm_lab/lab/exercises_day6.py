"""Day 6's exercises and their catalogue of common mistakes: the safetensors reader and the loader.

The safetensors cases build small files by hand (F32, F16 and BF16 tensors, metadata, a header
padded with spaces as the library pads it), as bytes or in a temporary directory that is removed
afterwards. The loader's cases build Hugging Face-named tensors for a tiny grouped-query config
(4 query heads, 2 key/value heads of 8) with seeded random values, and compare every field of the
`ModelWeights` it returns, and whether the head is the embedding array itself.
"""

import json
import struct
import tempfile
from pathlib import Path

import numpy as np

from tinyllm_lab.config import ModelConfig
from tinyllm_lab.lab.check import Case, Exercise, Mistake
from tinyllm_lab.model import LayerWeights, ModelWeights, expected_shapes
from tinyllm_lab.rope import half_split_to_interleaved_rows
from tinyllm_lab.safetensors import read_header
from tinyllm_lab.weights import check_tensors, hf_name

# --- files, by hand ---------------------------------------------------------------------------

PI_ETC = np.array([np.pi, -2.5, 1e30, -1e-30, 0.0, 65504.0], dtype=np.float32)


def _bf16_bytes(x):  # float32 -> the bytes of its bfloat16 (the top half of each float32, truncated)
    return (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


def _tensors(kind):  # -> [(name, dtype, shape, raw bytes)], in file order
    rng = np.random.default_rng({"f32": 0, "f16": 1, "bf16": 2}[kind])
    embed = rng.standard_normal((3, 4)).astype("<f4")
    entries = [("model.embed_tokens.weight", "F32", [3, 4], embed.tobytes())]
    if kind == "f32":
        entries.append(("model.norm.weight", "F32", [4], (1 + rng.standard_normal(4)).astype("<f4").tobytes()))
    elif kind == "f16":
        half = np.array([1.0, -2.5, 0.333, 65504.0, 6e-5, -0.0], dtype="<f2")
        entries.append(("model.norm.weight", "F16", [2, 3], half.tobytes()))
    else:
        entries.append(("lm_head.weight", "BF16", [2, 3], _bf16_bytes(PI_ETC)))
    return entries


def file_bytes(entries, metadata=None):  # -> the bytes of a safetensors file
    """`[N: u64 little-endian][N bytes of JSON, padded with spaces to a multiple of 8][buffer]`."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(raw for *_, raw in entries)


def _from_path(kind, metadata, *args):
    def run(impl):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.safetensors"
            path.write_bytes(file_bytes(_tensors(kind), metadata))
            return impl(path, *args)
    return run


def _from_bytes(kind, metadata, *args):
    def run(impl):
        return impl(file_bytes(_tensors(kind), metadata), *args)
    return run


def _raw(source):  # the whole file as bytes, from a path or bytes
    return bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()


# --- read_header ------------------------------------------------------------------------------

def _header_metadata_kept(source):
    data = _raw(source)
    (n,) = struct.unpack("<Q", data[:8])
    tensors = json.loads(data[8:8 + n])
    return tensors, tensors.get("__metadata__", {}), 8 + n


def _header_metadata_none(source):
    tensors, metadata, start = read_header(source)
    return tensors, metadata or None, start


def _header_start_without_8(source):
    tensors, metadata, start = read_header(source)
    return tensors, metadata, start - 8


READ_HEADER = Exercise(6, "safetensors", "read_header", cases=[
    Case("F32 tensors with metadata, from a path", _from_path("f32", {"format": "pt"}),
         inputs="a file with two F32 tensors and __metadata__ {'format': 'pt'}, header padded with spaces"),
    Case("F16 tensor, no metadata, from a path", _from_path("f16", None),
         inputs="a file with an F32 and an F16 tensor and no __metadata__"),
    Case("from the file's bytes", _from_bytes("bf16", {"note": "bytes"}),
         inputs="the bytes of a file with an F32 and a BF16 tensor and __metadata__"),
], mistakes=[
    Mistake("read_header.metadata_in_tensors",
            "`__metadata__` was left among the tensors: it is not a tensor; pop it from the header and return it "
            "as the metadata.",
            _header_metadata_kept),
    Mistake("read_header.metadata_none",
            "a file without `__metadata__` gave None: the metadata is `{}` when the file has none.",
            _header_metadata_none),
    Mistake("read_header.data_start_without_length",
            "data_start is N, the header's length: the buffer starts after the 8 bytes of the length and the N "
            "bytes of the header, at 8 + N.",
            _header_start_without_8),
])


# --- load_file --------------------------------------------------------------------------------

def _load_variant(offsets_from_file=False, bf16="shift", f16="widen"):
    """`load_file` with one step changed: where the offsets count from, how BF16 and F16 become numbers."""
    def load_file(source, widen=True):
        data = _raw(source)
        tensors, metadata, start = read_header(data)
        base = 0 if offsets_from_file else start
        out = {}
        for name, info in tensors.items():
            begin, end = info["data_offsets"]
            raw = data[base + begin:base + end]
            if info["dtype"] == "F32":
                x = np.frombuffer(raw, "<f4")
            elif info["dtype"] == "BF16":
                bits = np.frombuffer(raw, "<u2")
                x = {"shift": (bits.astype(np.uint32) << 16).view(np.float32),
                     "low_half": bits.astype(np.uint32).view(np.float32),
                     "as_f16": np.frombuffer(raw, "<f2").astype(np.float32)}[bf16]
            else:  # F16
                x = {"widen": np.frombuffer(raw, "<f2").astype(np.float32) if widen else np.frombuffer(raw, "<f2"),
                     "keep": np.frombuffer(raw, "<f2"),
                     "as_u16": np.frombuffer(raw, "<u2").astype(np.float32)}[f16]
            out[name] = x.reshape(info["shape"])
        return out, metadata
    return load_file


LOAD_FILE = Exercise(6, "safetensors", "load_file", cases=[
    Case("F32 tensors with metadata, from a path", _from_path("f32", {"format": "pt"}),
         inputs="a file with two F32 tensors (the second at a non-zero offset) and __metadata__"),
    Case("an F16 tensor, widened", _from_path("f16", None),
         inputs="a file with an F32 tensor and an F16 tensor [2, 3]; widen=True (the default)",
         note="F16 is widened to float32 by default"),
    Case("an F16 tensor, widen=False", _from_path("f16", None, False),
         inputs="the same file, widen=False", note="widen=False keeps F16 as float16"),
    Case("a BF16 tensor", _from_path("bf16", {"dtype": "bf16"}),
         inputs="a file with an F32 tensor and a BF16 tensor [2, 3] holding pi, -2.5, 1e30, -1e-30, 0, 65504",
         note="BF16 is the top half of a float32"),
    Case("from the file's bytes", _from_bytes("f32", None), inputs="the bytes of a file with two F32 tensors"),
], mistakes=[
    Mistake("load_file.offsets_from_file_start",
            "the offsets were counted from the start of the file: `data_offsets` count from the start of the byte "
            "buffer, at byte 8 + N of the file.",
            _load_variant(offsets_from_file=True)),
    Mistake("load_file.bf16_low_half",
            "BF16 was widened into the wrong half of the float32: its 16 bits are the top half, so widen with "
            "`bits.astype(np.uint32) << 16` and view as float32.",
            _load_variant(bf16="low_half")),
    Mistake("load_file.bf16_read_as_f16",
            "BF16 was read as float16 (IEEE half): both have 16 bits, but BF16 has float32's 8 exponent bits and "
            "7 mantissa bits; it is the top half of a float32.",
            _load_variant(bf16="as_f16")),
    Mistake("load_file.f16_as_integers",
            "F16 was read as uint16 values: read its bytes as '<f2' (float16), then widen with astype(np.float32); "
            "only BF16 is read as raw 16-bit integers.",
            _load_variant(f16="as_u16")),
    Mistake("load_file.f16_not_widened",
            "F16 stayed float16: `load_file` widens F16 to float32 unless widen=False (the engine computes in "
            "float32).",
            _load_variant(f16="keep")),
])


# --- weights_from_tensors ---------------------------------------------------------------------

GQA = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=48, vocab_size=40,
                  max_seq_len=16)


def hf_tensors(config, seed):  # -> {HF name: float32 array}, seeded, for every tensor `config` needs
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        if name == "output" and config.tie_embeddings:
            continue  # tied: not stored
        tensors[hf_name(name)] = rng.standard_normal(shape).astype(np.float32)
    return tensors


def weights_fields(weights):  # ModelWeights -> {name: array, ..., "output is tok_embeddings": bool}
    fields = {"tok_embeddings": weights.tok_embeddings, "norm": weights.norm, "output": weights.output}
    for i, layer in enumerate(weights.layers):
        fields.update({f"layers.{i}.{name}": getattr(layer, name) for name in LayerWeights.__dataclass_fields__})
    fields["output is tok_embeddings"] = weights.output is weights.tok_embeddings
    return fields


def _load(config, seed):
    def run(impl):
        return weights_fields(impl(config, hf_tensors(config, seed)))
    return run


def _interleaved_to_half_split_rows(w, n_heads):  # the inverse of half_split_to_interleaved_rows
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def _weights_variant(q_perm=half_split_to_interleaved_rows, k_heads="n_kv_heads", permute_v=False,
                     copy_head=False, swap_w1_w3=False):
    """`weights_from_tensors` with one step changed."""
    def weights_from_tensors(config, tensors):
        check_tensors(config, tensors)

        def get(name):
            return np.ascontiguousarray(tensors[hf_name(name)], dtype=np.float32)

        def perm(w, n_heads):
            return w if q_perm is None else q_perm(w, n_heads)

        def layer(i):
            p = f"layers.{i}."
            wv = get(p + "wv")
            return LayerWeights(
                attention_norm=get(p + "attention_norm"),
                wq=perm(get(p + "wq"), config.n_heads),
                wk=perm(get(p + "wk"), getattr(config, k_heads)),
                wv=perm(wv, config.n_kv_heads) if permute_v else wv, wo=get(p + "wo"),
                ffn_norm=get(p + "ffn_norm"),
                w1=get(p + ("w3" if swap_w1_w3 else "w1")), w3=get(p + ("w1" if swap_w1_w3 else "w3")),
                w2=get(p + "w2"))

        embeddings = get("tok_embeddings")
        output = (embeddings.copy() if copy_head else embeddings) if config.tie_embeddings else get("output")
        return ModelWeights(tok_embeddings=embeddings, layers=[layer(i) for i in range(config.n_layers)],
                            norm=get("norm"), output=output)
    return weights_from_tensors


WEIGHTS_FROM_TENSORS = Exercise(6, "weights", "weights_from_tensors", cases=[
    Case("GQA config, tied head", _load(GQA, 0),
         inputs="ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ...), seeded float32 tensors "
                "under Hugging Face's names; output: every ModelWeights field, and whether output is tok_embeddings"),
    Case("untied head", _load(ModelConfig(**{**GQA.__dict__, "tie_embeddings": False}), 1),
         inputs="the same config with tie_embeddings=False, and an lm_head.weight"),
    Case("no GQA (n_kv_heads = n_heads)", _load(ModelConfig(**{**GQA.__dict__, "n_kv_heads": 4}), 2),
         inputs="the same config with n_kv_heads=4"),
], mistakes=[
    Mistake("weights_from_tensors.no_rope_permutation",
            "wq and wk were not permuted: Hugging Face stores their rows in the half-split RoPE layout, and our "
            "`apply_rope` pairs interleaved rows; load them through `half_split_to_interleaved_rows`.",
            _weights_variant(q_perm=None)),
    Mistake("weights_from_tensors.k_permuted_with_n_heads",
            "wk was permuted with n_heads: its rows are n_kv_heads heads of head_dim, so permute wk with "
            "config.n_kv_heads (wq with config.n_heads).",
            _weights_variant(k_heads="n_heads")),
    Mistake("weights_from_tensors.v_permuted",
            "wv was permuted too: only the rotated projections, wq and wk, change layout; wv and wo stay as they "
            "are.",
            _weights_variant(permute_v=True)),
    Mistake("weights_from_tensors.inverse_permutation",
            "the permutation runs the wrong way (interleaved -> half-split, the `permute` of HF's conversion "
            "script): loading undoes it, each head's rows in the order 0, Dh/2, 1, Dh/2 + 1, ...",
            _weights_variant(q_perm=_interleaved_to_half_split_rows)),
    Mistake("weights_from_tensors.head_copied",
            "the tied head is a copy of the embedding: tied, `output` must be the tok_embeddings array itself "
            "(`check_weights` refuses a copy).",
            _weights_variant(copy_head=True)),
    Mistake("weights_from_tensors.w1_w3_swapped",
            "w1 and w3 are swapped: Meta's w1 is the gate (gate_proj), w3 the up projection (up_proj), w2 the "
            "down projection.",
            _weights_variant(swap_w1_w3=True)),
])

EXERCISES = [READ_HEADER, LOAD_FILE, WEIGHTS_FROM_TENSORS]
