"""The ``gcop`` command: the dispatcher (:mod:`.main`), one module per sub-command, one argument
engine (:mod:`.args`) and the exit statuses (:mod:`.exit_codes`)."""

from gcop_env.cli.main import main

__all__ = ["main"]
