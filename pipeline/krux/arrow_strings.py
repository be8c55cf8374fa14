"""A string array's offsets and bytes, read straight from its Arrow buffers (no copy).

Scanning the data buffer with numpy is several times faster than a per-value kernel, and
slicing it is how lines reach a file without a Python object per line. One place knows the
layout: `string` has int32 offsets, `large_string` int64, and a slice keeps its parent's
buffers with an offset into them.
"""

import numpy as np
import pyarrow as pa

__all__ = ["value_bytes", "value_offsets"]


def value_offsets(strings: pa.Array) -> np.ndarray:
    """`len(strings) + 1` positions in the data buffer: where each value starts, then where the
    last one ends (a view of the offsets buffer, its own integer type)."""
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    buffer = strings.buffers()[1]
    if buffer is None:  # an empty array may have no offsets buffer
        return np.zeros(1, offset_type)
    return np.frombuffer(buffer, offset_type)[strings.offset : strings.offset + len(strings) + 1]


def value_bytes(strings: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of the array's values, end to end (a view of the data buffer)."""
    offsets = value_offsets(strings)
    data = strings.buffers()[2]
    if data is None or offsets[0] == offsets[-1]:
        return np.empty(0, np.uint8)
    return np.frombuffer(data, np.uint8)[int(offsets[0]) : int(offsets[-1])]
