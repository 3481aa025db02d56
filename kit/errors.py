"""One exception type for user-facing errors: the CLI prints its message on one line, no traceback."""


class KitError(Exception):
    """A problem with the user's input (file, row, value) that the user can fix; one raised in a DataLoader
    worker comes back holding the worker's whole traceback, of which only the last line (the message) is kept."""

    def __init__(self, message: str = "", *args):
        message = str(message)
        if message.startswith("Caught KitError in DataLoader worker"):
            last = [ln for ln in message.splitlines() if ln.strip()][-1]
            message = last.split("KitError: ", 1)[-1]
        super().__init__(message, *args)
