"""The exceptions a user can cause, each carrying the exit code the CLI returns for it.

Exit codes (docs/architecture.md, "Errors and exit codes"): 0 done or already up to date, 1 runtime failure, 2 usage error or bad
input artifact. Messages are one sentence that names the file or option and the fix.
"""


class WMError(Exception):
    """A failure reported to the user as one sentence, without a traceback."""

    exit_code = 1


class UsageError(WMError):
    """Bad command-line input or bad configuration (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """An unknown key, a wrong type or an invalid value in a stage configuration."""


class ArtifactError(UsageError):
    """An input file that is not a valid artifact of the expected kind."""


class OutputExistsError(UsageError):
    """The output path holds something this run would overwrite."""


class OutputLockedError(UsageError):
    """Another run is writing the same output (it holds the output's lock)."""


class WorkerError(WMError):
    """A parallel worker died, hung or raised; the run stopped loudly instead of hanging."""


class DiskFull(WMError):
    """No space left for an output: the run stopped before writing, keeping what it had done (exit code 1)."""


class Interrupted(WMError):
    """Ctrl-C or SIGTERM: the work done so far is kept and the same command resumes it."""

    exit_code = 130


class TrainingDiverged(WMError):
    """A loss or gradient became NaN or infinite; training stopped and the last good checkpoint is kept."""
