#!/usr/bin/env python3
"""Every refusal of SPEC.md §3.1 through nginx, as JSON, before any
stream; preflight; health; status counters; nginx's own answers."""
import json
import os
import socket
import threading
import time

from tandemtest import BlackHole, Stack, tap

TOKEN = "s3cret-token-value"


def err_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def raw_http(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


hole = BlackHole()
tokfile = "/tmp/tandem-test-token-%d" % os.getpid()
with open(tokfile, "w") as f:
    f.write(TOKEN + "\n")

with Stack(sim=False, conf={"auth_token_file": tokfile, "max_streams": 2,
                            "llm.base_url": hole.url(), "llm.first_token_timeout": "60s",
                            "unmute.url": "ws://127.0.0.1:%d/v1/realtime" % hole.port,
                            "unmute.connect_timeout": "30s"}) as s:
    auth = {"Authorization": "Bearer " + TOKEN}
    P = "/api/agent/stream"

    def check(name, method, status, code, body=None, headers=None, path=P):
        h = dict(auth)
        h.update(headers or {})
        st, hd, data = s.request(method, path, body=body, headers=h)
        tap.is_(st, status, "%s -> %d" % (name, status))
        tap.is_(err_code(data), code, "%s -> code %s" % (name, code))
        tap.ok(hd.get("content-type", "").startswith("application/json"), "%s answered as JSON" % name)
        return st, hd, data

    st, hd, _ = check("GET on the stream route", "GET", 405, "method_not_allowed")
    tap.is_(hd.get("allow"), "POST, OPTIONS", "405 carries Allow")
    check("PUT on the stream route", "PUT", 405, "method_not_allowed", body="{}")
    check("POST on health", "POST", 405, "method_not_allowed", body="{}", path="/api/agent/health")
    check("text/plain body", "POST", 415, "unsupported_media_type", body='{"message":"x"}',
          headers={"Content-Type": "text/plain"})
    check("no content type", "POST", 415, "unsupported_media_type", body='{"message":"x"}')
    check("charset parameter accepted but bad JSON", "POST", 400, "invalid_json", body="{nope",
          headers={"Content-Type": "application/json; charset=utf-8"})
    J = {"Content-Type": "application/json"}
    check("empty body", "POST", 400, "invalid_json", body="", headers=J)
    check("array body", "POST", 400, "invalid_json", body="[1,2]", headers=J)
    check("invalid UTF-8", "POST", 400, "invalid_json", body=b'{"message":"\xff\xfe"}', headers=J)
    check("NUL in body", "POST", 400, "invalid_json", body=b'{"message":"a\x00b"}', headers=J)
    check("missing message", "POST", 400, "missing_message", body={"voice": False})
    check("blank message", "POST", 400, "missing_message", body={"message": "   \n\t "})
    st, hd, data = check("message too long", "POST", 400, "invalid_field", body={"message": "x" * 8001})
    tap.ok("message" in json.loads(data)["error"]["message"], "invalid_field names the field")
    st, hd, data = check("bad session_id", "POST", 400, "invalid_field", body={"message": "x", "session_id": "a b"})
    tap.ok("session_id" in json.loads(data)["error"]["message"], "invalid_field names session_id")
    check("bad route", "POST", 400, "invalid_field", body={"message": "x", "route": "nowhere"})
    check("history too long", "POST", 400, "invalid_field",
          body={"message": "x", "history": [{"role": "user", "content": "a"}] * 51})
    check("voice not bool", "POST", 400, "invalid_field", body={"message": "x", "voice": "yes"})
    check("body over 64 KiB (tandem or nginx)", "POST", 413, "body_too_large",
          body={"message": "x", "pad": "y" * 70000})

    # 411: a POST with neither Content-Length nor a chunked body.
    out = raw_http(s.port, b"POST /api/agent/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
    head = out.split(b"\r\n", 1)[0]
    tap.ok(b" 411 " in head, "no length -> 411", head)
    tap.ok(b'"length_required"' in out, "411 answered as length_required JSON", out[-200:])

    # Chunked bodies are accepted, and limited too.
    body = json.dumps({"message": "chunked hello", "voice": False}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    out = raw_http(s.port, b"POST /api/agent/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + chunked, timeout=3)
    tap.ok(out.split(b"\r\n", 1)[0].endswith(b"200 OK") and b"streaming_started" in out, "chunked body streams",
           out[:300])
    big = json.dumps({"message": "x", "pad": "y" * 70000}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 8192]), big[i:i + 8192]) for i in range(0, len(big), 8192)) + b"0\r\n\r\n"
    out = raw_http(s.port, b"POST /api/agent/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + chunked)
    tap.ok(b" 413 " in out.split(b"\r\n", 1)[0] and b"body_too_large" in out, "big chunked body -> 413 JSON",
           out[:300])

    # Auth.
    st, hd, data = s.request("POST", P, body={"message": "x"})
    tap.is_(st, 401, "no token -> 401")
    tap.is_(err_code(data), "unauthorized", "401 code")
    tap.is_(hd.get("www-authenticate"), "Bearer", "401 carries WWW-Authenticate")
    st, hd, data = s.request("POST", P, body={"message": "x"}, headers={"Authorization": "Bearer wrong"})
    tap.is_(st, 401, "wrong token -> 401")

    # Origin.
    st, hd, data = s.request("POST", P, body={"message": "x"},
                             headers=dict(auth, Origin="http://evil.example"))
    tap.is_(st, 403, "foreign origin -> 403")
    tap.is_(err_code(data), "origin_not_allowed", "403 code")

    # Preflight.
    st, hd, data = s.request("OPTIONS", P, headers={"Origin": "http://localhost:3000",
                                                    "Access-Control-Request-Method": "POST"})
    tap.is_(st, 204, "preflight from an allowed origin -> 204")
    tap.is_(hd.get("access-control-allow-origin"), "http://localhost:3000", "preflight allows the origin")
    tap.ok("POST" in hd.get("access-control-allow-methods", ""), "preflight allows POST")
    tap.ok("Authorization" in hd.get("access-control-allow-headers", ""), "preflight allows Authorization")
    tap.ok(hd.get("access-control-max-age", "").isdigit(), "preflight Max-Age")
    st, hd, data = s.request("OPTIONS", P, headers={"Origin": "http://evil.example"})
    tap.is_(st, 403, "preflight from a foreign origin -> 403")
    tap.ok("access-control-allow-origin" not in hd, "a foreign origin gets no CORS headers")

    # CORS on every answer to an allowed origin, so that the page can read it.
    O = {"Origin": "http://localhost:3000"}
    for name, method, path, body, h in (
            ("405", "GET", P, None, dict(auth, **O)),
            ("401", "POST", P, {"message": "x"}, O),
            ("400", "POST", P, {"voice": 1}, dict(auth, **O)),
            ("health", "GET", "/api/agent/health", None, O),
            ("status", "GET", "/api/agent/status", None, O),
            ("status prometheus", "GET", "/api/agent/status?format=prometheus", None, O)):
        st, hd, data = s.request(method, path, body=body, headers=h)
        tap.ok(hd.get("access-control-allow-origin") == "http://localhost:3000" and hd.get("vary") == "Origin"
               and hd.get("access-control-expose-headers") == "X-Request-Id",
               "CORS headers on the %s answer (%d) to an allowed origin" % (name, st), hd)

    # Health.
    st, hd, data = s.request("GET", "/api/agent/health")
    h = json.loads(data)
    tap.ok(st == 200 and h.get("status") == "ok" and h.get("version"), "health ok with version", data)
    st, hd, data = s.request("GET", "/api/agent/health?deep=1")
    h = json.loads(data)
    tap.ok(st == 200 and h.get("status") == "degraded", "deep health degraded when upstreams fail", data)
    tap.ok("checks" in h and "llm" in h["checks"] and "unmute" in h["checks"], "deep health reports each check")

    # Capacity: max_streams = 2 held by streams whose LLM never answers.
    before = s.status()
    held = []
    for i in range(2):
        c, r = s.open_stream({"message": "hold %d" % i, "voice": False}, headers=auth)
        tap.is_(r.status, 200, "stream %d admitted" % (i + 1))
        r.read1(100)
        held.append(c)
    st, hd, data = s.request("POST", P, body={"message": "third", "voice": False}, headers=auth)
    tap.is_(st, 503, "stream over max_streams -> 503")
    tap.is_(err_code(data), "overloaded", "503 code overloaded")
    tap.ok(hd.get("retry-after", "").isdigit(), "503 carries Retry-After")
    mid = s.status()
    tap.is_(mid["active_streams"], 2, "status: 2 active streams")
    tap.ok(mid["rejected_streams"] >= before["rejected_streams"] + 1, "status: rejected counted")
    tap.ok(mid["accepted_requests"] > before["accepted_requests"], "status: accepted requests move")
    for c in held:
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    t0 = time.time()
    ok = False
    while time.time() - t0 < 3:
        if s.status()["active_streams"] == 0:
            ok = True
            break
        time.sleep(0.05)
    tap.ok(ok, "active streams back to 0 after the clients left (%.2f s)" % (time.time() - t0))
    st = s.status()
    tap.ok(st["max_active_streams"] >= 2, "status: peak active streams")
    tap.ok(st["client_disconnects"] >= 2, "status: disconnects counted")

    # Status formats and access.
    st_, hd, data = s.request("GET", "/api/agent/status?format=prometheus")
    tap.ok(st_ == 200 and b"tandem_accepted_requests_total" in data and hd.get("content-type", "").startswith("text/plain"),
           "status in Prometheus text")
    full = s.json("/api/agent/status?full")
    tap.ok(len(full.get("processes_detail", [])) == 2 and all(p["pid"] > 0 for p in full["processes_detail"]),
           "status ?full has per-process rows")

# nginx's own answers when tandem is down: JSON 502.
with Stack(sim=False) as s:
    s.procs["tandem"].terminate()
    s.procs["tandem"].wait(10)
    st, hd, data = s.request("POST", "/api/agent/stream", body={"message": "x"})
    tap.is_(st, 502, "tandem down -> 502 from nginx")
    tap.is_(err_code(data), "unavailable", "502 in the JSON shape")
    st, hd, data = s.request("GET", "/api/agent/health")
    tap.is_(err_code(data), "unavailable", "health 502 in the JSON shape")

# The status route is limited to localhost in the shipped snippet.
with Stack(sim=False, nginx_extra="set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;") as s:
    st, hd, data = s.request("GET", "/api/agent/status", headers={"X-Forwarded-For": "203.0.113.9"})
    tap.is_(st, 403, "status from a non-local address -> 403")
    tap.is_(err_code(data), "forbidden", "403 in the JSON shape")

hole.close()
os.unlink(tokfile)
tap.done()
