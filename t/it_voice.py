#!/usr/bin/env python3
"""The voice path against tandem-sim's Unmute: a relayed turn (text and
Ogg/Opus audio that decodes), the follow-up turn on the web and medical
routes, every fault mapped to its unmute_error code while the agent
path completes, the pool-wide session cap, and a client that leaves."""
import base64
import os
import subprocess
import tempfile
import threading
import time
import wave

from tandemtest import OPUSDEC, Stack, tap, wait_for

FAST = {"unmute.max_sessions": 4, "unmute.connect_timeout": "1s",
        "unmute.stall_timeout": "1s"}


def norm(s):
    return " ".join((s or "").split())


def voice(r):
    return [e for e in r.events if e.get("path") == "voice"]


def vtypes(r):
    return [e["type"] for e in voice(r)]


def ogg_of(r):
    return b"".join(base64.b64decode(e["data"]["audio"]) for e in r.of("audio_chunk"))


def decoded_ms(ogg):
    """Decode with opusdec; return the duration in ms, or None."""
    if not OPUSDEC:
        return None
    d = tempfile.mkdtemp(prefix="tandem-voice-")
    src, dst = os.path.join(d, "a.opus"), os.path.join(d, "a.wav")
    with open(src, "wb") as f:
        f.write(ogg)
    p = subprocess.run([OPUSDEC, "--quiet", src, dst], capture_output=True, timeout=30)
    if p.returncode != 0:
        tap.diag(p.stderr.decode(errors="replace"))
        return None
    with wave.open(dst) as w:
        return 1000.0 * w.getnframes() / w.getframerate()


def stream_ends_well(r, name):
    t = r.types()
    tap.ok(t and t[0] == "streaming_started" and t[-1] == "stream_complete",
           "%s: streaming_started first, stream_complete last" % name, t)
    tap.ok("workflow_complete" in t, "%s: agent path completed" % name, t)


# --- one full turn, relayed ---------------------------------------------
with Stack(conf=FAST, sim_args=["--speed", "4"]) as s:
    msg = "My knee hurts after running"
    r = s.stream({"message": msg, "route": "text"})
    vt = vtypes(r)
    stream_ends_well(r, "text route")
    tap.ok(vt[:3] == ["unmute_connecting", "unmute_connected", "unmute_streaming_started"],
           "connecting, connected, streaming_started in order", vt[:4])
    tap.ok(vt[-3:] == ["text_complete", "audio_complete", "unmute_complete"],
           "turn ends with text_complete, audio_complete, then unmute_complete", vt[-4:])
    url = r.first("unmute_connecting")["data"]["url"]
    tap.ok(url.startswith("ws://127.0.0.1:") and url.endswith("/v1/realtime"), "connecting url", url)
    tap.ok(isinstance(r.first("unmute_connected")["data"].get("handshake_ms"), int), "handshake_ms")
    tap.is_(r.first("unmute_streaming_started")["data"], {"turn": 1}, "turn 1 started")
    chunks = r.of("text_chunk")
    tap.ok(len(chunks) > 3 and all(c["data"]["source"] == "unmute" and c["data"]["turn"] == 1
                                   for c in chunks), "text_chunks of turn 1")
    tc = r.first("text_complete")["data"]
    tap.is_(tc["text"], " ".join(c["data"]["text"] for c in chunks),
            "text_complete = text_chunks joined with single spaces")
    tap.is_(norm(tc["text"]), "You said: " + msg, "Unmute answered the user's message (last paragraph)")
    ac = r.of("audio_chunk")
    tap.ok(len(ac) > 3 and all(a["data"]["format"] == "ogg/opus" and a["data"]["sample_rate"] == 24000
                               and a["data"]["turn"] == 1 for a in ac), "audio_chunks: ogg/opus 24000, turn 1")
    ogg = ogg_of(r)
    tap.ok(ogg[:4] == b"OggS" and ogg[5] & 2 and b"OpusHead" in ogg[:100],
           "first audio_chunk starts with the BOS OpusHead page")
    done = r.first("audio_complete")["data"]
    tap.is_(done["chunks"], len(ac), "audio_complete.chunks")
    tap.is_(done["bytes"], len(ogg), "audio_complete.bytes")
    ms = decoded_ms(ogg)
    if ms is None:
        tap.ok(OPUSDEC == "", "opusdec decodes the relayed audio")
    else:
        tap.ok(abs(ms - done["duration_ms"]) <= 100, "opusdec: %.0f ms vs duration_ms %d (+-100)"
               % (ms, done["duration_ms"]))
    uc = r.first("unmute_complete")["data"]
    tap.ok(uc.get("turns") == 1 and isinstance(uc.get("elapsed_ms"), int), "unmute_complete turns 1", uc)
    tap.is_(r.events[-1]["data"].get("voice"), "complete", "stream_complete voice complete")
    # Early start: with a tagger slowed to 500 ms, the voice is connected
    # and speaking before the route is known.
    r2 = s.stream({"message": "My knee hurts [[sim:slow=500@route]]"})
    t2 = r2.types()
    tap.ok("route_tagged" in t2 and "unmute_streaming_started" in t2 and
           t2.index("unmute_streaming_started") < t2.index("route_tagged"),
           "voice connects and speaks without waiting for the tagger", t2[:8])
    tap.ok(wait_for(lambda: s.sim_stats()["unmute_open"] == 0, 2), "session closed after the turn")

    # --- the follow-up turn: the agent's answer spoken ---------------------
    for route in ("medical", "web"):
        r = s.stream({"message": "What should I do about my knee?", "route": route})
        stream_ends_well(r, route)
        wc = r.first("workflow_complete")
        answer = (wc or {}).get("data", {}).get("answer")
        turns = sorted({e["data"]["turn"] for e in r.of("text_complete")})
        if not answer:
            tap.ok(turns == [1], "%s: no answer from the agent, one turn" % route, turns)
            continue
        tap.is_(turns, [1, 2], "%s: two turns" % route)
        t2 = [e["data"]["text"] for e in r.of("text_complete") if e["data"]["turn"] == 2]
        tap.is_(norm(t2[0] if t2 else ""), norm(answer), "%s: turn 2 speaks the agent's answer" % route)
        starts = [e["data"]["turn"] for e in r.of("unmute_streaming_started")]
        tap.is_(starts, [1, 2], "%s: turns numbered 1, 2" % route)
        ogg = ogg_of(r)
        tap.is_(ogg.count(b"OpusHead"), 1, "%s: one set of Ogg headers across both turns" % route)
        total = sum(e["data"]["duration_ms"] for e in r.of("audio_complete"))
        ms = decoded_ms(ogg)
        if ms is not None:
            tap.ok(abs(ms - total) <= 100, "%s: one decoder plays both turns: %.0f ms vs %d"
                   % (route, ms, total))
        tap.is_(r.first("unmute_complete")["data"].get("turns"), 2, "%s: unmute_complete turns 2" % route)

    # --- faults inside the session (markers in the user's message) --------
    faults = [("busy", "unmute_busy"), ("fatal", "unmute_unavailable"),
              ("unhealthy", "unmute_unavailable"), ("close1011", "unmute_unavailable"),
              ("close1000", "unmute_closed"), ("drop", "unmute_closed"),
              ("binary", "unmute_protocol"), ("nonjson", "unmute_protocol"),
              ("badogg", "unmute_protocol"), ("stall", "upstream_timeout")]
    results = {}

    def run_fault(name):
        results[name] = s.stream({"message": "Patient Jane Roe secret [[unmute:%s]]" % name,
                                  "route": "text"})
    for name, code in faults:
        run_fault(name)
        r = results[name]
        errs = r.of("unmute_error")
        got = errs[0]["data"] if errs else {}
        tap.is_(got.get("code"), code, "fault %s -> %s" % (name, code))
        tap.ok("Jane" not in got.get("message", "Jane") and got.get("message"),
               "fault %s: a message for humans, no patient text" % name, got)
        stream_ends_well(r, "fault " + name)
        tap.ok("unmute_complete" not in r.types(), "fault %s: no unmute_complete" % name)
        want = "timeout" if code == "upstream_timeout" else "error"
        tap.is_(r.events[-1]["data"].get("voice"), want, "fault %s: stream_complete voice %s" % (name, want))
    tap.ok(wait_for(lambda: s.sim_stats()["unmute_open"] == 0, 2), "no session left open after the faults")

# --- a client that leaves mid-turn (real-time pace: the turn lasts seconds)
with Stack(conf=FAST) as s:
    seen = s.abort_stream({"message": "please tell me all about knees and ankles and hips today",
                           "route": "text"}, after_event="audio_chunk")
    tap.ok("audio_chunk" in seen.types(), "mid-turn: audio was flowing")
    t0 = time.time()
    closed = wait_for(lambda: s.sim_stats()["unmute_open"] == 0, 1.0, step=0.02)
    tap.ok(closed, "client left: Unmute session closed within 1 s (%.2f s)" % (time.time() - t0))

# --- handshake faults and a refused connection ---------------------------
for fault, code in (("hold", "unmute_busy"), ("eof", "unmute_busy"), ("http500", "unmute_unavailable")):
    with Stack(conf=FAST, sim_args=["--speed", "4", "--unmute-fault", fault]) as s:
        t0 = time.time()
        r = s.stream({"message": "hello", "route": "text"})
        e = r.first("unmute_error")
        tap.is_(e and e["data"]["code"], code, "handshake %s -> %s" % (fault, code))
        stream_ends_well(r, "handshake " + fault)
        if fault == "hold":
            tap.ok(time.time() - t0 < 5, "held handshake given up at the connect timeout")

with Stack(conf=dict(FAST, **{"unmute.url": "ws://127.0.0.1:9/v1/realtime"}), sim_args=["--speed", "4"]) as s:
    r = s.stream({"message": "hello", "route": "text"})
    e = r.first("unmute_error")
    tap.is_(e and e["data"]["code"], "unmute_unavailable", "refused connection -> unmute_unavailable")
    stream_ends_well(r, "refused")

# --- capacity: the pool-wide cap and Unmute's own limit -----------------
for cap, name in ((4, "our cap"), (8, "Unmute's hold")):
    with Stack(conf=dict(FAST, **{"unmute.max_sessions": cap}),
               sim_args=["--speed", "4", "--max-clients", "4"], processes=2) as s:
        res = [None] * 5

        def one(i):
            res[i] = s.stream({"message": "wait [[unmute:slowgreet=2500]]", "route": "text"})
        ts = []
        for i in range(5):
            ts.append(threading.Thread(target=one, args=(i,)))
            ts[-1].start()
            time.sleep(0.1)
        for t in ts:
            t.join()
        codes = [(r.first("unmute_error") or {}).get("data", {}).get("code") for r in res]
        tap.is_(sorted(c for c in codes if c), ["unmute_busy"],
                "%s: 5 streams on 4 places -> exactly one unmute_busy" % name)
        tap.is_(sum(1 for r in res if "unmute_complete" in r.types()), 4,
                "%s: the other four complete" % name)
        tap.ok(all(r.types()[-1] == "stream_complete" for r in res), "%s: every stream ends" % name)

# busy_wait: the 5th waits for a place instead of failing.
with Stack(conf=dict(FAST, **{"unmute.max_sessions": 1, "unmute.busy_wait": "5s"}),
           sim_args=["--speed", "4"]) as s:
    res = [None] * 2

    def one(i):
        res[i] = s.stream({"message": "one at a time", "route": "text"})
    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    tap.ok(all("unmute_complete" in r.types() for r in res),
           "max_sessions 1 + busy_wait: both streams get their turn",
           [r.types() for r in res if "unmute_complete" not in r.types()])

# --- what the real server does that a plain turn does not ----------------
# 45 words: the agent's answer (the sim's first 40 words of the message)
# does not carry a marker placed at the end, so it strikes turn 1 only.
LONG = ("Please tell me what I should do about my sore left knee after a long "
        "run on hard ground yesterday morning because it still hurts when I walk "
        "up the stairs and when I sit down for a long time at my desk at the office today")


def follow_up_ok(r, name):
    """Two turns, the second speaking the agent's answer; no unmute_error."""
    stream_ends_well(r, name)
    tap.is_(r.first("unmute_error"), None, "%s: no unmute_error" % name)
    answer = ((r.first("workflow_complete") or {}).get("data") or {}).get("answer")
    t2 = [e["data"]["text"] for e in r.of("text_complete") if e["data"]["turn"] == 2]
    tap.ok(answer and t2 and norm(t2[0]) == norm(answer), "%s: turn 2 speaks the agent's answer" % name,
           (answer, t2))
    tap.is_(r.events[-1]["data"].get("voice"), "complete", "%s: stream_complete voice complete" % name)


with Stack(conf=FAST, sim_args=["--speed", "4"]) as s:
    # Keepalive pings every 300 ms must be answered, or the sim closes 1011.
    r = s.stream({"message": "Say hello [[unmute:ping=300]]", "route": "text"})
    tap.ok("unmute_complete" in r.types() and not r.of("unmute_error"),
           "server pings every 300 ms: answered, the turn completes", vtypes(r))
    # An interruption ends turn 1 (no response.audio.done); flush audio after it is not relayed.
    r = s.stream({"message": "Say hello [[unmute:interrupt]]", "route": "text"})
    stream_ends_well(r, "interrupted")
    chunks = r.of("text_chunk")
    tc = r.of("text_complete")
    tap.ok(len(tc) == 1 and tc[0]["data"]["text"] == " ".join(c["data"]["text"] for c in chunks)
           and 0 < len(chunks) < 4, "interrupted turn: text_complete of the words spoken so far",
           [c["data"]["text"] for c in chunks])
    ac = r.first("audio_complete")
    tap.ok(ac and ac["data"]["chunks"] == len(r.of("audio_chunk")) and ac["data"]["turn"] == 1,
           "interrupted turn: audio_complete counts what was relayed; the flush after it is not", ac)
    tap.is_((r.first("unmute_complete") or {}).get("data", {}).get("turns"), 1,
            "interrupted turn: unmute_complete turns 1")
    tap.is_(r.events[-1]["data"].get("voice"), "complete", "interrupted turn: voice complete")
    # STT with one slot (compose's batch_size 1): a follow-up session
    # opened while turn 1 plays is refused 'stt' full, and again just
    # after turn 1's session closes; the follow-up is still spoken.
    r = s.stream({"message": LONG + " [[unmute:stt1]]", "route": "medical"})
    follow_up_ok(r, "STT with one slot")

# follow_up = update: the answer as new instructions on the same
# connection; the 7 s silence rule brings the turn (~9 s of silence).
with Stack(conf=dict(FAST, **{"unmute.follow_up": "update"}), sim_args=["--speed", "4"]) as s:
    t0 = time.time()
    r = s.stream({"message": "What should I do about my knee?", "route": "medical"})
    follow_up_ok(r, "follow_up update")
    tap.ok(time.time() - t0 > 7, "follow_up update: turn 2 came from the silence rule (%.1f s)"
           % (time.time() - t0))
    # The sim counts received audio: 0.25 s after the turn (wall clock at
    # --speed 4), 7 s of silence, 0.5 s of STT flush. Silence sent faster
    # or slower than real time moves turn 2.
    ts = {}
    for e in r.events:
        ts.setdefault((e["type"], (e["data"] or {}).get("turn")), e["ts"])
    if ("unmute_streaming_started", 2) in ts:
        gap = (ts[("unmute_streaming_started", 2)] -
               max(ts[("audio_complete", 1)], ts[("workflow_complete", None)])) / 1000.0
        tap.ok(7.5 <= gap <= 8.3, "follow_up update: silence streamed in real time "
               "(turn 2 %.2f s after the answer, want 7.75)" % gap)
    tap.is_(ogg_of(r).count(b"OpusHead"), 1, "follow_up update: one Ogg stream")
    tap.is_([e["data"]["turn"] for e in r.of("unmute_streaming_started")], [1, 2],
            "follow_up update: turns 1, 2")
    # The user's word interrupts turn 1; the reply after the pause uses
    # the new instructions: it is the follow-up.
    r = s.stream({"message": LONG + " [[unmute:interrupt]]", "route": "medical"})
    follow_up_ok(r, "follow_up update after an interruption")
    # Unmute closes 1000 about 1 s after a turn that ends in "Bye!": the
    # follow-up then needs a fresh session.
    r = s.stream({"message": "What helps a sore knee? Thanks, bye!", "route": "medical"})
    follow_up_ok(r, "follow_up update after Unmute's goodbye")

tap.done()
