"""HDF5 artifacts: root attributes, fingerprints, atomic writes and the one validating loader.

Every stage output is one HDF5 file whose root attributes describe it (docs/architecture.md, "Artifacts"). Files are
written under a temporary name in the destination folder and moved into place with `os.replace`
only when complete, so a crash never leaves a half-written file under the final name. Everything is
read through `open_artifact`, which turns every way a file can be wrong into one clear sentence.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

import wm
from wm.errors import ArtifactError, DiskFull, OutputExistsError, UsageError
from wm.io.integrity import check_sealed, first_line, is_sealed, seal
from wm.io.lock import check_unchanged
from wm.io.schema import SCHEMAS, validate_artifact

# Lowest and highest HDF5 file format written: 1.10's checksums its metadata; Debian's h5dump, HDFView and h5web read it.
FILE_FORMAT = ("v110", "v110")

ROOT_ATTRIBUTES = (
    "wm_kind",
    "wm_schema_version",
    "wm_version",
    "created_utc",
    "stage",
    "seed",
    "config_json",
    "inputs_json",
    "fingerprint",
    "system_json",
)

# Attributes that make HDF viewers (h5web, HDFView) show an image stack as pictures.
IMAGE_ATTRIBUTES = {
    "CLASS": np.bytes_("IMAGE"),
    "IMAGE_SUBCLASS": np.bytes_("IMAGE_TRUECOLOR"),
    "INTERLACE_MODE": np.bytes_("INTERLACE_PIXEL"),
    "IMAGE_VERSION": np.bytes_("1.2"),
}


def open_h5(path: str | Path, mode: str = "r", *, chunk_cache_bytes: int | None = None, resumable: bool = False) -> h5py.File:
    """`h5py.File`, with its descriptor closed on exec.

    HDF5 opens files without O_CLOEXEC, so a program started while the file is open (ViZDoom runs
    its engine as a child process) would inherit the descriptor and HDF5's lock with it, and keep
    the file locked after we close it. Every HDF5 file wm opens goes through here.
    `chunk_cache_bytes` enlarges HDF5's per-dataset chunk cache (1 MiB by default) for writers.

    Files are written in the HDF5 1.10 format (`FILE_FORMAT`), which checksums all metadata. A file
    that stays open for appending and is resumed after a kill (`resumable`: a rollout's partial
    file, the Dreamer replay) is written in the oldest format instead: 1.10's marks a file "open for
    writing" in its superblock, and after a SIGKILL HDF5 refuses to open it again until `h5clear`
    is run on it. Its data still carries chunk checksums, and its seal covers the rest.
    """
    options: dict[str, Any] = {"rdcc_nbytes": chunk_cache_bytes} if chunk_cache_bytes else {}
    if mode != "r" and not resumable:
        options["libver"] = FILE_FORMAT
    f = h5py.File(path, mode, **options)
    try:
        handle = f.id.get_vfd_handle()
        fcntl.fcntl(handle, fcntl.F_SETFD, fcntl.fcntl(handle, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
    except BaseException:
        f.close()
        raise
    return f


def create_dataset(group: h5py.Group, name: str, data: Any = None, **options: Any) -> h5py.Dataset:
    """`group.create_dataset`, with a Fletcher-32 checksum on every chunk of every array dataset.

    With the checksummed metadata of `FILE_FORMAT`, any damaged byte of an artifact is an error when
    it is read, never a silently wrong number (`wm.io.verify`). Every dataset wm writes is made here.
    """
    shape = options.get("shape", np.shape(data) if data is not None else None)
    if shape != ():  # a scalar cannot be chunked, and only chunked data carries checksums
        options.setdefault("chunks", True)
        options["fletcher32"] = True
    return group.create_dataset(name, data=data, **options)


@dataclass(frozen=True)
class InputRef:
    """One input artifact of a stage, as recorded in `inputs_json`."""

    name: str
    kind: str
    path: str
    fingerprint: str


def compute_fingerprint(
    stage: str, stage_version: int, config: Mapping[str, Any], inputs: Iterable[InputRef], seed: int
) -> str:
    """Hash of everything that determines an artifact's content: stage, version, config, inputs, seed."""
    payload = {
        "stage": stage,
        "stage_version": stage_version,
        "config": dict(config),
        "inputs": sorted((ref.name, ref.fingerprint) for ref in inputs),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _version_of(distribution: str) -> str | None:
    try:
        return _metadata.version(distribution)
    except _metadata.PackageNotFoundError:
        return None


def system_info() -> dict[str, Any]:
    """Versions of Python and the main libraries, read without importing them (no TensorFlow start-up)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("tensorflow", "keras", "tensorflow-probability", "h5py", "numpy", "gymnasium", "vizdoom"):
        info[dist] = _version_of(dist)
    return info


def write_root_attributes(
    f: h5py.File,
    *,
    kind: str,
    stage: str,
    seed: int,
    config_json: str,
    inputs: Iterable[InputRef],
    fingerprint: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the root attributes every artifact carries (plus kind-specific `extra` ones)."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    f.attrs["wm_kind"] = kind
    f.attrs["wm_schema_version"] = SCHEMAS[kind].version
    f.attrs["wm_version"] = wm.__version__
    f.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["stage"] = stage
    f.attrs["seed"] = int(seed)
    f.attrs["config_json"] = config_json
    f.attrs["inputs_json"] = json.dumps([ref.__dict__ for ref in inputs])
    f.attrs["fingerprint"] = fingerprint
    f.attrs["system_json"] = json.dumps(system_info(), sort_keys=True)
    for key, value in (extra or {}).items():
        f.attrs[key] = value


def mark_as_image_stack(dataset: h5py.Dataset) -> None:
    """Tag a [N, H, W, 3] uint8 dataset so that HDF viewers display it as truecolor images."""
    for key, value in IMAGE_ATTRIBUTES.items():
        dataset.attrs[key] = value


def file_identity(f: h5py.File) -> tuple[int, int]:
    """(device, inode) of an open HDF5 file: which file this process is writing, whatever its name becomes."""
    stat = os.fstat(f.id.get_vfd_handle())
    return stat.st_dev, stat.st_ino


def commit(temporary: Path, final: Path, written: tuple[int, int] | None = None, *, seal_it: bool = True) -> None:
    """Seal a complete artifact (`wm.io.integrity.seal`) and move it into place atomically, after flushing it to disk.

    `written` is the (device, inode) of the file this process wrote: if `temporary` is now another
    file, nothing is moved. An output locked by this run is not replaced if it appeared or changed
    since the run started (`wm.io.lock.check_unchanged`). `seal_it=False` commits a file that is
    sealed already, or is not HDF5 (a video).
    """
    with open(temporary, "rb+") as handle:
        stat = os.fstat(handle.fileno())
        if written is not None and (stat.st_dev, stat.st_ino) != tuple(written):
            raise OutputExistsError(
                f"{temporary} is not the file this run wrote (another program replaced it); nothing was moved to {final}."
            )
        if seal_it:
            ensure_space(Path(temporary).parent, SEAL_BYTES, f"the contents record of {final}")
            with open_h5(temporary, "r+", resumable=True) as f:  # the format the file has; opening does not change it
                seal(f)
        os.fsync(handle.fileno())
    check_unchanged(Path(final))
    os.replace(temporary, final)


# Room kept free for a seal and HDF5's metadata when a streamed file is checked for space.
SEAL_BYTES = 4 << 20


def ensure_space(folder: Path, needed: int, what: str, kept: str = "") -> None:
    """Raise DiskFull before writing `needed` bytes into `folder` if the disk has less free.

    HDF5 cannot be trusted with a full disk: its writes fail inside its caches, where the errors
    are lost or crash the process. Streamed writers therefore check the space before each block.
    `kept` says what is kept for the rerun.
    """
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFull(f"No space left on the disk of {folder} for {what} ({_mib(free)} free, about {_mib(needed)} needed); "
                       f"free some space and run the same command again{f' ({kept})' if kept else ''}.")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def write_bytes(path: Path, data: Any) -> tuple[int, int]:
    """Write `data` as a new file `path`, flushed to disk; its (device, inode). On any failure nothing is left behind."""
    identity = None
    try:
        try:
            handle = open(path, "xb")
        except FileExistsError:
            raise OutputExistsError(f"{path} is not the file this run wrote (another program put it there); nothing was moved into place.") from None
        with handle:
            stat = os.fstat(handle.fileno())
            identity = (stat.st_dev, stat.st_ino)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        if identity is not None:
            _remove_if_ours(path, identity)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFull(f"No space left on the disk of {path.parent} to write {path.name} ({_mib(len(data))}); "
                           "free some space and run the same command again.") from None
        raise
    return identity


@contextlib.contextmanager
def writing_artifact(out: Path, *, streamed: bool = False) -> Iterator[h5py.File]:
    """An HDF5 file to fill, sealed and moved into place as `out` when the block ends without error.

    The file is built in memory and written in one go when complete, so that a full disk is one
    clean error (`DiskFull`), never a failed write deep in HDF5. `streamed=True` is for arrays too
    large for memory (latents): the file is written in place as `.<name>.tmp` beside `out`, and the
    caller checks the free space first (`ensure_space`). On any error or interruption the temporary
    file is deleted, and `out` is left as it was.
    """
    temporary = Path(out).parent / f".{Path(out).name}.tmp"
    temporary.unlink(missing_ok=True)  # left by a killed run: the output's lock (held by the caller) says no live run writes it
    written = None
    try:
        if streamed:
            with open_h5(temporary, "w") as f:
                written = file_identity(f)
                yield f
            commit(temporary, Path(out), written)
            return
        buffer = io.BytesIO()
        with h5py.File(buffer, "w", libver=FILE_FORMAT) as f:
            yield f
            seal(f)
        written = write_bytes(temporary, buffer.getbuffer())
        commit(temporary, Path(out), written, seal_it=False)
    except BaseException:
        _remove_if_ours(temporary, written)
        raise


def _remove_if_ours(path: Path, written: tuple[int, int] | None) -> None:
    """Delete `path` if it is the file this process wrote (`written`: its device and inode; None: nothing was written)."""
    if written is None:
        return
    try:
        stat = path.stat()
    except FileNotFoundError:
        return
    if (stat.st_dev, stat.st_ino) == tuple(written):
        path.unlink(missing_ok=True)


def ensure_writable_folder(out: Path) -> None:
    """Create the output folder if needed and prove it is writable, or raise one clear sentence."""
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wm-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"Output folder {folder} is not writable ({reason}); choose another --out.") from None


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint of an existing wm artifact, or None if the file is not a readable wm artifact."""
    try:
        with open_h5(path) as f:
            value = f.attrs.get("fingerprint")
    except (OSError, ValueError):
        return None
    return _as_str(value) if value is not None else None


def holds(path: Path, fingerprint: str) -> str:
    """What `path` holds for a run with `fingerprint`: "nothing", "same" (its result), "other" (another run's) or "unreadable"."""
    if not path.exists():
        return "nothing"
    found = read_fingerprint(path)
    return "unreadable" if found is None else "same" if found == fingerprint else "other"


def check_output(out: Path, fingerprint: str, *, force: bool) -> bool:
    """Decide what to do about an output path before a stage starts work.

    Returns True when `out` already holds this exact result (same fingerprint): the stage has
    nothing to do. Returns False when the stage should run. Raises OutputExistsError when `out`
    holds something else and `force` is not set; with `force` the old file is replaced only when
    the new one is complete.
    """
    ensure_writable_folder(out)
    if out.is_dir():
        raise OutputExistsError(f"Output path {out} is a folder; give a file name ending in .h5.")
    held = holds(out, fingerprint)
    if held in ("nothing", "same"):
        return held == "same"
    if force:
        return False
    existing = read_fingerprint(out)
    what = f"a result with another fingerprint ({existing})" if existing else "a file that is not a wm artifact"
    raise OutputExistsError(
        f"{out} already holds {what}; pass --force to replace it or choose another --out."
    )


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Artifact:
    """A validated, read-only artifact: the open h5py file plus its decoded root attributes."""

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self.file = file
        attrs = file.attrs
        self.kind: str = _as_str(attrs["wm_kind"])
        self.schema_version = int(attrs["wm_schema_version"])
        self.fingerprint: str = _as_str(attrs.get("fingerprint", ""))
        self.stage: str = _as_str(attrs.get("stage", ""))
        self.seed = int(attrs.get("seed", -1))

    def attr(self, name: str, default: Any = None) -> Any:
        """A root attribute, with bytes decoded to str."""
        value = self.file.attrs.get(name, default)
        return _as_str(value) if isinstance(value, (bytes, np.bytes_)) else value

    def json_attr(self, name: str, default: Any = None) -> Any:
        """A root attribute holding JSON, decoded."""
        value = self.attr(name)
        return default if value is None else json.loads(value)

    @property
    def config(self) -> dict[str, Any]:
        return self.json_attr("config_json", {})

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.json_attr("inputs_json", [])

    def input_ref(self, name: str) -> InputRef:
        """This artifact as an input of another stage."""
        return InputRef(name=name, kind=self.kind, path=str(self.path), fingerprint=self.fingerprint)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_artifact(path: str | Path, kind: str | Iterable[str] | None = None) -> Artifact:
    """Open and validate an artifact, or raise ArtifactError with one sentence naming the file and the fix.

    Checks, in order: the file exists, is HDF5, is not truncated, is a wm artifact, is of the
    expected kind, has a schema version this wm can read, and has the datasets (with consistent
    shapes) its kind requires.
    """
    path = Path(path)
    kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
    if not path.exists():
        raise ArtifactError(f"{path} does not exist.")
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not an artifact file.")
    if not h5py.is_hdf5(path):
        raise ArtifactError(f"{path} is not an HDF5 file; give a file written by a wm stage.")
    try:
        file = open_h5(path)
    except OSError as exc:
        raise ArtifactError(
            f"{path} could not be opened as HDF5 ({first_line(exc)}); the file is truncated or corrupted, "
            "so write it again with the stage that made it."
        ) from None
    try:
        if "wm_kind" not in file.attrs:
            raise ArtifactError(f"{path} is an HDF5 file but not a wm artifact (it has no wm_kind attribute).")
        found = _as_str(file.attrs["wm_kind"])
        if found not in SCHEMAS:
            raise ArtifactError(f"{path} has an unknown artifact kind '{found}'.")
        if kinds is not None and found not in kinds:
            wanted = " or ".join(f"'{k}'" for k in sorted(kinds))
            raise ArtifactError(f"{path} is a '{found}' artifact, but a {wanted} artifact is needed here.")
        version = _schema_version(file, path)
        supported = SCHEMAS[found].version
        if version > supported:
            raise ArtifactError(
                f"{path} has {found} schema version {version}, newer than this wm {wm.__version__} reads "
                f"(up to {supported}); upgrade wm to read it."
            )
        if version >= SEALED_SINCE or is_sealed(file):
            check_sealed(file, path)
        validate_artifact(found, file, path)
        return Artifact(path, file)
    except ArtifactError:
        file.close()
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:  # unreadable blocks: truncated or damaged
        file.close()
        raise ArtifactError(
            f"{path} could not be read ({first_line(exc)}); the file is truncated or corrupted, "
            "so write it again with the stage that made it."
        ) from None


# Schema version from which every artifact carries a contents record (`wm.io.integrity`).
SEALED_SINCE = 2


def _schema_version(file: h5py.File, path: Path) -> int:
    """The file's `wm_schema_version`, or ArtifactError if it is missing or not a positive integer."""
    value = file.attrs.get("wm_schema_version")
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ArtifactError(f"{path} has an invalid schema version {value!r} (a positive integer is needed); write it again.")
    return int(value)
