"""One exception type for every user mistake: the CLI prints its message as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, worded as what was wrong and what to do."""

    exit_code = 2


class RunFailed(UserError):
    """A run that produced nothing usable (every trial failed or was screened out): said loudly, exit 1."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a search; ``run_dir`` is where to resume."""

    def __init__(self, run_dir):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
