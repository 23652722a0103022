"""User-facing errors: each carries a one-line message naming the file or field at fault."""


class ClipworksError(Exception):
    """Base class; the CLI prints these as one line (no traceback unless --debug)."""


class InputFileError(ClipworksError):
    """A user-supplied file is missing, unreadable, corrupt or of the wrong kind."""


class ImageTooLargeError(InputFileError):
    """An image has more pixels than the caller's budget (decided from its header, before decoding)."""


class CheckpointError(ClipworksError):
    """A checkpoint cannot be read, or does not fit the requested architecture."""


class ConfigError(ClipworksError):
    """An unknown model name or an invalid configuration field."""


class DownloadError(ClipworksError):
    """A download is refused, fails, or does not match its expected SHA-256; `status` is the HTTP code if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ContextLengthError(ClipworksError):
    """A text does not fit the text tower's context length and truncation was refused."""


class MissingExtraError(ClipworksError):
    """An optional part's packages are not installed; the message names the pip extra that installs them."""


# pip extras (pyproject.toml's [project.optional-dependencies]) -> the modules each one installs
EXTRAS = {
    "video": ("av",),
    "serve": ("fastapi", "starlette", "uvicorn", "python_multipart"),
    "meteor": ("pycocoevalcap",),
    "heic": ("pillow_heif",),
}


def missing_extra(extra: str, purpose: str) -> str | None:
    """Why `purpose` cannot run (the modules of `extra` that are missing, and the pip command), or None."""
    import importlib.util

    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"{purpose} needs {', '.join(missing)}, which clipworks installs only on request: pip install 'clipworks[{extra}]'"


def require_extra(extra: str, purpose: str) -> None:
    """Raise MissingExtraError naming `pip install 'clipworks[extra]'` unless every module of `extra` is installed."""
    reason = missing_extra(extra, purpose)
    if reason is not None:
        raise MissingExtraError(reason)


def report_errors(run, *args) -> int:
    """`run(*args)`, with a ClipworksError turned into one 'clipworks: error: ...' line on stderr and status 1
    (for entry points outside the `clipworks` command, such as the demos)."""
    import sys

    try:
        return run(*args)
    except ClipworksError as exc:
        print(f"clipworks: error: {exc}", file=sys.stderr)
        return 1
