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


class ContextLengthError(ClipworksError):
    """A text does not fit the text tower's context length and truncation was refused."""


def report_errors(run, *args) -> int:
    """`run(*args)`, with a ClipworksError turned into one 'clipworks: error: ...' line on stderr and status 1
    (for entry points outside the `clipworks` command, such as the demos)."""
    import sys

    try:
        return run(*args)
    except ClipworksError as exc:
        print(f"clipworks: error: {exc}", file=sys.stderr)
        return 1
