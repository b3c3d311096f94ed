#!/usr/bin/env python3
"""make bench: time to the first byte of streaming_started through nginx +
tandem, at 1 and at 100 concurrent streams, and time to the first
agent_text_chunk / audio_chunk against tandem-sim. Prints figures; asserts
nothing (these machines are shared and noisy: compare ratios of one run)."""
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "t"))
from tandemtest import Stack, parse_sse_into, Result  # noqa: E402


def first_event_times(s, body, wanted):
    """Seconds from sending the request to the first of each wanted event type."""
    c, r = s.open_stream(body)
    t0 = time.perf_counter()
    got = {}
    res = Result()
    buf = ""
    while True:
        b = r.read1(65536)
        if not b:
            break
        buf += b.decode()
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            n = len(res.events)
            parse_sse_into(res, block + "\n\n")
            for e in res.events[n:]:
                if e["type"] in wanted and e["type"] not in got:
                    got[e["type"]] = time.perf_counter() - t0
    c.close()
    return got


def ttfb(s, body):
    """Time from the request to the first byte of the body (streaming_started)."""
    sock = socket.create_connection(("127.0.0.1", s.port))
    import json
    payload = json.dumps(body).encode()
    req = (b"POST /api/agent/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
    t0 = time.perf_counter()
    sock.sendall(req)
    data = b""
    while b"streaming_started" not in data:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    t = time.perf_counter() - t0
    sock.close()
    return t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def report(name, xs):
    print("%-44s n=%-4d median %7.2f ms  p90 %7.2f ms  max %7.2f ms" % (
        name, len(xs), statistics.median(xs) * 1000, pct(xs, 0.9) * 1000, max(xs) * 1000))


with Stack(processes=2, threads=64, conf={"max_streams": 200}) as s:
    body = {"message": "hello", "voice": False}
    for _ in range(5):
        ttfb(s, body)
    one = [ttfb(s, body) for _ in range(50)]
    report("streaming_started TTFB, 1 stream at a time", one)
    many = []
    lock = threading.Lock()

    def worker():
        t = ttfb(s, body)
        with lock:
            many.append(t)
    ts = [threading.Thread(target=worker) for _ in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    report("streaming_started TTFB, 100 concurrent", many)
    print("ratio 100-concurrent / single (median): %.2f" % (statistics.median(many) / statistics.median(one)))
    if s.sim_http:
        xs = [first_event_times(s, {"message": "What is a normal resting heart rate?", "voice": False},
                                {"agent_text_chunk"}).get("agent_text_chunk") for _ in range(10)]
        xs = [x for x in xs if x is not None]
        if xs:
            report("first agent_text_chunk (tandem-sim LLM)", xs)
    if s.sim_unmute:
        xs = []
        for _ in range(3):
            got = first_event_times(s, {"message": "Hello, how are you?", "route": "text"}, {"audio_chunk"})
            if "audio_chunk" in got:
                xs.append(got["audio_chunk"])
        if xs:
            report("first audio_chunk (tandem-sim Unmute)", xs)
