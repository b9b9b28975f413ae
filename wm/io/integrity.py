"""Damage detection for artifacts: a file is either what its stage wrote, or one sentence says where it is not.

Three layers, from the bytes up (docs/architecture.md, "Artifacts"):

1. Bytes. Files are written in the HDF5 1.10 format, which checksums all metadata, and every array
   dataset carries a Fletcher-32 checksum per chunk (`wm.io.artifact.create_dataset`). A damaged
   byte is a read error, never a silently different number.
2. Structure. When an artifact is committed, `seal` records its contents in the root attribute
   `wm_contents_json`: every attribute (a digest of its value) and every dataset (dtype, shape and
   how many non-finite values it held). `check_sealed` compares a file with that record when it is
   opened: an attribute deleted or changed, a dataset deleted, retyped or reshaped, or NaN written
   into float data (found by a streamed scan, never loading a file whole) is named with its file.
3. Meaning. `wm.io.schema` checks what each kind needs (datasets, attribute types, shapes that fit
   each other), which also covers files written before seals existed.

`find_damage` reads every byte of every dataset: the runner calls it on the inputs when a stage
fails with an unexpected error, to name a damaged input instead of printing a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from wm.errors import ArtifactError

CONTENTS = "wm_contents_json"
# Rows per read when streaming a dataset: about 16 MiB at a time whatever the row size.
_READ_BYTES = 16 << 20


def _rows_per_read(dataset: h5py.Dataset) -> int:
    row_bytes = max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize)
    return max(1, _READ_BYTES // row_bytes)


def _blocks(dataset: h5py.Dataset) -> Iterator[np.ndarray]:
    """The dataset's values in blocks of rows (the whole of a scalar)."""
    if dataset.shape is None:  # an empty (null) dataspace
        return
    if dataset.ndim == 0:
        yield np.asarray(dataset[()])
        return
    step = _rows_per_read(dataset)
    for begin in range(0, dataset.shape[0], step):
        yield dataset[begin : begin + step]


def _nonfinite(dataset: h5py.Dataset) -> int:
    """How many NaN or infinite values a float dataset holds, read block by block."""
    return sum(int(block.size - np.count_nonzero(np.isfinite(block))) for block in _blocks(dataset))


def _digest(value: Any) -> str:
    """A short digest of an attribute value that changes with its type as well as its content."""
    if isinstance(value, str):
        data = b"s" + value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = b"b" + value
    else:
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            data = b"o" + repr(array.tolist()).encode()
        else:
            data = array.dtype.str.encode() + repr(array.shape).encode() + array.tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _objects(f: h5py.File) -> Iterator[tuple[str, Any]]:
    """The root group and every group and dataset below it, with their paths ('/' for the root)."""
    yield "/", f
    found: list[tuple[str, Any]] = []
    f.visititems(lambda name, item: found.append((name, item)))
    yield from found


def _float(dataset: h5py.Dataset) -> bool:
    return dataset.dtype.kind in "fc"


def _record(f: h5py.File) -> dict[str, Any]:
    """What `seal` stores: every object's attribute digests, and every dataset's dtype, shape and non-finite count."""
    record: dict[str, Any] = {}
    for name, item in _objects(f):
        entry: dict[str, Any] = {"attributes": {key: _digest(item.attrs[key]) for key in item.attrs if key != CONTENTS}}
        if isinstance(item, h5py.Dataset):
            entry.update(dtype=item.dtype.str, shape=list(item.shape) if item.shape is not None else None)
            if _float(item):
                entry["nonfinite"] = _nonfinite(item)
        record[name] = entry
    return record


def seal(f: h5py.File) -> None:
    """Record the file's contents in its root attribute `wm_contents_json` (the last write before a commit)."""
    f.attrs[CONTENTS] = json.dumps(_record(f), sort_keys=True, separators=(",", ":"))


def is_sealed(f: h5py.File) -> bool:
    """True if the file carries a contents record (every artifact written since schema version 2)."""
    return CONTENTS in f.attrs


def _damaged(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} is damaged: {what}; write it again with the stage that made it.")


def check_sealed(f: h5py.File, path: Path) -> None:
    """Raise ArtifactError naming the file and the attribute or dataset where `f` differs from its seal."""
    try:
        expected = json.loads(f.attrs[CONTENTS])
        if not isinstance(expected, dict):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise _damaged(path, f"its contents record '{CONTENTS}' is missing or is not JSON") from None
    present = dict(_objects(f))
    for name, entry in expected.items():
        item = present.get(name)
        where = "the root" if name == "/" else f"'{name}'"
        if item is None:
            raise _damaged(path, f"the {'dataset' if 'dtype' in entry else 'group'} '{name}' is missing")
        if ("dtype" in entry) != isinstance(item, h5py.Dataset):
            raise _damaged(path, f"'{name}' is no longer a {'dataset' if 'dtype' in entry else 'group'}")
        if "dtype" in entry:
            _check_dataset(path, name, item, entry)
        _check_attributes(path, item, entry.get("attributes", {}), where)
    extra = sorted(set(present) - set(expected))
    if extra:
        raise _damaged(path, f"it holds '{extra[0]}', which its stage did not write")


def _check_attributes(path: Path, item: Any, expected: dict[str, str], where: str) -> None:
    names = set(item.attrs.keys()) - {CONTENTS}
    for key, digest in expected.items():
        if key not in names:
            raise _damaged(path, f"the attribute '{key}' of {where} is missing")
        try:
            value = item.attrs[key]
        except (OSError, TypeError, ValueError, UnicodeDecodeError):
            raise _damaged(path, f"the attribute '{key}' of {where} cannot be read") from None
        if _digest(value) != digest:
            raise _damaged(path, f"the attribute '{key}' of {where} is not the value its stage wrote")
    extra = sorted(names - set(expected))
    if extra:
        raise _damaged(path, f"{where} has an attribute '{extra[0]}' its stage did not write")


def _check_dataset(path: Path, name: str, dataset: h5py.Dataset, entry: dict[str, Any]) -> None:
    if dataset.dtype.str != entry["dtype"]:
        raise _damaged(path, f"the dataset '{name}' has dtype {dataset.dtype} where its stage wrote {np.dtype(entry['dtype'])}")
    shape = list(dataset.shape) if dataset.shape is not None else None
    if shape != entry["shape"]:
        raise _damaged(path, f"the dataset '{name}' has shape {tuple(shape or ())} where its stage wrote {tuple(entry['shape'] or ())}")
    if "nonfinite" in entry:
        try:
            found = _nonfinite(dataset)
        except (OSError, RuntimeError) as exc:  # a chunk whose checksum or compression fails
            raise _damaged(path, f"the dataset '{name}' cannot be read ({first_line(exc)})") from None
        if found != entry["nonfinite"]:
            raise _damaged(path, f"the dataset '{name}' holds {found} NaN or infinite values where its stage wrote {entry['nonfinite']}")


def find_damage(f: h5py.File, path: Path) -> str | None:
    """Read every attribute and every byte of every dataset; the sentence naming the first damage found, or None."""
    name, item = "/", f
    try:
        for name, item in _objects(f):
            for key in item.attrs:
                item.attrs[key]
            if isinstance(item, h5py.Dataset):
                for _ in _blocks(item):
                    pass
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        what = "the root" if name == "/" else f"the {'dataset' if isinstance(item, h5py.Dataset) else 'group'} '{name}'"
        return str(_damaged(path, f"{what} cannot be read ({first_line(exc)})"))
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (HDF5's run over several), or its type's name if it has none."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
