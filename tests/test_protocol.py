#!/usr/bin/env python3
"""test_protocol.py: gorod's wire protocol, from a second language.

Starts a real gorod on a temporary socket (waiting for its READY=1 on a
NOTIFY_SOCKET of our own, not for a log line or a sleep) and speaks
msgpack-RPC to it with python3-msgpack, as a client we did not write in C
would. Checks the named primitives' semantics end to end, the untrusted-input
rules of proto/PROTOCOL.md (malformed, truncated, oversized and deeply nested
messages), that the method table matches PROTOCOL.md, and that gorod's memory
has not grown after the abuse. Speaks TAP.

usage: test_protocol.py BUILD_DIR SOURCE_DIR
"""

import os
import re
import shutil
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

try:
    import msgpack
except ImportError:
    print("1..0 # SKIP python3-msgpack is not installed")
    sys.exit(77)

BUILD, SRC = sys.argv[1], sys.argv[2]
GOROD = os.path.join(BUILD, "daemon", "gorod")
# $GOROD_WRAPPER (e.g. "valgrind ...", scripts/test memcheck) goes before
# gorod's argv; $GORO_TIMEOUT_SCALE stretches the timeouts for it (harness.c).
WRAPPER = os.environ.get("GOROD_WRAPPER", "").split()
TIMEOUT = 10.0 * max(1.0, float(os.environ.get("GORO_TIMEOUT_SCALE") or 1))

# ---- TAP ---------------------------------------------------------------------

_n = 0
_failed = 0


def ok(cond, what, diag=None):
    global _n, _failed
    _n += 1
    if not cond:
        _failed += 1
        frame = sys._getframe(1)
        print(f"not ok {_n} - {what}")
        print(f"#   at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
        if diag is not None:
            print(f"#   {diag}")
    else:
        print(f"ok {_n} - {what}")
    sys.stdout.flush()
    return cond


def is_(got, want, what):
    return ok(got == want, what, f"got {got!r}, expected {want!r}")


# ---- gorod ---------------------------------------------------------------------


class Gorod:
    """A gorod on a temporary socket, started and waited for like systemd
    would: it is ready when it says READY=1 on our NOTIFY_SOCKET."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="gorod-test-")
        self.path = os.path.join(self.dir, "gorod.sock")
        notify_path = os.path.join(self.dir, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(TIMEOUT)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.log_path = self.log.name
        self.proc = subprocess.Popen([*WRAPPER, GOROD, "--socket", self.path, *args],
                                     env=env, stderr=self.log)
        try:
            while True:
                msg = notify.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    break
        except socket.timeout:
            raise RuntimeError("gorod did not become ready")
        finally:
            notify.close()

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(TIMEOUT)
        self.s.connect(path)
        self.u = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.pending = {}

    def send(self, method, *params, bin_method=False):
        self.msgid += 1
        m = method.encode() if bin_method else method
        self.s.sendall(msgpack.packb([0, self.msgid, m, list(params)], use_bin_type=True))
        return self.msgid

    def raw(self, data):
        """Sends bytes; gorod may close the connection before it read them
        all (an oversized header is refused at once): that is fine here."""
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def recv(self):
        """The next message, or None when gorod closed the connection."""
        while True:
            for m in self.u:
                return m
            try:
                data = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not data:
                return None
            self.u.feed(data)

    def reply(self, msgid):
        if msgid in self.pending:
            return self.pending.pop(msgid)
        while True:
            m = self.recv()
            if m is None:
                return None
            if m[1] == msgid:
                return m
            self.pending[m[1]] = m

    def call(self, method, *params, **kw):
        m = self.reply(self.send(method, *params, **kw))
        if m is None:
            return ("CLOSED", None)
        return (m[2][0] if m[2] else None, m[3])

    def closed(self):
        """True when gorod closed this connection."""
        try:
            self.s.settimeout(TIMEOUT)
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def locker_process(path, name, mode="w"):
    """A separate process that locks `name` and then waits to be killed;
    returns it once the lock is granted (it says so on stdout)."""
    code = f"""
import socket, msgpack, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect({path!r})
s.sendall(msgpack.packb([0, 1, "mutex.lock", [{name!r}, {{"mode": {mode!r}}}]]))
u = msgpack.Unpacker(raw=False)
while True:
    d = s.recv(4096)
    if not d: sys.exit(1)
    u.feed(d)
    for m in u:
        print("granted" if m[2] is None else "error", flush=True)
        while True: time.sleep(3600)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    return p, line


# ---- tests -------------------------------------------------------------------


def test_methods_documented():
    with open(os.path.join(SRC, "proto", "methods.h")) as f:
        names = re.findall(r'X\(\w+, "([a-z.]+)"', f.read())
    with open(os.path.join(SRC, "proto", "PROTOCOL.md")) as f:
        doc = set(re.findall(r"^### ([a-z.]+)$", f.read(), re.M))
    ok(len(names) >= 10, "the method table has the methods", names)
    is_(sorted(set(names) - doc), [], "every method of proto/methods.h has a section in PROTOCOL.md")
    is_(sorted(doc - set(names)), [], "every method of PROTOCOL.md is in proto/methods.h")


def test_hello_and_encodings(g):
    c = Client(g.path)
    # Open with a notification, as pynvim does: accepted and ignored.
    c.raw(msgpack.packb([2, "nvim_set_client_info", ["x", {}, "remote", {}, {}]]))
    err, res = c.call("hello", {"client": "test"})
    is_(err, None, "hello after an unknown notification")
    ok(res and res["protocol"] == 1 and res["max_message"] == 1 << 20, "hello says the limits", res)
    err, res = c.call("wg.add", "enc", 0, bin_method=True)
    is_((err, res), (None, {"count": 0}), "a method name sent as bin is accepted")
    c.close()


def test_waitgroups(g):
    c = Client(g.path)
    NO_TASKS = {"round": {"tasks": 0, "running": 0, "done": 0, "failed": 0}}
    is_(c.call("wg.wait", "never-used"), (None, NO_TASKS), "zero-value WaitGroup: wait returns at once")
    is_(c.call("wg.add", "w", 2), (None, {"count": 2}), "add 2")
    is_(c.call("wg.add", "w", -3)[0], "ENEGATIVE", "a counter that would go negative is refused")
    is_(c.call("wg.add", "w", 0), (None, {"count": 2}), "and left unchanged")
    is_(c.call("wg.wait", "w", {"timeout_ms": 50})[0], "ETIMEDOUT", "wait with a timeout times out")
    d = Client(g.path)
    wid = d.send("wg.wait", "w")
    is_(c.call("wg.done", "w"), (None, {"count": 1}), "done")
    is_(d.call("stats")[0], None, "a waiting wg.wait does not hold up stats on its connection")
    is_(c.call("wg.done", "w"), (None, {"count": 0}), "done again")
    is_(d.reply(wid)[2], None, "the waiter wakes when the counter reaches 0")
    # A lease-bound add whose session dies wakes waiters with an error.
    holder = Client(g.path)
    is_(holder.call("wg.add", "leased", 1, {"lease": True}), (None, {"count": 1}), "lease-bound add")
    wid = d.send("wg.wait", "leased")
    is_(c.call("stats")[0], None, "the waiter is queued")
    holder.close()
    m = d.reply(wid)
    is_(m and m[2] and m[2][0], "ELOST", "its session dies: the waiter is told the work is lost")
    is_(d.call("wg.wait", "leased")[0], "ELOST", "a later wait is told too, not 'done'")
    is_(c.call("wg.add", "leased", 1), (None, {"count": 1}), "a new round starts")
    is_(c.call("wg.done", "leased"), (None, {"count": 0}), "and ends")
    is_(d.call("wg.wait", "leased"), (None, NO_TASKS), "then wait succeeds again")
    for x in (c, d):
        x.close()


def test_mutexes(g):
    a, b = Client(g.path), Client(g.path)
    err, r1 = a.call("mutex.lock", "m")
    is_(err, None, "lock")
    is_(b.call("mutex.lock", "m", {"try": True})[0], "EBUSY", "try on a held mutex: EBUSY")
    is_(b.call("mutex.lock", "m", {"timeout_ms": 30})[0], "ETIMEDOUT", "timeout on a held mutex")
    wid = b.send("mutex.lock", "m")
    is_(b.call("stats")[0], None, "a blocked lock does not hold up stats on the same connection")
    is_(a.call("mutex.unlock", "m"), (None, {}), "unlock")
    m = b.reply(wid)
    ok(m and m[2] is None and m[3]["token"] > r1["token"], "the waiter gets it with a larger token", m)
    is_(a.call("mutex.unlock", "m", {"token": m[3]["token"]}), (None, {}),
        "another session unlocks by presenting the token")
    is_(a.call("mutex.unlock", "m")[0], "ENOTLOCKED", "unlock of an unlocked mutex")
    # Readers share; a waiting writer blocks new readers.
    is_(a.call("mutex.lock", "rw", {"mode": "r"})[0], None, "rlock")
    is_(b.call("mutex.lock", "rw", {"mode": "r"})[0], None, "a second rlock shares it")
    c = Client(g.path)
    wid = c.send("mutex.lock", "rw")
    c.call("stats")
    is_(b.call("mutex.lock", "rw", {"mode": "r", "try": True})[0], "EBUSY",
        "once a writer waits, a new reader queues (try: EBUSY)")
    is_(a.call("mutex.lock", "rw", {"mode": "r"})[0], "EDEADLK",
        "a recursive rlock while a writer waits: EDEADLK at once")
    a.call("mutex.unlock", "rw")
    b.call("mutex.unlock", "rw")
    is_(c.reply(wid)[2], None, "the writer gets it when the readers leave")
    c.call("mutex.unlock", "rw")
    # Two sessions crossing two locks.
    is_(a.call("mutex.lock", "x")[0], None, "a holds x")
    is_(b.call("mutex.lock", "y")[0], None, "b holds y")
    wid = a.send("mutex.lock", "y")
    a.call("stats")
    is_(b.call("mutex.lock", "x")[0], "EDEADLK", "b asks for x: EDEADLK at once")
    is_(b.call("mutex.unlock", "y"), (None, {}), "b lets go of y")
    is_(a.reply(wid)[2], None, "a proceeds")
    a.call("mutex.unlock", "x")
    a.call("mutex.unlock", "y")
    is_(a.call("mutex.lock", "self")[0], None, "lock")
    is_(a.call("mutex.lock", "self")[0], "EDEADLK", "locking it again from the same session: EDEADLK")
    a.call("mutex.unlock", "self")
    for x in (a, b, c):
        x.close()


def test_owner_death(g):
    p, line = locker_process(g.path, "od")
    is_(line, "granted", "a separate process holds the lock")
    c = Client(g.path)
    wid = c.send("mutex.lock", "od")
    c.call("stats")
    p.kill()
    p.wait()
    m = c.reply(wid)
    ok(m and m[2] is None and m[3]["owner_died"] is True,
       "SIGKILL of the holder: the next holder is told owner_died", m)
    # Killed while waiting: nothing is granted to the dead session.
    p2 = subprocess.Popen([sys.executable, "-c", f"""
import socket, msgpack, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect({g.path!r})
s.sendall(msgpack.packb([0, 1, "mutex.lock", ["od"]]))
print("sent", flush=True); time.sleep(3600)
"""], stdout=subprocess.PIPE, text=True)
    is_(p2.stdout.readline().strip(), "sent", "a second process waits for it")
    d = Client(g.path)
    wid2 = d.send("mutex.lock", "od")
    for _ in range(100):  # until both waiters are queued
        st = c.call("stats")[1]
        if st["primitives"]["waiters"] >= 2:
            break
        time.sleep(0.01)
    p2.kill()
    p2.wait()
    is_(c.call("mutex.unlock", "od"), (None, {}), "the holder unlocks")
    m = d.reply(wid2)
    ok(m and m[2] is None, "the queue moves past the dead waiter to the next", m)
    d.call("mutex.unlock", "od")
    c.close()
    d.close()


def test_close_unread(g):
    """A client that closes with a reply unread and a request waiting: the
    close is a reset (ECONNRESET) that can come in the same edge as its last
    request, so gorod's reader must read on to see it. Each session must
    end, and its waiting request with it."""
    holder = Client(g.path)
    is_(holder.call("mutex.lock", "cu")[0], None, "close unread: a holder takes the lock")
    base = holder.call("stats")[1]["sessions_count"]
    n, unread = 20, 0
    for _ in range(n):
        c = Client(g.path)
        c.send("hello")
        r, _, _ = select.select([c.s], [], [], TIMEOUT)  # the reply is there, unread
        unread += bool(r)
        c.send("mutex.lock", "cu")  # waits behind the holder
        c.close()
    is_(unread, n, "close unread: each client left a reply unread")
    deadline = time.monotonic() + TIMEOUT
    while True:
        st = holder.call("stats")[1]
        if (st["sessions_count"] == base and st["primitives"]["waiters"] == 0) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.01)
    is_((st["sessions_count"] - base, st["primitives"]["waiters"]), (0, 0),
        "close unread: every such session ended, its waiting lock request with it")
    is_(holder.call("mutex.unlock", "cu"), (None, {}), "close unread: the holder unlocks")
    holder.close()


def test_semaphores(g):
    a, b = Client(g.path), Client(g.path)
    is_(a.call("sem.acquire", "s", {"capacity": 3, "n": 2})[0], None, "take 2 of 3")
    is_(b.call("sem.acquire", "s", {"n": 2, "try": True})[0], "EBUSY", "2 more do not fit")
    wid = b.send("sem.acquire", "s", {"n": 2})
    b.call("stats")
    is_(a.call("sem.acquire", "s", {"n": 1, "try": True})[0], "EBUSY",
        "a small request does not overtake the big one queued first")
    is_(a.call("sem.acquire", "s", {"capacity": 4})[0], "EINVAL", "another capacity: EINVAL")
    is_(a.call("sem.acquire", "s", {"n": 9})[0], "EINVAL", "n over the capacity: EINVAL")
    is_(a.call("sem.release", "s"), (None, {}), "release")
    is_(b.reply(wid)[2], None, "the queued request gets its units")
    is_(b.call("sem.release", "s"), (None, {}), "release")
    is_(b.call("sem.release", "s")[0], "ENOTLOCKED", "release without acquire")
    a.close()
    b.close()


def test_bad_params(g):
    c = Client(g.path)
    cases = [
        ("wg.add", [5, 1], "a name that is not a string"),
        ("wg.add", ["", 1], "an empty name"),
        ("wg.add", ["x" * 256, 1], "a name over 255 bytes"),
        ("wg.add", ["a\0b", 1], "a name with a NUL"),
        ("wg.add", ["x", "1"], "a delta that is not an integer"),
        ("wg.add", ["x", 1 << 40], "a delta out of range"),
        ("mutex.lock", ["m", {"mode": "x"}], "an unknown mode"),
        ("mutex.lock", ["m", {"timeout_ms": -1}], "a negative timeout"),
        ("mutex.lock", ["m", {"bogus": 1}], "an unknown option"),
        ("mutex.lock", ["m", {}, {}], "too many params"),
        ("sem.acquire", ["s", {"capacity": 0}], "capacity 0"),
        ("maxprocs", [0], "maxprocs 0"),
        ("maxprocs", [1000], "maxprocs 1000"),
        ("stats", [1], "stats with params"),
    ]
    for method, params, what in cases:
        is_(c.call(method, *params)[0], "EINVAL", f"{method}: {what}: EINVAL")
    is_(c.call("no.such.method")[0], "ENOSYS", "an unknown method: ENOSYS")
    is_(c.call("stats")[0], None, "the connection stays open after all of them")
    c.close()


def abuse(g, data, what, expect_close=True):
    c = Client(g.path)
    c.raw(data)
    if expect_close:
        ok(c.closed(), f"{what}: the connection is closed")
    c.close()


def test_bad_input(g):
    rss0 = g.rss_kb()
    big = 1 << 31
    for _ in range(20):
        abuse(g, b"\xc1" + os.urandom(64), "garbage bytes")
        abuse(g, os.urandom(256), "random bytes, then the peer leaves", expect_close=False)
        abuse(g, b"\xc1", "the never-used byte 0xc1")
        abuse(g, b"\xdb" + struct.pack(">I", 0xFFFFFFF0), "a str32 header claiming 4 GiB")
        abuse(g, b"\xdd" + struct.pack(">I", 0xFFFFFFFF), "an array32 header claiming 4 billion elements")
        abuse(g, b"\xdf" + struct.pack(">I", 0xFFFFFFFF), "a map32 header claiming 4 billion pairs")
        abuse(g, b"\xc6" + struct.pack(">I", big), "a bin32 header claiming 2 GiB")
        abuse(g, b"\x91" * 100000 + b"\xc0", "nesting depth 100,000")
        abuse(g, msgpack.packb([7, 1, "stats", []]), "a message type that does not exist")
        abuse(g, msgpack.packb({"not": "an array"}), "a map where a message should be")
        abuse(g, msgpack.packb([0, 1, "stats"]), "a request with 3 elements")
        abuse(g, msgpack.packb([0, -1, "stats", []]), "a negative msgid")
        abuse(g, msgpack.packb([0, 1, 5, []]), "a method that is not a string")
        abuse(g, msgpack.packb([0, 1, "stats", "x"]), "params that are not an array")
    # Truncated: the peer sends half a message and goes away.
    for _ in range(50):
        c = Client(g.path)
        c.raw(msgpack.packb([0, 1, "wg.add", ["t", 1]])[:5])
        c.close()
    # A response from the client is ignored; the session goes on.
    c = Client(g.path)
    c.raw(msgpack.packb([1, 9, None, {}]))
    is_(c.call("stats")[0], None, "a response sent to gorod is ignored")
    c.close()
    # A client that sends and then half-closes (nc -N, socat) gets its
    # replies; ten times, as gorod may read the requests and the end of
    # file together or apart.
    answered = closed = 0
    for _ in range(10):
        c = Client(g.path)
        c.raw(msgpack.packb([0, 1, "hello", []]) + msgpack.packb([0, 2, "stats", []]))
        c.s.shutdown(socket.SHUT_WR)
        got = [c.recv(), c.recv()]
        answered += None not in got and sorted(m[1] for m in got) == [1, 2]
        closed += c.closed()
        c.close()
    is_(answered, 10, "requests sent before a half-close are answered")
    is_(closed, 10, "and then gorod closes the connection")
    # A message just under the limit is fine; just over it, the connection closes.
    c = Client(g.path)
    is_(c.call("wg.add", "z" * 10, 0)[0], None, "a normal message after the abuse")
    c.raw(msgpack.packb([0, 1, "stats", ["x" * (1 << 20)]]))
    ok(c.closed(), "a message over 1 MiB: the connection is closed")
    c.close()
    c = Client(g.path)
    err, st = c.call("stats")
    is_(err, None, "gorod still answers")
    ok(g.alive(), "gorod is alive")
    rss1 = g.rss_kb()
    if os.environ.get("GORO_SANITIZE", "none") not in ("", "none") or WRAPPER:
        # ASan keeps freed memory in quarantine, TSan in its shadow, and
        # valgrind its own: RSS says nothing there. They check for leaks at exit.
        ok(True, f"# SKIP RSS under a sanitizer ({rss0} kB -> {rss1} kB)")
    else:
        ok(rss1 - rss0 < 4096, f"its RSS has not grown ({rss0} kB -> {rss1} kB)", (rss0, rss1))
    is_(st["primitives"]["waitgroups"], 0, "truncated requests left no WaitGroup behind")
    c.close()


def test_socket_rules(g):
    # A second gorod on a live socket refuses to start and leaves it alone.
    p = subprocess.run([*WRAPPER, GOROD, "--socket", g.path], capture_output=True,
                       text=True, timeout=TIMEOUT)
    ok(p.returncode != 0 and "already running" in p.stderr,
       "a second gorod on the same socket refuses to start", p.stderr)
    c = Client(g.path)
    is_(c.call("stats")[0], None, "and the first still answers")
    c.close()
    mode = os.stat(g.path).st_mode & 0o777
    is_(mode, 0o660 if os.geteuid() == 0 else 0o600, "the socket's mode")
    # A stale socket file (nobody listening) is replaced.
    d = tempfile.mkdtemp(prefix="gorod-test-")
    stale = os.path.join(d, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    g2 = None
    try:
        g2 = Gorod("--socket", stale)
        c = Client(stale)
        is_(c.call("stats")[0], None, "a stale socket file is replaced and served")
        c.close()
    except RuntimeError as e:
        ok(False, "a stale socket file is replaced and served", str(e))
    finally:
        if g2:
            is_(g2.stop(), 0, "that gorod stops cleanly")


def main():
    test_methods_documented()
    g = Gorod()
    try:
        test_socket_rules(g)
        test_hello_and_encodings(g)
        test_waitgroups(g)
        test_mutexes(g)
        test_owner_death(g)
        test_close_unread(g)
        test_semaphores(g)
        test_bad_params(g)
        test_bad_input(g)
        c = Client(g.path)
        st = c.call("stats")[1]
        is_(st["primitives"], {"waitgroups": 0, "mutexes": 0, "semaphores": 0, "waiters": 0},
            "at the end every name was forgotten (no leak)")
        c.close()
    finally:
        rc = g.stop()
    if not is_(rc, 0, "gorod stops cleanly on SIGTERM"):
        with open(g.log_path) as f:
            for line in f.read().splitlines()[-60:]:
                print("# " + line)
    ok(not os.path.exists(g.path), "and removes its socket")
    if _failed == 0:
        g.cleanup()
    print(f"1..{_n}")
    sys.exit(1 if _failed else 0)


if __name__ == "__main__":
    main()
