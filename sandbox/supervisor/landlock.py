"""The candidate's view of the host's files in the process backend: Landlock (trusted code).

A run of the process backend shares the host's file system, and its user (``nobody``) may read
whatever every user may read there: another copy of a task's tests (a dataset under ``/work``, a
stray file in ``/tmp``) is an oracle. Each process that runs candidate code (the candidate
process of a trusted run, the run's process of an in-process run) restricts itself with Landlock
(the Linux security module for unprivileged sandboxing) after its work dir is written and before
any code of the run: from then on it, and every process it starts, may

- read and execute the Python installation (``sys.prefix``, ``sys.base_prefix`` and the exec
  prefixes, the import path's directories), the system's programs and libraries (``/usr``,
  ``/lib*``, ``/bin``, ``/sbin``) and a short list of ``/etc`` files (the loader's cache, time
  zone, users and groups, name service, certificates, fonts);
- read ``/proc`` and the CPU and cgroup entries of ``/sys`` (what libraries read to size thread pools);
- read and write ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random`` and ``/dev/urandom``;
- read, write, create and remove in its own work dir;

and nothing else (``/work``, ``/home``, ``/root``, ``/tmp``, ``/var/tmp``, ``/dev/shm`` and the
other runs' dirs in it...). Where the kernel knows the scopes (ABI 6), it also may not signal a
process outside its domain nor connect to an abstract Unix socket made outside it.

The rules name directories opened once in the supervisor, as root, before it forks anything
(:class:`Confinement`); a run's process only makes a ruleset of them and its work dir and
restricts itself (about 30 system calls). Where Landlock is missing (an old kernel, or the LSM not
enabled) the process backend runs anyway and says so: :attr:`Confinement.state` is in the
sandbox's hello (``versions["filesystem"]``) and in ``gcop sandbox check --sandbox process``.
"""

import errno
import os
import sys

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only rights a rule on a file may name
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2  # ABI 6

SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group", "nsswitch.conf",
               "hosts", "host.conf", "resolv.conf", "gai.conf", "protocols", "services", "mime.types", "os-release",
               "ssl", "ca-certificates", "fonts", "locale.alias", "alternatives")
READ_ONLY = ("/proc", "/sys/devices/system/cpu", "/sys/devices/system/node", "/sys/fs/cgroup")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def handled_fs(abi):
    """The file-system rights a ruleset handles on a kernel of Landlock ABI ``abi`` (the kernel's
    documentation: each ABI adds rights, and a ruleset may not name one its kernel lacks)."""
    mask = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        mask |= REFER
    if abi >= 3:
        mask |= TRUNCATE
    if abi >= 5:
        mask |= IOCTL_DEV
    return mask


def scopes(abi):
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def python_dirs():
    """The directories of this Python installation a candidate may read: its prefixes and its
    import path (never ``/``)."""
    import site

    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    found += [entry for entry in sys.path if entry]
    try:
        found += site.getsitepackages()
    except Exception:
        pass
    if sys.executable:
        found.append(os.path.dirname(os.path.realpath(sys.executable)))
    out = []
    for path in found:
        path = os.path.realpath(path)
        if path != "/" and os.path.isdir(path) and path not in out:
            out.append(path)
    return out


class _Api:
    """The three system calls through ctypes (loaded in the supervisor, before its forks)."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long
        self.prctl = libc.prctl

        class RulesetAttr(ctypes.Structure):
            _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                        ("scoped", ctypes.c_uint64)]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        self.RulesetAttr, self.PathBeneath = RulesetAttr, PathBeneath

    def abi(self):
        """The kernel's Landlock ABI version, or raise OSError (ENOSYS: not built in; EOPNOTSUPP: not enabled)."""
        version = self.syscall(_SYS_CREATE_RULESET, None, self.ctypes.c_size_t(0), self.ctypes.c_uint32(_CREATE_RULESET_VERSION))
        if version < 0:
            code = self.ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return int(version)

    def _check(self, value, what):
        if value < 0:
            code = self.ctypes.get_errno()
            raise OSError(code, "landlock %s: %s" % (what, os.strerror(code)))
        return value

    def create(self, attr):
        ctypes = self.ctypes
        return self._check(self.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                                        ctypes.c_uint32(0)), "create_ruleset")

    def add(self, ruleset, fd, access):
        ctypes = self.ctypes
        rule = self.PathBeneath(access, fd)
        self._check(self.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                                 ctypes.c_uint32(0)), "add_rule")

    def restrict(self, ruleset):
        ctypes = self.ctypes
        self._check(self.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        self._check(self.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "restrict_self")


class Confinement:
    """Landlock rules for the processes that run candidate code (see the module docstring).

    Built once in the supervisor (as root, before any fork): probes the kernel's ABI and opens the
    allowed paths (``O_PATH``). :attr:`active` says whether runs will be confined; :attr:`state`
    says how, or why not, in words. :meth:`apply` is called in a run's process.
    """

    def __init__(self, extra_read=()):
        self.abi = 0
        self.rules = []  # (descriptor opened with O_PATH, rights)
        self.api = None
        try:
            api = _Api()
            self.abi = api.abi()
        except OSError as exc:
            why = {errno.ENOSYS: "the kernel has no Landlock", errno.EOPNOTSUPP: "Landlock is not enabled in this kernel"}
            self.state = "host files NOT confined: %s (%s)" % (why.get(exc.errno, "Landlock unavailable"), exc.strerror)
            return
        except Exception as exc:  # (no ctypes, no libc: still run, and say so)
            self.state = "host files NOT confined: Landlock unavailable (%s: %s)" % (type(exc).__name__, exc)
            return
        if self.abi < 1:
            self.state = "host files NOT confined: Landlock ABI %d" % self.abi
            return
        self.api = api
        self.handled = handled_fs(self.abi)
        self.attr = api.RulesetAttr(self.handled, 0, scopes(self.abi))
        read_exec = (READ_FILE | READ_DIR | EXECUTE) & self.handled
        read = (READ_FILE | READ_DIR) & self.handled
        device = (READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV) & self.handled
        paths = [(p, read_exec) for p in SYSTEM_DIRS]
        paths += [("/etc/" + name, read_exec) for name in ETC_ENTRIES]
        paths += [(p, read_exec) for p in python_dirs()] + [(p, read_exec) for p in extra_read]
        paths += [(p, read) for p in READ_ONLY] + [(p, device) for p in DEVICES]
        seen = set()
        for path, access in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # (not on this machine)
            stat = os.fstat(fd)
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                os.close(fd)
                continue
            seen.add(key)
            import stat as stat_module

            if not stat_module.S_ISDIR(stat.st_mode):
                access &= FILE_RIGHTS
            self.rules.append((fd, access))
        # A ruleset made and dropped now: the rules are ones this kernel takes (else: not confined, said so).
        try:
            ruleset = api.create(self.attr)
            try:
                for fd, access in self.rules:
                    api.add(ruleset, fd, access)
            finally:
                os.close(ruleset)
        except OSError as exc:
            self.close()
            self.api = None
            self.state = "host files NOT confined: Landlock refused the rules (%s)" % (exc,)
            return
        self.state = "confined by Landlock (ABI %d): the Python installation, system libraries and the run's own dir" % self.abi

    @property
    def active(self):
        return self.api is not None

    def fds(self):
        return [fd for fd, _ in self.rules]

    def close(self):
        for fd, _ in self.rules:
            try:
                os.close(fd)
            except OSError:
                pass
        self.rules = []

    def apply(self, workdir):
        """In a run's process, before any of its code: confine it (and what it starts) to the rules and
        ``workdir`` (read, write, create, remove). Raises OSError when the kernel refuses: a run that
        cannot be confined never runs unconfined where confinement was promised."""
        api = self.api
        ruleset = api.create(self.attr)
        try:
            for fd, access in self.rules:
                api.add(ruleset, fd, access)
            own = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                api.add(ruleset, own, self.handled)
            finally:
                os.close(own)
            api.restrict(ruleset)
        finally:
            os.close(ruleset)
        self.close()  # (the run needs the descriptors no more)
