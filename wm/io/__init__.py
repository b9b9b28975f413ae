"""HDF5 artifacts: the schema per kind, atomic writing, and the validating loader (docs/architecture.md, "Artifacts")."""

from wm.io.artifact import (
    Artifact,
    InputRef,
    check_output,
    commit,
    compute_fingerprint,
    mark_as_image_stack,
    open_artifact,
    write_root_attributes,
)
from wm.io.schema import SCHEMAS

__all__ = [
    "Artifact",
    "InputRef",
    "SCHEMAS",
    "check_output",
    "commit",
    "compute_fingerprint",
    "mark_as_image_stack",
    "open_artifact",
    "write_root_attributes",
]
