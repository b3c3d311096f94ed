#!/usr/bin/env python3
"""Hostile peers and hostile bodies (SPEC.md §3.1 "bad input never crashes
a worker and never affects other streams", §5): FastCGI peers that stall or
send garbage on tandem's own socket, libfcgi's known abort on crafted params
(CVE-2025-23016, respawned), many malformed bodies through nginx interleaved
with valid streams, and a client that never reads its stream. Loopback only,
bounded counts and durations."""
import json
import os
import random
import socket
import struct
import threading
import time

from tandemtest import Stack, check_framing, tap

FCGI_BEGIN, FCGI_END, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def record(typ, content, rid=1, version=1):
    pad = (-len(content)) % 8
    return struct.pack(">BBHHBx", version, typ, rid, len(content), pad) + content + b"\0" * pad


def name_value(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def fcgi_request(params, body=b""):
    """A whole FastCGI responder request, as nginx would send it."""
    out = record(FCGI_BEGIN, struct.pack(">HB5x", 1, 0))
    p = b"".join(name_value(k.encode(), v.encode()) for k, v in params.items())
    for i in range(0, len(p), 65535):
        out += record(FCGI_PARAMS, p[i:i + 65535])
    out += record(FCGI_PARAMS, b"")
    for i in range(0, len(body), 65535):
        out += record(FCGI_STDIN, body[i:i + 65535])
    return out + record(FCGI_STDIN, b"")


def stream_params(body):
    return {"REQUEST_METHOD": "POST", "DOCUMENT_URI": "/api/agent/stream",
            "REQUEST_URI": "/api/agent/stream", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "QUERY_STRING": ""}


def unix(path, timeout=10):
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(timeout)
    c.connect(path)
    return c


def wait(pred, timeout, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return time.time() - t0
        time.sleep(step)
    return None


def health_ok(s, timeout=3):
    try:
        return s.request("GET", "/api/agent/health", timeout=timeout)[0] == 200
    except OSError:
        return False


# --- FastCGI peers on tandem's socket ----------------------------------
with Stack(sim=False, processes=1, threads=4) as s:
    # The crafted params record makes libfcgi ask malloc for ~2^64 bytes
    # (CVE-2025-23016, Debian's partial fix): AddressSanitizer says so.
    s.sanitizer_expected = ["allocation-size-too-big"]
    pids = s.tandem_pids()
    # Peers that connect and stall: nothing, a header only, half the params.
    half = fcgi_request(stream_params("{}"))[:40]
    stalled = [unix(s.sock), unix(s.sock), unix(s.sock)]
    stalled[1].sendall(record(FCGI_BEGIN, struct.pack(">HB5x", 1, 0))[:8])
    stalled[2].sendall(half)
    time.sleep(0.3)
    t0 = time.time()
    tap.ok(health_ok(s), "three stalled FastCGI peers do not stop the worker from serving (%.2f s)"
           % (time.time() - t0))
    r = s.stream({"message": "beside stalled peers", "voice": False})
    tap.ok(r.status == 200 and not check_framing(r), "a stream is served beside them")
    # tandem drops them after its read timeout (10 s): bounded, not forever.
    stalled[0].settimeout(15)
    t0 = time.time()
    try:
        gone = stalled[0].recv(1) == b""
    except OSError:
        gone = True
    tap.ok(gone and time.time() - t0 < 14, "a stalled peer is dropped after the read timeout (%.1f s)"
           % (time.time() - t0))
    for c in stalled:
        c.close()

    # Garbage: random bytes, a wrong version, an unknown record type,
    # a record that promises more than it sends, params before any begin.
    rnd = random.Random(7)
    garbage = [bytes(rnd.getrandbits(8) for _ in range(512)),
               record(FCGI_BEGIN, struct.pack(">HB5x", 1, 0), version=9) + b"\0" * 64,
               record(42, b"x" * 100),
               struct.pack(">BBHHBx", 1, FCGI_PARAMS, 1, 65535, 0) + b"abc",
               record(FCGI_PARAMS, name_value(b"A", b"B")) + record(FCGI_STDIN, b"{}"),
               record(FCGI_BEGIN, struct.pack(">HB5x", 1, 0)) + b"\xff" * 300,
               b""]
    for g in garbage:
        c = unix(s.sock, timeout=3)
        try:
            c.sendall(g)
            c.shutdown(socket.SHUT_WR)
            c.recv(65536)
        except OSError:
            pass
        c.close()
    tap.ok(health_ok(s), "garbage FastCGI peers: the pool still serves")
    tap.is_(s.tandem_pids(), pids, "garbage FastCGI peers: the worker did not die")
    tap.is_(s.status()["respawned_processes"], 0, "no respawn after garbage")

    # A request of our own on the raw socket still works (the client above is sane).
    body = json.dumps({"message": "raw fastcgi", "voice": False}).encode()
    c = unix(s.sock, timeout=30)
    c.sendall(fcgi_request(stream_params(body), body))
    data = b""
    while True:
        b = c.recv(65536)
        if not b:
            break
        data += b
    c.close()
    tap.ok(b"event: stream_complete" in data, "a well-formed raw FastCGI request streams to the end")

    # libfcgi's params length overflow (CVE-2025-23016): Debian's build
    # aborts the worker; the master must respawn it and the pool go on.
    crafted = record(FCGI_BEGIN, struct.pack(">HB5x", 1, 0)) + record(
        FCGI_PARAMS, struct.pack(">II", 0x40000000 | 0x80000000, 0x40000000 | 0x80000000) + b"x" * 16)
    c = unix(s.sock, timeout=5)
    try:
        c.sendall(crafted)
        c.recv(1)
    except OSError:
        pass
    c.close()
    dt = wait(lambda: health_ok(s, 1) and len(s.tandem_pids()) == 1, 5)
    tap.ok(dt is not None, "crafted params record: the pool serves again (%s s)" % (dt and round(dt, 2)))
    died = s.tandem_pids() != pids
    tap.diag("crafted params record %s the worker" % ("killed" if died else "did not kill"))
    tap.ok(not died or s.status()["respawned_processes"] >= 1, "a worker abort is respawned and counted")

# --- Malformed bodies through nginx, interleaved with valid streams ----
deep = "[" * 20000 + "]" * 20000
malformed = [
    ("huge", "413", json.dumps({"message": "x", "pad": "y" * 200000}).encode()),
    ("deeply nested", "400", ('{"message":"x","h":%s}' % deep).encode()[:65000]),
    ("deeply nested object", "400", ('{"message":' + '{"a":' * 5000 + '1' + '}' * 5000 + '}').encode()),
    ("invalid UTF-8", "400", b'{"message":"\xc3\x28 \xf0\x28\x8c\x28"}'),
    ("overlong UTF-8", "400", b'{"message":"\xc0\xaf"}'),
    ("surrogate in UTF-8", "400", b'{"message":"\xed\xa0\x80"}'),
    ("NUL byte", "400", b'{"message":"a\x00b"}'),
    ("raw control char", "400", b'{"message":"a\x01b"}'),
    ("truncated", "400", b'{"message":"abc'),
    ("trailing garbage", "400", b'{"message":"abc"} {"x":1}'),
    ("NaN", "400", b'{"message":"abc","n":NaN}'),
    ("huge number", "4", b'{"message":"abc","n":1e999999}'),
    ("wrong types", "400", b'{"message":["a"],"history":"no","memory":[1]}'),
    ("history items", "400", json.dumps({"message": "x", "history": [{"role": "root", "content": 1}] * 50}).encode()),
    ("many keys", "4", ("{" + ",".join('"k%d":%d' % (i, i) for i in range(6000)) + ',"message":"x"}').encode()),
    ("long string escapes", "4", ('{"message":"' + "\\u00e9" * 10000 + '"}').encode()),
    ("empty", "400", b""),
    ("just whitespace", "400", b"   \n\t  "),
    ("BOM", "400", b'\xef\xbb\xbf{"message":"x"}'),
]
with Stack(conf={"max_streams": 64}, processes=2, threads=24) as s:
    pids = sorted(s.tandem_pids())
    n_valid = 8
    valid = [None] * n_valid
    bad = []
    lock = threading.Lock()

    def run_valid(i):
        try:
            valid[i] = s.stream({"message": "valid stream %d" % i, "voice": False,
                                 "session_id": "v%d" % i}, timeout=60)
        except Exception as e:
            valid[i] = e

    def run_bad(k, name, want, body):
        try:
            st, hd, data = s.request("POST", "/api/agent/stream", body=body,
                                     headers={"Content-Type": "application/json"}, timeout=30)
            try:
                code = json.loads(data)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            res = (name, st, code, str(st).startswith(want) and code is not None)
        except Exception as e:
            res = (name, None, repr(e), False)
        with lock:
            bad.append(res)

    threads = [threading.Thread(target=run_valid, args=(i,)) for i in range(n_valid)]
    for rnd in range(3):
        for k, (name, want, body) in enumerate(malformed):
            threads.append(threading.Thread(target=run_bad, args=(k, name, want, body)))
    random.Random(3).shuffle(threads)
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(90)
    good = [r for i, r in enumerate(valid) if not isinstance(r, Exception) and r.status == 200
            and not check_framing(r) and all(e["session_id"] == "v%d" % i for e in r.events)]
    tap.is_(len(good), n_valid, "valid streams interleaved with %d malformed bodies all complete" % (3 * len(malformed)))
    tap.ok(all(r.events[-1]["data"]["status"] == "ok" for r in good), "and end with status ok",
           [r.events[-1]["data"] for r in good if r.events[-1]["data"]["status"] != "ok"])
    wrong = [b for b in bad if not b[3]]
    tap.ok(len(bad) == 3 * len(malformed) and not wrong, "every malformed body refused with a 4xx JSON error",
           wrong[:10])
    tap.is_(sorted(s.tandem_pids()), pids, "no worker died")
    tap.is_(s.status()["respawned_processes"], 0, "no respawn")

# --- A client that never reads its stream ------------------------------
with Stack(conf={"max_body": "8m", "heartbeat_interval": "250ms", "request_timeout": "3s",
                 "unmute.connect_timeout": "1s", "max_streams": 8}, processes=1, threads=8) as s:
    # memory_update carries the whole memory back: one 6 MB event.
    body = json.dumps({"message": "my name is Bob", "voice": False, "route": "text",
                       "memory": {"k%d" % i: "m" * 60000 for i in range(100)}}).encode()
    c = unix(s.sock, timeout=30)
    c.sendall(fcgi_request(stream_params(body), body))
    tap.ok(wait(lambda: s.status()["active_streams"] == 1, 5) is not None, "the unread stream is admitted")
    r = s.stream({"message": "meanwhile", "voice": False})
    tap.ok(r.status == 200 and not check_framing(r), "another stream is served meanwhile")
    dt = wait(lambda: s.status()["active_streams"] == 0, 10)
    tap.ok(dt is not None, "a client that never reads is let go, its thread and stream slot freed (%s s)"
           % (dt and round(dt, 2)))
    c.close()
    tap.ok(s.status()["client_disconnects"] >= 1, "counted as a client that left")
tap.done()
