"""The candidate's processes under trusted isolation (untrusted side): a fork server and, per run, the
process that imports the solution and answers the judge's calls.

The candidate fork server is forked from the supervisor at start-up, before the supervisor imports
pytest (a small process forks fast), and stays the supervisor's user with only the capabilities to
change user. For each run it receives the run's files and one end of a socket pair, and forks the
candidate process, which drops to the candidate's user (no capability survives), writes the
files into its own work dir and serves the judge over that socket: import a module, call a
function, get or set an attribute, report an object's state. Values cross as data
(:mod:`gcop_env.sandbox.wire.codec`); what the candidate's objects are stays here, and the judge
holds handles to them. The judge also lends callables (a ``key=`` function, a ``print`` target):
this process calls them through the same socket.

Nothing in this module is trusted: the candidate's code can change any of it at run time. The
judge decides every verdict from the data it decodes itself.
"""

import _signal
import importlib
import importlib.machinery
import importlib.util
import os
import signal
import socket
import struct
import sys
import traceback

from gcop_env.sandbox.supervisor.spawn import prepare
from gcop_env.sandbox.wire import codec
from gcop_env.sandbox.wire.framing import read_exact, recv_frame, send_frame

MESSAGE_LIMIT = 64 << 20  # bytes of one message from the judge
OUTPUT_LIMIT = 1 << 20  # bytes of printed output sent with one reply (the rest is counted, not sent)
_TRACEBACK_CHARS = 2000

# Special methods the judge may forward to an object of a type that has them.
FORWARDABLE = (
    "__len__", "__iter__", "__next__", "__reversed__", "__contains__", "__getitem__", "__setitem__", "__delitem__",
    "__call__", "__enter__", "__exit__", "__bool__", "__int__", "__float__", "__complex__", "__index__", "__round__",
    "__trunc__", "__floor__", "__ceil__", "__abs__", "__neg__", "__pos__", "__invert__", "__lt__", "__le__", "__gt__",
    "__ge__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__",
    "__lshift__", "__rlshift__", "__rshift__", "__rrshift__", "__and__", "__rand__", "__or__", "__ror__", "__xor__",
    "__rxor__", "__divmod__", "__rdivmod__", "__bytes__", "__fspath__", "__length_hint__", "__missing__",
    "__class_getitem__", "__await__", "__aiter__", "__anext__", "__str__", "__repr__", "__format__",
)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time (not a builtin type)
_STATIC_DESCRIPTORS = {}  # builtin type -> its descriptor (see CandidateProcess.describe)
_IMMUTABLE_VALUES = (bool, int, float, complex, str, bytes, tuple, frozenset)
_MUTABLE_VALUES = (list, dict, set, bytearray)


def _base_value(obj, base):
    """The builtin value an instance of a subclass of ``base`` holds (read with the base's methods)."""
    if base is int:
        return int.__int__(obj)
    if base is float:
        return float.__float__(obj)
    if base is complex:
        return complex(complex.__getattribute__(obj, "real"), complex.__getattribute__(obj, "imag"))
    if base is str:
        return str.__str__(obj)
    if base is bytes:
        return bytes.__getitem__(obj, slice(None))
    if base is tuple:
        return tuple(tuple.__iter__(obj))
    if base is frozenset:
        return frozenset(frozenset.__iter__(obj))
    if base is list:
        return list(list.__iter__(obj))
    if base is dict:
        return dict(dict.items(obj))
    if base is set:
        return set(set.__iter__(obj))
    if base is bytearray:
        return bytearray(bytearray.__iter__(obj))
    raise TypeError(base)


def _module_of_renamed(value):
    """(module, name) of a library class that claims to be a builtin (pytest's ``Skipped`` says its
    ``__module__`` is ``builtins``): the module that holds it under its name, or None."""
    if not isinstance(value, type) or value.__module__ != "builtins" or not isinstance(value.__name__, str):
        return None
    for name, module in list(sys.modules.items()):
        try:
            if isinstance(name, str) and vars(module).get(value.__name__) is value:
                return name, value.__name__
        except TypeError:
            continue
    return None


def take(iterator, count):
    """Up to ``count`` items of ``iterator``: (items, exhausted, the exception that stopped it or None)."""
    items = []
    try:
        for _ in range(count):
            items.append(next(iterator))
    except StopIteration:
        return items, True, None
    except BaseException as exc:
        return items, False, exc
    return items, False, None


def base_value(obj):
    """The builtin value held by an instance of a subclass of a builtin value type."""
    for base in _MUTABLE_VALUES + _IMMUTABLE_VALUES:
        if isinstance(obj, base):
            return _base_value(obj, base)
    raise TypeError("not a value")


class _DontReadFromInput:
    """``sys.stdin`` as pytest's capture leaves it: reading raises (a run has no input)."""

    encoding = None

    def read(self, *args):
        raise OSError("pytest: reading from stdin while output is captured!  Consider using `-s`.")

    readline = read
    readlines = read
    __next__ = read

    def __iter__(self):
        return self

    def fileno(self):
        raise OSError("redirected stdin is pseudofile, has no fileno()")

    def isatty(self):
        return False

    def close(self):
        pass

    @property
    def buffer(self):
        return self


class JudgeProxy:
    """A callable or object the judge lent this process: every use is a request to the judge."""

    __slots__ = ("_gcop_ref", "_gcop_kind", "_gcop_process", "__weakref__")

    def __init__(self, ref, kind, process):
        object.__setattr__(self, "_gcop_ref", ref)
        object.__setattr__(self, "_gcop_kind", kind)
        object.__setattr__(self, "_gcop_process", process)

    def _gcop_ask(self, op, *payload):
        return self._gcop_process.ask_judge(op, self._gcop_ref, payload)

    def __call__(self, *args, **kwargs):
        return self._gcop_ask("call", args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._gcop_ask("getattr", name)

    def __len__(self):
        return self._gcop_ask("len")

    def __iter__(self):
        return self._gcop_ask("iter")

    def __next__(self):
        return self._gcop_ask("next")

    def __getitem__(self, key):
        return self._gcop_ask("getitem", key)

    def __bool__(self):
        return self._gcop_ask("bool")

    def __str__(self):
        return self._gcop_ask("str")

    def __repr__(self):
        return self._gcop_ask("repr")


class CandidateProcess(codec.Peer):
    """One run's candidate process: imports the solution and serves the judge (see the module docstring)."""

    def __init__(self, fd, modules, pads, depth):
        self.fd = fd
        self.modules = frozenset(modules)  # the run's own module names (the solution's)
        self.pads = pads  # (import, call): frames between the judge's depth and the solution's
        self.depth = depth  # recursion_depth_reader() or None
        self.objects = [None]  # ref -> object (0: no object)
        self.ref_of = {}  # id(object) -> ref
        self.types = [None]  # type id -> type
        self.type_of = {}  # id(type) -> type id
        self.proxies = {}  # the judge's ref -> JudgeProxy
        self.descend = _make_descend()
        self.marks = None  # CPU time marks when profiling (sent with the first manifest)

    # -- the peer hooks (how values cross) -----------------------------------------------------

    def ref(self, obj):
        ref = self.ref_of.get(id(obj))
        if ref is None:
            ref = len(self.objects)
            self.objects.append(obj)
            self.ref_of[id(obj)] = ref
        return ref

    def type_id(self, cls):
        type_id = self.type_of.get(id(cls))
        if type_id is None:
            type_id = len(self.types)
            self.types.append(cls)
            self.type_of[id(cls)] = type_id
        return type_id

    def is_candidate(self, value):
        module = getattr(value, "__module__", None)
        return isinstance(module, str) and module in self.modules

    def encode_other(self, encoder, value):
        if isinstance(value, BaseException):
            self.encode_exception(encoder, value)
            return True
        if type(value) is JudgeProxy:
            encoder.reference(object.__getattribute__(value, "_gcop_ref"), object.__getattribute__(value, "_gcop_kind"))
            return True
        if type(value) is type(sys):
            name = getattr(value, "__name__", None)
            if isinstance(name, str) and sys.modules.get(name) is value:
                encoder.name(name, "")
                return True
        elif not self.is_candidate(value):
            named = codec.qualified_name(value) or _module_of_renamed(value)
            if named is not None and named[0] not in self.modules:
                encoder.name(*named)
                return True
        if isinstance(value, type):
            encoder.handle(0, self.type_id(value), lambda: self.describe(value))
            return True
        cls = type(value)
        encoder.handle(self.ref(value), self.type_id(cls), lambda: self.describe(cls), self.info(value, cls))
        return True

    def encode_exception(self, encoder, exc):
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable %s>" % type(exc).__name__
        attrs = {}
        for cls in type(exc).__mro__:  # (a compiled class's attributes are its slots, not a __dict__)
            if cls is BaseException:
                break
            for key, member in list(vars(cls).items()):
                if type(member).__name__ in ("getset_descriptor", "member_descriptor") and not key.startswith("__"):
                    try:
                        attrs[key] = getattr(exc, key)
                    except Exception:
                        pass
        for key, item in list(getattr(exc, "__dict__", {}).items()):
            if isinstance(key, str) and not key.startswith("__"):
                attrs[key] = item
        try:  # the candidate's frames (not this harness's)
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("/gcop-sandbox/")]
            lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) if frames else []
            remote = "".join(lines + traceback.format_exception_only(type(exc), exc))[-_TRACEBACK_CHARS:]
        except BaseException:
            remote = ""
        args = exc.args if isinstance(exc.args, tuple) else ()
        encoder.exception(type(exc), args, message, attrs, remote)

    def describe(self, cls):
        """What the judge needs to build its stand-in for ``cls`` (a dict of plain values); a builtin
        type's (which nothing can change) is computed once in the server."""
        if not cls.__flags__ & _HEAPTYPE:
            fields = _STATIC_DESCRIPTORS.get(cls)
            if fields is None:
                fields = _STATIC_DESCRIPTORS[cls] = self._describe(cls)
            return fields
        return self._describe(cls)

    def _describe(self, cls):
        mro = [k for k in getattr(cls, "__mro__", (cls,)) if k is not object]
        own = set()
        for k in mro:
            own.update(vars(k))
        dunders = [name for name in FORWARDABLE if name in own]
        methods = sorted({
            name for k in mro for name, member in vars(k).items()
            if not name.startswith("__") and type(member).__name__ in ("function", "method_descriptor", "wrapper_descriptor")
        })
        value = ""
        for base in _IMMUTABLE_VALUES + _MUTABLE_VALUES:
            if issubclass(cls, base) and cls is not base:
                value = base.__name__
                break
        fields = getattr(cls, "_fields", None) if value == "tuple" else None
        return {
            "module": str(getattr(cls, "__module__", "") or ""),
            "qualname": str(getattr(cls, "__qualname__", cls.__name__)),
            "name": str(cls.__name__),
            "candidate": self.is_candidate(cls),
            "bases": list(getattr(cls, "__bases__", ())),
            "dunders": dunders,
            "methods": methods,
            "eq": getattr(cls, "__eq__", None) is not object.__eq__,
            "hash": getattr(cls, "__hash__", None) is not None,
            "truth": "__bool__" in own or "__len__" in own,
            "value": value,
            "fields": [str(f) for f in fields] if isinstance(fields, tuple) else None,
            "exception": issubclass(cls, BaseException),
            "metaclass": issubclass(cls, type),
        }

    def info(self, value, cls):
        """Per-object facts the judge keeps with a handle: a function's names, a value class's value."""
        for base in _IMMUTABLE_VALUES:
            if isinstance(value, base) and cls is not base:
                return {"value": _base_value(value, base)}
        if callable(value):
            found = {}
            for key in ("__name__", "__qualname__", "__module__", "__doc__"):
                try:
                    item = getattr(value, key, None)
                except Exception:
                    item = None
                found[key] = item if isinstance(item, str) else None
            return found
        return None

    def decode_name(self, module, qualname):
        if module in self.modules:
            holder = sys.modules.get(module)
            if holder is None:
                raise codec.DecodeError("the module %s is not imported" % module)
        else:
            try:
                holder = importlib.import_module(module)
            except Exception as exc:
                raise codec.DecodeError("cannot import %s (%s)" % (module, exc)) from None
        return codec.resolve_name(module, qualname, {module: holder})

    def decode_handle(self, ref, type_id, info):
        if ref == 0:
            if not 0 < type_id < len(self.types):
                raise codec.DecodeError("no such type")
            return self.types[type_id]
        if not 0 < ref < len(self.objects):
            raise codec.DecodeError("no such object")
        return self.objects[ref]

    def decode_reference(self, ref, kind):
        proxy = self.proxies.get(ref)
        if proxy is None:
            proxy = self.proxies[ref] = JudgeProxy(ref, kind, self)
        return proxy

    def decode_exception(self, type_value, args, message, attrs, remote_traceback):
        if isinstance(type_value, type) and issubclass(type_value, BaseException):
            try:
                exc = type_value(*args)
            except BaseException:
                exc = type_value.__new__(type_value)
                exc.args = args
            return exc
        return Exception(message)

    # -- the messages -------------------------------------------------------------------------

    def send(self, op, payload):
        """One message: ``op`` (a byte) and a tuple of values. A payload that cannot be written
        goes as an exception reply that says why (with the output it carried)."""
        encoder = codec.Encoder(self)
        try:
            encoder.value(payload)
        except BaseException as exc:
            encoder = codec.Encoder(self)
            encoder.value((TypeError("cannot send the value to the tests: %s" % (exc,)), payload[-2], payload[-1]))
            op = b"e"
        send_frame(self.fd, op + bytes(encoder.out))

    def receive(self):
        body = recv_frame(self.fd, MESSAGE_LIMIT)
        if body is None:
            os._exit(0)  # the judge is done
        return body[:1], codec.decode(body[1:], self)

    def output(self):
        """What this process printed since the last reply: (stdout bytes, stderr bytes)."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        taken = []
        for fd in (1, 2):
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, min(size, OUTPUT_LIMIT), 0) if size else b""
                if size:
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                if size > OUTPUT_LIMIT:
                    data += b"\n[%d bytes of output dropped]\n" % (size - OUTPUT_LIMIT)
            except OSError:
                data = b""
            taken.append(data)
        return taken

    def reply_value(self, value, mutations=(), result_arg=-1):
        out, err = self.output()
        self.send(b"r", (value, list(mutations), result_arg, out, err))

    def reply_exception(self, exc):
        out, err = self.output()
        self.send(b"e", (exc, out, err))

    def ask_judge(self, op, ref, payload):
        """Use something the judge lent (see JudgeProxy); serves the judge's own requests meanwhile.
        The judge's changes to the arguments of a call (a list it appended to) come back too."""
        out, err = self.output()
        self.send(b"K", (op, ref, payload, out, err))
        while True:
            kind, reply = self.receive()
            if kind == b"r":
                value, mutations = reply
                if op == "call":
                    args, kwargs = payload
                    for position, new in mutations:
                        old = args[position] if type(position) is int and 0 <= position < len(args) else kwargs.get(position)
                        codec.sync_in_place(old, new)
                return value
            if kind == b"e":
                raise reply[0]
            self.serve(kind, reply)

    def serve(self, op, payload):
        try:
            if op == b"I":
                name, depth = payload
                value, mutations, result_arg = self.do_import(name, depth), (), -1
            elif op == b"C":
                value, mutations, result_arg = self.do_call(*payload)
            elif op == b"M":
                target, name, args, kwargs, depth, context = payload
                value, mutations, result_arg = self.do_call(getattr(target, name), args, kwargs, depth, context)
            elif op == b"A":
                target, name = payload
                value, mutations, result_arg = getattr(target, name), (), -1
            elif op == b"W":
                target, name, item = payload
                setattr(target, name, item)
                value, mutations, result_arg = None, (), -1
            elif op == b"X":
                target, name = payload
                delattr(target, name)
                value, mutations, result_arg = None, (), -1
            elif op == b"V":
                value, mutations, result_arg = self.do_state(*payload), (), -1
            elif op == b"U":  # (profiling: this process's CPU and page faults so far)
                value, mutations, result_arg = _cpu(), (), -1
            else:
                raise ValueError("unknown request %r" % op)
        except BaseException as exc:
            self.reply_exception(exc)
            return
        self.reply_value(value, mutations, result_arg)

    def do_import(self, name, depth):
        if name not in self.modules:
            raise ImportError("no module named %r among the run's files" % name)
        module = sys.modules.get(name)
        if module is None:
            self.padded(depth, self.pads[0], __import__, (name,), {})
            module = sys.modules[name]
        namespace = vars(module)
        declared = namespace.get("__all__")
        has_all = isinstance(declared, (list, tuple)) and all(isinstance(n, str) for n in declared)
        names = list(declared) if has_all else [n for n in namespace if isinstance(n, str) and not n.startswith("_")]
        values = {n: namespace[n] for n in names if n in namespace}
        doc = namespace.get("__doc__")
        path = namespace.get("__file__")
        manifest = {"names": names, "values": values, "has_all": has_all, "doc": doc if isinstance(doc, str) else None,
                    "file": path if isinstance(path, str) else None}
        if self.marks is not None:
            self.marks["import"] = _cpu()
            manifest["profile"], self.marks = self.marks, None
        return manifest

    def do_call(self, target, args, kwargs, depth, context):
        if context is not None:
            os.environ["PYTEST_CURRENT_TEST"] = context
        before = []
        for position, item in list(enumerate(args)) + list(kwargs.items()):
            if isinstance(item, _MUTABLE_VALUES) or type(item).__module__.startswith(("collections", "numpy", "pandas")):
                try:
                    before.append((position, item, codec.encode(item, self)))
                except BaseException:
                    pass
        result = self.padded(depth, self.pads[1], target, args, kwargs)
        mutations = []
        for position, item, encoded in before:
            try:
                if codec.encode(item, self) != encoded:
                    mutations.append((position, item))
            except BaseException:
                pass
        result_arg = -1
        for position, item in enumerate(args):
            if item is result and isinstance(item, _MUTABLE_VALUES):
                result_arg, result = position, None
                break
        return result, mutations, result_arg

    def padded(self, depth, pad, func, args, kwargs):
        """``func(*args, **kwargs)`` with the solution's frame as deep as under pytest (see warmup)."""
        if self.depth is not None and depth >= 0:
            frames = depth + pad - self.depth()
            if frames > 0:
                return self.descend(frames, func, args, kwargs)
        return func(*args, **kwargs)

    def do_state(self, refs, limit):
        """The attributes of objects (``vars`` and slots), and of the objects they hold, breadth first."""
        states = []
        queue = list(refs)
        seen = set()
        while queue and len(states) < limit:
            ref = queue.pop(0)
            if ref in seen or not 0 < ref < len(self.objects):
                continue
            seen.add(ref)
            obj = self.objects[ref]
            state = {}
            try:
                state.update(object.__getattribute__(obj, "__dict__"))
            except AttributeError:
                pass
            for k in type(obj).__mro__:
                slots = vars(k).get("__slots__", ())
                for slot in (slots,) if isinstance(slots, str) else slots:
                    if slot not in ("__dict__", "__weakref__"):
                        try:
                            state[slot] = object.__getattribute__(obj, slot)
                        except AttributeError:
                            pass
            states.append((ref, state))
            for item in _held(state.values()):
                queue.append(self.ref(item))
        return states


def _held(values, depth=0):
    """The objects (not plain data) among ``values`` and inside the plain containers there."""
    found = []
    for value in values:
        kind = type(value)
        if kind in (list, tuple, set, frozenset):
            if depth < 4:
                found.extend(_held(value, depth + 1))
        elif kind is dict:
            if depth < 4:
                found.extend(_held(value.values(), depth + 1))
        elif kind not in (type(None), bool, int, float, complex, str, bytes) and not isinstance(value, type) \
                and type(value).__module__ not in ("builtins", "numpy", "pandas") and not callable(value):
            found.append(value)
    return found


def _make_descend():
    def descend(frames, func, args, kwargs):
        if frames > 0:
            return descend(frames - 1, func, args, kwargs)
        return func(*args, **kwargs)

    return descend


# ----------------------------------------------------------------------------- the fork server


def start(limits, close_fds):
    """Fork the candidate fork server (from the supervisor, early); returns (its pid, the control socket)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        try:
            mine.close()
            for fd in close_fds:
                os.close(fd)
            CandidateServer(limits, theirs).serve()
        finally:
            os._exit(0)
    theirs.close()
    return pid, mine


def send_request(sock, message, fds):
    """One run for the candidate server: a length-prefixed JSON message with descriptors attached."""
    import json

    body = json.dumps(message).encode("utf-8")
    socket.send_fds(sock, [struct.pack(">I", len(body)) + body], fds)


class CandidateServer:
    """Forks one candidate process per run (see the module docstring)."""

    def __init__(self, limits, control):
        self.limits = limits  # a supervisor.spawn.RunLimits
        self.control = control

    def serve(self):
        import json

        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runs are reaped by the kernel; the supervisor kills leftovers
        from gcop_env.sandbox.supervisor.spawn import drop_capabilities

        drop_capabilities(keep=("CAP_SETUID", "CAP_SETGID"))
        _preload()
        self.depth = codec.recursion_depth_reader()  # (read once here; the same in every candidate process)
        self.path_fixes = self.limits.path_fixes()  # (computed once here, for the imports done so far)
        # What every candidate process gets that does not change from run to run, set once here
        # and inherited: its environment and temp dir, and the OOM killer's preference for it.
        prepare(self.limits, os.path.join(self.limits.config["base"], "cand"), b"1000")
        _warm(self)
        import gc

        gc.freeze()
        fd = self.control.fileno()
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.control, 4, 4)
            except OSError:
                return
            if len(data) < 4:
                return
            (size,) = struct.unpack(">I", data)
            body = read_exact(fd, size)
            if body is None:
                return
            request = json.loads(body.decode("utf-8"))
            pid = os.fork()
            if pid == 0:
                self.run(request, fds)  # never returns
            for passed in fds:
                os.close(passed)

    def run(self, request, fds):
        """In the forked candidate process: set up, then serve the judge until it hangs up."""
        from gcop_env.sandbox.supervisor.spawn import enter_run

        marks = {"start": _cpu()} if request.get("profile") else None
        try:
            channel = fds[0]
            control = self.control.detach()  # (closed below by number)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            out = os.memfd_create("stdout")
            err = os.memfd_create("stderr")
            enter_run(self.limits, request["workdir"], float(request["timeout"]), out, [control], self.limits.candidate_user,
                      self.path_fixes, None, None, files=request["files"], err_w=err, oom_score=None, prepared=True,
                      confine=True)
            sys.path.insert(0, request["workdir"])
            _RunFinder.install(request["workdir"], request["modules"])
            sys.stdin = _DontReadFromInput()
            process = CandidateProcess(channel, request["modules"], tuple(request["pads"]), self.depth)
            process.marks = marks
            if marks is not None:
                marks["setup"] = _cpu()
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            finally:
                os._exit(70)
        send_frame(channel, b"h")  # set up: from here on, what happens is the candidate's doing
        while True:
            op, payload = process.receive()
            process.serve(op, payload)


class _RunLoader(importlib.machinery.SourceFileLoader):
    """Loads one of the run's own modules from its file, compiled from source (no bytecode cache to
    look for: the work dir is new)."""

    def get_code(self, fullname):
        return self.source_to_code(self.get_data(self.path), self.path)


class _RunFinder:
    """Finds the run's own modules (its files in the work dir, first on ``sys.path`` anyway) without
    the path finder's search. It sits where the path finder is, after the builtin and frozen
    importers: a run file named like a builtin module does not shadow it, as before."""

    files = {}

    @classmethod
    def install(cls, workdir, modules):
        cls.files = {name: workdir + "/" + name + ".py" for name in modules}
        position = len(sys.meta_path)
        for index, finder in enumerate(sys.meta_path):
            if finder is importlib.machinery.PathFinder:
                position = index
                break
        sys.meta_path.insert(position, cls)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        file = cls.files.get(name) if path is None else None
        if file is None:
            return None
        return importlib.util.spec_from_file_location(name, file, loader=_RunLoader(name, file))

    @classmethod
    def invalidate_caches(cls):
        pass


def _cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [usage.ru_utime + usage.ru_stime, float(usage.ru_minflt)]


def _preload():
    """Import what solutions use most, once, before forking."""
    for name in (
        "collections", "itertools", "functools", "heapq", "bisect", "math", "re", "string", "typing", "io",
        "contextlib", "json", "random", "copy", "dataclasses", "operator", "statistics", "fractions", "decimal",
        "datetime", "array", "enum", "abc", "numbers", "traceback", "resource", "tempfile", "ctypes",
    ):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _warm(server):
    """The serve loop's paths (requests, replies, the codec), a few dozen times in the server before
    it forks: CPython 3.11 quickens a function on its first calls, and done in each candidate
    process those writes would copy pages (see gcop_env.sandbox.supervisor.warmup)."""
    import types

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    saved = sys.modules.get("gcop_warm")
    try:
        class Thing:
            def __init__(self):
                self.items = [1, 2, 3]

            def grow(self, n):
                self.items.append(n)
                return self

        def answer(xs, key=None):
            xs.append(4)
            print("out")
            return sorted(xs, key=key)

        def fails(x):
            raise ValueError(x)

        module = types.ModuleType("gcop_warm")
        module.__dict__.update(answer=answer, fails=fails, Thing=Thing, table={"a": [1, 2.5, "x", None, (True,)]}, N=3)
        sys.modules["gcop_warm"] = module
        process = CandidateProcess(mine.fileno(), ("gcop_warm",), (0, 0), server.depth)
        for kind in (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.GeneratorType, type,
                     types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType):
            process.describe(kind)
        thing = Thing()
        for _ in range(24):
            for op, payload in (
                (b"I", ("gcop_warm", -1)),
                (b"C", (answer, ([3, 1, 2],), {"key": None}, -1, "x")),
                (b"C", (fails, (1,), {}, -1, None)),
                (b"M", (thing, "grow", (5,), {}, -1, None)),
                (b"A", (thing, "items")),
                (b"V", ([process.ref(thing)], 10)),
            ):
                process.serve(op, payload)
                if recv_frame(theirs.fileno(), MESSAGE_LIMIT) is None:
                    return
            del thing.items[3:]
    except Exception:  # only speed is at stake
        pass
    finally:
        if saved is None:
            sys.modules.pop("gcop_warm", None)
        mine.close()
        theirs.close()
