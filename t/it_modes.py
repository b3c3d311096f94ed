#!/usr/bin/env python3
"""The same binary in every mode of SPEC.md §5: own TCP socket (IPv4 and
IPv6), inherited fd 0 under spawn-fcgi, and a plain CGI program."""
import json
import shutil
import signal
import os
import socket
import subprocess
import tempfile
import time

from tandemtest import (SPAWN_FCGI, TANDEM, Result, Stack, check_framing, free_port,
                        parse_sse_into, tap)


def v6_available():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


# TCP, IPv4.
port = free_port()
with Stack(sim=False, listen="127.0.0.1:%d" % port) as s:
    time.sleep(0.3)
    r = s.stream({"message": "over tcp", "voice": False})
    tap.ok(r.status == 200 and not check_framing(r), "stream over a TCP (IPv4) listener")

# TCP, IPv6.
if v6_available():
    port = free_port()
    with Stack(sim=False, listen="[::1]:%d" % port) as s:
        time.sleep(0.3)
        r = s.stream({"message": "over tcp6", "voice": False})
        tap.ok(r.status == 200 and not check_framing(r), "stream over a TCP (IPv6) listener")
else:
    tap.ok(True, "# SKIP no IPv6 loopback")

# A listen address that cannot be bound: clear error, exit status 1.
busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen(1)
p = subprocess.run([TANDEM, "-c", "/dev/null"], env=dict(os.environ, TANDEM_LISTEN="127.0.0.1:%d" % busy.getsockname()[1]),
                   capture_output=True, text=True, timeout=10)
tap.ok(p.returncode == 1 and "bind" in p.stderr, "an address in use is a clear error", p.stderr)
busy.close()

# Started as root with user = nobody, as php-fpm: the master keeps root
# (pid file, root-only secrets on reload, log reopen), workers drop it.
def uid_of(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("Uid:"):
            return int(line.split()[1])


if os.geteuid() == 0:
    with Stack(sim=False, conf={"user": "nobody", "pid_file": None}, start=False) as s:
        s.conf["pid_file"] = os.path.join(s.dir, "tandem.pid")
        token = os.path.join(s.dir, "token")
        with open(token, "w") as f:
            f.write("root-only-token\n")
        os.chmod(token, 0o600)
        s.conf["auth_token_file"] = token
        s.write_conf()
        try:
            s.start_tandem()
            started = True
        except RuntimeError as e:
            started = False
            tap.diag(str(e)[-400:])
        tap.ok(started and open(s.conf["pid_file"]).read().strip() == str(s.procs["tandem"].pid),
               "root with user = nobody: pid file written, master running")
        if started:
            s.start_nginx()
            auth = {"Authorization": "Bearer root-only-token"}
            r = s.stream({"message": "as nobody", "voice": False}, headers=auth)
            tap.ok(r.status == 200 and not check_framing(r), "root with user = nobody: streams served")
            workers = [p["pid"] for p in s.json("/api/agent/status?full")["processes_detail"]]
            tap.is_(uid_of(s.procs["tandem"].pid), 0, "the master keeps root")
            tap.ok(workers and all(uid_of(w) == 65534 for w in workers), "workers run as nobody",
                   [uid_of(w) for w in workers])
            tap.is_(os.stat(s.sock).st_uid, 65534, "the socket belongs to the user (no listen_owner)")
            # SIGHUP re-reads the root-only token file: the reload takes.
            with open(token, "w") as f:
                f.write("rotated-token\n")
            s.procs["tandem"].send_signal(signal.SIGHUP)
            ok = False
            for _ in range(100):
                if s.request("GET", "/api/agent/health")[0] == 200 and s.stream(
                        {"message": "x", "voice": False},
                        headers={"Authorization": "Bearer rotated-token"}).status == 200:
                    ok = True
                    break
                time.sleep(0.1)
            tap.ok(ok, "SIGHUP as a root master: a root-only secret is re-read")
            # SIGUSR1: the new log file is the workers' to write.
            logp = os.path.join(s.dir, "tandem.log")
            os.rename(logp, logp + ".1")
            s.procs["tandem"].send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            s.request("GET", "/api/agent/health")
            time.sleep(0.3)
            tap.ok(os.path.exists(logp) and "GET /api/agent/health" in open(logp).read(),
                   "SIGUSR1: workers as nobody write to the reopened log")
else:
    tap.ok(True, "# SKIP not root")

# -t: test a configuration like nginx -t.
d = tempfile.mkdtemp()
good = os.path.join(d, "good.conf")
bad = os.path.join(d, "bad.conf")
open(good, "w").write("processes = 3\n[unmute]\nurl = ws://127.0.0.1:1/v1/realtime\n")
open(bad, "w").write("processes = 3\n\nthreads = many\n")
p = subprocess.run([TANDEM, "-t", "-c", good], capture_output=True, text=True)
tap.ok(p.returncode == 0 and "test is successful" in p.stderr and "processes = 3" in p.stdout, "tandem -t on a good file")
p = subprocess.run([TANDEM, "-t", "-c", bad], capture_output=True, text=True)
tap.ok(p.returncode == 1 and "bad.conf:3: threads" in p.stderr, "tandem -t names file:line:key", p.stderr)
p = subprocess.run([TANDEM, "-t", "-c", good], capture_output=True, text=True,
                   env=dict(os.environ, TANDEM_PROCESSES="5"))
tap.ok("processes = 5" in p.stdout, "environment wins over the file")
p = subprocess.run([TANDEM, "-v"], capture_output=True, text=True)
tap.ok(p.returncode == 0 and p.stdout.startswith("tandem "), "tandem -v")

# systemd socket activation: the socket arrives as fd 3 (LISTEN_FDS).
ssa = shutil.which("systemd-socket-activate")
if ssa:
    with Stack(sim=False, start=False) as s:
        s.write_conf()
        text = open(s.conf_path).read()
        with open(s.conf_path, "w") as f:   # no listen: take the socket systemd passes
            f.write("\n".join(l for l in text.splitlines() if not l.startswith("listen ")) + "\n")
        p = subprocess.Popen([ssa, "-l", s.sock, TANDEM, "-c", s.conf_path], env=s.tandem_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s.procs["tandem"] = p
        for _ in range(100):
            if os.path.exists(s.sock):
                break
            time.sleep(0.05)
        os.chmod(s.sock, 0o666)
        s.start_nginx()
        r = s.stream({"message": "socket activated", "voice": False})
        tap.ok(r.status == 200 and not check_framing(r), "stream under systemd socket activation", r.status)
        tap.ok("systemd socket" in open(os.path.join(s.dir, "tandem.log")).read(), "systemd mode logged")
        tap.is_(s.status().get("processes"), 2, "the pool runs on the passed socket")
else:
    tap.ok(True, "# SKIP systemd-socket-activate not installed")

# spawn-fcgi: the socket arrives on fd 0.
if os.path.exists(SPAWN_FCGI):
    with Stack(sim=False, start=False) as s:
        s.write_conf()
        env = s.tandem_env()
        # No config file: everything from the environment, as on shared hosting.
        env.update({"TANDEM_LOG": os.path.join(s.dir, "tandem.log"),
                    "TANDEM_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                    "TANDEM_UNMUTE_URL": "ws://127.0.0.1:9/v1/realtime",
                    "TANDEM_THREADS": "4"})
        p = subprocess.Popen([SPAWN_FCGI, "-n", "-s", s.sock, "-M", "0666", "--", TANDEM, "-c", "/dev/null"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s.procs["tandem"] = p
        for _ in range(100):
            if os.path.exists(s.sock):
                break
            time.sleep(0.05)
        s.start_nginx()
        r = s.stream({"message": "under spawn-fcgi", "voice": False})
        tap.ok(r.status == 200 and not check_framing(r), "stream under spawn-fcgi (fd 0)", check_framing(r))
        st = s.status()
        tap.is_(st.get("processes"), 1, "one worker process on an inherited socket")
        tap.ok("inherited socket" in open(os.path.join(s.dir, "tandem.log")).read(), "fd 0 mode logged")
else:
    tap.ok(True, "# SKIP spawn-fcgi not installed")


# CGI: one request on stdin/stdout.
def cgi(body, method="POST", uri="/cgi-bin/tandem/api/agent/stream", ctype="application/json", extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update({"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "REQUEST_URI": uri,
                "SCRIPT_NAME": "/cgi-bin/tandem", "PATH_INFO": uri.replace("/cgi-bin/tandem", ""),
                "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)), "QUERY_STRING": "",
                "TANDEM_LLM_BASE_URL": "http://127.0.0.1:9/v1", "TANDEM_UNMUTE_URL": "ws://127.0.0.1:9/v1/realtime",
                "TANDEM_LOG_LEVEL": "error"})
    env.update(extra or {})
    env.pop("DOCUMENT_URI", None)
    # "-t": a query string without '=' becomes argv under CGI; it must not be obeyed.
    p = subprocess.run([TANDEM, "-t"], input=body, env=env, capture_output=True, timeout=60)
    head, _, rest = p.stdout.partition(b"\r\n\r\n")
    return p.returncode, head.decode(), rest


rc, head, rest = cgi(json.dumps({"message": "as a CGI program", "voice": False}).encode())
tap.ok(rc == 0 and head.startswith("Status: 200 OK") and "text/event-stream" in head, "CGI: stream headers", head)
r = Result()
parse_sse_into(r, rest.decode())
r.headers = {"x-request-id": [l.split(": ", 1)[1] for l in head.split("\r\n") if l.startswith("X-Request-Id")][0]}
tap.ok(not check_framing(r), "CGI: a well-formed stream", check_framing(r))
# RFC 3875: the server need not close stdin after CONTENT_LENGTH bytes.
body = json.dumps({"message": "stdin stays open", "voice": False}).encode()
env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
env.update({"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "PATH_INFO": "/api/agent/stream",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "QUERY_STRING": "",
            "TANDEM_LLM_BASE_URL": "http://127.0.0.1:9/v1", "TANDEM_UNMUTE_URL": "ws://127.0.0.1:9/v1/realtime",
            "TANDEM_LOG_LEVEL": "error"})
env.pop("DOCUMENT_URI", None)
p = subprocess.Popen([TANDEM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
p.stdin.write(body + b"\n")
p.stdin.flush()
try:
    p.wait(20)
    out = p.stdout.read()
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
    out = b""
p.stdin.close()
tap.ok(b"event: stream_complete" in out, "CGI: the body is read to CONTENT_LENGTH, not to the end of stdin")

rc, head, rest = cgi(b"{bad", ctype="application/json")
tap.ok(head.startswith("Status: 400") and b"invalid_json" in rest, "CGI: 400 invalid_json", head)
rc, head, rest = cgi(b"", method="GET", uri="/cgi-bin/tandem/api/agent/health")
tap.ok(head.startswith("Status: 200") and b'"status":"ok"' in rest, "CGI: health", head)
rc, head, rest = cgi(b"", method="GET", uri="/cgi-bin/tandem/api/agent/nothing")
tap.ok(head.startswith("Status: 404") and b"not_found" in rest, "CGI: unknown route -> 404 JSON", head)
tap.done()
