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


def read_events(s, body):
    """Yield (seconds since the request, event) as each event arrives."""
    c, r = s.open_stream(body)
    t0 = time.perf_counter()
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
                yield time.perf_counter() - t0, e
    c.close()


def first_event_times(s, body, wanted):
    """Seconds from sending the request to the first of each wanted event type."""
    got = {}
    for t, e in read_events(s, body):
        if e["type"] in wanted and e["type"] not in got:
            got[e["type"]] = t
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


def audio_after_tagger(early):
    """First audio_chunk when the tagger takes 300 ms, with and without the early start."""
    with Stack(conf={"unmute.early_start": early}) as s:
        xs = []
        for _ in range(3):
            got = first_event_times(s, {"message": "Hello there [[sim:slow=300@route]]"}, {"audio_chunk"})
            if "audio_chunk" in got:
                xs.append(got["audio_chunk"])
        if xs:
            report("first audio_chunk, tagger 300 ms, early_start=%s" % early, xs)
        return xs


def follow_up_delay(mode):
    """Seconds from the moment turn 2 can start (the agent's answer is in and
    turn 1 has finished playing) to the follow-up turn's first audio_chunk."""
    with Stack(conf={"unmute.follow_up": mode}) as s:
        xs = []
        for _ in range(2):
            t_done = t_audio2 = t_turn1 = None
            for now, e in read_events(s, {"message": "I have a mild headache, what helps?", "route": "medical"}):
                if e["type"] == "workflow_complete":
                    t_done = now
                if e["type"] == "audio_complete" and e["data"].get("turn") == 1:
                    t_turn1 = now
                if e["type"] == "audio_chunk" and e["data"].get("turn", 1) >= 2 and t_audio2 is None:
                    t_audio2 = now
            if t_done and t_audio2 and t_turn1:
                xs.append(max(0.0, t_audio2 - max(t_done, t_turn1)))
        if xs:
            report("follow-up turn delay, follow_up=%s" % mode, xs)
        return xs


a = audio_after_tagger(True)
b = audio_after_tagger(False)
if a and b:
    print("ratio early-start / no early-start (median): %.2f" % (statistics.median(a) / statistics.median(b)))
follow_up_delay("session")
if os.environ.get("TANDEM_BENCH_UPDATE"):
    follow_up_delay("update")    # ~8.5 s of streamed silence per turn: opt-in
