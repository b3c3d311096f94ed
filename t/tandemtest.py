"""
Integration test harness: starts tandem-sim, tandem and nginx on
ephemeral loopback ports in a private temporary prefix, speaks HTTP to
nginx, parses the SSE stream, and prints TAP.

    from tandemtest import Stack, tap
    with Stack(conf={"max_streams": 4}) as s:
        r = s.stream({"message": "hi", "voice": False})
        tap.ok(r.status == 200, "stream answers 200")
    tap.done()
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SRCDIR = os.environ.get("SRCDIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANDEM = os.environ.get("TANDEM", os.path.join(SRCDIR, "tandem"))
TANDEM_SIM = os.environ.get("TANDEM_SIM", os.path.join(SRCDIR, "tandem-sim"))
NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
SPAWN_FCGI = os.environ.get("SPAWN_FCGI") or shutil.which("spawn-fcgi") or "/usr/bin/spawn-fcgi"
OPUSDEC = os.environ.get("OPUSDEC") or shutil.which("opusdec") or ""
# Slow machines (sanitizer builds) stretch every wait by this factor.
SLOW = float(os.environ.get("TANDEM_TEST_SLOW", "1"))


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0
        self.lock = threading.Lock()

    def ok(self, cond, name, diag=None):
        with self.lock:
            self.n += 1
            print("%sok %d - %s" % ("" if cond else "not ", self.n, name), flush=True)
            if not cond:
                self.failed += 1
                if diag is not None:
                    for line in str(diag).splitlines()[:40]:
                        print("#   " + line, flush=True)
        return cond

    def is_(self, got, want, name):
        return self.ok(got == want, name, "got %r, want %r" % (got, want))

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line, flush=True)

    def skip_all(self, why):
        print("1..0 # SKIP %s" % why, flush=True)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


tap = Tap()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout * SLOW
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Result:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.events = []      # decoded data objects, in order
        self.blocks = []      # (id, event, data-string) as framed
        self.pings = 0
        self.raw = b""
        self.body = None      # JSON body of a non-stream answer
        self.first_event_at = None
        self.t0 = None
        self.times = []       # arrival time of each event, seconds after t0

    def types(self):
        return [e.get("type") for e in self.events]

    def of(self, typ):
        return [e for e in self.events if e.get("type") == typ]

    def first(self, typ):
        l = self.of(typ)
        return l[0] if l else None


def parse_sse_into(res, text):
    """Parse complete SSE text (blocks separated by blank lines)."""
    for block in text.split("\n\n"):
        if block == "":
            continue
        fields = {}
        comment = False
        for line in block.split("\n"):
            if line.startswith(":"):
                comment = True
                continue
            k, _, v = line.partition(":")
            if v.startswith(" "):
                v = v[1:]
            fields.setdefault(k, []).append(v)
        if comment and not fields:
            res.pings += 1
            continue
        data = "\n".join(fields.get("data", []))
        res.blocks.append((fields.get("id", [None])[0], fields.get("event", [None])[0], data))
        try:
            res.events.append(json.loads(data))
        except ValueError:
            res.events.append({"type": "__unparsable__", "raw": data})


class Stack:
    def __init__(self, conf=None, env=None, sim=True, sim_args=None, processes=2,
                 threads=16, nginx_extra="", start=True, listen=None, upstream_extra=""):
        self.conf = conf or {}
        self.env = env or {}
        self.want_sim = sim
        self.sim_args = sim_args or []
        self.processes = processes
        self.threads = threads
        self.nginx_extra = nginx_extra
        self.listen = listen
        self.upstream_extra = upstream_extra
        # Sanitizer reports a test provokes on purpose (substrings).
        self.sanitizer_expected = []
        self.dir = tempfile.mkdtemp(prefix="tandem-test-")
        # nginx workers run as an unprivileged user when started as root.
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "tandem.sock")
        self.procs = {}
        self.sim_http = None
        self.sim_unmute = None
        self.port = None
        if start:
            self.start()

    # --- lifecycle -------------------------------------------------
    def start(self):
        if self.want_sim:
            self.start_sim()
        self.write_conf()
        self.start_tandem()
        self.start_nginx()

    def start_sim(self):
        if not os.path.exists(TANDEM_SIM):
            return
        args = [TANDEM_SIM, "--http-port", "0", "--unmute-port", "0"] + self.sim_args
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(os.path.join(self.dir, "sim.log"), "w"),
                             text=True)
        self.procs["sim"] = p
        line = p.stdout.readline()
        if not line.startswith("tandem-sim ready"):
            raise RuntimeError("tandem-sim did not start: %r" % line)
        for part in line.split()[2:]:
            k, _, v = part.partition("=")
            if v != "-":
                if k == "http":
                    self.sim_http = v
                elif k == "unmute":
                    self.sim_unmute = v

    def base_conf(self):
        c = {
            "listen": self.listen or ("unix:" + self.sock),
            "listen_mode": "0666",
            "processes": self.processes,
            "threads": self.threads,
            "log": os.path.join(self.dir, "tandem.log"),
            "log_level": "debug" if os.environ.get("TANDEM_TEST_DEBUG") else "info",
            "cors_origins": "http://localhost:3000",
            "drain_timeout": "5s",
        }
        if self.sim_http:
            c["llm.base_url"] = "http://%s/v1" % self.sim_http
            c["search.url"] = "http://%s/search" % self.sim_http
            c["fhir.base_url"] = "http://%s/fhir" % self.sim_http
            c["llm.first_token_timeout"] = "5s"
            c["llm.stall_timeout"] = "3s"
        else:
            c["llm.base_url"] = "http://127.0.0.1:9/v1"
        if self.sim_unmute:
            c["unmute.url"] = "ws://%s/v1/realtime" % self.sim_unmute
        else:
            c["unmute.url"] = "ws://127.0.0.1:9/v1/realtime"
        c.update(self.conf)
        return c

    def write_conf(self):
        sections = {}
        for k, v in self.base_conf().items():
            sec, _, key = k.rpartition(".")
            if sec.startswith("node") and "." not in sec:
                pass
            sections.setdefault(sec, {})[key] = v
        lines = []
        for sec in sorted(sections, key=lambda s: (s != "", s)):
            if sec:
                lines.append("[%s]" % sec)
            for k, v in sections[sec].items():
                if isinstance(v, bool):
                    v = "yes" if v else "no"
                lines.append("%s = %s" % (k, v))
        self.conf_path = os.path.join(self.dir, "tandem.conf")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def tandem_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_") or k.startswith("TANDEM_TEST")}
        env.update(self.env)
        return env

    def restart_tandem(self):
        """Stop tandem, rewrite its configuration from self.conf, start it."""
        self.procs["tandem"].terminate()
        self.procs["tandem"].wait(15)
        self.write_conf()
        self.start_tandem()

    def start_tandem(self):
        if self.listen is None and os.path.exists(self.sock):
            os.unlink(self.sock)
        p = subprocess.Popen([TANDEM, "-c", self.conf_path], env=self.tandem_env(),
                             stdout=open(os.path.join(self.dir, "tandem.out"), "w"),
                             stderr=subprocess.STDOUT)
        self.procs["tandem"] = p
        if self.listen is None:
            ok = wait_for(lambda: os.path.exists(self.sock) or p.poll() is not None, 10)
            if p.poll() is not None:
                raise RuntimeError("tandem exited: %s" % self.log())

    def nginx_conf(self):
        upstream = self.listen if self.listen and not self.listen.startswith("unix:") else "unix:" + self.sock
        return """
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log info;
daemon off;
events { worker_connections 1024; }
http {
    access_log %(d)s/nginx-access.log;
    client_body_temp_path %(d)s/client_body;
    fastcgi_temp_path %(d)s/fastcgi_temp;
    proxy_temp_path %(d)s/proxy_temp;
    uwsgi_temp_path %(d)s/uwsgi_temp;
    scgi_temp_path %(d)s/scgi_temp;
    upstream tandem { server %(up)s; %(upx)s }
    server {
        listen 127.0.0.1:%(port)d;
        server_name localhost;
        %(extra)s
        include %(src)s/nginx/tandem-locations.conf;
    }
}
""" % {"d": self.dir, "port": self.port, "up": upstream, "src": SRCDIR, "extra": self.nginx_extra,
               "upx": self.upstream_extra}

    def start_nginx(self):
        for attempt in range(5):
            self.port = free_port()
            path = os.path.join(self.dir, "nginx.conf")
            with open(path, "w") as f:
                f.write(self.nginx_conf())
            p = subprocess.Popen([NGINX, "-p", self.dir, "-c", path, "-e", os.path.join(self.dir, "nginx-error.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs["nginx"] = p
            if wait_for(lambda: self.port_open() or p.poll() is not None, 10) and p.poll() is None:
                return
        raise RuntimeError("nginx did not start")

    def port_open(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                       "runtime error:")

    def sanitizer_reports(self):
        """Sanitizer findings in the output of tandem and tandem-sim, less
        those a test provokes on purpose (self.sanitizer_expected)."""
        found = []
        for n in ("tandem.out", "tandem.log", "sim.log"):
            try:
                text = open(os.path.join(self.dir, n), errors="replace").read()
            except OSError:
                continue
            for mark in self.SANITIZER_MARKS:
                i = text.find(mark)
                while i >= 0:
                    report = text[max(0, i - 200):i + 1500]
                    if not any(x in report for x in self.sanitizer_expected):
                        found.append("%s: %s" % (n, report))
                    i = text.find(mark, i + 1)
        return found

    def stop(self):
        for name in ("nginx", "tandem", "sim"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        reports = self.sanitizer_reports()
        if reports:
            tap.ok(False, "no sanitizer report from tandem or tandem-sim", "\n".join(reports)[:6000])
        if not os.environ.get("TANDEM_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        if a[0] is not None:
            tap.diag("tandem log:\n" + self.log()[-3000:])
        self.stop()

    def log(self):
        out = ""
        for n in ("tandem.log", "tandem.out", "nginx-error.log", "sim.log"):
            try:
                out += "== %s\n" % n + open(os.path.join(self.dir, n)).read()[-4000:]
            except OSError:
                pass
        return out

    # --- HTTP ------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json(self, path):
        st, h, data = self.request("GET", path)
        return json.loads(data)

    def status(self):
        return self.json("/api/agent/status")

    def sim_stats(self):
        c = http.client.HTTPConnection(*self.sim_http.split(":"), timeout=5)
        c.request("GET", "/sim/stats")
        d = json.loads(c.getresponse().read())
        c.close()
        return d

    def stream(self, body, headers=None, timeout=60, raw_body=None):
        """POST to the stream route and read it to the end."""
        res = Result()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        payload = raw_body if raw_body is not None else json.dumps(body)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)
        res.t0 = time.time()
        c.request("POST", "/api/agent/stream", body=payload, headers=h)
        r = c.getresponse()
        res.status = r.status
        res.headers = {k.lower(): v for k, v in r.getheaders()}
        if r.status != 200:
            res.raw = r.read()
            try:
                res.body = json.loads(res.raw)
            except ValueError:
                pass
            c.close()
            return res
        buf = ""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            res.raw += chunk
            buf += chunk.decode("utf-8")
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                n = len(res.events)
                parse_sse_into(res, block + "\n\n")
                for _ in range(len(res.events) - n):
                    res.times.append(time.time() - res.t0)
        c.close()
        return res

    def open_stream(self, body, headers=None):
        """Start a stream and return (connection, response) to read by hand."""
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60 * SLOW)
        c.request("POST", "/api/agent/stream", body=json.dumps(body), headers=h)
        return c, c.getresponse()

    def abort_stream(self, body, after_event="streaming_started", headers=None):
        """Read a stream until after_event arrives, then drop the connection.
        Return the events seen."""
        res = Result()
        c, r = self.open_stream(body, headers)
        buf = ""
        while True:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk.decode("utf-8")
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                parse_sse_into(res, block + "\n\n")
            if any(e.get("type") == after_event for e in res.events):
                break
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        return res

    def tandem_pids(self):
        """Worker pids from the status page."""
        st = self.json("/api/agent/status?full")
        return [p["pid"] for p in st.get("processes_detail", [])]


def check_framing(res):
    """Return a list of framing problems of a finished stream (empty: fine)."""
    probs = []
    if not res.events:
        return ["no events"]
    seqs = [e.get("seq") for e in res.events]
    if seqs != list(range(1, len(seqs) + 1)):
        probs.append("seq not 1..n without gaps: %r" % seqs[:50])
    for (bid, bev, data), e in zip(res.blocks, res.events):
        if bid != str(e.get("seq")):
            probs.append("id %r != seq %r" % (bid, e.get("seq")))
        if bev != e.get("type"):
            probs.append("event %r != type %r" % (bev, e.get("type")))
        if "\n" in data:
            probs.append("data spans lines")
        for k in ("type", "seq", "request_id", "session_id", "ts", "path", "data"):
            if k not in e:
                probs.append("missing %s in %s" % (k, e.get("type")))
    if res.events[0].get("type") != "streaming_started":
        probs.append("first event is %r" % res.events[0].get("type"))
    if res.events[-1].get("type") != "stream_complete":
        probs.append("last event is %r" % res.events[-1].get("type"))
    rid = res.headers.get("x-request-id")
    if any(e.get("request_id") != rid for e in res.events):
        probs.append("request_id differs from X-Request-Id")
    return probs


class BlackHole:
    """A TCP server on loopback that accepts connections and never answers;
    counts the connections still open (a peer that closes is noticed)."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._hold, args=(c,), daemon=True).start()

    def _hold(self, c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        with self.lock:
            if c in self.conns:
                self.conns.remove(c)
        c.close()

    def open(self):
        with self.lock:
            return len(self.conns)

    def url(self, path="/v1"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.running = False
        self.srv.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
