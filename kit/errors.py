"""One exception type for user-facing errors: the CLI prints its message on one line, no traceback."""


class KitError(Exception):
    """A problem with the user's input (file, row, value) that the user can fix."""
