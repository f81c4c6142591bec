"""One exception type for every user mistake: the CLI prints its message as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, worded as what was wrong and what to do."""

    exit_code = 2
