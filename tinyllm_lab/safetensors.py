# Promoted from notebooks/day6_safetensors.ipynb by `python -m tinyllm_lab.promote`.
# Do not edit here: edit the notebook's `#| promote: safetensors` cells and promote again.

"""Day 6 safetensors, read by hand: an 8-byte header length, a JSON header, then raw bytes.

A file is `[N: u64 little-endian][N bytes of UTF-8 JSON][byte buffer]`. The JSON object maps
each tensor name to `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`, with
offsets into the buffer that the tensors tile exactly, and may hold `"__metadata__": {str: str}`.
Every malformed file is refused with a ValueError naming the cause, checked before the buffer
is read. numpy and the standard library only: nothing is ever unpickled.
"""

import io
import json
import math
import struct
from collections import Counter

import numpy as np

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit, checked before reading
MAX_DIMS = 64  # numpy's limit on the number of dimensions (the library has none)
MAX_BYTES = 2 ** 63 - 1  # numpy's limit on an array's size in bytes, even with a zero dimension

# safetensors dtype -> the numpy dtype its bytes are read as (little-endian). numpy has no
# bfloat16: BF16 is read as its raw 16 bits and widened to float32 by `_to_array`.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
          "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1"}

# numpy dtype (kind and item size) -> safetensors dtype, for writing (numpy has no bfloat16), in
# the order the safetensors library lays tensors out: largest item size first, so every tensor
# starts at a multiple of its item size; within a size, the library's own dtype order.
WRITABLE = {"u8": "U64", "i8": "I64", "f8": "F64", "f4": "F32", "u4": "U32", "i4": "I32",
            "f2": "F16", "u2": "U16", "i2": "I16", "i1": "I8", "u1": "U8", "b1": "BOOL"}


class _LongInteger:
    """A JSON integer of more than 20 digits, kept as its text: no u64 (at most 20 digits) is that long, and
    Python's `int()` refuses to convert over 4300 digits with an error of its own. The checks name the tensor."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"<an integer of {len(self.text.lstrip('-'))} digits>"


def _parse_int(text):  # json's parse_int hook: str -> int, or _LongInteger if no u64 is that long
    return int(text) if len(text.lstrip("-")) <= 20 else _LongInteger(text)


def _json_type(value):
    """What JSON calls the type of a parsed value: 'object', 'array', 'string', ..."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
             _LongInteger: "number"}
    return names.get(type(value), "null")


def _no_duplicate_keys(pairs):
    """`object_pairs_hook` for json: plain `json.loads` silently keeps the LAST of two equal keys."""
    result = dict(pairs)
    if len(result) != len(pairs):  # counted only then: a header of a million tensors is parsed once, fast
        duplicates = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"safetensors: duplicate key(s) {duplicates} in the header "
                         "(a tensor name, or a field of a tensor, given twice)")
    return result


def _parse_json(raw):  # header bytes -> dict
    """The header as a dict, or a ValueError saying which layer is broken: UTF-8, JSON, object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"safetensors: the header is not valid UTF-8 (byte {e.start} of {len(raw)})") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise ValueError(f"safetensors: the header is not JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise ValueError("safetensors: the header is not usable JSON (nested too deeply)") from None
    if not isinstance(header, dict):
        raise ValueError(f"safetensors: the header must be a JSON object {{name: tensor info}}, "
                         f"found a JSON {_json_type(header)}")
    return header


def _check_metadata(metadata):  # the "__metadata__" entry -> {str: str}
    """Metadata must be an object mapping strings to strings: `{"format": "pt"}`."""
    if not isinstance(metadata, dict):
        raise ValueError(f"safetensors: __metadata__ must be an object of strings, found a JSON {_json_type(metadata)}")
    for key, value in metadata.items():
        if not isinstance(key, str):  # JSON keys are always strings: only `save_file` can get here
            raise ValueError(f"safetensors: __metadata__ keys must be strings, got {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"safetensors: __metadata__[{key!r}] is {value!r}, a JSON {_json_type(value)}; "
                             "metadata values must be strings")
    return metadata


def _is_integer(value):
    """A JSON integer: Python's int, but not bool (`True` is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(name, info):
    """One tensor's header entry: known dtype, shape of integers >= 0, offsets spanning its bytes."""
    where = f"safetensors: tensor {name!r}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        found = f"fields {sorted(info)}" if isinstance(info, dict) else f"a JSON {_json_type(info)}"
        raise ValueError(f"{where}: expected an object with exactly dtype, shape and data_offsets, found {found}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"{where}: unknown dtype {dtype!r}; supported: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_integer(d) for d in shape):
        raise ValueError(f"{where}: shape {shape!r} must be a list of integers (u64: at most 2^64 - 1)")
    if any(d < 0 for d in shape):
        raise ValueError(f"{where}: shape {shape} has a negative dimension")
    if len(shape) > MAX_DIMS:
        raise ValueError(f"{where}: shape has {len(shape)} dimensions; numpy allows at most {MAX_DIMS}")
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    if math.prod(d for d in shape if d) * itemsize > MAX_BYTES:  # numpy checks this even when a dimension is 0
        raise ValueError(f"{where}: shape {shape} of {dtype} describes over 2^63 bytes (even if a dimension "
                         "is 0, numpy cannot make an array of it)")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(_is_integer(o) and 0 <= o < 2 ** 64 for o in offsets)):
        raise ValueError(f"{where}: data_offsets {offsets!r} must be [begin, end], two integers in 0 .. 2^64 - 1")
    begin, end = offsets
    if end < begin:
        raise ValueError(f"{where}: data_offsets {offsets} end (at {end}) before they begin (at {begin})")
    nbytes = math.prod(shape) * itemsize
    if end - begin != nbytes:
        raise ValueError(f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, "
                         f"but data_offsets {offsets} span {end - begin}")


def _check_layout(tensors, buffer_len):
    """The tensors tile the buffer `[0, buffer_len)` exactly: nothing past its end, no overlap, no gap."""
    position, previous = 0, None  # the end of the bytes claimed so far, and who claimed them
    for begin, end, name in sorted((*info["data_offsets"], name) for name, info in tensors.items()):
        if end > buffer_len:
            raise ValueError(f"safetensors: tensor {name!r} ends at byte {end}, "
                             f"past the end of the {buffer_len}-byte buffer (file truncated?)")
        if begin < position:
            raise ValueError(f"safetensors: tensor {name!r} (bytes {begin}..{end}) overlaps "
                             f"tensor {previous!r} (bytes up to {position})")
        if begin > position:
            raise ValueError(f"safetensors: a gap of {begin - position} unused bytes "
                             f"({position}..{begin}) before tensor {name!r}")
        position, previous = end, name
    if position != buffer_len:
        raise ValueError(f"safetensors: {buffer_len - position} trailing bytes after the last tensor "
                         f"(the tensors end at byte {position} of a {buffer_len}-byte buffer)")


def _open(source):
    """A binary file object for a path, or for a file's bytes already in memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    return open(source, "rb", buffering=0)  # unbuffered: the last read() allocates the buffer once, no copies


def _read_header(f):  # binary file object -> (tensors, metadata, data_start)
    """Check the length, the header and the layout, reading only 8 + N bytes; leaves `f` at the buffer."""
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    if size < 8:
        raise ValueError(f"safetensors: the file is {size} bytes; it must start with an 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))  # u64, little-endian
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"safetensors: a header length of {n} bytes is over the {MAX_HEADER_BYTES}-byte "
                         "limit (not a safetensors file?)")
    if n > size - 8:
        raise ValueError(f"safetensors: the header length {n} is larger than the {size - 8} bytes "
                         "after it (file truncated, or not a safetensors file?)")
    tensors = _parse_json(f.read(n))
    metadata = _check_metadata(tensors.pop("__metadata__", {}))
    for name, info in tensors.items():
        _check_entry(name, info)
    _check_layout(tensors, size - 8 - n)
    return tensors, metadata, 8 + n


def read_header(source):  # path or bytes -> ({name: info}, {str: str}, data_start)
    """Read and validate a safetensors header, without reading the tensors.

    Returns the tensors' entries `{name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}`
    in file order, the metadata (`{}` when the file has none), and `data_start = 8 + N`, the file
    offset of the byte buffer that `data_offsets` count from.
    """
    with _open(source) as f:
        return _read_header(f)


def _widen(x, dtype, widen=True):  # an array of a tensor's raw values -> np.ndarray
    """BF16 (and F16 when `widen`) to float32, in ONE new array; any other dtype as it is. Both are exact."""
    if dtype == "BF16":  # bfloat16 is the top half of a float32: put its bits back on top
        wide = x.astype(np.uint32)  # the one new array (also for a shape [] scalar: astype keeps it an array)
        wide <<= 16                 # in place: no second array
        return wide.view(np.float32)
    if dtype == "F16" and widen:
        return x.astype(np.float32)  # exact: every float16 is a float32
    return x


def _check_bool(name, info, x):  # BOOL is one byte per value; numpy's bool cannot hold a 2
    if info["dtype"] == "BOOL" and np.any(x > 1):
        raise ValueError(f"safetensors: tensor {name!r} is BOOL but holds bytes other than 0 and 1")


def _to_array(buffer, name, info, widen):
    """One tensor: a read-only view of its bytes, BF16 (and by default F16) widened to float32."""
    begin, end = info["data_offsets"]
    x = np.frombuffer(memoryview(buffer)[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    _check_bool(name, info, x)
    x = x.view(np.bool_) if info["dtype"] == "BOOL" else _widen(x, info["dtype"], widen)
    x.flags.writeable = False
    return x


def load_file(source, widen=True):  # path or bytes -> ({name: np.ndarray}, {str: str})
    """Load every tensor of a safetensors file, after validating the whole header.

    Arrays are read-only views into one read of the file (`.copy()` for a writable one), with
    the file's shapes. BF16 is always widened to float32 (numpy has no bfloat16); F16 too when
    `widen` is True (the default), else it stays float16. Both widenings are exact.
    Returns (tensors in file order, metadata).
    """
    with _open(source) as f:
        tensors, metadata, _ = _read_header(f)
        buffer = f.read()  # exactly the bytes the tensors tile, as `_read_header` checked
    return {name: _to_array(buffer, name, info, widen) for name, info in tensors.items()}, metadata


def map_tensor(path, name, info, data_start):  # -> read-only np.memmap of the tensor's raw values
    """One tensor of a checked file (`read_header`) as a read-only memory map: its file dtype (BF16 as uint16
    bits), its shape, nothing read yet. ValueError naming the tensor if the file changed since its header was read."""
    begin, end = info["data_offsets"]
    dtype, shape = DTYPES[info["dtype"]], tuple(info["shape"])
    if begin == end:  # an empty tensor: nothing to map (a map of 0 bytes is refused)
        return np.zeros(shape, dtype)
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)
    except (ValueError, OSError) as e:  # e.g. truncated after read_header checked it
        raise ValueError(f"safetensors: cannot map tensor {name!r} of {path}: {e}") from None


def read_tensor(path, name, info, data_start, widen=True):  # -> np.ndarray, a new array in memory
    """One tensor of a checked file, read through a memory map into ONE new array: F32, F16 and BF16 become
    float32 (F16 stays float16 if `widen` is False), other dtypes keep theirs. The map is released on return.

    `info, data_start` come from `read_header(path)`. ValueError for a BOOL byte other than 0 or 1.
    """
    raw = map_tensor(path, name, info, data_start)
    _check_bool(name, info, raw)
    if info["dtype"] == "BOOL":
        return raw.astype(np.bool_)
    x = _widen(raw, info["dtype"], widen)
    return np.array(x) if x is raw else x  # F32 and the rest: copied out of the map (np.array always copies)


def _safetensors_dtype(name, x):
    """The safetensors dtype that stores numpy array `x` ("F32" for float32, ...), or a ValueError."""
    key = f"{x.dtype.kind}{x.dtype.itemsize}"  # "f4": a float of 4 bytes
    if key not in WRITABLE:
        supported = ", ".join(sorted(str(np.dtype(k)) for k in WRITABLE))
        raise ValueError(f"safetensors: tensor {name!r} has dtype {x.dtype}, which cannot be stored; supported: {supported}")
    return WRITABLE[key]


def save_file(tensors, path, metadata=None):  # {name: np.ndarray}, path, {str: str} -> None
    """Write numpy arrays (float64/32/16, signed and unsigned ints, bool) as a safetensors file.

    The layout is the `safetensors` library's (by dtype, largest item size first, then by name),
    so the file is byte for byte what `safetensors.numpy.save_file` writes for the same arrays.
    """
    header = {} if metadata is None else {"__metadata__": _check_metadata(dict(metadata))}
    arrays, dtypes = {}, {}
    for name, x in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"safetensors: tensor names must be strings other than '__metadata__', got {name!r}")
        arrays[name] = np.asarray(x)
        dtypes[name] = _safetensors_dtype(name, arrays[name])
    rank = {dtype: i for i, dtype in enumerate(WRITABLE.values())}
    order = sorted(arrays, key=lambda name: (rank[dtypes[name]], name))  # aligned, as the library does
    offset = 0
    for name in order:
        x = arrays[name]
        header[name] = {"dtype": dtypes[name], "shape": list(x.shape), "data_offsets": [offset, offset + x.nbytes]}
        offset += x.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the spec allows trailing spaces; they align the buffer to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in order:
            x = arrays[name]
            f.write(x.astype(x.dtype.newbyteorder("<"), copy=False).tobytes())  # C order, little-endian


def non_finite(name, x):  # str, np.ndarray -> "'name' (n nan, m inf of size)", or None when x is finite or not float
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        return f"{name!r} ({int(np.isnan(x).sum())} nan, {int(np.isinf(x).sum())} inf of {x.size})"
    return None


def check_finite(tensors):  # {name: np.ndarray} -> None
    """Raise ValueError naming every floating-point tensor that holds a NaN or an infinity (see `non_finite`)."""
    bad = [text for name, x in tensors.items() if (text := non_finite(name, x)) is not None]
    if bad:
        raise ValueError(f"non-finite weights in {len(bad)} tensor(s): " + "; ".join(bad))
