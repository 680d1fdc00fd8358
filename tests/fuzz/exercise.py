#!/usr/bin/python3
"""exercise.py SOCKET: every method of proto/methods.h with its options, as
a client would use them, for the fuzz corpus (tests/fuzz/make-corpus runs
it through capture-gorod). The end-to-end tests' traffic leaves some out
(`logs`, `resume`, most spawn options); these requests fill the gaps. Each
scenario is one connection; replies are read, so that what a client sends
next can depend on them (ids, tokens), as real traffic does. Nothing is
checked here: the tests do that."""
import socket
import sys
import time

import msgpack

PATH = sys.argv[1]


class Conn:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(PATH)
        self.s.settimeout(5)
        self.u = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msgid = 0
        self.replies = {}

    def send(self, method, *params):
        self.msgid += 1
        self.s.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        return self.msgid

    def raw(self, obj):
        self.s.sendall(msgpack.packb(obj))

    def reply(self, msgid):
        while msgid not in self.replies:
            data = self.s.recv(1 << 20)
            if not data:
                return None, None
            self.u.feed(data)
            for m in self.u:
                self.replies[m[1]] = (m[2], m[3])
        return self.replies.pop(msgid)

    def call(self, method, *params):
        return self.reply(self.send(method, *params))

    def close(self):
        self.s.close()


def result(r, key):
    err, res = r
    return res.get(key) if err is None and isinstance(res, dict) else None


def basics():
    c = Conn()
    c.call("hello", {"client": "exercise"})
    c.call("hello")
    c.call("stats")
    c.call("leaks")
    c.call("maxprocs")
    c.call("maxprocs", 2)
    c.call("maxprocs", None)
    c.call("no.such.method", 1, "x")
    c.raw([2, "notify", [1, 2]])  # a notification: ignored
    c.raw([1, 7, None, {"ok": True}])  # a response: ignored
    c.call("stats", 1)  # EINVAL
    c.close()


def waitgroups():
    c = Conn()
    c.call("wg.add", "ex.wg", 2, {"lease": True})
    c.call("wg.status", "ex.wg")
    c.call("wg.done", "ex.wg")
    c.call("wg.wait", "ex.wg", {"timeout_ms": 0})
    c.call("wg.wait", "ex.wg", {"timeout_ms": 5})
    c.call("wg.add", "ex.wg", -5)  # ENEGATIVE
    c.call("wg.add", "ex.wg", 2147483647)  # ERANGE
    c.call("wg.add", "ex.plain", 1)
    c.call("wg.add", "ex.plain", -1)
    c.call("wg.wait", "ex.plain")
    c.close()  # ends holding a leased count: ex.wg is lost
    d = Conn()
    d.call("wg.wait", "ex.wg", {"timeout_ms": 100})  # ELOST
    d.call("wg.status", "ex.wg")
    d.call("wg.add", "ex.wg", 1)  # a new round
    w = d.send("wg.wait", "ex.wg", {"timeout_ms": 1000})
    d.call("wg.done", "ex.wg")
    d.reply(w)
    d.close()


def mutexes():
    a, b = Conn(), Conn()
    tok = result(a.call("mutex.lock", "ex.m", {"mode": "w"}), "token")
    b.call("mutex.lock", "ex.m", {"try": True})  # EBUSY
    b.call("mutex.lock", "ex.m", {"mode": "r", "timeout_ms": 5})  # ETIMEDOUT
    w = b.send("mutex.lock", "ex.m", {"mode": "r", "timeout_ms": 2000})
    a.call("mutex.unlock", "ex.m", {"token": tok})
    b.reply(w)
    b.call("mutex.unlock", "ex.m")
    b.call("mutex.unlock", "ex.m")  # ENOTLOCKED
    # Two sessions, each holding one and asking for the other's: EDEADLK.
    a.call("mutex.lock", "ex.m1")
    b.call("mutex.lock", "ex.m2")
    w = a.send("mutex.lock", "ex.m2", {"timeout_ms": 2000})
    time.sleep(0.05)
    b.call("mutex.lock", "ex.m1", {"timeout_ms": 2000})
    b.call("mutex.unlock", "ex.m2")
    a.reply(w)
    a.call("mutex.unlock", "ex.m2")
    # Dying with a write lock: the next holder is told owner_died.
    a.close()
    b.call("mutex.lock", "ex.m1", {"timeout_ms": 2000})
    b.call("mutex.unlock", "ex.m1")
    b.call("mutex.lock", "ex.m", {"mode": "x"})  # EINVAL
    b.close()


def semaphores():
    a, b = Conn(), Conn()
    t1 = result(a.call("sem.acquire", "ex.s", {"capacity": 3, "n": 2}), "token")
    b.call("sem.acquire", "ex.s", {"capacity": 4})  # EINVAL: capacity 3
    b.call("sem.acquire", "ex.s", {"n": 4})  # EINVAL: n > capacity
    b.call("sem.acquire", "ex.s", {"n": 2, "try": True})  # EBUSY
    w = b.send("sem.acquire", "ex.s", {"n": 2, "timeout_ms": 2000})
    a.call("sem.release", "ex.s", {"token": t1})
    b.reply(w)
    b.call("sem.release", "ex.s")
    b.call("sem.release", "ex.s")  # ENOTLOCKED
    a.call("sem.acquire", "ex.s2", {"timeout_ms": 0})
    a.close()  # dies holding it
    b.call("sem.acquire", "ex.s2", {"timeout_ms": 1000})
    b.close()


def tasks():
    c = Conn()
    i1 = result(c.call("spawn", {"func": "noop"}), "id")
    c.call("wait", i1)
    i2 = result(c.call("spawn", {"func": "echo", "args": [1, -2, "a", b"b", 1.5,
                                                          [None, True, False],
                                                          {"k": [1]}]},
                       {"name": "echo", "wg": "ex.tasks"}), "id")
    c.call("wait", i2, {"timeout_ms": 2000})
    c.call("wg.wait", "ex.tasks", {"timeout_ms": 2000})
    c.call("wg.status", "ex.tasks")
    i3 = result(c.call("spawn", {"func": "sleep", "args": [2000]},
                       {"name": "nap", "key": "ex.key", "timeout_ms": 5000, "grace_ms": 10,
                        "expect_ms": 100, "scope": "session", "on_leak": "kill",
                        "lock": "ex.tl", "sem": ["ex.ts", 2]}), "id")
    c.call("spawn", {"func": "noop"}, {"key": "ex.key"})  # EBUSY
    c.call("spawn", {"func": "noop"}, {"after": [i3], "rlock": "ex.tl", "sem": "ex.ts"})
    c.call("ps")
    c.call("ps", {"all": True, "after": 0, "limit": 2})
    c.call("wait", i3, {"timeout_ms": 0})  # ETIMEDOUT
    c.call("logs.read", i3, {"from": 0, "wait_ms": 10})
    c.call("kill", i3, {"signal": 15})
    c.call("wait", i3, {"timeout_ms": 2000})
    c.call("kill", i3)  # ESRCH
    i4 = result(c.call("spawn", {"func": "spin", "args": [20]}, {"timeout_ms": 5}), "id")
    c.call("wait", i4, {"timeout_ms": 2000})
    c.call("spawn", {"func": "sleep", "args": ["x"]})  # fails
    c.call("spawn", {"func": "nope"})  # ENOENT
    c.call("spawn", {"argv": ["x"], "func": "noop"})  # EINVAL
    c.call("spawn", {"func": "noop"}, {"scope": "nowhere"})  # EINVAL
    c.call("wait", 999999)  # ENOENT
    c.close()


def commands():
    c = Conn()
    i1 = result(c.call("spawn", {"argv": ["cat"]},
                       {"stdin": b"in\n", "cwd": "/", "env": {"PATH": "/usr/bin:/bin", "X": "1"},
                        "output_max": 1024}), "id")
    c.call("wait", i1, {"timeout_ms": 5000})
    c.call("logs", i1)
    c.call("logs", i1, {"stream": "stderr"})
    c.call("logs.read", i1, {"stream": "stdout", "from": 1})
    i2 = result(c.call("spawn", {"argv": ["sleep", "5"]}, {"grace_ms": 100}), "id")
    c.call("pause", i2)
    c.call("resume", i2)
    c.call("kill", i2, {"signal": 9})
    c.call("wait", i2, {"timeout_ms": 5000})
    i3 = result(c.call("spawn", {"argv": ["/nonexistent/program"]}), "id")
    c.call("wait", i3, {"timeout_ms": 5000})
    c.call("spawn", {"argv": []})  # EINVAL
    c.call("spawn", {"argv": ["true"]}, {"cwd": "relative"})  # EINVAL
    c.call("spawn", {"argv": ["true"]}, {"env": {"A=B": "c"}})  # EINVAL
    c.call("pause", 999999)
    c.close()


for scenario in (basics, waitgroups, mutexes, semaphores, tasks, commands):
    try:
        scenario()
    except (OSError, ValueError) as e:
        print("exercise: %s: %s" % (scenario.__name__, e), file=sys.stderr)
