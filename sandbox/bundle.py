"""The code that runs inside a sandbox, and how it gets there (host side).

The sandbox side is four packages of stdlib-and-pytest-only modules, named for the side of the
trust boundary they run on: ``supervisor`` (the sandbox's own process), ``judge`` (the trusted
test process), ``candidate`` (the candidate's processes) and ``wire`` (frames and data, both
sides). None of them is installed in the sandbox image: a sandbox starts ``python3 -I -c
BOOTSTRAP CONFIG``, and the host writes the modules' sources to its stdin as the first frame
(4-byte length, JSON ``{module name: [is_package, source]}``). The bootstrap imports them from
that bundle under their own names (``gcop_env.sandbox.supervisor.main``...), so a traceback names
the module, and the same modules can be imported on the host (the tests do).
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

SANDBOX_PACKAGES = ("wire", "judge", "supervisor", "candidate")
_ROOT = Path(__file__).resolve().parent
_PREFIX = "gcop_env.sandbox"

#: ``python3 -I -c BOOTSTRAP CONFIG``: reads the bundle from fd 0, then runs the supervisor.
BOOTSTRAP = r'''
import json, os, struct, sys
def _take(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise SystemExit(70)
        data += chunk
    return data
_SOURCES = json.loads(_take(struct.unpack(">I", _take(4))[0]).decode("utf-8"))
from importlib.machinery import ModuleSpec
class _BundleLoader:
    @staticmethod
    def create_module(spec):
        return None
    @staticmethod
    def exec_module(module):
        package, source = _SOURCES[module.__name__]
        path = "/gcop-sandbox/" + module.__name__.replace(".", "/") + ("/__init__.py" if package else ".py")
        module.__file__ = path
        exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
class _BundleFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        entry = _SOURCES.get(name)
        if entry is None:
            return None
        return ModuleSpec(name, _BundleLoader, is_package=bool(entry[0]))
sys.meta_path.insert(0, _BundleFinder)
from gcop_env.sandbox.supervisor.main import main
sys.exit(main(json.loads(sys.argv[1])))
'''


@functools.lru_cache(maxsize=1)
def bundle_sources() -> dict[str, list]:
    """{module name: [is_package, source]} of every sandbox-side module (and their parent packages)."""
    sources: dict[str, list] = {"gcop_env": [True, ""], _PREFIX: [True, ""]}
    for package in SANDBOX_PACKAGES:
        for path in sorted((_ROOT / package).glob("*.py")):
            if path.name == "__init__.py":
                sources[f"{_PREFIX}.{package}"] = [True, path.read_text(encoding="utf-8")]
            else:
                sources[f"{_PREFIX}.{package}.{path.stem}"] = [False, path.read_text(encoding="utf-8")]
    return sources


@functools.lru_cache(maxsize=1)
def bundle_frame() -> bytes:
    """The first frame a sandbox reads: the bundle."""
    body = json.dumps(bundle_sources()).encode("utf-8")
    return struct.pack(">I", len(body)) + body


def sandbox_command(python: str, config: dict) -> list[str]:
    """The command that starts a sandbox's supervisor (then write :func:`bundle_frame` to its stdin)."""
    return [python, "-I", "-c", BOOTSTRAP, json.dumps(config)]
