"""Python values into Arrow for the bridge: moved, not judged.

Every check of a value (dimension, NaN, type, unknown field) runs in the TypeScript core, so
a Python user gets exactly the error a TypeScript user gets. A column pyarrow cannot type
(mixed types, say) travels as JSON instead, and the core then names the offending record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import InvalidInputError

_MISSING = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _vectors(values: Any) -> pa.Array | None:
    """Equal-length numeric vectors as FixedSizeList<float32>, or None to send them another way."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2 or values.dtype.kind not in "fiu":
            return None
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
    if not values or any(v is None for v in values):
        return None
    first = values[0]
    if isinstance(first, np.ndarray) and all(isinstance(v, np.ndarray) for v in values):
        shapes = {v.shape for v in values}
        if len(shapes) != 1 or len(first.shape) != 1 or any(v.dtype.kind not in "fiu" for v in values):
            return None
        flat = np.ascontiguousarray(np.stack(values), dtype=np.float32).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), first.shape[0])
    return None


def column(values: Any, family: str | None) -> tuple[pa.Array | None, list[Any] | None]:
    """One column as Arrow, or (None, JSON values) when Arrow cannot hold it faithfully."""
    if family == "embedding":
        vectors = _vectors(values)
        if vectors is not None:
            return vectors, None
        values = list(values)
        if all(isinstance(v, (list, tuple)) and not any(isinstance(x, (bool, np.bool_)) for x in v) for v in values):
            try:
                return pa.array(values), None
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                pass
        return None, [_jsonable(v) for v in values]
    if family == "binary":
        try:
            return pa.array([None if v is None else bytes(v) if not isinstance(v, bytes) else v for v in values], pa.binary()), None
        except (TypeError, ValueError):
            return None, [_jsonable(v) for v in values]
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return None, [_jsonable(v) for v in values]
    if pa.types.is_null(array.type) and values:
        return None, [None] * len(values)
    return array, None


def records_payload(records: Any, families: Mapping[str, str]) -> tuple[pa.Table, dict[str, Any]]:
    """``append_many``'s records as a table plus what the bridge needs to rebuild them."""
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    if isinstance(records, pa.Table):
        return records, {}
    if isinstance(records, Mapping) or not isinstance(records, Iterable) or isinstance(records, (str, bytes)):
        raise InvalidInputError(
            "ERR_DATASET_INVALID_OPTION",
            f"Invalid records {type(records).__name__}: pass a list of dicts, a pyarrow.Table or a RecordBatch",
            {"option": "records", "value": type(records).__name__},
        )
    rows = list(records)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInputError(
                "ERR_DATASET_INVALID_OPTION",
                f"Invalid records[{i}] {type(row).__name__}: each record is a dict of field values",
                {"option": f"records[{i}]", "value": type(row).__name__},
            )
    keys: dict[str, None] = {}
    for row in rows:
        for key in row:
            keys.setdefault(str(key), None)
    arrays: dict[str, pa.Array] = {}
    json_columns: dict[str, list[Any]] = {}
    missing: dict[str, list[int]] = {}
    for key in keys:
        values = [row.get(key, _MISSING) for row in rows]
        absent = [i for i, v in enumerate(values) if v is _MISSING]
        if absent:
            missing[key] = absent
            values = [None if v is _MISSING else v for v in values]
        array, as_json = column(values, families.get(key))
        if array is not None:
            arrays[key] = array
        else:
            json_columns[key] = as_json or []
    extra: dict[str, Any] = {"rows": len(rows)}
    if json_columns:
        extra["jsonColumns"] = json_columns
    if missing:
        extra["missing"] = missing
    return pa.table(arrays) if arrays else pa.table({}), extra


def samples_payload(samples: Any, family: str) -> tuple[pa.Table, dict[str, Any]]:
    """Layer samples, ``[(anchor, value), ...]`` or ``(anchors, values)``, as a table."""
    two_arrays = (
        isinstance(samples, tuple) and len(samples) == 2 and not isinstance(samples[0], tuple) and hasattr(samples[0], "__len__")
    )
    values: Any
    if two_arrays:
        anchors = list(samples[0])
        values = samples[1] if isinstance(samples[1], np.ndarray) and samples[1].ndim == 2 else list(samples[1])
        if len(anchors) != len(values):
            raise InvalidInputError(
                "ERR_DATASET_INVALID_SAMPLE",
                f"Invalid samples: {len(anchors)} anchors but {len(values)} values",
                {"anchors": len(anchors), "values": len(values)},
            )
    else:
        pairs = list(samples)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidInputError(
                    "ERR_DATASET_INVALID_SAMPLE",
                    f"Invalid samples[{i}] {_jsonable(pair)!r}: each sample is (anchor, value)",
                    {"index": i},
                )
        anchors = [p[0] for p in pairs]
        values = [p[1] for p in pairs]
    extra: dict[str, Any] = {}
    columns: dict[str, pa.Array] = {}
    if two_arrays and isinstance(samples[0], np.ndarray) and samples[0].dtype.kind in "iu" and (samples[0] >= 0).all():
        columns["anchor"] = pa.array(np.asarray(samples[0]).astype(np.uint64, copy=False))
    elif all(_is_uint64(a) for a in anchors):
        columns["anchor"] = pa.array([int(a) for a in anchors], pa.uint64())
    else:
        # Not all uint64: sent as they are, for the core to refuse and name the sample.
        extra["jsonAnchors"] = [_jsonable(a) for a in anchors]
    array, as_json = column(values, family)
    if array is None:
        extra["jsonValues"] = as_json
    else:
        columns["value"] = array
    return pa.table(columns) if columns else pa.table({}), extra


def _is_uint64(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and 0 <= int(value) < 1 << 64


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def table_from_ipc(buffer: pa.Buffer) -> pa.Table:
    return pa.ipc.open_stream(buffer).read_all()
