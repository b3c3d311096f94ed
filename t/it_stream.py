#!/usr/bin/env python3
"""The SSE stream through nginx: headers, framing, first/last events,
heartbeat, stream timeout, 50 concurrent streams without cross-talk."""
import json
import threading
import time

from tandemtest import BlackHole, Stack, check_framing, tap

with Stack(conf={"max_streams": 64}, threads=32) as s:
    r = s.stream({"message": "Hello there", "voice": False, "session_id": "sess_1-a"},
                 headers={"Origin": "http://localhost:3000"})
    tap.is_(r.status, 200, "stream answers 200")
    tap.is_(r.headers.get("content-type"), "text/event-stream; charset=utf-8", "Content-Type")
    tap.is_(r.headers.get("cache-control"), "no-cache, no-transform", "Cache-Control")
    tap.ok(r.headers.get("x-accel-buffering") == "no", "X-Accel-Buffering passed on")
    tap.ok(len(r.headers.get("x-request-id", "")) == 36, "X-Request-Id is a UUID")
    tap.is_(r.headers.get("access-control-allow-origin"), "http://localhost:3000", "CORS origin echoed")
    tap.is_(r.headers.get("vary"), "Origin", "Vary: Origin")
    tap.is_(r.headers.get("access-control-expose-headers"), "X-Request-Id", "X-Request-Id exposed")
    tap.ok("content-encoding" not in r.headers, "not compressed")
    probs = check_framing(r)
    tap.ok(not probs, "framing: ids, seq 1..n, one-line JSON, first/last", "\n".join(probs))
    tap.is_(r.events[0]["data"], {"voice": False, "route_forced": None}, "streaming_started data")
    tap.ok(all(e["session_id"] == "sess_1-a" for e in r.events), "client session_id kept")
    last = r.events[-1]["data"]
    tap.ok(last.get("voice") == "skipped" and last.get("status") in ("ok", "partial", "error")
           and isinstance(last.get("elapsed_ms"), int), "stream_complete data", last)
    tap.ok(r.raw.endswith(b"\n\n"), "stream ends after a whole block")
    tap.is_(r.events[0]["path"], "stream", "streaming_started on path stream")
    tap.ok(all(e["path"] in ("stream", "voice", "agent") for e in r.events), "paths are stream/voice/agent")
    tap.ok(isinstance(r.events[0]["ts"], int) and r.events[0]["ts"] > 1.7e12, "ts in epoch ms")

    # Deep health against live upstreams (tandem-sim): ok, each check ok.
    st, hd, body = s.request("GET", "/api/agent/health?deep=1")
    h = json.loads(body)
    tap.ok(st == 200 and h.get("status") == "ok" and h["checks"]["llm"]["ok"]
           and all(u["ok"] for u in h["checks"]["unmute"]), "deep health ok with live upstreams", h)
    tap.ok(h["checks"]["llm"]["url"].endswith("/v1/models")
           and h["checks"]["unmute"][0]["url"].endswith("/v1/health"), "deep health probes /v1/models and /v1/health", h)

    # Forced route is reported in streaming_started.
    r = s.stream({"message": "x", "voice": False, "route": "patient"})
    tap.is_(r.events[0]["data"].get("route_forced"), "patient", "route_forced reported")

    # A generated session_id when none is given.
    r = s.stream({"message": "hi", "voice": False})
    sid = r.events[0]["session_id"]
    tap.ok(len(sid) == 36 and sid[14] == "4", "session_id generated as UUID v4", sid)

    # 50 concurrent streams: each sees only its own request and session.
    results = [None] * 50

    def one(i):
        try:
            results[i] = s.stream({"message": "concurrent %d" % i, "voice": False,
                                   "session_id": "c%d" % i}, timeout=120)
        except Exception as e:
            results[i] = e
    ts = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = 0
    bad = []
    for i, r in enumerate(results):
        if isinstance(r, Exception) or r.status != 200:
            bad.append((i, r if isinstance(r, Exception) else r.status))
            continue
        rid = r.headers.get("x-request-id")
        if check_framing(r) or any(e["request_id"] != rid or e["session_id"] != "c%d" % i for e in r.events):
            bad.append((i, "cross-talk or framing"))
            continue
        ok += 1
    tap.is_(ok, 50, "50 concurrent streams complete, no cross-talk")
    if bad:
        tap.diag(repr(bad[:5]))
    rids = set(r.headers.get("x-request-id") for r in results if not isinstance(r, Exception))
    tap.is_(len(rids), 50, "50 distinct request ids")
    tap.diag("50 concurrent streams in %.2f s" % (time.time() - t0))

# Heartbeat and stream timeout: the LLM never answers.
hole = BlackHole()
with Stack(sim=False, conf={"heartbeat_interval": "300ms", "request_timeout": "2s",
                            "unmute.connect_timeout": "1s",
                            "llm.base_url": hole.url(), "llm.first_token_timeout": "60s",
                            "llm.connect_timeout": "1s"}) as s:
    t0 = time.time()
    r = s.stream({"message": "will the model ever answer", "voice": False})
    dt = time.time() - t0
    tap.ok(r.pings >= 3, "': ping' heartbeats while silent (%d)" % r.pings)
    tap.ok(b"\n: ping\n\n" in r.raw or r.raw.startswith(b": ping"), "heartbeat is an SSE comment block")
    tap.ok(not check_framing(r), "framing intact with heartbeats", check_framing(r))
    last = r.events[-1] if r.events else {}
    tap.is_(last.get("type"), "stream_complete", "stream_complete after the stream timeout")
    tap.is_(last.get("data", {}).get("agent"), "timeout", "agent reported as timeout")
    tap.ok(1.8 < dt < 6, "stream ended near request_timeout (%.2f s)" % dt)
hole.close()
tap.done()
