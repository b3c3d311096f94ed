#!/usr/bin/env python3
"""wss:// to Unmute: a TLS front (Python's ssl module, a throw-away
self-signed certificate) before tandem-sim's Unmute. With verification
on, the unknown certificate is refused (unmute_unavailable); with
tls_insecure the turn is relayed over TLS."""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

from tandemtest import Stack, check_framing, tap

if not shutil.which("openssl"):
    tap.skip_all("openssl not installed")

d = tempfile.mkdtemp(prefix="tandem-tls-")
cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
               check=True, capture_output=True)


def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class TlsFront:
    """TLS on a loopback port, plain TCP to target."""

    def __init__(self, target):
        self.target = target
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            c.close()
            return
        self.handshakes += 1
        host, port = self.target.split(":")
        u = socket.create_connection((host, int(port)))
        threading.Thread(target=pump, args=(u, t), daemon=True).start()
        pump(t, u)


# Verification on: a self-signed certificate is refused.
with Stack() as s:
    front = TlsFront(s.sim_unmute)
    s.conf["unmute.url"] = "wss://localhost:%d/v1/realtime" % front.port
    s.restart_tandem()
    r = s.stream({"message": "over tls, verified", "route": "text"})
    err = r.first("unmute_error")
    tap.ok(err is not None and err["data"]["code"] == "unmute_unavailable",
           "unknown certificate refused: unmute_unavailable", r.types())
    tap.ok(r.first("workflow_complete") is not None and not check_framing(r), "the agent path goes on")

# tls_insecure (tests only): the turn is relayed over TLS.
with Stack(conf={"unmute.tls_insecure": True}) as s:
    front = TlsFront(s.sim_unmute)
    s.conf["unmute.url"] = "wss://localhost:%d/v1/realtime" % front.port
    s.restart_tandem()
    r = s.stream({"message": "over tls please", "route": "text"})
    tap.ok(not check_framing(r), "framing over wss", check_framing(r))
    tc = r.first("text_complete")
    tap.ok(tc is not None and "over tls please" in tc["data"]["text"], "turn relayed over wss", r.types())
    tap.ok(len(r.of("audio_chunk")) > 0, "audio over wss")
    tap.ok(front.handshakes >= 1, "the TLS front saw a handshake")
    tap.is_(r.events[-1]["data"].get("voice"), "complete", "voice complete")

shutil.rmtree(d, ignore_errors=True)
tap.done()
