"""Usage errors of the ``gcop`` commands: one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
import typing

EXIT_USAGE = 2


class OneLineErrorParser(argparse.ArgumentParser):
    """``prog: error: ...`` on one line with exit 2, not the usage block of every flag first."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def usage_error(prog: str, message: object) -> int:
    """Print ``prog: error: message`` and return the usage exit status."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE
