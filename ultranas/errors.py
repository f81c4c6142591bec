"""One exception type for every user mistake: the CLI prints its message as one line and exits non-zero."""


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and other control characters escaped (a newline shows as
    ``\\n``), so a message quoting a user's key, file name or value still prints as the one line promised."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class UserError(Exception):
    """A problem with the user's input or environment, worded as what was wrong and what to do. The message is
    kept to one line (see :func:`one_line`), whatever user text it quotes."""

    exit_code = 2

    def __init__(self, message: object = "", *args):
        super().__init__(one_line(message), *args)


class RunFailed(UserError):
    """A run that produced nothing usable (every trial failed or was screened out): said loudly, exit 1."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a search; ``run_dir`` is where to resume."""

    def __init__(self, run_dir):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
