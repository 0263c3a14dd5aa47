"""The solution as the judge sees it under trusted isolation (trusted: runs in the judge's process).

The tests import ``solution`` and get a :class:`ProxyModule`: the names the candidate's module
exports, as this process decoded them from the candidate process's answer. Plain values are
copies (data); the candidate's functions, classes and objects are *handles* whose uses cross the
channel (:class:`Channel`): a call sends its arguments as data and gets the result as data, an
exception as the exception's type and message, the arguments the call changed in place, and what
the call printed (written to this process's ``sys.stdout``/``sys.stderr``, where pytest's capture
sees it).

What the judge decides stays here, computed from data it decoded itself:

* ``==`` and ``!=`` never ask the candidate: a handle is unequal to any data; two handles are
  equal when they are the same object, or, for a class that defines its own ``__eq__``, when they
  are of the same class and their attributes (``vars`` and slots, fetched as data, compared here
  recursively) are equal. ``hash`` of a handle is computed here too (by identity, or per class).
* an operator between a handle and test data (``+``, ``-``, ``<``, ``in``...) is never sent to the
  candidate: the test's values only reach it as the arguments of a call the test makes. ``in``
  iterates the handle and compares here. (A value of a class that subclasses ``int``, ``str``,
  ``tuple``... arrives as that value, and behaves as one.)
* truth and ``len`` of a handle are asked (they carry none of the test's data), and the answer
  must be a ``bool``/an ``int``; ``str``/``repr``/``format`` likewise (display).
* a context manager of the candidate's cannot swallow an ``AssertionError`` (or a pytest outcome)
  raised by the tests inside its ``with`` block; an ``AssertionError`` raised by a test's callable
  while the candidate called it fails the test even if the candidate caught it
  (:meth:`Channel.failure_since`).
* a crash of the candidate's process, a message that does not decode, or a reply out of protocol
  raises :class:`CandidateFailure` (not an ``Exception``: ``pytest.raises(Exception)`` and
  ``except Exception`` do not catch it) and fails the test in which it happened, whatever the test
  does with it; every later call fails too.

The test's callables (a ``key=`` function, a ``list.append``) are *lent* to the candidate by
reference: the candidate can call them with data, and reach public attributes only of objects
whose class the tests define (or a few stdlib types: text buffers, random generators). Names
(modules, stdlib classes and functions) cross by qualified name and are resolved by the receiving
side from its own imports, never from the candidate's files.
"""

import builtins
import os
import sys
import threading
import types

from gcop_env.sandbox.wire import codec
from gcop_env.sandbox.wire.framing import recv_frame, send_frame

MESSAGE_LIMIT = 64 << 20  # bytes of one message from the candidate
STATE_LIMIT = 5000  # objects whose attributes one state request may return
_BUILTIN_NAMES = frozenset(vars(builtins))
_TRACEBACK_NOTE = 1500  # characters of the candidate's traceback attached to an exception it raised
_INTERNAL = ("_gcop_ref", "_gcop_message")
# Attribute names a handle never forwards: pytest's markers and hooks (a candidate's object must
# not configure the test run), and the judge's own.
_LOCAL_ONLY = ("_pytest", "pytest", "__test__", "_gcop", "__pytest")
# Modules whose names the candidate may not make the judge resolve (the harness's, the run's).
_REFUSED_MODULES = ("gcop_env", "__main__")
# Modules the judge imports on the candidate's naming (a value's class or function there) when
# not imported yet: the standard library (but for a few with side effects at import) and the
# scientific stack the sandbox image carries.
_NOT_IMPORTED = frozenset(("antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter", "webbrowser", "pydoc"))
_IMPORTABLE = frozenset(("numpy", "pandas", "scipy", "sklearn", "sympy", "networkx", "matplotlib"))
# Types whose public attributes a lent object exposes, besides the test module's own classes.
_SAFE_LENT_TYPES = (("_io", "StringIO"), ("_io", "BytesIO"), ("io", "StringIO"), ("io", "BytesIO"),
                    ("random", "Random"), ("numpy.random._generator", "Generator"), ("numpy.random.mtrand", "RandomState"))
_LENT_CALLABLE, _LENT_OBJECT = 0, 1
# Callables the candidate may not hand the tests by name (the tests would run them here, on their
# own data): what runs code, opens files, starts processes or reaches the interpreter's state.
_REFUSED_CALLABLES = frozenset(("eval", "exec", "compile", "__import__", "open", "breakpoint", "input", "globals",
                                "locals", "vars", "setattr", "delattr", "getattr"))
_REFUSED_CALLABLE_MODULES = frozenset(("os", "posix", "nt", "subprocess", "_posixsubprocess", "ctypes", "_ctypes",
                                       "shutil", "socket", "_socket", "signal", "_signal", "pty", "multiprocessing",
                                       "importlib", "runpy", "code", "codeop", "pickle", "_pickle", "marshal", "shelve",
                                       "pdb", "bdb", "webbrowser", "gc", "sys"))
OUTPUT_LIMIT = 8 << 20  # characters of the candidate's printed output written here per run


class CandidateFailure(BaseException):
    """The candidate's process failed the protocol: it died, hung up, or sent what does not decode.

    A ``BaseException``, so that the tests' ``except Exception`` and ``pytest.raises(Exception)``
    do not take it for an answer; the test in which it happened fails whatever it does with it.
    """


class HarnessFailure(Exception):
    """The candidate's process never started (before any candidate code): not a verdict."""


def _depth_reader():
    reader = codec.recursion_depth_reader()
    return reader if reader is not None else (lambda: -1)


class Channel(codec.Peer):
    """The judge's end of the socket to the candidate's process, and the codec's hooks on this side.

    ``modules``: the run's own module names (the solution's files); ``test_module``: the tests'
    module name (its classes' objects may be lent with their attributes); ``harness_failed(why)``:
    called when the candidate's process never said hello (it must not return).
    """

    def __init__(self, fd, modules, test_module, harness_failed, star_excluded=frozenset()):
        self.fd = fd
        self.modules = frozenset(modules)
        self.test_module = test_module
        self.harness_failed = harness_failed
        self.star_excluded = frozenset(star_excluded)  # names the tests bind themselves (no star import over them)
        self.lock = threading.RLock()
        self.dead = None  # why the channel is unusable, once it is
        self.failures = []  # (what failed) in order: candidate failures, assertions the candidate swallowed
        self.ready = False  # the candidate's process said hello
        self.epoch = 0  # requests sent so far (a cached value is fresh while no request was sent)
        self.handles = {}  # ref -> this side's object for it
        self.descriptors = {}  # type id -> descriptor dict
        self.classes = {}  # type id -> class
        self.lent = [None]  # ref -> an object of this side lent to the candidate
        self.lent_of = {}  # id(object) -> ref
        self.proxy_modules = {}  # module name -> ProxyModule
        self.lazy_modules = {}  # module name -> LazyModule
        self.depth = _depth_reader()
        self.context = None  # the last PYTEST_CURRENT_TEST sent
        self.states = None  # during a structural comparison: ref -> state
        self.profile = None  # the run's phase timings, when profiling
        self.output_written = 0  # bytes of the candidate's printed output written here

    # -- failures -------------------------------------------------------------------------------

    def fail(self, why):
        """Mark the channel broken and raise :class:`CandidateFailure` (a test-failing condition)."""
        message = "the solution's process failed: %s" % why
        if self.dead is None:
            self.dead = message
        self.failures.append(message)
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1
        raise CandidateFailure(message)

    def close(self):
        """The tests are over: hang up (the candidate's process exits); later requests fail."""
        if self.dead is None:
            self.dead = "the run's tests are over"
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def failure_since(self, mark):
        """The first failure recorded after ``mark`` (a ``len(self.failures)`` taken earlier), or None."""
        return self.failures[mark] if len(self.failures) > mark else None

    # -- the messages -----------------------------------------------------------------------------

    def _send(self, op, payload):
        encoder = codec.Encoder(self)
        encoder.value(payload)  # (Unencodable: the tests' value; raised to the test as a TypeError)
        try:
            send_frame(self.fd, op + bytes(encoder.out))
        except OSError as exc:
            self.fail("it stopped reading (%s)" % exc.strerror)

    def _receive(self):
        try:
            body = recv_frame(self.fd, MESSAGE_LIMIT)
        except ValueError as exc:
            self.fail(str(exc))
        except OSError as exc:
            self.fail("its channel broke (%s)" % exc.strerror)
        if body is None:
            self.fail("it ended")
        if not body:
            self.fail("an empty message")
        try:
            payload = codec.decode(body[1:], self)
        except (codec.DecodeError, RecursionError, MemoryError) as exc:
            self.fail("it sent what the judge cannot read (%s)" % (exc,))
        if type(payload) is not tuple:
            self.fail("a message that is not a tuple")
        return body[:1], payload

    def _hello(self):
        try:
            body = recv_frame(self.fd, 16)
        except (OSError, ValueError):
            body = None
        if body != b"h":
            self.harness_failed("the candidate's process did not start (%r)" % (body,))
            raise HarnessFailure("the candidate's process did not start")
        self.ready = True

    def request(self, op, payload, args=None, kwargs=None):
        """Send one request and wait for its answer, serving the candidate's uses of lent objects
        meanwhile. ``args``/``kwargs``: the call's arguments, changed in place when the candidate
        changed its copies."""
        with self.lock:
            if self.dead is not None:
                raise CandidateFailure("%s (earlier)" % self.dead)
            if not self.ready:
                self._hello()
            self.epoch += 1
            self._send(op, payload)
            while True:
                kind, reply = self._receive()
                if kind == b"r":
                    return self._result(reply, args, kwargs)
                if kind == b"e":
                    if len(reply) != 3 or not isinstance(reply[0], BaseException):
                        self.fail("a bad exception reply")
                    self._output(reply[1], reply[2])
                    raise reply[0]
                if kind == b"K":
                    self._serve_lent(reply)
                    continue
                self.fail("an unexpected message %r" % kind)

    def _result(self, reply, args, kwargs):
        if len(reply) != 5 or type(reply[1]) is not list or type(reply[2]) is not int:
            self.fail("a bad result reply")
        value, mutations, result_arg, out, err = reply
        self._output(out, err)
        for change in mutations:
            if type(change) is not tuple or len(change) != 2:
                self.fail("a bad change of an argument")
            position, new = change
            if type(position) is int and args is not None and 0 <= position < len(args):
                codec.sync_in_place(args[position], new)
            elif type(position) is str and kwargs is not None and position in kwargs:
                codec.sync_in_place(kwargs[position], new)
            else:
                self.fail("a change of an argument that was not sent")
        if result_arg >= 0:
            if args is None or result_arg >= len(args):
                self.fail("a result that names an argument that was not sent")
            return args[result_arg]
        return value

    def _output(self, out, err):
        if type(out) is not bytes or type(err) is not bytes:
            self.fail("output that is not bytes")
        for data, stream in ((out, sys.stdout), (err, sys.stderr)):
            if data:
                self.output_written += len(data)
                if self.output_written > OUTPUT_LIMIT:
                    if self.output_written - len(data) <= OUTPUT_LIMIT:
                        data = b"\n[the solution's printed output goes on: the rest is not shown]\n"
                    else:
                        continue
                try:
                    stream.write(data.decode("utf-8", "replace"))
                    stream.flush()
                except Exception:  # the tests replaced the stream with something odd: their business
                    pass

    # -- requests the tests make ------------------------------------------------------------------

    def _context(self):
        current = os.environ.get("PYTEST_CURRENT_TEST")
        if current == self.context:
            return None
        self.context = current
        return current if current is not None else ""

    def call(self, target, args, kwargs):
        args = tuple(args)
        return self.request(b"C", (target, args, kwargs, self.depth(), self._context()), args, kwargs)

    def call_method(self, target, name, args, kwargs):
        args = tuple(args)
        return self.request(b"M", (target, name, args, kwargs, self.depth(), self._context()), args, kwargs)

    def call_name(self, module, qualname, *args):
        """Call the candidate side's own ``module.qualname`` (an operator, ``len``...) with ``args``."""
        return self.request(b"C", (_Name(module, qualname), args, {}, -1, None), args)

    def getattr(self, target, name):
        return self.request(b"A", (target, name))

    def setattr(self, target, name, value):
        self.request(b"W", (target, name, value))

    def delattr(self, target, name):
        self.request(b"X", (target, name))

    def import_module(self, name, depth):
        manifest = self.request(b"I", (name, depth))
        if type(manifest) is dict and self.profile is not None and type(manifest.get("profile")) is dict:
            self.profile["candidate"] = manifest.pop("profile")  # (informational: the candidate's own numbers)
        if type(manifest) is not dict or type(manifest.get("names")) is not list or type(manifest.get("values")) is not dict \
                or not all(type(n) is str for n in manifest["names"]) or not all(type(n) is str for n in manifest["values"]):
            self.fail("a bad module manifest")
        return manifest

    # -- lent objects: the candidate's uses of the tests' callables and objects ----------------------

    def lend(self, value, kind):
        ref = self.lent_of.get(id(value))
        if ref is None:
            ref = len(self.lent)
            self.lent.append(value)
            self.lent_of[id(value)] = ref
        return ref

    def _serve_lent(self, reply):
        if len(reply) != 5 or type(reply[0]) is not str or type(reply[1]) is not int or type(reply[2]) is not tuple:
            self.fail("a bad use of a lent object")
        op, ref, payload, out, err = reply
        self._output(out, err)
        if not 0 < ref < len(self.lent):
            self.fail("a use of an object that was never lent")
        target = self.lent[ref]
        try:
            value, mutations = self._use_lent(target, op, payload)
        except CandidateFailure:
            raise
        except BaseException as exc:
            if _is_test_failure(exc):
                # The tests' own check failed inside the candidate's call: the test fails, whatever
                # the candidate does with the exception (which it gets without its message).
                self.failures.append("an assertion of the tests failed while the candidate called them: %s"
                                     % _describe(exc))
                exc = AssertionError()
            self._send(b"e", (exc,))
            return
        self._send(b"r", (value, mutations))

    def _use_lent(self, target, op, payload):
        if op == "call":
            if len(payload) != 2 or type(payload[0]) is not tuple or type(payload[1]) is not dict:
                raise TypeError("a bad call")
            if not callable(target):
                raise TypeError("the tests' object is not callable")
            args, kwargs = payload
            before = [(position, item, codec.encode(item, self)) for position, item in
                      list(enumerate(args)) + list(kwargs.items()) if type(item) in (list, dict, set, bytearray)]
            value = target(*args, **kwargs)
            mutations = [(position, item) for position, item, encoded in before if codec.encode(item, self) != encoded]
            return value, mutations
        if op == "getattr":
            (name,) = payload
            if type(name) is not str or name.startswith("_") or not self._exposes_attributes(target):
                raise AttributeError("the tests lent %s without attributes" % type(target).__name__)
            return getattr(target, name), []
        if op in ("len", "iter", "next", "bool", "str", "repr"):
            if payload:
                raise TypeError("a bad use")
            return {"len": len, "iter": iter, "next": next, "bool": bool, "str": str, "repr": repr}[op](target), []
        if op == "getitem":
            (key,) = payload
            return target[key], []
        raise TypeError("an unknown use of a lent object: %r" % op)

    def _exposes_attributes(self, target):
        kind = type(target)
        if isinstance(target, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                               types.FrameType, types.CodeType, types.GeneratorType, types.TracebackType)):
            return False
        return kind.__module__ == self.test_module or (kind.__module__, kind.__qualname__) in _SAFE_LENT_TYPES

    # -- the codec's hooks ------------------------------------------------------------------------------

    def encode_other(self, encoder, value):
        ref = getattr(value, "_gcop_ref", None) if isinstance(value, (RemoteObject, ValueProxy)) else None
        if ref is not None:
            encoder.handle(ref, type(value)._gcop_type, None)
            return True
        if isinstance(value, RemoteClass):
            encoder.handle(0, value._gcop_type, None)
            return True
        if isinstance(value, ProxyModule):
            encoder.name(value.__name__, "")
            return True
        if isinstance(value, _Name):
            encoder.name(value.module, value.qualname)
            return True
        if isinstance(value, BaseException):
            kind = type(value)
            args = () if _is_test_failure(value) else value.args
            try:
                message = "" if _is_test_failure(value) else str(value)
            except Exception:
                message = "<unprintable %s>" % kind.__name__
            encoder.exception(kind, args, message, {}, "")
            return True
        if isinstance(value, types.ModuleType):
            name = getattr(value, "__name__", None)
            if isinstance(name, str):
                encoder.name(name, "")
                return True
        named = codec.qualified_name(value)
        if named is not None and not named[0].startswith(_REFUSED_MODULES) and named[0] != self.test_module:
            encoder.name(*named)
            return True
        kind = _LENT_CALLABLE if callable(value) else _LENT_OBJECT
        encoder.reference(self.lend(value, kind), kind)
        return True

    def decode_name(self, module, qualname):
        if module in self.modules:
            if qualname:
                raise codec.DecodeError("a name inside the candidate's module")
            if module not in self.proxy_modules:
                import importlib

                importlib.import_module(module)  # (through SolutionFinder: a request of its own)
            return self.proxy_modules[module]
        top = module.split(".")[0]
        if top in _REFUSED_MODULES or module == self.test_module or top in self.modules:
            raise codec.DecodeError("a name in a module the candidate may not name: %r" % module[:80])
        holder = sys.modules.get(module)
        if holder is None:
            if not importable(module):
                raise codec.DecodeError("a name in a module the judge does not import: %r" % module[:80])
            if not qualname:
                lazy = self.lazy_modules.get(module)
                if lazy is None:
                    lazy = self.lazy_modules[module] = LazyModule(module)
                return lazy
            try:
                import importlib

                holder = importlib.import_module(module)
            except Exception as exc:
                raise codec.DecodeError("cannot import %r (%s)" % (module[:80], type(exc).__name__)) from None
        found = codec.resolve_name(module, qualname, {module: holder})
        if qualname and callable(found) and (
                (top == "builtins" and qualname in _REFUSED_CALLABLES) or top in _REFUSED_CALLABLE_MODULES):
            return _Refused(module, qualname)
        return found

    def decode_type(self, type_id, fields):
        self.descriptors[type_id] = _checked_descriptor(fields)

    def decode_handle(self, ref, type_id, info):
        if type_id not in self.descriptors:
            raise codec.DecodeError("a handle of an undescribed type")
        cls = self.classes.get(type_id)
        if cls is None:
            try:
                cls = self.classes[type_id] = _build_class(self, type_id, self.descriptors[type_id])
            except Exception as exc:  # (a descriptor no class can be built from: a bad one)
                raise codec.DecodeError("a type that cannot stand here (%s: %s)" % (type(exc).__name__, exc)) from None
        if ref == 0:
            return cls
        known = self.handles.get(ref)
        if known is not None:
            if type(known) is not cls:
                raise codec.DecodeError("an object that changed its type")
            return known
        descriptor = self.descriptors[type_id]
        if descriptor["exception"]:
            raise codec.DecodeError("an exception object sent as a handle")
        value_kind = descriptor["value"]
        if value_kind in _IMMUTABLE:
            if type(info) is not dict or "value" not in info:
                raise codec.DecodeError("a value object without its value")
            value = info["value"]
            base = _IMMUTABLE[value_kind]
            if type(value) is not base:
                raise codec.DecodeError("a %s object whose value is a %s" % (value_kind, type(value).__name__))
            if descriptor["fields"] is not None and len(value) != len(descriptor["fields"]):
                raise codec.DecodeError("a named tuple of the wrong length")
            try:
                proxy = base.__new__(cls, value)
            except TypeError:
                raise codec.DecodeError("a value that does not fit its class") from None
        else:
            proxy = object.__new__(cls)
            if type(info) is dict:
                for key in ("__name__", "__qualname__", "__module__", "__doc__"):
                    if type(info.get(key)) is str:
                        object.__setattr__(proxy, key, info[key])
        object.__setattr__(proxy, "_gcop_ref", ref)
        self.handles[ref] = proxy
        return proxy

    def decode_reference(self, ref, kind):
        if not 0 < ref < len(self.lent):
            raise codec.DecodeError("a reference to nothing lent")
        return self.lent[ref]

    def decode_exception(self, type_value, args, message, attrs, remote_traceback):
        if not (isinstance(type_value, type) and issubclass(type_value, BaseException)) or issubclass(
                type_value, (CandidateFailure, HarnessFailure)):
            raise codec.DecodeError("an exception of a type that is not an exception class")
        if isinstance(type_value, RemoteClass):
            exc = BaseException.__new__(type_value)
            exc.args = args
            exc._gcop_message = message
            for key, item in attrs.items():
                if type(key) is str and not key.startswith(("_gcop", "__")):
                    exc.__dict__[key] = item
        else:
            try:
                exc = type_value(*args)
            except Exception:
                exc = type_value.__new__(type_value)
                exc.args = args
            for key, item in attrs.items():  # (data only: pytest.skip's allow_module_level...)
                if type(key) is str and not key.startswith(("_gcop", "__")):
                    try:
                        setattr(exc, key, item)
                    except Exception:
                        pass
        if remote_traceback:
            try:
                exc.add_note("(raised in the solution's process)\n" + remote_traceback[-_TRACEBACK_NOTE:])
            except Exception:
                pass
        return exc

    # -- equality of handles (see the module docstring) --------------------------------------------------

    def structurally_equal(self, a, b):
        outer = self.states is None
        if outer:
            self.states = {}
        try:
            return _structural(self, a, b)
        finally:
            if outer:
                self.states = None

    def state_of(self, handle):
        ref = handle._gcop_ref
        if ref not in self.states:
            reply = self.request(b"V", ([ref], STATE_LIMIT))
            if type(reply) is not list:
                self.fail("a bad state reply")
            for entry in reply:
                if type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not int or type(entry[1]) is not dict:
                    self.fail("a bad state entry")
                self.states[entry[0]] = entry[1]
            if ref not in self.states:
                self.fail("a state reply without the object asked for")
        return self.states[ref]


class _Name:
    """A name to send (``module``, ``qualname``): the receiving side's own object of that name."""

    __slots__ = ("module", "qualname")

    def __init__(self, module, qualname):
        self.module, self.qualname = module, qualname


class _Refused:
    """Stands for a callable the candidate named that the tests must not run here (``eval``,
    ``os.system``...): a solution may import it, the tests cannot call it."""

    def __init__(self, module, qualname):
        self.name = "%s.%s" % (module, qualname)

    def __call__(self, *args, **kwargs):
        raise TypeError("%s, named by the solution, is not run by the tests under trusted isolation" % self.name)

    def __repr__(self):
        return "<%s, named by the solution>" % self.name


def importable(module):
    """Whether the judge imports ``module`` when the candidate's values name it: the standard
    library (but for modules with side effects at import) and the scientific stack."""
    top = module.split(".")[0]
    return top not in _NOT_IMPORTED and (top in sys.stdlib_module_names or top in _IMPORTABLE)


def _is_test_failure(exc):
    if isinstance(exc, AssertionError):
        return True
    outcomes = sys.modules.get("_pytest.outcomes")
    return outcomes is not None and isinstance(exc, (outcomes.Failed, outcomes.Exit))


def _describe(exc):
    try:
        text = str(exc)
    except Exception:
        text = ""
    return "%s%s" % (type(exc).__name__, (": " + text[:300]) if text else "")


_IMMUTABLE = {"int": int, "float": float, "complex": complex, "str": str, "bytes": bytes, "tuple": tuple,
              "frozenset": frozenset}
_MUTABLE = {"list": list, "dict": dict, "set": set, "bytearray": bytearray}
_DESCRIPTOR_FIELDS = {"module": str, "qualname": str, "name": str, "candidate": bool, "bases": list, "dunders": list,
                      "methods": list, "eq": bool, "hash": bool, "truth": bool, "value": str, "exception": bool,
                      "metaclass": bool}


def _checked_descriptor(fields):
    for key, kind in _DESCRIPTOR_FIELDS.items():
        if type(fields.get(key)) is not kind:
            raise codec.DecodeError("a type descriptor with a bad %r" % key)
    if not all(type(n) is str for n in fields["dunders"] + fields["methods"]):
        raise codec.DecodeError("a type descriptor with bad names")
    if fields["value"] and fields["value"] not in _IMMUTABLE and fields["value"] not in _MUTABLE:
        raise codec.DecodeError("a type descriptor with a bad value kind")
    found = fields.get("fields")
    if found is not None and (type(found) is not list or not all(type(n) is str and n.isidentifier() for n in found)):
        raise codec.DecodeError("a type descriptor with bad fields")
    if not fields["name"].isidentifier():
        fields = dict(fields, name="RemoteObject")
    return fields


# ------------------------------------------------------------------------------- the stand-ins


class RemoteClass(type):
    """The class of a stand-in class: calling it constructs in the candidate's process; its other
    attributes (class attributes, static methods, enum members) are asked for there."""

    def __call__(cls, *args, **kwargs):
        return cls._gcop_channel.call(cls, args, kwargs)

    def __getattr__(cls, name):
        if name.startswith(_LOCAL_ONLY) or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return cls._gcop_channel.getattr(cls, name)

    def __bool__(cls):
        return True  # (a class is true; __len__ below must not make it ask)

    def __iter__(cls):
        return _iterate(cls._gcop_channel, cls._gcop_channel.call_name("builtins", "iter", cls))

    def __len__(cls):
        return _checked_len(cls._gcop_channel.call_name("builtins", "len", cls))

    def __getitem__(cls, key):
        return cls._gcop_channel.call_name("operator", "getitem", cls, key)

    def __repr__(cls):
        return "<class '%s.%s'>" % (cls.__module__, cls.__qualname__)


class RemoteObject:
    """An object that lives in the candidate's process (a handle); see the module docstring."""

    __slots__ = ("_gcop_ref", "__dict__", "__weakref__")
    _gcop_type = 0
    _gcop_channel = None
    _gcop_methods = frozenset()
    _gcop_eq = False
    _gcop_hashable = True
    _gcop_truth = False
    _gcop_value = ""

    def __getattr__(self, name):
        if name.startswith(_LOCAL_ONLY):
            raise AttributeError(name)
        channel = type(self)._gcop_channel
        if name in type(self)._gcop_methods:
            return _RemoteMethod(channel, self, name)
        return channel.getattr(self, name)

    def __setattr__(self, name, value):
        if name.startswith(_LOCAL_ONLY) or name in ("__name__", "__qualname__", "__module__", "__doc__"):
            object.__setattr__(self, name, value)
        else:
            type(self)._gcop_channel.setattr(self, name, value)

    def __delattr__(self, name):
        type(self)._gcop_channel.delattr(self, name)

    def __eq__(self, other):
        if self is other:
            return True
        cls = type(self)
        if not isinstance(other, (RemoteObject, ValueProxy)):
            if cls._gcop_value in _MUTABLE:  # a list/dict/set subclass: its current value, compared here
                return _current_value(self) == other
            return NotImplemented
        if type(other) is not cls or not cls._gcop_eq:
            return False
        return cls._gcop_channel.structurally_equal(self, other)

    def __ne__(self, other):
        equal = self.__eq__(other)
        return NotImplemented if equal is NotImplemented else not equal

    def __hash__(self):
        cls = type(self)
        if not cls._gcop_hashable:
            raise TypeError("unhashable type: '%s'" % cls.__name__)
        if cls._gcop_eq:
            return hash((cls.__module__, cls.__qualname__))
        return object.__hash__(self)

    def __bool__(self):
        cls = type(self)
        if not cls._gcop_truth:
            return True
        answer = cls._gcop_channel.call_name("builtins", "bool", self)
        if type(answer) is not bool:
            raise TypeError("__bool__ should return bool, returned %s" % type(answer).__name__)
        return answer

    def __repr__(self):
        return _checked_str(type(self)._gcop_channel.call_name("builtins", "repr", self), "__repr__")

    def __str__(self):
        return _checked_str(type(self)._gcop_channel.call_name("builtins", "str", self), "__str__")

    def __format__(self, spec):
        return _checked_str(type(self)._gcop_channel.call_name("builtins", "format", self, spec), "__format__")

    def __dir__(self):
        names = type(self)._gcop_channel.call_name("builtins", "dir", self)
        return [n for n in names if type(n) is str] if type(names) is list else []

    def __copy__(self):
        return type(self)._gcop_channel.call_name("copy", "copy", self)

    def __deepcopy__(self, memo):
        return type(self)._gcop_channel.call_name("copy", "deepcopy", self)

    def __reduce_ex__(self, protocol):
        raise TypeError("an object of the candidate's process cannot be pickled in the judge's")


def _contains(self, item):
    """``item in handle``: the handle's items, compared here (``item`` never goes to the candidate)."""
    for element in self:
        if element is item or element == item:
            return True
    return False


class ValueProxy:
    """Mixed into stand-ins of the candidate's subclasses of immutable builtins (``int``, ``str``,
    ``tuple``...): the instance *is* that value here, so comparisons, hashing and arithmetic with
    the tests' data are the builtin's, computed here. Other attributes are asked for."""

    _gcop_channel = None
    _gcop_methods = frozenset()

    def __getattr__(self, name):
        if name.startswith(_LOCAL_ONLY) or name == "_gcop_ref":
            raise AttributeError(name)
        channel = type(self)._gcop_channel
        if name in type(self)._gcop_methods:
            return _RemoteMethod(channel, self, name)
        return channel.getattr(self, name)

    def __reduce_ex__(self, protocol):
        raise TypeError("an object of the candidate's process cannot be pickled in the judge's")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class _RemoteMethod:
    """``handle.name``, for a name the handle's class has as a method: calling it is one request."""

    __slots__ = ("channel", "target", "name", "__weakref__")

    def __init__(self, channel, target, name):
        self.channel, self.target, self.name = channel, target, name

    def __call__(self, *args, **kwargs):
        return self.channel.call_method(self.target, self.name, args, kwargs)

    def __eq__(self, other):
        return type(other) is _RemoteMethod and other.target is self.target and other.name == self.name

    def __hash__(self):
        return hash((id(self.target), self.name))

    @property
    def __name__(self):
        return self.name

    def __repr__(self):
        return "<method %s of the solution's %s>" % (self.name, type(self.target).__name__)


def _checked_str(value, what):
    if type(value) is not str:
        raise TypeError("%s returned non-string (type %s)" % (what, type(value).__name__))
    return value


def _checked_len(value):
    if type(value) is not int:
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(value).__name__)
    if value < 0:
        raise ValueError("__len__() should return >= 0")
    return value


def _current_value(handle):
    channel = type(handle)._gcop_channel
    value = channel.call_name("gcop_env.sandbox.candidate.server", "base_value", handle)
    expected = _MUTABLE[type(handle)._gcop_value]
    if type(value) is not expected:
        channel.fail("a %s object whose value is a %s" % (expected.__name__, type(value).__name__))
    return value


# Special methods a stand-in forwards when the candidate's type has them. The value: how the
# candidate's side computes it (a function of its own, by name) and what the answer must be.
_UNARY = {
    "__len__": ("builtins", "len", _checked_len), "__int__": ("builtins", "int", int), "__float__": ("builtins", "float", float),
    "__complex__": ("builtins", "complex", complex), "__index__": ("operator", "index", int),
    "__bytes__": ("builtins", "bytes", bytes), "__abs__": ("builtins", "abs", None), "__neg__": ("operator", "neg", None),
    "__pos__": ("operator", "pos", None), "__invert__": ("operator", "invert", None), "__trunc__": ("math", "trunc", None),
    "__floor__": ("math", "floor", None), "__ceil__": ("math", "ceil", None), "__reversed__": ("builtins", "reversed", None),
    "__length_hint__": ("operator", "length_hint", int), "__fspath__": ("os", "fspath", None),
}
_BINARY = {  # forwarded only when the other operand is the candidate's too
    "__lt__": "lt", "__le__": "le", "__gt__": "gt", "__ge__": "ge", "__add__": "add", "__sub__": "sub",
    "__mul__": "mul", "__truediv__": "truediv", "__floordiv__": "floordiv", "__mod__": "mod", "__pow__": "pow",
    "__matmul__": "matmul", "__lshift__": "lshift", "__rshift__": "rshift", "__and__": "and_", "__or__": "or_",
    "__xor__": "xor",
}
_REFLECTED = {"__r" + name[2:]: op for name, op in _BINARY.items() if name not in ("__lt__", "__le__", "__gt__", "__ge__")}


def _unary(name, module, function, check):
    def forward(self):
        value = type(self)._gcop_channel.call_name(module, function, self)
        if check is None:
            return value
        if check in (int, float, complex, bytes):
            if type(value) is not check:
                raise TypeError("%s returned non-%s (type %s)" % (name, check.__name__, type(value).__name__))
            return value
        return check(value)

    forward.__name__ = name
    return forward


def _binary(name, op, reflected):
    def forward(self, other):
        if not isinstance(other, (RemoteObject, ValueProxy, RemoteClass)):
            return NotImplemented  # the tests' data never goes to the candidate through an operator
        channel = type(self)._gcop_channel
        return channel.call_name("operator", op, other, self) if reflected else channel.call_name("operator", op, self, other)

    forward.__name__ = name
    return forward


def _forwarders(dunders):
    namespace = {}
    for name in dunders:
        if name in _UNARY:
            namespace[name] = _unary(name, *_UNARY[name])
        elif name in _BINARY:
            namespace[name] = _binary(name, _BINARY[name], False)
        elif name in _REFLECTED:
            namespace[name] = _binary(name, _REFLECTED[name], True)
    if "__divmod__" in dunders:
        namespace["__divmod__"] = _binary("__divmod__", "divmod", False)
    if "__getitem__" in dunders:
        namespace["__getitem__"] = lambda self, key: type(self)._gcop_channel.call_name("operator", "getitem", self, key)
    if "__setitem__" in dunders:
        namespace["__setitem__"] = lambda self, key, value: type(self)._gcop_channel.call_name(
            "operator", "setitem", self, key, value)
    if "__delitem__" in dunders:
        namespace["__delitem__"] = lambda self, key: type(self)._gcop_channel.call_name("operator", "delitem", self, key)
    if "__iter__" in dunders:
        namespace["__iter__"] = lambda self: _iterate(type(self)._gcop_channel,
                                                      type(self)._gcop_channel.call_name("builtins", "iter", self))
    elif "__getitem__" in dunders:  # the old sequence protocol, as Python's iter() would use it
        namespace["__iter__"] = lambda self: _iterate(type(self)._gcop_channel,
                                                      type(self)._gcop_channel.call_name("builtins", "iter", self))
    if "__contains__" in dunders or "__iter__" in dunders or "__getitem__" in dunders:
        namespace["__contains__"] = _contains
    if "__next__" in dunders:
        namespace["__next__"] = lambda self: type(self)._gcop_channel.call_name("builtins", "next", self)
    if "__call__" in dunders:
        namespace["__call__"] = lambda self, *args, **kwargs: type(self)._gcop_channel.call(self, args, kwargs)
    if "__enter__" in dunders:
        namespace["__enter__"] = lambda self: type(self)._gcop_channel.call_method(self, "__enter__", (), {})
    if "__exit__" in dunders:
        namespace["__exit__"] = _exit
    if "__round__" in dunders:
        namespace["__round__"] = lambda self, *ndigits: type(self)._gcop_channel.call_name("builtins", "round", self, *ndigits)
    return namespace


def _exit(self, kind, value, traceback):
    """A candidate's context manager leaves: it may not swallow the tests' own failure."""
    channel = type(self)._gcop_channel
    if value is not None and _is_test_failure(value):
        channel.call_method(self, "__exit__", (AssertionError, AssertionError(), None), {})
        return False
    return channel.call_method(self, "__exit__", (kind, value, None), {})


def _iterate(channel, iterator):
    """Iterate a handle of the candidate's iterator: a batch of items per request while the loop
    makes no other request (then one at a time, so that what the loop does between items happens
    in the same order as it would in one process)."""
    if not isinstance(iterator, RemoteObject):
        yield from iter(iterator)  # (a list, say)
        return
    size = 1
    while True:
        epoch = channel.epoch
        reply = channel.call_name("gcop_env.sandbox.candidate.server", "take", iterator, size)
        if type(reply) is not tuple or len(reply) != 3 or type(reply[0]) is not list or type(reply[1]) is not bool:
            channel.fail("a bad iteration reply")
        items, done, error = reply
        yield from items
        if error is not None:
            if not isinstance(error, BaseException):
                channel.fail("a bad iteration error")
            raise error
        if done:
            return
        size = min(size * 2, 256) if channel.epoch == epoch + 1 else 1


def _build_class(channel, type_id, descriptor):
    """The judge's stand-in class for a candidate's type (see the module docstring)."""
    bases = [b for b in descriptor["bases"] if isinstance(b, type)]
    value_kind = descriptor["value"]
    namespace = {"__module__": descriptor["module"], "__qualname__": descriptor["qualname"], "_gcop_type": type_id,
                 "_gcop_channel": channel, "_gcop_methods": frozenset(descriptor["methods"]), "__doc__": None}
    if descriptor["exception"]:
        exception_bases = [b for b in bases if issubclass(b, BaseException) and not issubclass(b, (CandidateFailure, HarnessFailure))]
        namespace["__str__"] = lambda self: getattr(self, "_gcop_message", None) or BaseException.__str__(self)
        try:
            return RemoteClass(descriptor["name"], tuple(exception_bases) or (Exception,), namespace)
        except TypeError:
            return RemoteClass(descriptor["name"], (Exception,), namespace)
    if value_kind in _IMMUTABLE:
        base = _IMMUTABLE[value_kind]
        if base is tuple and descriptor["fields"] is not None:
            import collections

            base = collections.namedtuple(descriptor["name"], descriptor["fields"])
        overrides = descriptor["dunders"]
        for name in ("__str__", "__repr__", "__format__"):
            if name in overrides and descriptor["candidate"]:
                namespace[name] = getattr(RemoteObject, name)
        for name in _BINARY:
            if name in overrides and descriptor["candidate"] and name not in ("__eq__", "__ne__"):
                fallback = getattr(base, name, None)
                namespace[name] = _value_binary(name, _BINARY[name], fallback)
        return RemoteClass(descriptor["name"], (ValueProxy, base), namespace)
    namespace.update(_forwarders(descriptor["dunders"]))
    namespace.update(_gcop_eq=descriptor["eq"], _gcop_hashable=descriptor["hash"] and value_kind not in _MUTABLE,
                     _gcop_truth=descriptor["truth"], _gcop_value=value_kind)
    remote_bases = tuple(b for b in bases if isinstance(b, RemoteClass) and issubclass(b, RemoteObject))
    try:
        return RemoteClass(descriptor["name"], remote_bases or (RemoteObject,), namespace)
    except TypeError:
        return RemoteClass(descriptor["name"], (RemoteObject,), namespace)


def _value_binary(name, op, fallback):
    """A value stand-in's operator that the candidate's class overrides: forwarded between two of
    the candidate's objects, the builtin's with the tests' data."""
    forward = _binary(name, op, False)

    def operate(self, other):
        if isinstance(other, (RemoteObject, ValueProxy)):
            return forward(self, other)
        return fallback(self, other) if fallback is not None else NotImplemented

    operate.__name__ = name
    return operate


def _structural(channel, a, b):
    """Handles ``a`` and ``b`` are equal (same class, equal attributes, recursively), decided here
    from their states as data, without recursion on this process's stack."""
    assumed = set()  # pairs of refs already being compared (cycles count as equal)
    work = [(a, b)]
    while work:
        x, y = work.pop()
        if x is y:
            continue
        remote_x = isinstance(x, RemoteObject)
        remote_y = isinstance(y, RemoteObject)
        if remote_x or remote_y:
            if not (remote_x and remote_y) or type(x) is not type(y) or not type(x)._gcop_eq:
                return False
            pair = (x._gcop_ref, y._gcop_ref)
            if pair in assumed:
                continue
            assumed.add(pair)
            if type(x)._gcop_value in _MUTABLE:  # a list/dict/set subclass: its items too
                work.append((_current_value(x), _current_value(y)))
            work.append((channel.state_of(x), channel.state_of(y)))
            continue
        kind = type(x)
        if kind is not type(y):
            if x != y:  # (1 == 1.0, True == 1: what == says for data of different types)
                return False
            continue
        if kind in (list, tuple):
            if len(x) != len(y):
                return False
            work.extend(zip(x, y))
        elif kind is dict:
            if x.keys() != y.keys():
                return False
            work.extend((x[key], y[key]) for key in x)
        elif x != y:
            return False
    return True


class LazyModule(types.ModuleType):
    """A module the candidate's namespace holds and the judge has not imported: imported here on
    first use (so that a solution's ``import numpy as np`` costs the judge nothing it does not use)."""

    def __getattr__(self, name):
        import importlib

        if name.startswith("__") and name.endswith("__") or not importable(self.__name__):
            raise AttributeError(name)
        module = importlib.import_module(self.__name__)
        return getattr(module, name)


class ProxyModule(types.ModuleType):
    """The solution module as the tests import it (see the module docstring)."""

    def _gcop_load(self, channel, depth):
        object.__setattr__(self, "_gcop_channel", channel)
        manifest = channel.import_module(self.__name__, depth)
        object.__setattr__(self, "_gcop_names", manifest["names"])
        object.__setattr__(self, "_gcop_values", manifest["values"])
        object.__setattr__(self, "_gcop_epoch", channel.epoch)
        for key in ("__doc__", "__file__"):
            if type(manifest.get(key.strip("_"))) is str:
                object.__setattr__(self, key, manifest[key.strip("_")])

    @property
    def __all__(self):
        """What ``from solution import *`` binds in the module that runs it: the candidate module's
        public names, but not over a builtin, not a name pytest gives a meaning (tests, test
        classes, hooks, marks, setup functions: a solution adds no tests), and not a name that the
        importing module binds itself."""
        from gcop_env.sandbox.judge.plan import reserved

        frame = sys._getframe(1)
        namespace = frame.f_locals
        excluded = self._gcop_channel.star_excluded
        return [n for n in self._gcop_names if n not in _BUILTIN_NAMES and not reserved(n) and not n.startswith("test")
                and n not in namespace and n not in excluded and not n.startswith(("_gcop", "@"))]

    def __getattr__(self, name):
        values = object.__getattribute__(self, "__dict__").get("_gcop_values")
        if values is None or name.startswith(("_gcop", "__")):
            raise AttributeError(name)
        channel = self._gcop_channel
        if name in values:
            value = values[name]
            if channel.epoch == self._gcop_epoch or isinstance(
                    value, (RemoteObject, RemoteClass, ValueProxy, types.ModuleType)):
                return value
        return channel.getattr(_Name(self.__name__, ""), name)

    def __setattr__(self, name, value):
        if name.startswith("__") or name.startswith("_gcop"):
            object.__setattr__(self, name, value)
        else:
            self._gcop_channel.setattr(_Name(self.__name__, ""), name, value)

    def __dir__(self):
        return sorted(set(self._gcop_names))


class SolutionFinder:
    """Imports the run's own modules (the candidate's) as :class:`ProxyModule`\\ s: first in
    ``sys.meta_path``, so no file of the candidate's is ever read here."""

    def __init__(self, channel):
        self.channel = channel

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self.channel.modules:
            return None
        from importlib.machinery import ModuleSpec

        if "." in fullname:
            raise ImportError("the solution's modules have no submodules here (%s)" % fullname)
        return ModuleSpec(fullname, self, origin="the candidate's %s.py" % fullname)

    def create_module(self, spec):
        return ProxyModule(spec.name)

    def exec_module(self, module):
        self.channel.proxy_modules[module.__name__] = module
        module._gcop_load(self.channel, self.channel.depth())
