"""Processes and files of a run, seen from the supervisor (trusted): /proc scans, pipes, removal.

Stdlib only; Linux ``/proc``.
"""

import os
import shutil

CHUNK = 65536
PIPE_SIZE = 1 << 20  # bytes of buffer asked for each of a run's pipes


def remap(path, path_map):
    for original, opened in path_map:  # longest first
        if (path + "/").startswith(original):
            return opened + path[len(original):] if len(path) >= len(original) else opened.rstrip("/")
    return path



def remove(path):
    def unlock(func, target, _exc):  # a run may chmod its files to 000
        try:
            os.chmod(os.path.dirname(target) or ".", 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=unlock)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass
    return not os.path.lexists(path)


def stat_fields(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()  # after the command name, which may hold spaces


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def live_pids():
    """PIDs of processes that are not zombies."""
    live = []
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            live.append(pid)
    return live


def read_available(fd, sink):
    """Feed ``sink`` what the non-blocking pipe ``fd`` holds now; False at end of file."""
    while True:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        sink.feed(data)


def enlarge_pipe(fd):
    """Give a pipe 1 MiB of buffer (Linux), so that the child rarely waits for the server to read."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError):
        pass  # the default 64 KiB: slower for a run that writes a lot, nothing else


def drain(fd):
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def children(parent):
    """Pids of ``parent``'s children (zombies too: they are what is left to reap)."""
    try:
        found = []
        for task in os.listdir("/proc/%d/task" % parent):
            with open("/proc/%d/task/%s/children" % (parent, task), "rb") as handle:
                found.extend(map(int, handle.read().split()))
        return found
    except OSError:  # (no children files: every process of the host)
        found = []
        for pid in all_pids():
            fields = stat_fields(pid)
            if fields is not None and int(fields[1]) == parent:
                found.append(pid)
        return found


def children_of(parents):
    """Live children of any of the pids in ``parents``."""
    return [pid for pid, parent in process_table().items() if parent in parents]


def process_table():
    """{pid: parent pid} of the live (not zombie) processes, from one scan of /proc."""
    table = {}
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            table[pid] = int(fields[1])
    return table


def subtree(root):
    """{pid: parent pid} of the live descendants of ``root``, read from each process's
    ``/proc/PID/task/TID/children`` (only the tree is visited, not every process of the host);
    None where the kernel does not offer those files."""
    found = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            if pid == root:
                return None
            continue
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (pid, task), "rb") as handle:
                    kids = handle.read().split()
            except FileNotFoundError:
                if pid == root:
                    return None
                continue
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    fields = stat_fields(kid)
                    if fields is not None and fields[0] != b"Z":
                        found[kid] = pid
                        stack.append(kid)
    return found


def descendants(root, parents=None):
    """Live descendants of ``root`` (in ``parents``, a :func:`process_table`, or a fresh one)."""
    if parents is None:
        parents = process_table()
    found = []
    for pid in parents:
        seen = 0
        parent = parents.get(pid)
        while parent is not None and seen < 64:
            if parent == root:
                found.append(pid)
                break
            parent = parents.get(parent)
            seen += 1
    return found


def count_processes(uid):
    count = 0
    for pid in all_pids():
        try:
            if os.stat("/proc/%d" % pid).st_uid == uid:
                count += 1
        except OSError:
            pass
    return count
