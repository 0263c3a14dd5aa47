"""What the supervisor reads from a test file before a run (trusted; nothing of the run executes).

One ``ast.parse`` per file (cached by the server): the test names it defines, the modules it
imports, whether the plain runner can run it (plain ``def test_x():`` functions only), and the file
compiled with a cheap assert rewrite for the plain runner.
"""

import ast
import itertools
import time

def expected_test_names(source):
    """Names of the test functions a test file defines (``test*`` and ``Test*.test*``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return expected_in(tree)


def expected_in(tree):
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    names.add(node.name + "::" + item.name)
    return names


def needed_modules(source):
    """Top-level names of the modules ``source`` imports for sure.

    Absolute ``import x`` / ``from x import y`` anywhere, and ``pytest.importorskip("x")``;
    not imports guarded by a ``try`` that catches ``ImportError`` (the code copes without them).
    Unparsable code needs nothing (its own syntax error is its verdict).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return needed_in(tree, "importorskip" in source)


BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def blocks(node):
    """The statements (and except handlers, match cases) directly inside ``node``."""
    for field in BLOCK_FIELDS:
        value = getattr(node, field, None)
        if type(value) is list:
            yield from value


def needed_in(tree, expressions=True):
    """:func:`needed_modules` of a parsed file; ``expressions=False`` looks at statements only
    (enough when the text has no ``importorskip``, the one call it reads)."""
    names = set()
    children = ast.iter_child_nodes if expressions else blocks

    def visit(node, guarded):
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            catches = any(catches_import_error(h.type) for h in node.handlers)
            for child in node.body:
                visit(child, guarded or catches)
            for part in (node.handlers, node.orelse, node.finalbody):
                for child in part:
                    visit(child, guarded)
            return
        if not guarded:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and call_name(node.func) == "importorskip"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value.split(".")[0])
        for child in children(node):
            visit(child, guarded)

    visit(tree, False)
    return names


def call_name(func):
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def catches_import_error(handler_type):
    if handler_type is None:
        return True
    if isinstance(handler_type, ast.Tuple):
        return any(catches_import_error(elt) for elt in handler_type.elts)
    return call_name(handler_type) in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")



RESERVED_NAMES = frozenset((
    "pytestmark", "pytest_plugins", "__test__", "collect_ignore", "collect_ignore_glob", "setup", "teardown",
    "setup_module", "teardown_module", "setUpModule", "tearDownModule", "setup_function", "teardown_function",
))
COMPARE_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
ASSERT_HELPER = "@gcop_ar"  # not an identifier: the test file's own code cannot name it
_CO_NOT_PLAIN = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator
PLAN_CACHE_SIZE = 256  # test files kept analysed and compiled (an RL step validates each one G times)


def cached_plan(cache, source, path, modules):
    """The :class:`Plan` of a test file from ``cache`` (a dict, least recently used first), made and
    kept there when missing: GRPO validates each task's tests once per sampled completion."""
    key = (source, path, modules)
    plan = cache.pop(key, None)
    if plan is None:
        plan = Plan(source, path, modules)
        if len(cache) >= PLAN_CACHE_SIZE:
            del cache[next(iter(cache))]
    cache[key] = plan  # most recently used last
    return plan


def reserved(name):
    """A name pytest gives a meaning in a test module, other than a ``test*`` function."""
    return name in RESERVED_NAMES or name.startswith(("pytest_", "Test"))


def walk(tree):
    """Every node under ``tree`` (itself included), in the order of ``ast.walk`` (in a list; faster)."""
    nodes = [tree]
    append = nodes.append
    AST = ast.AST
    for node in nodes:
        for name in node._fields:
            value = getattr(node, name, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, AST):
                        append(item)
            elif isinstance(value, AST):
                append(value)
    return nodes


class Plan:
    """What the server reads from a test file before a run: one ``ast.parse`` for all of it.

    ``expected``: the test names it defines (:func:`expected_test_names`); ``needed``: the modules it
    imports (:func:`needed_modules`); ``tests``: its test functions in order when the plain runner
    can run it (else None, and ``why_not`` says why); ``code``: the file compiled with
    :class:`AssertRewriter`, for the plain runner; ``why_in_process``: why the file cannot run under
    trusted isolation (:func:`trusted_blocker`), None when it can; ``bound_names``: the names the
    file binds at its top level (a star import of the solution does not bind over them).
    """

    __slots__ = ("expected", "needed", "tests", "why_not", "code", "seconds", "why_in_process", "bound_names", "inline_ok",
                 "serial", "_codes")

    _serials = itertools.count(1)

    def __init__(self, source, path, candidate_modules=("solution",)):
        started = time.monotonic()
        self.serial = next(Plan._serials)  # (names this plan's code for the judge server, which keeps it)
        self.tests = self.code = None
        self._codes = {}
        self.bound_names = frozenset()
        self.inline_ok = False
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            self.expected, self.needed, self.why_not = None, set(), "does not parse"
            self.why_in_process = "the test file does not parse"
        else:
            nodes = walk(tree)  # (once: the readings below go through this list)
            self.expected, self.needed = expected_in(tree), needed_in(tree, "importorskip" in source)
            self.bound_names = bound_names(tree)
            self.why_in_process = trusted_blocker(tree, self.bound_names, candidate_modules, nodes)
            self.tests, self.why_not = plain_tests(tree, any(word in source for word in (":=", "global", "nonlocal")), nodes)
            self.inline_ok = self.tests is not None and self.why_in_process is None and inline_ok(tree, candidate_modules, nodes)
            if self.tests is not None:
                try:
                    AssertRewriter().rewrite(tree)
                    self.code = compile(tree, path, "exec", dont_inherit=True)
                    self._codes[path] = self.code
                except Exception as exc:  # pragma: no cover - a valid tree compiles
                    self.tests, self.why_not = None, "does not compile (%s)" % type(exc).__name__
        self.seconds = time.monotonic() - started

    def code_at(self, path):
        """The plain runner's code of the file as if it were at ``path`` (its frames name that file)."""
        code = self._codes.get(path)
        if code is None and self.code is not None:
            code = self._codes[path] = _renamed(self.code, path)
        return code


def _renamed(code, path):
    """``code`` (and the code objects inside it) as compiled from the file at ``path``."""
    consts = tuple(_renamed(const, path) if type(const) is type(code) else const for const in code.co_consts)
    return code.replace(co_filename=path, co_consts=consts)


# --------------------------------------------------------------------- trusted isolation's reach
#
# Under trusted isolation the tests run in the judge's process and the solution in another (see
# gcop_env.sandbox.judge.remote). A test file that needs the two in one process runs in-process
# instead: this is decided here, from the file's text alone, before anything runs. The rules read
# for what cannot cross as data: patching (the solution's module or the process: monkeypatch,
# mock), files and directories both sides would share (tmp_path, open, os.*), process-wide state
# the solution would have to see (sys.stdin, os.environ, random seeds, the recursion limit,
# logging, warnings), reflection on the solution's objects (inspect, __dict__, __code__...),
# subclassing the solution's classes, and concurrency (threads, processes, asyncio).

_BLOCKED_MODULES = {
    "unittest.mock": "mocks", "mock": "mocks", "pytest_mock": "mocks", "freezegun": "mocks", "tempfile": "files",
    "pathlib": "files", "shutil": "files", "glob": "files", "fnmatch": "files", "zipfile": "files", "tarfile": "files",
    "subprocess": "processes", "multiprocessing": "processes", "concurrent": "threads", "threading": "threads",
    "asyncio": "asyncio", "signal": "signals", "pickle": "pickling", "copyreg": "pickling", "marshal": "pickling",
    "shelve": "pickling", "dill": "pickling", "cloudpickle": "pickling", "inspect": "reflection",
    "importlib": "reflection", "types": "reflection", "gc": "reflection", "weakref": "reflection",
    "ctypes": "reflection", "builtins": "builtins", "logging": "logging", "warnings": "warnings",
    "tracemalloc": "memory tracing", "resource": "resource limits", "doctest": "doctests", "runpy": "running files",
    "locale": "the locale", "atexit": "exit handlers", "faulthandler": "fault handlers", "sys.monitoring": "tracing",
}
_BLOCKED_NAMES = {
    "monkeypatch": "monkeypatch", "mocker": "mocks", "MagicMock": "mocks", "Mock": "mocks", "patch": "mocks",
    "tmp_path": "files", "tmpdir": "files", "tmp_path_factory": "files", "tmpdir_factory": "files", "open": "files",
    "caplog": "logging", "recwarn": "warnings", "capsysbinary": "binary output capture",
    "capfdbinary": "binary output capture", "testdir": "pytester", "pytester": "pytester", "input": "input",
    "__builtins__": "builtins", "vars": "reflection", "dir": "reflection", "setattr": "patching", "delattr": "patching",
    "breakpoint": "the debugger", "__import__": "reflection", "seed": "random seeds",
}
_BLOCKED_ATTRIBUTES = {
    "__dict__": "reflection", "__code__": "reflection", "__globals__": "reflection", "__closure__": "reflection",
    "__defaults__": "reflection", "__kwdefaults__": "reflection", "__subclasses__": "reflection", "__mro__": "reflection",
    "__bases__": "reflection", "__slots__": "reflection", "__builtins__": "builtins", "f_locals": "frames",
    "f_globals": "frames", "f_back": "frames", "gi_frame": "frames", "tb_frame": "frames", "cr_frame": "frames",
    "seed": "random seeds", "setstate": "random seeds", "warns": "warnings", "deprecated_call": "warnings",
    "filterwarnings": "warnings",
    "patch": "mocks", "mock": "mocks",
}
_SYS_ALLOWED = frozenset((
    "stdout", "stderr", "path", "maxsize", "version_info", "version", "float_info", "int_info", "getrecursionlimit",
    "platform", "byteorder", "implementation", "hexversion", "float_repr_style", "maxunicode", "exc_info", "exit",
))
_OS_ALLOWED = frozenset(("sep", "linesep", "pathsep", "name", "cpu_count", "extsep", "altsep", "curdir", "pardir"))


# Modules whose state a test cannot change in a way that outlives the test (or whose state the
# judge server puts back: ``random``'s generator): a plain test file that imports only these, the
# solution and pytest runs inline in the judge server (gcop_env.sandbox.judge.server).
_STATELESS_MODULES = frozenset((
    "pytest", "math", "cmath", "collections", "itertools", "functools", "operator", "heapq", "bisect", "re", "string",
    "typing", "json", "copy", "dataclasses", "enum", "abc", "numbers", "fractions", "statistics", "array", "io",
    "contextlib", "time", "datetime", "calendar", "textwrap", "unicodedata", "random", "sys", "os", "struct", "binascii",
    "base64", "hashlib", "string", "difflib", "pprint", "reprlib", "keyword", "typing_extensions",
))


def inline_ok(tree, candidate_modules=("solution",), nodes=None):
    """Whether the tests' own code can leave nothing behind in a process that runs them: they import
    only the solution and stateless modules (above), and assign no attribute of a module."""
    modules = set()
    nodes = list(ast.walk(tree)) if nodes is None else nodes
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in _STATELESS_MODULES and top not in candidate_modules:
                    return False
                modules.add(alias.asname or top)
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if node.level or (top not in _STATELESS_MODULES and top not in candidate_modules):
                return False
            for alias in node.names:
                if alias.name != "*" and alias.name[:1].islower() and top not in candidate_modules:
                    modules.add(alias.asname or alias.name)  # (a submodule, maybe)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval", "compile"):
            return False
    for node in nodes:
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                return False
    return True


def bound_names(tree):
    """The names a module binds at its top level (imports but star imports, defs, classes, assignments)."""
    names = set()

    def targets(node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.name != "*":
                        names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    targets(target)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                targets(node.target)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
            if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)) or \
                    type(node).__name__ == "TryStar":
                visit([child for child in blocks(node) if isinstance(child, ast.stmt)])
                for handler in getattr(node, "handlers", ()):
                    if handler.name:
                        names.add(handler.name)
                    visit(handler.body)

    visit(tree.body)
    return frozenset(names)


def trusted_blocker(tree, bound, candidate_modules=("solution",), nodes=None):
    """Why the test file must run in-process (see above), or None when trusted isolation can run it.
    ``nodes``: ``list(ast.walk(tree))``, when the caller has it."""
    aliases = {}  # name -> module, for the modules whose attributes the rules read (os, sys)
    star = False
    from_candidate = set()
    classes = []
    for node in ast.walk(tree) if nodes is None else nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                why = _blocked_module(alias.name)
                if why:
                    return "the tests use %s (import %s)" % (why, alias.name)
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                return "the tests import relatively (from %s%s)" % ("." * node.level, module)
            for alias in node.names:
                why = _blocked_module(module) or _blocked_module("%s.%s" % (module, alias.name))
                if why:
                    return "the tests use %s (from %s import %s)" % (why, module, alias.name)
                if module in candidate_modules:
                    if alias.name == "*":
                        star = True
                    else:
                        from_candidate.add(alias.asname or alias.name)
                elif alias.name in ("environ", "stdin", "modules", "setrecursionlimit", "seed"):
                    return "the tests import %s from %s" % (alias.name, module)
                elif alias.name != "*":
                    aliases[alias.asname or alias.name] = "%s.%s" % (module, alias.name)
        elif isinstance(node, ast.Name) and node.id in _BLOCKED_NAMES:
            return "the tests use %s (%s)" % (_BLOCKED_NAMES[node.id], node.id)
        elif isinstance(node, ast.arg) and node.arg in _BLOCKED_NAMES:
            return "the tests use %s (%s)" % (_BLOCKED_NAMES[node.arg], node.arg)
        elif isinstance(node, ast.Attribute):
            if node.attr in _BLOCKED_ATTRIBUTES:
                return "the tests use %s (.%s)" % (_BLOCKED_ATTRIBUTES[node.attr], node.attr)
            if isinstance(node.value, ast.Name):
                module = aliases.get(node.value.id)
                if module == "sys" and node.attr not in _SYS_ALLOWED:
                    return "the tests use process state (sys.%s)" % node.attr
                if module == "os" and node.attr not in _OS_ALLOWED:
                    return "the tests use the process or files (os.%s)" % node.attr
        elif isinstance(node, ast.ClassDef):
            classes.append(node)
    for node in classes:  # (after every import is known)
        for base in node.bases:
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id in candidate_modules:
                return "the tests subclass the solution's %s" % base.attr
            if isinstance(base, ast.Name) and (base.id in from_candidate or (
                    star and base.id not in bound and base.id not in _BUILTIN_NAMES)):
                return "the tests subclass the solution's %s" % base.id
    return None


_BUILTIN_NAMES = frozenset(dir(__builtins__) if not isinstance(__builtins__, dict) else __builtins__)


def _blocked_module(name):
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        why = _BLOCKED_MODULES.get(".".join(parts[:end]))
        if why:
            return why
    return None


def plain_tests(tree, scan=True, nodes=None):
    """(test function names in order, None) when every top-level statement is one the plain
    runner handles like pytest, else (None, why not). ``scan=False`` skips the search for
    assignment expressions and ``global`` statements (when the text has none)."""
    names = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:  # (what a star import binds is checked after the import)
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name != "*" and (bound.startswith("test") or reserved(bound)):
                    return None, "imports the name %s" % bound
        elif isinstance(node, ast.FunctionDef):
            if node.decorator_list:
                return None, "a decorated function (%s)" % node.name
            if node.name.startswith("test"):
                args = node.args
                if args.posonlyargs or args.args or args.vararg or args.kwonlyargs or args.kwarg:
                    return None, "test %s takes arguments (fixtures)" % node.name
                if node.name not in names:
                    names.append(node.name)
            elif reserved(node.name):
                return None, "defines %s" % node.name
        elif isinstance(node, ast.ClassDef):
            if node.decorator_list or reserved(node.name) or node.name.startswith("test"):
                return None, "a test class or decorated class (%s)" % node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name) and (sub.id.startswith("test") or reserved(sub.id)):
                        return None, "assigns %s" % sub.id
                    if isinstance(sub, ast.Attribute) and (sub.attr.startswith("test") or reserved(sub.attr)):
                        return None, "assigns .%s" % sub.attr
        elif isinstance(node, ast.Expr):
            if not (isinstance(node.value, ast.Constant) or is_sys_path_call(node.value)):
                return None, "a top-level expression"
        elif isinstance(node, ast.If) and is_main_guard(node.test) and not node.orelse:
            continue  # never true under either runner
        else:
            return None, "a top-level %s" % type(node).__name__
    for sub in (ast.walk(tree) if nodes is None else nodes) if scan else ():  # names bound from inside expressions or functions
        if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
            return None, "an assignment expression at import"
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            return None, "a global statement"
    if not names:
        return None, "no test functions"
    return names, None


def is_sys_path_call(value):
    func = value.func if isinstance(value, ast.Call) else None
    return (
        isinstance(func, ast.Attribute) and func.attr in ("insert", "append")
        and isinstance(func.value, ast.Attribute) and func.value.attr == "path"
        and isinstance(func.value.value, ast.Name) and func.value.value.id == "sys"
    )


def is_main_guard(test):
    return (
        isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
        and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__"
    )


class AssertRewriter(ast.NodeTransformer):
    """``assert a OP b[, msg]`` (one comparison) evaluates ``a``, ``b`` and ``a OP b`` once, in
    that order, as a plain ``assert`` does, and on failure raises ``AssertionError`` with both
    values' reprs: ``assert 3 == 4``. Other asserts are left as they are (the traceback shows
    their source line). Far cheaper than pytest's rewriting, which explains every
    sub-expression; the verdict does not depend on it."""

    def __init__(self):
        self.count = 0

    def rewrite(self, node):
        """Rewrite the asserts in ``node``'s statements, and in theirs (statements only hold
        statements in these lists: a walk of every expression would cost five times as much)."""
        for field in BLOCK_FIELDS:
            block = getattr(node, field, None)
            if type(block) is not list:
                continue
            if any(type(child) is ast.Assert for child in block):
                new = []
                for child in block:
                    replaced = self.visit_Assert(child) if type(child) is ast.Assert else child
                    new.extend(replaced if type(replaced) is list else [replaced])
                block[:] = new
            for child in block:
                if type(child) is not ast.Assert:
                    self.rewrite(child)
        return node

    def visit_Assert(self, node):
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in COMPARE_OPS):
            return node
        self.count += 1
        left, right = "@gcop_l%d" % self.count, "@gcop_r%d" % self.count
        # Every new node gets the assert's position (fix_missing_locations would walk the
        # operands too, and costs more than the rest of the rewrite).
        at = {"lineno": node.lineno, "col_offset": node.col_offset,
              "end_lineno": node.end_lineno, "end_col_offset": node.end_col_offset}

        def load(name):
            return ast.Name(name, ast.Load(), **at)

        def store(name):
            return ast.Name(name, ast.Store(), **at)

        message = ast.Call(
            load(ASSERT_HELPER),
            [node.msg if node.msg is not None else ast.Constant(None, **at),
             ast.Constant(COMPARE_OPS[type(test.ops[0])], **at), load(left), load(right)],
            [], **at,
        )
        failed = ast.UnaryOp(ast.Not(), ast.Compare(load(left), [test.ops[0]], [load(right)], **at), **at)
        statements = [
            ast.Assign([store(left)], test.left, **at),
            ast.Assign([store(right)], test.comparators[0], **at),
            ast.If(failed, [ast.Raise(ast.Call(load("AssertionError"), [message], [], **at), None, **at)], [], **at),
            ast.Assign([store(left), store(right)], ast.Constant(None, **at), **at),
        ]
        return statements
