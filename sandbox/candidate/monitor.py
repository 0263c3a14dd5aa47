"""The runtime reward-hack monitor (the in-process fallback only; it runs in the candidate's process).

Where a test file cannot run under trusted isolation (:mod:`gcop_env.sandbox.judge.plan` says
why), the tests and the candidate share one process, and this monitor watches for the tricks that
fool a test run from inside it (patched pytest internals, replaced tests, always-equal objects,
reading the test file, tampered ``sys.modules``/``builtins``/``atexit``); each finding goes into
the report as a ``tamper`` record and voids the pass. The candidate can reach everything this
monitor relies on, so it raises the cost of a hack rather than rules it out: that is why trusted
isolation exists. The static layer is :mod:`gcop_env.sandbox.monitor` (on the host).
"""

import functools
import gc
import operator
import os
import sys

# pytest's and pluggy's modules whose functions and classes decide a verdict.
_WATCHED_MODULES = (
    "pytest", "_pytest.runner", "_pytest.reports", "_pytest.python", "_pytest.main", "_pytest.outcomes",
    "_pytest.fixtures", "_pytest.nodes", "_pytest.skipping", "_pytest.unittest", "_pytest.capture",
    "_pytest.assertion", "_pytest.assertion.rewrite", "_pytest.assertion.util", "_pytest.python_api",
    "_pytest.raises", "_pytest.config", "pluggy", "pluggy._hooks", "pluggy._callers", "pluggy._manager",
    "pluggy._result",
)
# The harness's own modules (their functions and classes are watched too): what the in-process
# child has imported of them.
HARNESS_MODULES = tuple("gcop_env.sandbox." + name for name in (
    "wire.framing", "judge.plan", "judge.reporter", "judge.plain_runner", "candidate.monitor", "candidate.in_process",
    "supervisor.session", "supervisor.spawn", "supervisor.server", "supervisor.report", "supervisor.procs",
    "supervisor.warmup", "supervisor.main",
))
_DYNAMIC_GLOBALS = frozenset(("_reprcompare", "_assertion_pass", "_config"))  # pytest sets these per test
_WATCHED_HOOKS = (
    "pytest_runtest_protocol", "pytest_runtest_makereport", "pytest_runtest_logreport", "pytest_runtest_call",
    "pytest_runtest_setup", "pytest_runtest_teardown", "pytest_pyfunc_call", "pytest_collectreport",
    "pytest_collection_finish", "pytest_collection_modifyitems", "pytest_sessionfinish", "pytest_runtestloop",
    "pytest_report_teststatus", "pytest_itemcollected",
)
# Modules whose identity in sys.modules the run relies on.
_WATCHED_IMPORTS = ("builtins", "sys", "os", "atexit", "importlib", "inspect", "gc", "io", "json", "unittest", "unittest.mock")
_FUNCTION = type(lambda: 0)
_FUNCTION_TYPES = (_FUNCTION, classmethod, staticmethod, property)
# What a test's report is made of: checked after every phase (the rest after collection and at the end).
_CRITICAL_CLASSES = frozenset(("TestReport", "BaseReport", "CallInfo"))
MONITOR_LIMIT = 10


def _code_of(value):
    """The code object behind a function-like value (function, method, property...), or None."""
    if value is None or isinstance(value, type):
        return None
    for attr in ("__func__", "fget"):
        inner = getattr(value, attr, None)
        if inner is not None:
            value = inner
            break
    code = getattr(value, "__code__", None)
    return code if type(code).__name__ == "code" else None


class Monitor:
    """Runtime checks against reward hacks inside the pytest child (one per run).

    The candidate's code shares this process, so these checks raise the cost of a hack rather
    than rule it out; every finding names the trick and, where one is known, the candidate's
    line. Layers: a ``sys.addaudithook`` hook (cannot be removed once added) that sees the test
    file being opened and ``__code__`` being assigned while a candidate frame is on the stack;
    snapshots taken before any candidate code runs (pytest's and pluggy's functions and classes,
    the hook implementations, ``builtins``, ``sys.modules``, ``sys.meta_path``) compared after
    collection, after every test phase and at the end; the collected test functions' code
    objects; and a probe of every class the candidate defined for an ``__eq__`` that equals
    anything (or an ``__ne__`` that differs from nothing).
    """

    def __init__(self, workdir, test_path, candidate_names):
        self.test_path = test_path
        self.test_real = os.path.realpath(test_path)
        self.candidate_files = set()
        for name in candidate_names:
            path = os.path.join(workdir, name)
            self.candidate_files.update((path, os.path.realpath(path)))
        self.test_files = {test_path, self.test_real}
        self.findings = []
        self.seen = set()
        self.sent = 0
        self.items = []
        self.callable_groups = []  # the rest of these four come from a PytestSnapshot (see snapshot)
        self.class_versions = self.critical_versions = self.group_versions = None  # (readers, tags) for _changed
        self.classes = []
        self.critical = []
        self.known_classes = frozenset()
        self.known_modules = frozenset()
        self.harness_patches = []  # (module, module name, key, value) the harness itself set (profiling)
        self.items_checked = False
        self.candidate_modules = None
        self.hooks = {}
        self.builtins = {}
        self.imports = {}
        self.builtins_items = self.imports_items = ((), ())  # (keys, values) of those two, for _unchanged
        self.builtins_version = None  # (reader, tag) of builtins' dict (see version_watcher)
        self.hooks_fast = None  # see _hooks_unchanged
        self.meta_path = []
        self.path_hooks = []
        self.test_ident = None
        self.in_hook = False
        self.hook_relay = None
        self.atexit_register = None
        self.imported = []  # names of the modules imported during the run (audit events)
        self.sentinel = None
        self.modules_at_start = None  # len(sys.modules) at the fork

    # -- attribution -----------------------------------------------------------------------

    def where(self, code):
        """``solution.py:12`` for code the candidate wrote, else None."""
        if code is not None and code.co_filename in self.candidate_files:
            return "%s:%d" % (os.path.basename(code.co_filename), code.co_firstlineno)
        return None

    def direct_caller(self, frame):
        """``frame`` when the candidate's code runs in it (the code that did the thing), else None.

        Libraries the candidate imports patch functions and register exit handlers for their own
        reasons (numpy's dispatchers set ``__code__``, matplotlib registers ``atexit``): only what
        the candidate's own lines do is theirs.
        """
        return frame if frame is not None and frame.f_code.co_filename in self.candidate_files else None

    def candidate_caller(self, frame):
        """The candidate frame that caused what ``frame`` does, directly or through libraries.

        None when pytest's own code stands between (pytest reads the test file to show a
        traceback, also when the candidate's code called into pytest).
        """
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename in self.candidate_files:
                return frame
            if "_pytest" in filename or "pluggy" in filename:
                return None
            frame = frame.f_back
        return None

    def flag(self, family, message, where=None):
        key = (family, message)
        if key in self.seen or len(self.findings) >= MONITOR_LIMIT:
            return
        self.seen.add(key)
        self.findings.append({"family": family, "message": message, "where": where})

    def pending(self):
        new = self.findings[self.sent:]
        self.sent = len(self.findings)
        return new

    # -- the audit hook (installed before pytest.main, so before any candidate code) ----------

    def install(self):
        import atexit

        try:
            stat = os.stat(self.test_path)
            self.test_ident = (stat.st_dev, stat.st_ino)
        except OSError:
            self.test_ident = None
        original_register = atexit.register
        monitor = self

        def register(func, *args, **kwargs):
            frame = monitor.direct_caller(sys._getframe(1))
            if frame is not None:
                monitor.flag(
                    "interpreter_state",
                    "registers an atexit handler (%s)" % getattr(func, "__qualname__", type(func).__name__),
                    "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                )
            return original_register(func, *args, **kwargs)

        atexit.register = register
        self.atexit_register = register
        self.sentinel = []  # young, GC-tracked: see _young_classes
        sys.addaudithook(self.audit)

    def audit(self, event, args):
        if event == "import":  # a module not imported yet (see _probe_equality)
            self.imported.append(args[0])
            return
        if event != "open" and event != "object.__setattr__":
            return
        if self.in_hook:
            return
        self.in_hook = True
        try:
            if event == "open":
                path = args[0]
                if self.test_ident is None or isinstance(path, int) or path is None:
                    return
                try:
                    stat = os.stat(path)
                except (OSError, TypeError, ValueError):
                    return
                if (stat.st_dev, stat.st_ino) != self.test_ident:
                    return
                frame = self.candidate_caller(sys._getframe(1))
                if frame is not None:
                    self.flag(
                        "test_file_read",
                        "opens the test file %s (to read the expected values)" % os.path.basename(self.test_path),
                        "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                    )
            elif args[1] == "__code__":
                frame = self.direct_caller(sys._getframe(1))
                if frame is not None:
                    target = getattr(args[0], "__qualname__", "?")
                    self.flag(
                        "test_replacement",
                        "assigns %s.__code__ (replaces a function's code)" % target,
                        "%s:%d" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno),
                    )
        finally:
            self.in_hook = False

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, session, pristine=None):
        """Before collection (so before any candidate code): what the checks compare with.

        ``pristine`` is the fork server's :class:`PytestSnapshot`, taken once before it forked
        (the child inherits the very objects it names); without one it is taken here.
        """
        pristine = pristine or PytestSnapshot()
        self.classes, self.critical = pristine.classes, pristine.critical
        self.class_versions, self.critical_versions = pristine.class_versions, pristine.critical_versions
        self.callable_groups, self.known_classes = pristine.callable_groups, pristine.known_classes
        self.known_modules = pristine.known_modules
        if self.harness_patches:  # the harness's own (profiling) patches are not the candidate's
            callables = dict(pristine.callables)
            for module, module_name, key, value in self.harness_patches:
                callables[(module, module_name, key)] = value
            versions = {id(group[0]): group[4] for group in pristine.callable_groups}  # a patched module's changed
            self.callable_groups = [group[:4] + (versions.get(id(group[0])),) for group in _group_callables(callables)]
        self.group_versions = _versions_of(self.callable_groups)
        hook = self.hook_relay = session.config.hook
        if pristine.state is None or not pristine.state_current(hook):
            pristine.take_state(hook)  # (in the child: slower, as many copy-on-write page faults)
        (hooks, self.builtins, self.imports, self.builtins_items, self.imports_items, self.modules_at_start,
         self.builtins_version, self.hooks_fast) = pristine.state
        self.hooks = {name: list(impls) for name, impls in hooks.items()}  # the checks add pytest's own late ones
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)

    def collected(self, items):
        """After collection: the candidate has been imported; remember the tests' code."""
        for item in items:
            function = getattr(item, "obj", None)
            function = getattr(function, "__func__", function)
            code = _code_of(function)
            # Where the test module holds the function by name (looked up once: item.module is slow).
            holder = getattr(item, "cls", None) or getattr(item, "module", None)
            name = getattr(item, "originalname", None) or getattr(item, "name", "")
            self.items.append((item, item.nodeid, function, code, holder, name))
            if code is not None and code.co_filename not in self.test_files:
                self.flag(
                    "test_replacement",
                    "test %s runs code from %s, not from the test file" % (item.nodeid, os.path.basename(code.co_filename)),
                    self.where(code),
                )
        return self.check(full=True)

    # -- the checks ------------------------------------------------------------------------------

    def check(self, full, nodeid=None):
        """Compare with the snapshots; returns the findings not reported yet.

        ``full=False`` (after every phase of test ``nodeid``, before its report goes out) checks
        that test and the classes its report is made of; ``full=True`` (after collection and at
        the end) checks everything, every test included.
        """
        try:
            self._check_tests(None if full else nodeid)
            self._check_pytest(full)
            if full:
                self._check_state()
                self._probe_equality(everywhere=self.items_checked)
            self.items_checked = True
        except Exception as exc:  # a check must never crash the run; a broken check is itself a finding
            self.flag("pytest_internals", "the monitor's check failed (%s: %s)" % (type(exc).__name__, exc))
        return self.pending()

    def _check_tests(self, only=None):
        for item, nodeid, function, code, holder, name in self.items:
            if only is not None and nodeid != only:
                continue
            now = getattr(item, "obj", None)
            now = getattr(now, "__func__", now)
            if now is not function:
                self.flag("test_replacement", "test %s was replaced after collection" % nodeid, self.where(_code_of(now)))
            elif code is not None and _code_of(function) is not code:
                self.flag("test_replacement", "the code of test %s was replaced after collection" % nodeid,
                          self.where(_code_of(function)))
            if "runtest" in vars(item):
                self.flag("pytest_internals", "the runtest method of %s was replaced" % nodeid,
                          self.where(_code_of(vars(item)["runtest"])))
            value = vars(holder).get(name) if holder is not None else None
            if value is not None and value is not function:
                rebound = _code_of(value)
                if rebound is not None and rebound.co_filename not in self.test_files:
                    self.flag("test_replacement", "%s.%s was rebound to other code" % (getattr(holder, "__name__", "?"), name),
                              self.where(rebound))

    def _check_pytest(self, full):
        entries = self.classes if full else self.critical
        for cls, size, members, keys, values, version in _changed(entries, self.class_versions if full else self.critical_versions):
            now = vars(cls)
            if len(now) == size and _unchanged(now, keys, values):
                continue  # the common case, without building anything
            current = _class_members(cls)
            for key in set(members) | set(current):
                if members.get(key) is not current.get(key):
                    self.flag("pytest_internals", "patches %s.%s.%s" % (cls.__module__, cls.__qualname__, key),
                              self.where(_code_of(current.get(key))))
        if full:
            for module, module_name, keys, values, version in _changed(self.callable_groups, self.group_versions):
                namespace = vars(module)
                if _unchanged(namespace, keys, values):
                    continue
                for key, value in zip(keys, values):
                    now = namespace.get(key)
                    if now is not value:
                        self.flag("pytest_internals", "replaces %s.%s" % (module_name, key), self.where(_code_of(now)))

    def _check_state(self):
        import builtins

        hook = self.hook_relay
        for name, impls in () if _hooks_unchanged(self.hooks_fast) else self.hooks.items():
            caller = getattr(hook, name, None) if hook is not None else None
            if caller is None:
                continue
            now = [(impl, impl.function) for impl in caller.get_hookimpls()]
            for impl, function in impls:
                if all(impl is not other for other, _ in now):
                    self.flag("pytest_internals", "unregisters an implementation of the %s hook" % name)
                elif impl.function is not function:
                    self.flag("pytest_internals", "replaces an implementation of the %s hook" % name,
                              self.where(_code_of(impl.function)))
            for impl, function in now:
                if all(impl is not other for other, _ in impls):
                    if self.where(_code_of(function)):
                        self.flag("pytest_internals", "registers its own %s hook" % name, self.where(_code_of(function)))
                    else:  # pytest's own plugins, registered during collection
                        impls.append((impl, function))
        current = vars(builtins)
        # New names shadow nothing (pybind11 adds some): only the names there before are compared.
        version = self.builtins_version
        same = (version is not None and version[0].value == version[1]) or _unchanged(current, *self.builtins_items)
        for key in () if same else self.builtins:
            before, now = self.builtins[key], current.get(key, _MISSING)
            if before is not now:
                code = _code_of(now)
                if code is not None and code.co_filename in self.test_files:
                    continue  # the tests' own patching (e.g. of input) is theirs to make
                self.flag("interpreter_state", "changes builtins.%s" % key, self.where(code))
        for name, module in () if _unchanged(sys.modules, *self.imports_items) else self.imports.items():
            if sys.modules.get(name) is not module:
                self.flag("interpreter_state", "replaces or removes sys.modules[%r]" % name)
        for label, before, now in (("sys.meta_path", self.meta_path, sys.meta_path), ("sys.path_hooks", self.path_hooks, sys.path_hooks)):
            for entry in now:
                if all(entry is not old for old in before):
                    code = _code_of(getattr(type(entry), "find_spec", None)) or _code_of(entry)
                    if code is not None and code.co_filename in self.candidate_files:
                        self.flag("interpreter_state", "installs an import hook in %s" % label, self.where(code))
        import atexit

        if atexit.register is not self.atexit_register:
            self.flag("interpreter_state", "replaces atexit.register", self.where(_code_of(atexit.register)))

    def _new_modules(self):
        """The modules added to ``sys.modules`` since the fork: those the audit hook saw imported,
        when they account for every new entry (it touches none of the fork server's modules, whose
        pages each child would otherwise copy), else every module in ``sys.modules``."""
        names = [name for name in dict.fromkeys(self.imported) if name in sys.modules]
        if self.modules_at_start is not None and len(sys.modules) - self.modules_at_start == len(names):
            return [sys.modules[name] for name in names]
        return list(sys.modules.values())

    def _probe_equality(self, everywhere):
        """Classes the candidate defined: does an ``__eq__`` equal anything (``__ne__`` differ from nothing)?

        After collection, the classes in the candidate's modules; at the end (``everywhere``),
        also the classes its functions built at run time (``type(...)``) on ``object`` or a
        builtin value type, found through ``__subclasses__`` (the static layer reads the rest).
        """
        if self.candidate_modules is None:  # after collection the candidate's modules are imported
            self.candidate_modules = [
                m for m in self._new_modules()
                if id(m) not in self.known_modules and getattr(m, "__file__", None) in self.candidate_files
            ]
        modules = self.candidate_modules
        names = {m.__name__ for m in modules}
        classes = [value for module in modules for value in list(vars(module).values()) if isinstance(value, type)]
        if everywhere:
            young = _young_classes(names, self.sentinel)
            classes += young if young is not None else _classes_from(names, self.known_classes)
        for cls in classes:
            members = vars(cls)
            for name, expect in (("__eq__", True), ("__ne__", False)):
                method = members.get(name)
                if type(method) is not _FUNCTION:  # pytest's, the stdlib's or C slots: not the candidate's
                    continue
                code = method.__code__
                if code.co_filename not in self.candidate_files:
                    continue
                try:  # (two objects with different attributes: an __eq__ comparing __dict__ says False)
                    result = method(*_probe_pair(cls))
                except BaseException:
                    continue
                if result is expect or (expect and result is not NotImplemented and type(result) is not bool and bool(result)):
                    self.flag(
                        "always_equal",
                        "%s.%s returns %r for two unrelated objects" % (cls.__qualname__, name, result),
                        self.where(code),
                    )


class _Unrelated:
    """What the equality probe compares (made by the server: a class made in each run's child
    would add itself to ``object``'s subclasses, copying that table's pages)."""

    def __init__(self, value):
        self.value = value


def _probe_pair(cls):
    """Two objects an honest ``__eq__`` of ``cls`` calls unequal: instances of ``cls`` itself (made
    without its ``__init__``) with different attributes where it allows, else two unrelated ones.
    (An ``__ne__`` written as ``not self.__eq__(other)`` then meets its own class's ``__eq__``.)"""
    try:
        pair = object.__new__(cls), object.__new__(cls)
        for obj, value in zip(pair, (1, 2)):
            vars(obj)["_gcop_probe"] = value
        return pair
    except Exception:
        return _Unrelated(1), _Unrelated(2)


_VALUE_TYPES = (object, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _young_classes(module_names, sentinel):
    """The classes of the candidate's modules among the objects made since the fork, or None.

    The fork server froze every object it had (``gc.freeze``) before forking, so the garbage
    collector's three young generations hold what the run made (and the little the server made
    since): every class the candidate built, with ``class`` or ``type(...)``, on any base. A
    list of those touches none of the server's thousands of classes, which
    :func:`_classes_from`'s walk of ``__subclasses__`` does (copying their pages). ``sentinel``,
    made right after the fork, must still be among them: if the candidate froze the collector
    itself (hiding its classes from this list) it is not, and the caller walks instead.
    """
    objects = gc.get_objects(0) + gc.get_objects(1) + gc.get_objects(2)
    if not any(map(functools.partial(operator.is_, sentinel), objects)):
        return None
    return [cls for cls in filter(_IS_CLASS, objects) if getattr(cls, "__module__", None) in module_names]


_IS_CLASS = type.__instancecheck__.__get__(type)


def _classes_from(module_names, known=frozenset()):
    """The candidate's classes (``__module__`` one of its modules) on ``object``, the builtin value
    types, and below those. ``known``: ids of direct subclasses of those types that existed before
    the fork (kept alive by the fork server, so no new class can reuse an id): none is the
    candidate's, and skipping them spares a ``__module__`` lookup on each of thousands of classes."""
    found = []
    stack = list(_VALUE_TYPES)
    seen = set()
    while stack:
        base = stack.pop()
        for sub in type.__subclasses__(base):
            if id(sub) in seen or id(sub) in known:
                continue
            seen.add(id(sub))
            if getattr(sub, "__module__", None) in module_names:
                found.append(sub)
                stack.append(sub)
    return found


def _unchanged(namespace, keys, values):
    """True when ``namespace[key] is value`` for every key and value (an identity check: an
    ``__eq__`` is never called). C-level loops: the monitor runs this on some 800 names twice a run."""
    try:
        return all(map(operator.is_, map(namespace.__getitem__, keys), values))
    except KeyError:
        return False


def _group_callables(callables, watch=None):
    """(module, its name, keys, values, version) per module, from {(module, its name, key): value};
    ``version``: ``watch(vars(module))`` (see :func:`version_watcher`), or None."""
    groups = {}
    for (module, module_name, key), value in callables.items():
        entry = groups.setdefault(id(module), (module, module_name, [], []))
        entry[2].append(key)
        entry[3].append(value)
    return [
        (module, name, tuple(keys), tuple(values), watch(vars(module)) if watch is not None else None)
        for module, name, keys, values in groups.values()
    ]


def _versions_of(entries):
    """(readers, tags) of entries whose last item is a version (see :func:`version_watcher`),
    for :func:`_changed`; None when any entry has none."""
    versions = [entry[-1] for entry in entries]
    if not versions or any(version is None for version in versions):
        return None
    return tuple(reader for reader, _ in versions), tuple(tag for _, tag in versions)


_VALUE = operator.attrgetter("value")


def _changed(entries, versions):
    """The entries whose dict may have changed: all of them without ``versions`` (from
    :func:`_versions_of`), else those whose version differs. The common case, nothing changed,
    reads the version tags in one C loop and touches no entry (nor the class or module in it)."""
    if not versions:
        return entries
    readers, tags = versions
    if tuple(map(_VALUE, readers)) == tags:
        return ()
    return [entry for entry, reader, tag in zip(entries, readers, tags) if reader.value != tag]


def _impl_lists(caller):
    """The lists a pluggy hook caller keeps its implementations in (one in pluggy >= 1.1, two before)."""
    if hasattr(caller, "_hookimpls"):
        return (caller._hookimpls,)
    return caller._nonwrappers, caller._wrappers


def _hooks_fast(relay, hooks, watch):
    """What :func:`_hooks_unchanged` compares: the hook relay's dict version, the watched hook
    callers, copies of their implementation lists, and the versions of the implementations'
    dicts; None where pluggy keeps any of these elsewhere (then the monitor compares each
    implementation, as always)."""
    try:
        if watch is None:
            return None
        callers = tuple(getattr(relay, name) for name in hooks)
        lists = tuple(tuple(list(part) for part in _impl_lists(caller)) for caller in callers)
        impls = [impl for parts in lists for part in parts for impl in part]
        versions = _versions_of([(watch(vars(impl)),) for impl in impls])
        if versions is None or sorted(map(id, impls)) != sorted(id(i) for impls_ in hooks.values() for i, _ in impls_):
            return None
        return watch(vars(relay)), callers, lists, versions
    except (AttributeError, TypeError):  # (an implementation with __slots__ has no vars())
        return None


def _hooks_unchanged(fast):
    """True when no watched hook caller, implementation list or implementation has changed since
    :func:`_hooks_fast` (compared without touching the implementations: see version_watcher)."""
    if fast is None:
        return False
    relay_version, callers, lists, versions = fast
    return (
        relay_version[0].value == relay_version[1]
        and all(map(operator.eq, map(_impl_lists, callers), lists))
        and tuple(map(_VALUE, versions[0])) == versions[1]
    )


def version_watcher():
    """``watch(d) -> (reader, tag)``: ``reader.value`` is ``d``'s version tag now, ``tag`` what it
    is at the call; None where this interpreter has no such tag.

    CPython gives every dict a version (PEP 509's ``ma_version_tag``) that changes whenever the
    dict does: set, delete, replace, clear. Reading it through ctypes touches none of the dict's
    entries; comparing the entries themselves increments the reference count of every value,
    which in a forked child copies every page those values live on (the monitor compares some
    2000 functions and classes after collection and at the end: hundreds of page copies per
    run). An unchanged version means the dict is as it was; a changed one sends the check to the
    entry-by-entry comparison, as before. Checked on a probe dict before use (layout, build).
    """
    try:
        import ctypes
    except Exception:
        return None
    if sys.implementation.name != "cpython":
        return None
    offset = 3 * ctypes.sizeof(ctypes.c_void_p)  # after ob_refcnt, ob_type and ma_used

    def watch(d):
        reader = ctypes.c_uint64.from_address(id(d) + offset)
        return reader, reader.value

    try:
        probe = {"a": 1, "b": 2}
        reader, tag = watch(probe)
        steady = reader.value == tag and len(probe) == 2
        probe["a"] = 3  # same size and keys: only the version can tell
        replaced = reader.value
        del probe["b"]
        deleted = reader.value
        probe["b"] = 2
        added = reader.value
        other = {"a": 1, "b": 2}
        if steady and len({tag, replaced, deleted, added}) == 4 and watch(other)[1] not in (tag, replaced, deleted):
            return watch
    except Exception:
        pass
    return None


def _class_members(cls):
    return {k: v for k, v in list(vars(cls).items()) if isinstance(v, _FUNCTION_TYPES)}


class PytestSnapshot:
    """pytest's and pluggy's functions and classes as they are before any candidate code runs.

    Taken once by the fork server, before it forks (and before ``gc.freeze``), instead of once
    per run in every child: the children inherit the very objects it holds, and the server runs
    no code that changes them. ``callables``: (module, its name, key) -> the module's function or
    class; ``classes``: (class, size of its ``__dict__``, its function-like members), ``critical``
    those of them a test report is made of (checked after every phase); ``known_classes``: ids of
    the direct subclasses of ``object`` and the builtin value types that exist now (see
    :func:`_classes_from`), and ``known_modules`` those of the modules imported now (none is the
    candidate's), both kept alive by ``self._alive``. A class entry also holds its members'
    names and values as tuples, and ``callable_groups`` the callables per module, for
    :func:`_unchanged`.
    """

    def __init__(self):
        self.callables = {}
        self.classes = []
        self.critical = []
        self.watch = watch = version_watcher()
        for module_name in _WATCHED_MODULES + HARNESS_MODULES:  # and this harness's own functions
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for key, value in list(vars(module).items()):
                if key.startswith("__") or key in _DYNAMIC_GLOBALS:
                    continue
                if isinstance(value, type) or callable(value):
                    self.callables[(module, module_name, key)] = value
                if isinstance(value, type) and getattr(value, "__module__", None) == module_name:
                    members = _class_members(value)
                    version = None
                    if watch is not None:
                        real = [d for d in gc.get_referents(vars(value)) if type(d) is dict]
                        version = watch(real[0]) if len(real) == 1 else None
                    entry = (value, len(vars(value)), members, tuple(members), tuple(members.values()), version)
                    self.classes.append(entry)
                    if value.__name__ in _CRITICAL_CLASSES:
                        self.critical.append(entry)
        self.callable_groups = _group_callables(self.callables, watch)
        self.class_versions, self.critical_versions = _versions_of(self.classes), _versions_of(self.critical)
        self.state = None  # see take_state
        self._alive = [type.__subclasses__(base) for base in _VALUE_TYPES] + [list(sys.modules.values())]
        self.known_classes = frozenset(id(sub) for subs in self._alive[:-1] for sub in subs)
        self.known_modules = frozenset(id(module) for module in self._alive[-1])


    def take_state(self, hook):
        """The hook implementations, ``builtins`` and watched ``sys.modules`` entries the monitor
        compares with: taken once by the fork server (when it forks inside a session), so that no
        child walks ``sys.modules`` (each module it touches costs it a copied page)."""
        import builtins

        hooks = {}
        for name in _WATCHED_HOOKS:
            caller = getattr(hook, name, None)
            if caller is not None:
                hooks[name] = tuple((impl, impl.function) for impl in caller.get_hookimpls())
        names = dict(vars(builtins))
        imports = {
            name: module for name, module in list(sys.modules.items())
            if name in _WATCHED_IMPORTS or name.split(".")[0] in ("pytest", "_pytest", "pluggy")
        }
        self.state = (hooks, names, imports, (tuple(names), tuple(names.values())),
                      (tuple(imports), tuple(imports.values())), len(sys.modules),
                      self.watch(vars(builtins)) if self.watch is not None else None,
                      _hooks_fast(hook, hooks, self.watch))
        self._state_of = (hook, len(sys.modules), len(names))

    def state_current(self, hook):
        """Whether :meth:`take_state` describes now (the server imports nothing once serving)."""
        import builtins

        return self._state_of == (hook, len(sys.modules), len(vars(builtins)))


_MISSING = object()
