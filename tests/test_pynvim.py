#!/usr/bin/env python3
"""test_pynvim.py: gorod spoken to by a msgpack-RPC client we did not write.

pynvim (Debian's python3-pynvim) is Neovim's Python client; its
pynvim.msgpack_rpc package is a generic msgpack-RPC session layer. It opens
every session with a notification (nvim_set_client_info, its name sent as
bin), and here method names are sent as bin too, as older clients do
(PROTOCOL.md: a bin method is accepted). Starts a real gorod on a temporary
socket, waiting for its READY=1 on a NOTIFY_SOCKET of our own, and checks
hello, WaitGroups and mutexes through pynvim's session.request. Speaks TAP;
skips (exit 77) when pynvim is not importable.

usage: test_pynvim.py BUILD_DIR
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT = 10.0 * max(1.0, float(os.environ.get("GORO_TIMEOUT_SCALE") or 1))

try:
    from pynvim import msgpack_rpc
except ImportError as e:
    print(f"1..0 # SKIP pynvim is not importable ({e}); scripts/setup installs python3-pynvim")
    # 77, or what TAP_SKIP_EXIT says (meson's TAP protocol wants 0).
    sys.exit(int(os.environ.get("TAP_SKIP_EXIT", "77")))

BUILD = sys.argv[1]
GOROD = os.path.join(BUILD, "daemon", "gorod")
# $GOROD_WRAPPER (e.g. "valgrind ...", scripts/test memcheck) goes before
# gorod's argv; $GORO_TIMEOUT_SCALE stretches the timeouts for it (harness.c).
WRAPPER = os.environ.get("GOROD_WRAPPER", "").split()

# ---- TAP ---------------------------------------------------------------------

_n = 0
_failed = 0


def ok(cond, what, diag=None):
    global _n, _failed
    _n += 1
    if cond:
        print(f"ok {_n} - {what}")
    else:
        _failed += 1
        frame = sys._getframe(1)
        print(f"not ok {_n} - {what}")
        print(f"#   at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
        if diag is not None:
            print(f"#   {diag}")
    sys.stdout.flush()
    return cond


def is_(got, want, what):
    return ok(got == want, what, f"got {got!r}, expected {want!r}")


# ---- gorod ---------------------------------------------------------------------


class Gorod:
    """A gorod on a temporary socket, ready once it said READY=1 on our
    NOTIFY_SOCKET (as in test_protocol.py)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gorod-test-")
        self.path = os.path.join(self.dir, "gorod.sock")
        notify_path = os.path.join(self.dir, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(TIMEOUT)
        self.log_path = os.path.join(self.dir, "log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([*WRAPPER, GOROD, "--socket", self.path],
                                         env=dict(os.environ, NOTIFY_SOCKET=notify_path),
                                         stdout=log, stderr=log)
        try:
            while "READY=1" not in notify.recv(4096).decode().split("\n"):
                pass
        except socket.timeout:
            self.proc.kill()
            raise RuntimeError("gorod did not say READY=1")
        finally:
            notify.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def dump_log(self):
        with open(self.log_path) as f:
            for line in f.read().splitlines()[-40:]:
                print("# " + line)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class GorodError(Exception):
    """An error response: [code, message]."""

    def __init__(self, err):
        super().__init__(err)
        self.code = err[0] if isinstance(err, (list, tuple)) and err else err


def session(path):
    """pynvim's own msgpack-RPC session over gorod's socket. pynvim's Nvim
    class is what sets error_wrapper; the bare session needs one."""
    s = msgpack_rpc.socket_session(path)
    s.error_wrapper = GorodError
    return s


def close(s):
    """Ends a session. pynvim's Session.close() closes the asyncio transport
    and then at once its loop, so the socket close the transport scheduled
    never runs and the connection stays open until garbage collection:
    gorod would rightly keep the session (and what it holds). Run the loop
    once in between, so that the connection really closes now."""
    ev = s.loop
    t = getattr(ev, "_raw_transport", None)
    if t is not None:
        t.close()
        ev._loop.call_soon(ev._loop.stop)
        ev._loop.run_forever()
        ev._raw_transport = None
    s.close()


def call(s, method, *args):
    """(error code or None, result), the method name sent as bin."""
    try:
        return None, s.request(method.encode(), *args)
    except GorodError as e:
        return e.code, None


# ---- tests -------------------------------------------------------------------


def test_hello(g):
    s = session(g.path)
    err, res = call(s, "hello", {"client": "pynvim"})
    is_(err, None, "hello after pynvim's opening notification")
    ok(isinstance(res, dict) and res.get("protocol") == 1 and res.get("max_message") == 1 << 20,
       "hello says protocol 1 and the 1 MiB limit", res)
    ok(isinstance(res, dict) and isinstance(res.get("session"), int), "hello gives a session id", res)
    err, res = call(s, "stats")
    clients = [x.get("client") for x in (res or {}).get("sessions", [])]
    ok("pynvim" in clients, "stats shows the client's name", clients)
    is_(call(s, "no.such.method")[0], "ENOSYS", "an unknown method: ENOSYS, the session goes on")
    is_(call(s, "hello")[0], None, "and answers again")
    close(s)


def test_waitgroups(g):
    s = session(g.path)
    no_tasks = {"round": {"tasks": 0, "running": 0, "done": 0, "failed": 0}}
    is_(call(s, "wg.wait", "py.never"), (None, no_tasks), "wg.wait on a name never used returns at once")
    is_(call(s, "wg.add", "py.wg", 2), (None, {"count": 2}), "wg.add 2")
    is_(call(s, "wg.add", "py.wg", -3)[0], "ENEGATIVE", "wg.add -3: ENEGATIVE")
    is_(call(s, "wg.add", "py.wg", 0), (None, {"count": 2}), "the counter is unchanged")
    # A notification is accepted and ignored: it changes nothing.
    s.request(b"wg.add", "py.wg", 5, async_=True)
    is_(call(s, "wg.add", "py.wg", 0), (None, {"count": 2}),
        "a wg.add sent as a notification is ignored")
    is_(call(s, "wg.wait", "py.wg", {"timeout_ms": 30})[0], "ETIMEDOUT", "wg.wait with a timeout")
    is_(call(s, "wg.done", "py.wg"), (None, {"count": 1}), "wg.done")
    is_(call(s, "wg.done", "py.wg"), (None, {"count": 0}), "wg.done")
    is_(call(s, "wg.wait", "py.wg"), (None, no_tasks), "wg.wait at 0")
    is_(call(s, "wg.add", "py.wg", 1, {"bogus": True})[0], "EINVAL", "an unknown option: EINVAL")
    close(s)


def test_mutexes(g):
    a, b = session(g.path), session(g.path)
    err, r1 = call(a, "mutex.lock", "py.m")
    is_(err, None, "mutex.lock")
    ok(isinstance(r1, dict) and r1.get("token", 0) > 0 and r1.get("owner_died") is False,
       "the grant has a token and owner_died false", r1)
    is_(call(b, "mutex.lock", "py.m", {"try": True})[0], "EBUSY", "another session's try: EBUSY")
    is_(call(b, "mutex.lock", "py.m", {"timeout_ms": 30})[0], "ETIMEDOUT",
        "another session's timeout: ETIMEDOUT")
    is_(call(a, "mutex.lock", "py.m")[0], "EDEADLK", "locking it again from the same session: EDEADLK")
    is_(call(a, "mutex.unlock", "py.m"), (None, {}), "mutex.unlock")
    err, r2 = call(b, "mutex.lock", "py.m", {"mode": "w"})
    is_(err, None, "the other session locks it now")
    ok(r1 and r2 and r2["token"] > r1["token"], "with a larger token", (r1, r2))
    is_(call(a, "mutex.unlock", "py.m", {"token": r2["token"] if r2 else 0}), (None, {}),
        "unlock by presenting the token, from another session")
    is_(call(b, "mutex.unlock", "py.m")[0], "ENOTLOCKED", "then it is not held: ENOTLOCKED")
    is_(call(a, "mutex.lock", "py.rw", {"mode": "r"})[0], None, "rlock")
    is_(call(b, "mutex.lock", "py.rw", {"mode": "r", "try": True})[0], None, "a second reader shares it")
    is_(call(b, "mutex.lock", "py.x", {"mode": "w"})[0], None, "b also holds py.x")
    # b ends holding py.rw and py.x: the next holder is told.
    close(b)
    err, r3 = call(a, "mutex.lock", "py.x", {"timeout_ms": int(TIMEOUT * 1000)})
    is_(err, None, "b's session ends: a gets py.x")
    ok(r3 and r3["owner_died"] is True, "and is told its previous owner died", r3)
    is_(call(a, "mutex.unlock", "py.x"), (None, {}), "unlock py.x")
    is_(call(a, "mutex.unlock", "py.rw"), (None, {}), "runlock py.rw")
    err, r4 = call(a, "mutex.lock", "py.rw")
    is_(err, None, "lock py.rw for writing")
    ok(r4 and r4["owner_died"] is False,
       "not told owner_died: b ended holding it only for reading, which changes nothing", r4)
    is_(call(a, "mutex.unlock", "py.rw"), (None, {}), "unlock py.rw")
    close(a)


def test_nothing_left(g):
    s = session(g.path)
    # gorod has no event for "the closed sessions have ended": ask until
    # they have, within TIMEOUT.
    deadline = time.monotonic() + TIMEOUT
    while True:
        st = call(s, "stats")[1]
        if (st and st["sessions_count"] == 1) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    is_(st and st["sessions_count"], 1, "every other session has ended")
    is_(st and st["primitives"], {"waitgroups": 0, "mutexes": 0, "semaphores": 0, "waiters": 0},
        "every name was forgotten")
    close(s)


def main():
    g = Gorod()
    ok(True, f"gorod said READY=1 on {g.path}")
    rc = None
    try:
        test_hello(g)
        test_waitgroups(g)
        test_mutexes(g)
        test_nothing_left(g)
    finally:
        rc = g.stop()
        if not is_(rc, 0, "gorod stops cleanly on SIGTERM"):
            g.dump_log()
        g.cleanup()
    print(f"1..{_n}")
    sys.exit(1 if _failed else 0)


if __name__ == "__main__":
    main()
