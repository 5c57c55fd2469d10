"""An independent reader and writer of the safetensors format, with numpy and the standard
library only: the other side of paramtree's interoperability tests."""
import json
import struct

import numpy as np

DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int32"): "I32",
          np.dtype("int64"): "I64", np.dtype("bool"): "BOOL"}
NUMPY = {v: k for k, v in DTYPES.items()}


def write_st(path, tensors, metadata=None):
    """The format's rules: u64 little-endian header length, JSON header padded with spaces to
    8 bytes, little-endian data, offsets relative to the data section, no holes."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors:
        a = a.copy(order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_st(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    arrays, covered = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = info["data_offsets"]
        assert begin == covered, f"{name}: hole or overlap"
        covered = end
        dt = NUMPY[info["dtype"]].newbyteorder("<")
        arrays[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(info["shape"])
    assert covered == len(data), "data section not covered exactly"
    return arrays, metadata
