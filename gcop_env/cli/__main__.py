"""``python -m gcop_env.cli <command> ...``: the ``gcop`` command (e.g. under ``accelerate launch``)."""

import sys

from gcop_env.cli.main import main

sys.exit(main())
