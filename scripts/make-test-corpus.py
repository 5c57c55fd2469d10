#!/usr/bin/python3
"""Writes the checked-in test corpus: malformed safetensors files (each must be rejected with a
clear paramtree error), valid ones, and .npy files in every byte and memory order paramtree
reads. Standard library only (numpy is not needed to write the .npy files).

Usage: scripts/make-test-corpus.py   (rewrites tests/data/)
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def st(header, data=b"", pad=True, length=None):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + data


F32x2 = struct.pack("<2f", 1.5, -2.0)

BAD = {
    # name: bytes  (each is rejected by the loader)
    "empty": b"",
    "short_length": b"\x05\x00\x00",
    "header_longer_than_file": struct.pack("<Q", 1000) + b"{}",
    "header_length_huge": struct.pack("<Q", 2**63) + b"{}",
    "invalid_json": struct.pack("<Q", 7) + b"{\"a\":[}",
    "not_an_object": st([1, 2, 3]),
    "invalid_utf8": struct.pack("<Q", 8) + b"{\"\xff\":1}",
    "unknown_dtype": st({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "unsupported_dtype": st({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
    "negative_offset": st({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, F32x2),
    "offsets_reversed": st({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, F32x2),
    "offset_out_of_range": st({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, F32x2),
    "size_disagrees_with_shape": st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, F32x2),
    "overlapping": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32x2),
    "hole": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32x2),
    "trailing_bytes": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, F32x2),
    "shape_overflows": st({"w": {"dtype": "F64", "shape": [2**32, 2**32, 2**4], "data_offsets": [0, 0]}}),
    "float_extent": st({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, F32x2),
    "missing_offsets": st({"w": {"dtype": "F32", "shape": [2]}}, F32x2),
    "metadata_not_strings": st({"__metadata__": {"a": 1}}),
    "bool_byte_not_0_or_1": st({"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07"),
    "deeply_nested": struct.pack("<Q", 20001) + b"[" * 10000 + b"]" * 10000 + b" ",
    "structure_names_missing_tensor": st({"__metadata__": {
        "paramtree.structure": json.dumps({"k": "array", "name": "nowhere"})}}),
    "structure_invalid": st({"__metadata__": {"paramtree.structure": "{\"k\":\"record\"}"}}),
    "structure_tie_outside_shared": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"k": "tied", "source": ".a", "transforms": []})}}),
    # --- hostile metadata (issue 12): each must be a format_error, never a crash ---
    # 100,000-deep brackets inside the metadata strings, which are parsed a second time.
    "deep_structure_metadata": st({"__metadata__": {"paramtree.structure": "[" * 100000 + "]" * 100000}}),
    "deep_ties_metadata": st({"__metadata__": {"paramtree.ties": "{\"a\":" * 100000 + "1" + "}" * 100000}}),
    # The header must start with '{': no leading space, newline or byte order mark.
    "header_leading_space": struct.pack("<Q", 8) + b" {}     ",
    "header_leading_newline": struct.pack("<Q", 8) + b"\n{}     ",
    "header_bom": struct.pack("<Q", 8) + b"\xef\xbb\xbf{}   ",
    # A NUL inside a tensor name: a C-string consumer would see "w".
    "nul_in_name": st({"w\u0000hidden": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "control_in_tie_name": st({"__metadata__": {"paramtree.ties": json.dumps(
        {"w\u0001": {"source": "a", "transforms": []}})}}),
    # A static integer of 2^64-1 would read back as -1.
    "static_int_overflows": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "int", "v": 2**64 - 1}]})}}),
    # A record field that is not an identifier would re-read as another path.
    "field_not_identifier": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "record", "name": "R", "fields": ["x[0]"], "statics": []},
                                 {"k": "none"}]})}}),
    "structure_child_count_too_large": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "list", "n": 1000000}, {"k": "none"}]})}}),
    "structure_trailing_nodes": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "none"}, {"k": "none"}]})}}),
    "structure_unknown_version": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 7, "nodes": []})}}),
    "structure_duplicate_dict_keys": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "dict", "keys": ["a", "a"]}, {"k": "none"}, {"k": "none"}]})}}),
    "structure_tie_to_nowhere": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "int", "v": 1},
                                 {"k": "tied", "source": "[7]", "transforms": []}]})}}),
    "structure_tie_bad_transform": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "w"},
                                 {"k": "tied", "source": "[0]", "transforms": [".reshape(5)"]}]})},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "structure_tie_scale_not_a_number": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "w"},
                                 {"k": "tied", "source": "[0]", "transforms": ["*0,5"]}]})},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    # Format 3 keeps a tie in paramtree.ties under its position's name: none there, or no path.
    "structure_v3_tie_not_in_ties": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "0"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"0": {"source": "0", "from": "[0]", "transforms": []}})},
        "0": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "structure_v3_tie_without_from": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "0"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"1": {"source": "0", "transforms": []}})},
        "0": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    # A tie to its own position, its source spelled as a field (`.b`) where the tree has a dict
    # key (['b']): refused whatever the spelling.
    "structure_v3_tie_to_itself_spelled_as_field": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "dict", "keys": ["a", "b"]},
                                 {"k": "array", "name": "a"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"b": {"source": "b", "from": ".b", "transforms": []}})},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "structure_reserved_record_bad_fields": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "record", "name": "pt.nn.Linear", "fields": ["weight", "weight"],
                                  "statics": []}, {"k": "none"}, {"k": "none"}]})}}),
    # --- names a terminal could be fooled by, and crafted ties (issue 27 §4) ---
    "rlo_in_name": st({"w\u202egpj.exe": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "c1_control_in_name": st({"w\u0085x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "zero_width_in_tie_name": st({"__metadata__": {"paramtree.ties": json.dumps(
        {"w\u200b": {"source": "a", "transforms": []}})}}),
    # A reshape whose element count wraps around 2^64 to the source's 0.
    "structure_v3_reshape_wraps": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "0"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"1": {"source": "0", "from": "[0]",
                                            "transforms": [".reshape(4294967296,4294967296)"]}})},
        "0": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}),
    "structure_v3_tie_to_string_leaf": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "str", "v": "relu"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"1": {"source": "0", "from": "[0]", "transforms": []}})}}),
    "structure_v3_tie_to_none": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "none"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"1": {"source": "0", "from": "[0]", "transforms": []}})}}),
    # One tensor named at two leaves: they would alias after load, a tie nobody declared.
    "structure_v3_tensor_at_two_leaves": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "list", "n": 2}, {"k": "array", "name": "0"},
                                 {"k": "array", "name": "0"}]})},
        "0": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "structure_v3_tag_to_missing_path": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": [["l1", "[5]"]]}, {"k": "list", "n": 2},
                                 {"k": "array", "name": "0"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"1": {"source": "0", "from": "[0]", "transforms": []}})},
        "0": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    # paramtree.ties names a tie the structure does not hold.
    "structure_v3_ties_disagree": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "list", "n": 2}, {"k": "array", "name": "0"},
                                 {"k": "array", "name": "1"}]}),
        "paramtree.ties": json.dumps({"2": {"source": "0", "from": "[0]", "transforms": []}})},
        "0": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "1": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32x2),
    # Two ties whose sources hold each other's tie: expand would never end.
    "structure_v3_tie_cycle": st({"__metadata__": {"paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "list", "n": 2},
                                 {"k": "list", "n": 2}, {"k": "tied"}, {"k": "array", "name": "0.1"},
                                 {"k": "list", "n": 2}, {"k": "tied"}, {"k": "array", "name": "1.1"}]}),
        "paramtree.ties": json.dumps({"0.0": {"source": "1", "from": "[1]", "transforms": []},
                                      "1.0": {"source": "0", "from": "[0]", "transforms": []}})},
        "0.1": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "1.1": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32x2),
}
# The duplicate name is written by hand: a JSON library would keep only one.
dup_header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' \
             b'"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
BAD["duplicate_names"] = struct.pack("<Q", len(dup_header)) + dup_header + F32x2

GOOD = {
    "two_tensors": st({"__metadata__": {"format": "pt"},
                       "b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]},
                       "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                      F32x2 + struct.pack("<q", -7)),
    "unpadded_unaligned": st({"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}},
                             struct.pack("<d", 0.25), pad=False),
    "empty_tensor_list": st({}),
    # Format 3: the tie (transposed) only in paramtree.ties, with its path in "from".
    "paramtree_v3_transposed_tie": st({"__metadata__": {"format": "paramtree", "paramtree.structure": json.dumps(
        {"version": 3, "nodes": [{"k": "shared", "tags": []}, {"k": "dict", "keys": ["enc", "dec"]},
                                 {"k": "array", "name": "enc"}, {"k": "tied"}]}),
        "paramtree.ties": json.dumps({"dec": {"source": "enc", "transforms": [".T"], "from": "['enc']"}})},
        "enc": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}}, F32x2),
    # Format 2 of the structure with a transformed tie (scale 0.5: read under any locale).
    "paramtree_v2_scaled_tie": st({"__metadata__": {"format": "paramtree", "paramtree.structure": json.dumps(
        {"version": 2, "nodes": [{"k": "shared", "tags": []}, {"k": "dict", "keys": ["a", "b"]},
                                 {"k": "array", "name": "a"},
                                 {"k": "tied", "source": "['a']", "transforms": ["*0.5"]}]}),
        "paramtree.ties": json.dumps({"b": {"source": "a", "transforms": ["*0.5"]}})},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
}


def npy(descr, shape, payload, fortran=False, version=1):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", "(" + "".join(f"{s}, " for s in shape).rstrip(", ") +
        ("," if len(shape) == 1 else "") + ")")
    head_len = 10 if version == 1 else 12
    header += " " * ((64 - (head_len + len(header) + 1) % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode() + payload


NPY = {
    # values 0..5 as a [2, 3] array in each form
    "f4_c.npy": npy("<f4", (2, 3), struct.pack("<6f", *range(6))),
    "f8_big_endian.npy": npy(">f8", (2, 3), struct.pack(">6d", *range(6))),
    "i4_fortran.npy": npy("<i4", (2, 3), struct.pack("<6i", 0, 3, 1, 4, 2, 5), fortran=True),
    "i8_v2.npy": npy("<i8", (2, 3), struct.pack("<6q", *range(6)), version=2),
    "b1.npy": npy("|b1", (3,), b"\x01\x00\x01"),
    "bad_magic.npy": b"NOTNUMPY" + b"\0" * 32,
    "bad_descr.npy": npy("<c8", (1,), b"\0" * 8),
    "truncated_data.npy": npy("<f4", (2, 3), struct.pack("<3f", 0, 1, 2)),
}

for name, data in BAD.items():
    open(os.path.join(ROOT, "safetensors", f"bad_{name}.safetensors"), "wb").write(data)
for name, data in GOOD.items():
    open(os.path.join(ROOT, "safetensors", f"good_{name}.safetensors"), "wb").write(data)
for name, data in NPY.items():
    open(os.path.join(ROOT, "npy", name), "wb").write(data)
print(f"wrote {len(BAD)} bad and {len(GOOD)} good safetensors files, {len(NPY)} npy files")
