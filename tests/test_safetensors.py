"""The hand-written safetensors reader: every malformed file refused with a message naming the cause,
round trips, and agreement with the `safetensors` library and PyTorch (BF16 widening)."""

import ast
import json
import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tinyllm_lab.safetensors as st

MODULE = Path(st.__file__)


def craft(header, buffer=b"", length=None):
    """The bytes of a safetensors file, by hand: u64 LE length, header (dict, str or bytes), buffer."""
    if isinstance(header, dict):
        header = json.dumps(header)
    raw = header.encode("utf-8") if isinstance(header, str) else header
    return struct.pack("<Q", len(raw) if length is None else length) + raw + buffer


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def write(tmp_path, blob, name="x.safetensors"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def refuse(tmp_path, blob, match):
    """The file is refused by read_header and load_file (path and bytes alike) with a matching message."""
    path = write(tmp_path, blob)
    for source in (path, blob):
        with pytest.raises(ValueError, match=match):
            st.read_header(source)
        with pytest.raises(ValueError, match=match):
            st.load_file(source)


TWO_F32 = np.array([1.5, -2.0], dtype="<f4").tobytes()


# ---------------------------------------------------------------- known answers: a file crafted by hand

def test_reads_a_hand_crafted_file(tmp_path):
    header = {"__metadata__": {"format": "pt"}, "a": entry("F32", (2,), (0, 8)), "b": entry("I16", (1, 2), (8, 12))}
    blob = craft(header, TWO_F32 + struct.pack("<2h", -7, 300))
    tensors, metadata, start = st.read_header(write(tmp_path, blob))
    assert metadata == {"format": "pt"}
    assert tensors == {"a": entry("F32", (2,), (0, 8)), "b": entry("I16", (1, 2), (8, 12))}
    assert start == 8 + len(json.dumps(header))
    arrays, metadata = st.load_file(write(tmp_path, blob))
    assert list(arrays) == ["a", "b"]
    assert arrays["a"].dtype == np.float32 and arrays["a"].tolist() == [1.5, -2.0]
    assert arrays["b"].dtype == np.int16 and arrays["b"].tolist() == [[-7, 300]]


def test_bf16_widening_known_values():
    # bfloat16 bit patterns and the float32 numbers they are (the top half of the float32 bits)
    known = {0x3F80: 1.0, 0xC000: -2.0, 0x4049: 3.140625, 0x0000: 0.0, 0x7F80: np.inf, 0xFF80: -np.inf}
    blob = craft({"x": entry("BF16", (len(known),), (0, 2 * len(known)))}, struct.pack(f"<{len(known)}H", *known))
    x = st.load_file(blob)[0]["x"]
    assert x.dtype == np.float32
    assert x.tolist() == list(known.values())


def test_arrays_are_read_only(tmp_path):
    blob = craft({"a": entry("F16", (2,), (0, 4)), "b": entry("F32", (2,), (4, 12)),
                  "c": entry("BF16", (2,), (12, 16))}, bytes(16))
    for x in st.load_file(write(tmp_path, blob))[0].values():
        assert not x.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            x[0] = 1


# ---------------------------------------------------------------- robustness: the length

@pytest.mark.parametrize("size", [0, 1, 7])
def test_file_under_8_bytes(tmp_path, size):
    refuse(tmp_path, bytes(size), rf"file is {size} bytes; it must start with an 8-byte header length")


def test_header_length_larger_than_file(tmp_path):
    refuse(tmp_path, craft("{}", length=1000), r"header length 1000 is larger than the 2 bytes after it")


@pytest.mark.parametrize("length", [st.MAX_HEADER_BYTES + 1, 2 ** 63, 2 ** 64 - 1])
def test_header_length_absurd(tmp_path, length):
    refuse(tmp_path, craft("{}", length=length), rf"header length of {length} bytes is over the 100000000-byte limit")


def test_huge_header_length_is_refused_before_allocating(tmp_path):
    # a 99 MB header length in a 16-byte file: refused without reading (allocating) those bytes
    path = write(tmp_path, craft("{}", bytes(6), length=99_000_000))
    tracemalloc.start()
    with pytest.raises(ValueError, match="larger than the 8 bytes after it"):
        st.load_file(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated before refusing the header length"


def test_absurd_header_length_in_a_big_file_is_refused_before_allocating(tmp_path):
    # a sparse 200 MB file (no disk space used) whose first 8 bytes claim a 150 MB header
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 150_000_000))
        f.truncate(200_000_000)
    tracemalloc.start()
    with pytest.raises(ValueError, match="over the 100000000-byte limit"):
        st.read_header(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


# ---------------------------------------------------------------- robustness: the header

def test_header_not_utf8(tmp_path):
    refuse(tmp_path, craft(b'{"w\xff": 1}'), r"header is not valid UTF-8 \(byte 3 of 9\)")


@pytest.mark.parametrize("text", ["{'w': 1}", '{"w": ', "", "   ", "{} x", "\x00" * 8])
def test_header_not_json(tmp_path, text):
    refuse(tmp_path, craft(text), "header is not JSON")


def test_header_nested_too_deeply(tmp_path):
    refuse(tmp_path, craft("[" * 100_000 + "]" * 100_000), "nested too deeply")


@pytest.mark.parametrize("text, kind", [("[]", "array"), ("3", "number"), ('"w"', "string"), ("null", "null"),
                                        ("true", "boolean")])
def test_header_not_an_object(tmp_path, text, kind):
    refuse(tmp_path, craft(text), rf"header must be a JSON object .* found a JSON {kind}")


def test_duplicate_tensor_names(tmp_path):
    a, b = json.dumps(entry(offsets=(0, 8))), json.dumps(entry(offsets=(8, 16)))
    refuse(tmp_path, craft(f'{{"w": {a}, "w": {b}}}', bytes(16)), r"duplicate key\(s\) \['w'\]")


def test_duplicate_field_in_a_tensor(tmp_path):
    text = '{"w": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}'
    refuse(tmp_path, craft(text, bytes(8)), r"duplicate key\(s\) \['dtype'\]")


def test_duplicate_metadata_key(tmp_path):
    refuse(tmp_path, craft('{"__metadata__": {"a": "1", "a": "2"}}'), r"duplicate key\(s\) \['a'\]")


@pytest.mark.parametrize("value, kind", [(3, "number"), (None, "null"), (["a"], "array"), ({"b": "c"}, "object"),
                                         (True, "boolean")])
def test_metadata_value_not_a_string(tmp_path, value, kind):
    refuse(tmp_path, craft({"__metadata__": {"ok": "yes", "step": value}}),
           rf"__metadata__\['step'\] is .*, a JSON {kind}; metadata values must be strings")


@pytest.mark.parametrize("metadata", [["a", "b"], "format=pt", 3])
def test_metadata_not_an_object(tmp_path, metadata):
    refuse(tmp_path, craft({"__metadata__": metadata}), "__metadata__ must be an object of strings")


# ---------------------------------------------------------------- robustness: one tensor's entry

@pytest.mark.parametrize("dtype", ["F8_E4M3", "f32", "float32", "", 4, None, ["F32"]])
def test_unknown_dtype_lists_the_supported_ones(dtype):
    info = dict(entry(), dtype=dtype)
    with pytest.raises(ValueError, match=r"tensor 'w': unknown dtype .*; supported: F64, F32, F16, BF16, I64, "
                                         r"I32, I16, I8, U64, U32, U16, U8, BOOL"):
        st.load_file(craft({"w": info}, bytes(8)))


@pytest.mark.parametrize("shape", [(-2,), (2, -1), (-1, -1)])
def test_negative_dimension(tmp_path, shape):
    refuse(tmp_path, craft({"w": entry(shape=shape)}, bytes(8)), r"tensor 'w': shape .* has a negative dimension")


@pytest.mark.parametrize("shape", [[2.0], ["2"], [True, 2], [None], [[2]], "2", 2, None])
def test_non_integer_dimension(tmp_path, shape):
    info = dict(entry(), shape=shape)
    refuse(tmp_path, craft({"w": info}, bytes(8)), r"tensor 'w': shape .* must be a list of integers")


@pytest.mark.parametrize("offsets", [[0], [0, 8, 16], [-8, 0], [0.0, 8], [0, "8"], [False, 8], "0:8", None])
def test_malformed_data_offsets(tmp_path, offsets):
    info = dict(entry(), data_offsets=offsets)
    refuse(tmp_path, craft({"w": info}, bytes(8)), r"tensor 'w': data_offsets .* must be \[begin, end\]")


@pytest.mark.parametrize("info, found", [({"dtype": "F32", "shape": [2]}, r"fields \['dtype', 'shape'\]"),
                                         (dict(entry(), extra=1), "fields .*'extra'"),
                                         ([0, 8], "a JSON array"), ("F32", "a JSON string")])
def test_entry_with_wrong_fields(tmp_path, info, found):
    refuse(tmp_path, craft({"w": info}, bytes(8)),
           rf"tensor 'w': expected an object with exactly dtype, shape and data_offsets, found {found}")


def test_end_before_begin(tmp_path):
    refuse(tmp_path, craft({"w": entry(offsets=(8, 0))}, bytes(8)),
           r"tensor 'w': data_offsets \[8, 0\] end \(at 0\) before they begin \(at 8\)")


@pytest.mark.parametrize("dtype, shape, offsets, need", [("F32", (3,), (0, 8), 12), ("F16", (2,), (0, 8), 4),
                                                         ("F64", (2, 2), (0, 8), 32), ("F32", (0,), (0, 8), 0)])
def test_byte_count_does_not_match_shape_and_dtype(tmp_path, dtype, shape, offsets, need):
    refuse(tmp_path, craft({"w": entry(dtype, shape, offsets)}, bytes(8)),
           rf"tensor 'w': shape .* of {dtype} needs {need} bytes, but data_offsets \[0, 8\] span 8")


# ---------------------------------------------------------------- robustness: the layout of the buffer

def test_offsets_past_the_end_of_the_buffer(tmp_path):
    refuse(tmp_path, craft({"w": entry()}, bytes(4)), r"tensor 'w' ends at byte 8, past the end of the 4-byte buffer")


def test_second_tensor_past_the_end(tmp_path):
    blob = craft({"a": entry(), "b": entry(offsets=(8, 16))}, bytes(12))
    refuse(tmp_path, blob, r"tensor 'b' ends at byte 16, past the end of the 12-byte buffer")


@pytest.mark.parametrize("b_offsets", [(4, 12), (0, 8)])
def test_overlapping_offsets(tmp_path, b_offsets):
    blob = craft({"a": entry(offsets=(0, 8)), "b": entry(offsets=b_offsets), "c": entry(offsets=(8, 16))}, bytes(16))
    refuse(tmp_path, blob, r"overlaps tensor")


def test_empty_tensor_inside_another_overlaps(tmp_path):
    blob = craft({"a": entry(offsets=(0, 8)), "e": entry(shape=(0,), offsets=(4, 4))}, bytes(8))
    refuse(tmp_path, blob, r"tensor 'e' \(bytes 4..4\) overlaps tensor 'a'")


@pytest.mark.parametrize("header, size, gap", [({"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))}, 20, r"4 unused bytes \(8..12\) before tensor 'b'"),
                                               ({"a": entry(offsets=(4, 12))}, 12, r"4 unused bytes \(0..4\) before tensor 'a'")])
def test_gap_between_tensors(tmp_path, header, size, gap):
    refuse(tmp_path, craft(header, bytes(size)), rf"a gap of {gap}")


@pytest.mark.parametrize("extra", [1, 4, 1000])
def test_trailing_bytes(tmp_path, extra):
    refuse(tmp_path, craft({"w": entry()}, bytes(8 + extra)), rf"{extra} trailing bytes after the last tensor")


def test_trailing_bytes_after_no_tensors(tmp_path):
    refuse(tmp_path, craft({}, bytes(3)), r"3 trailing bytes after the last tensor")


def test_bool_bytes_other_than_0_and_1(tmp_path):
    with pytest.raises(ValueError, match=r"tensor 'm' is BOOL but holds bytes other than 0 and 1"):
        st.load_file(craft({"m": entry("BOOL", (3,), (0, 3))}, bytes([0, 1, 2])))


# ---------------------------------------------------------------- empty tensors load

def test_empty_tensors_load(tmp_path):
    header = {"e0": entry("F32", (0,), (0, 0)), "w": entry("F32", (2,), (0, 8)), "e1": entry("BF16", (3, 0), (8, 8)),
              "e2": entry("F16", (0, 4, 2), (8, 8))}
    arrays, _ = st.load_file(write(tmp_path, craft(header, TWO_F32)))
    assert {name: x.shape for name, x in arrays.items()} == {"e0": (0,), "w": (2,), "e1": (3, 0), "e2": (0, 4, 2)}
    assert all(x.dtype == np.float32 for x in arrays.values())
    assert arrays["w"].tolist() == [1.5, -2.0]


def test_file_of_only_empty_tensors_and_of_no_tensors(tmp_path):
    assert st.load_file(craft({"e": entry("I64", (0, 5), (0, 0))}))[0]["e"].shape == (0, 5)
    assert st.load_file(write(tmp_path, craft({})))[0] == {}
    assert st.load_file(craft({"__metadata__": {"a": "b"}})) == ({}, {"a": "b"})


def test_empty_tensors_round_trip(tmp_path):
    tensors = {"a": np.zeros((0, 3), np.float32), "b": np.zeros((2, 0), np.int8), "c": np.ones(2, np.float16)}
    st.save_file(tensors, tmp_path / "e.safetensors")
    back, _ = st.load_file(tmp_path / "e.safetensors", widen=False)
    for name, x in tensors.items():
        assert back[name].shape == x.shape and back[name].dtype == x.dtype


# ---------------------------------------------------------------- fuzzing: only ValueError, never anything else

def test_corrupted_files_load_or_raise_value_error_only(tmp_path):
    rng = np.random.default_rng(0)
    good = craft({"__metadata__": {"k": "v"}, "a": entry("F32", (2, 2), (0, 16)), "b": entry("BF16", (3,), (16, 22)),
                  "c": entry("I8", (2,), (22, 24))}, rng.bytes(24))
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(2000):
        blob = bytearray(good)
        for i in rng.integers(0, len(blob), size=rng.integers(1, 4)):
            blob[i] = rng.integers(0, 256)
        try:
            st.load_file(bytes(blob))
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["refused"] += 1
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0
    for cut in range(len(good)):  # every truncation is refused
        with pytest.raises(ValueError):
            st.load_file(good[:cut])


# ---------------------------------------------------------------- round trips with our own writer

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (1,), (3, 5), (2, 3, 4)], ids=str)
def test_round_trip_every_dtype(tmp_path, dtype, shape):
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        x = (rng.standard_normal(shape) * 100).astype(dtype)
    elif np.dtype(dtype).kind == "b":
        x = rng.integers(0, 2, shape).astype(bool)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    st.save_file({"x": x}, tmp_path / "x.safetensors")
    back, metadata = st.load_file(tmp_path / "x.safetensors", widen=False)
    assert metadata == {}
    assert back["x"].dtype == x.dtype and back["x"].shape == x.shape
    assert np.array_equal(back["x"], x)


def test_f16_is_widened_to_float32_by_default(tmp_path):
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float16)
    st.save_file({"x": x}, tmp_path / "h.safetensors")
    assert st.load_file(tmp_path / "h.safetensors")[0]["x"].dtype == np.float32
    assert np.array_equal(st.load_file(tmp_path / "h.safetensors")[0]["x"], x.astype(np.float32))
    assert st.load_file(tmp_path / "h.safetensors", widen=False)[0]["x"].dtype == np.float16


def test_round_trip_many_tensors_with_metadata(tmp_path):
    rng = np.random.default_rng(3)
    tensors = {f"layers.{i}.w": rng.standard_normal((i + 1, 3)).astype([np.float32, np.float16, np.int8][i % 3])
               for i in range(9)}
    metadata = {"format": "np", "note": "ünïcode ✓", "empty": ""}
    st.save_file(tensors, tmp_path / "m.safetensors", metadata=metadata)
    back, meta = st.load_file(tmp_path / "m.safetensors", widen=False)
    assert meta == metadata and back.keys() == tensors.keys()
    assert all(back[k].dtype == x.dtype and np.array_equal(back[k], x) for k, x in tensors.items())


def test_writer_layout(tmp_path):
    """Header padded with spaces to a multiple of 8; data ordered by item size (largest first), then name."""
    tensors = {"z": np.ones(3, np.float16), "b": np.ones(1, np.float64), "a": np.ones(3, np.float16),
               "m": np.ones(5, np.float32), "c": np.ones(2, np.uint8)}
    st.save_file(tensors, tmp_path / "l.safetensors")
    blob = (tmp_path / "l.safetensors").read_bytes()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0 and blob[8] == ord("{")
    text = blob[8:8 + n].decode()
    assert text.rstrip(" ").endswith("}") and len(text) - len(text.rstrip(" ")) < 8  # only space padding
    header = json.loads(text)
    assert list(header) == ["b", "m", "a", "z", "c"]
    assert [header[k]["data_offsets"] for k in header] == [[0, 8], [8, 28], [28, 34], [34, 40], [40, 42]]


def test_writer_converts_big_endian_and_non_contiguous(tmp_path):
    x = np.arange(12, dtype=">f4").reshape(3, 4)
    st.save_file({"be": x, "t": x.T.astype(np.float32)}, tmp_path / "b.safetensors")
    back, _ = st.load_file(tmp_path / "b.safetensors")
    assert np.array_equal(back["be"], x) and np.array_equal(back["t"], x.T)


@pytest.mark.parametrize("tensors, match", [
    ({"c": np.ones(2, np.complex64)}, r"tensor 'c' has dtype complex64, which cannot be stored; supported: bool, float16, "
                                      r"float32, float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8"),
    ({"o": np.array([None, 1], dtype=object)}, r"tensor 'o' has dtype object, which cannot be stored"),
    ({"s": np.array(["ab"])}, r"tensor 's' has dtype <U2, which cannot be stored"),
    ({"__metadata__": np.ones(2, np.float32)}, r"tensor names must be strings other than '__metadata__'"),
    ({3: np.ones(2, np.float32)}, r"tensor names must be strings .* got 3"),
])
def test_writer_refuses(tmp_path, tensors, match):
    with pytest.raises(ValueError, match=match):
        st.save_file(tensors, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("metadata, match", [({"step": 3}, r"__metadata__\['step'\] is 3, a JSON number"),
                                             ({1: "a"}, "__metadata__ keys must be strings, got 1")])
def test_writer_refuses_bad_metadata(tmp_path, metadata, match):
    with pytest.raises(ValueError, match=match):
        st.save_file({"w": np.ones(2, np.float32)}, tmp_path / "bad.safetensors", metadata=metadata)


# ---------------------------------------------------------------- agreement with the safetensors library

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_library_writes_we_read(tmp_path, dtype):
    rng = np.random.default_rng(4)
    tensors = {"tok_embeddings": rng.standard_normal((64, 16)).astype(dtype),
               "norm": rng.standard_normal(16).astype(dtype), "empty": np.zeros((0, 16), dtype)}
    safetensors_numpy.save_file(tensors, tmp_path / "lib.safetensors", metadata={"format": "np"})
    back, metadata = st.load_file(tmp_path / "lib.safetensors", widen=False)
    assert metadata == {"format": "np"}
    for name, x in tensors.items():
        assert back[name].dtype == x.dtype and np.array_equal(back[name], x)
    widened, _ = st.load_file(tmp_path / "lib.safetensors")
    assert all(widened[k].dtype == np.float32 and np.array_equal(widened[k], x.astype(np.float32))
               for k, x in tensors.items())


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_we_write_library_reads(tmp_path, dtype):
    from safetensors import safe_open
    rng = np.random.default_rng(5)
    tensors = {"wq": rng.standard_normal((32, 32)).astype(dtype), "b": rng.standard_normal(7).astype(dtype),
               "i": rng.integers(-5, 5, (3, 3)).astype(np.int64)}
    st.save_file(tensors, tmp_path / "ours.safetensors", metadata={"format": "np", "seed": "5"})
    back = safetensors_numpy.load_file(tmp_path / "ours.safetensors")
    assert back.keys() == tensors.keys()
    for name, x in tensors.items():
        assert back[name].dtype == x.dtype and np.array_equal(back[name], x)
    with safe_open(tmp_path / "ours.safetensors", framework="np") as f:
        assert f.metadata() == {"format": "np", "seed": "5"}


@pytest.mark.parametrize("metadata", [None, {"format": "np"}])
@pytest.mark.parametrize("mixed", [False, True], ids=["float", "every-dtype"])
def test_writer_is_byte_identical_to_the_library(tmp_path, metadata, mixed):
    rng = np.random.default_rng(6)
    tensors = {"b": rng.standard_normal((5, 3)).astype(np.float32), "a": rng.standard_normal(9).astype(np.float16),
               "c": rng.standard_normal(4).astype(np.float64), "e": np.zeros((0, 2), np.float32)}
    if mixed:  # same item size, different dtypes, names in the opposite order: the library's dtype order decides
        tensors.update({f"{chr(ord('z') - i)}": (rng.standard_normal((i + 1, 2)) * 50).astype(dtype)
                        for i, dtype in enumerate(DTYPES)})
    st.save_file(tensors, tmp_path / "ours.safetensors", metadata=metadata)
    safetensors_numpy.save_file(tensors, tmp_path / "lib.safetensors", metadata=metadata)
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "lib.safetensors").read_bytes()


def test_bf16_from_torch_widens_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    tensors = {"w": (torch.randn(64, 32) * 10.0 ** torch.empty(64, 32).uniform_(-30, 30)).to(torch.bfloat16),
               "special": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, 3e38], dtype=torch.bfloat16),
               "h": torch.randn(8, dtype=torch.float16), "f": torch.randn(3, 3)}
    safetensors_torch.save_file(tensors, tmp_path / "bf16.safetensors", metadata={"format": "pt"})
    back, metadata = st.load_file(tmp_path / "bf16.safetensors")
    assert metadata == {"format": "pt"}
    for name, t in tensors.items():
        assert back[name].dtype == np.float32
        want = t.float().numpy()
        assert np.array_equal(back[name].view(np.uint32), want.view(np.uint32)), name  # bit for bit (signed zeros too)


def test_bf16_widening_all_bit_patterns_match_torch():
    torch = pytest.importorskip("torch")
    bits = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    ours = st.load_file(craft({"x": entry("BF16", (2 ** 16,), (0, 2 ** 17))}, bits.astype("<u2").tobytes()))[0]["x"]
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(ours.view(np.uint32), want.view(np.uint32))


def test_f16_widening_all_bit_patterns_match_torch():
    torch = pytest.importorskip("torch")
    bits = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    ours = st.load_file(craft({"x": entry("F16", (2 ** 16,), (0, 2 ** 17))}, bits.astype("<u2").tobytes()))[0]["x"]
    want = torch.from_numpy(bits.view(np.int16)).view(torch.float16).float().numpy()
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(ours), nan)
    assert np.array_equal(ours[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_arrays_are_aligned(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.ones(3, dtype=torch.float16), "b": torch.ones(5, dtype=torch.float64),
               "c": torch.ones(7), "d": torch.ones(1, dtype=torch.int8)}
    safetensors_torch.save_file(tensors, tmp_path / "al.safetensors")
    _, _, start = st.read_header(tmp_path / "al.safetensors")
    assert start % 8 == 0
    back, _ = st.load_file(tmp_path / "al.safetensors", widen=False)
    assert all(x.flags.aligned for x in back.values())


# ---------------------------------------------------------------- non-finite weights, by name

def test_check_finite_passes_clean_weights():
    st.check_finite({"w": np.ones((2, 2), np.float32), "h": np.zeros(3, np.float16), "i": np.arange(3),
                     "e": np.zeros((0, 2), np.float32)})


def test_check_finite_names_every_bad_tensor():
    tensors = {"layers.0.wq": np.array([1.0, np.nan, np.nan], np.float32), "ok": np.ones(4, np.float32),
               "norm": np.array([np.inf, -np.inf, 0.0, 1.0], np.float16), "ids": np.array([1, 2])}
    with pytest.raises(ValueError) as err:
        st.check_finite(tensors)
    message = str(err.value)
    assert message.startswith("non-finite weights in 2 tensor(s)")
    assert "'layers.0.wq' (2 nan, 0 inf of 3)" in message
    assert "'norm' (0 nan, 2 inf of 4)" in message
    assert "'ok'" not in message and "'ids'" not in message


def test_check_finite_after_loading(tmp_path):
    st.save_file({"a": np.ones(2, np.float32), "b": np.array([1.0, np.inf], np.float32)}, tmp_path / "nf.safetensors")
    with pytest.raises(ValueError, match=r"non-finite weights in 1 tensor\(s\): 'b' \(0 nan, 1 inf of 2\)"):
        st.check_finite(st.load_file(tmp_path / "nf.safetensors")[0])


# ---------------------------------------------------------------- nothing is ever unpickled

def test_module_imports_only_numpy_and_stdlib():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"io", "json", "math", "struct", "collections", "numpy"}, imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)}
    assert not {name for name in names if "pickle" in name}, "the reader must not touch pickle"
    assert not names & {"load", "eval", "exec"}, "no np.load (it can unpickle), no eval, no exec"


class _Trap:
    """Unpickling this object calls `_sprung`: proof that someone unpickled it."""
    sprung = False

    def __reduce__(self):
        return (_sprung, ())


def _sprung():
    _Trap.sprung = True
    return "sprung"


def test_pickle_files_are_refused_not_run(tmp_path):
    blob = pickle.dumps({"w": _Trap()})
    assert pickle.loads(blob)["w"] == "sprung" and _Trap.sprung  # the trap works when unpickled...
    _Trap.sprung = False
    path = write(tmp_path, blob, "model.bin")
    with pytest.raises(ValueError):
        st.load_file(path)
    assert not _Trap.sprung  # ...and our reader never unpickles it


def test_torch_save_files_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="not a safetensors file"):
        st.load_file(tmp_path / "model.pt")


# ---------------------------------------------------------------- issue 10 kind 3: every file the library writes
SHAPES = [(), (0,), (0, 3), (1,), (3, 5)]


def sample(dtype, shape, rng):  # values of every sign and size the dtype holds
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return np.asarray(rng.standard_normal(shape) * 100).astype(dtype)  # asarray: shape () stays an array


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_dtype_and_shape_round_trips_with_the_library_both_ways(tmp_path, dtype, shape):
    x = sample(dtype, shape, np.random.default_rng(7))
    safetensors_numpy.save_file({"x": x}, tmp_path / "lib.safetensors")
    ours, _ = st.load_file(tmp_path / "lib.safetensors", widen=False)
    info, _, start = st.read_header(tmp_path / "lib.safetensors")
    mapped = st.read_tensor(tmp_path / "lib.safetensors", "x", info["x"], start, widen=False)
    st.save_file({"x": x}, tmp_path / "ours.safetensors")
    theirs = safetensors_numpy.load_file(tmp_path / "ours.safetensors")["x"]
    for back in (ours["x"], mapped, theirs):
        assert back.dtype == x.dtype and back.shape == x.shape and np.array_equal(back, x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bf16_of_every_shape_from_the_library(tmp_path, shape):
    """safetensors.torch writes BF16 scalars ([]) and empty tensors: both readers take them, widened to float32."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(8)) * 100).to(torch.bfloat16)
    safetensors_torch.save_file({"x": x}, tmp_path / "bf16.safetensors")
    loaded, _ = st.load_file(tmp_path / "bf16.safetensors")
    info, _, start = st.read_header(tmp_path / "bf16.safetensors")
    mapped = st.read_tensor(tmp_path / "bf16.safetensors", "x", info["x"], start)
    for back in (loaded["x"], mapped):
        assert back.dtype == np.float32 and back.shape == tuple(shape)
        assert np.array_equal(back, x.float().numpy())


@pytest.mark.parametrize("shape, match", [
    ([0, 10 ** 30], r"tensor 'z': shape \[0, <an integer of 31 digits>\] must be a list of integers \(u64"),
    ([0, 2 ** 62, 4], r"tensor 'z': shape \[0, 4611686018427387904, 4\] of F32 describes over 2\^63 bytes"),
    ([0, 2 ** 63], r"tensor 'z': shape \[0, 9223372036854775808\] of F32 describes over 2\^63 bytes"),
    ([0] * 65, r"tensor 'z': shape has 65 dimensions; numpy allows at most 64"),
    ([1] * 65, r"tensor 'z': shape has 65 dimensions"),
    ([2 ** 64 - 1, 0], r"tensor 'z': shape \[18446744073709551615, 0\] of F32 describes over 2\^63 bytes"),
])
def test_empty_tensors_with_impossible_shapes_are_refused_before_numpy_sees_them(tmp_path, shape, match):
    refuse(tmp_path, craft({"z": entry(shape=shape, offsets=(0, 0))}), "safetensors: " + match)


@pytest.mark.parametrize("where", ["shape", "begin", "end", "metadata"])
def test_a_5000_digit_integer_is_refused_in_our_words(tmp_path, where):
    big = "9" * 5000
    if where == "metadata":
        text = '{"__metadata__": {"format": ' + big + '}}'
        match = r"__metadata__\['format'\] is <an integer of 5000 digits>, a JSON number"
    else:
        fields = {"shape": f"[{big}]" if where == "shape" else "[2]",
                  "data_offsets": {"begin": f"[{big}, 8]", "end": f"[0, {big}]"}.get(where, "[0, 8]")}
        text = '{"w": {"dtype": "F32", "shape": ' + fields["shape"] + ', "data_offsets": ' + fields["data_offsets"] + "}}"
        match = r"tensor 'w': (shape|data_offsets) \[.*<an integer of 5000 digits>.*\] must be"
    refuse(tmp_path, craft(text, TWO_F32), match)


def test_offsets_beyond_u64_are_refused(tmp_path):
    refuse(tmp_path, craft({"w": entry(offsets=(2 ** 64, 2 ** 64 + 8))}, TWO_F32),
           r"tensor 'w': data_offsets \[18446744073709551616, 18446744073709551624\] must be \[begin, end\], "
           r"two integers in 0 \.\. 2\^64 - 1")


def test_read_tensor_names_a_tensor_whose_file_was_truncated_after_its_header_was_read(tmp_path):
    path = write(tmp_path, craft({"w": entry()}, TWO_F32))
    info, _, start = st.read_header(path)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"safetensors: cannot map tensor 'w' of .*x.safetensors"):
        st.read_tensor(path, "w", info["w"], start)


def test_read_tensor_returns_a_new_array_and_refuses_bad_bools(tmp_path):
    path = write(tmp_path, craft({"w": entry(), "b": entry("BOOL", (2,), (8, 10))}, TWO_F32 + b"\x01\x00"))
    info, _, start = st.read_header(path)
    w = st.read_tensor(path, "w", info["w"], start)
    assert w.flags.owndata and w.flags.writeable and not isinstance(w, np.memmap) and w.tolist() == [1.5, -2.0]
    assert st.read_tensor(path, "b", info["b"], start).tolist() == [True, False]
    path.write_bytes(craft({"w": entry(), "b": entry("BOOL", (2,), (8, 10))}, TWO_F32 + b"\x01\x07"))
    with pytest.raises(ValueError, match="tensor 'b' is BOOL but holds bytes other than 0 and 1"):
        st.read_tensor(path, "b", info["b"], start)
