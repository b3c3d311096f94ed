#!/usr/bin/env python3
"""
tandem-sim's Unmute stand-in against docs/unmute-protocol.md: HTTP
routes, the handshake (subprotocol, MAX_CLIENTS hold), rejected events,
the BOS gate, audio-driven turns, the Ogg/Opus it sends, and faults.
Python 3 stdlib only; TAP output.
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from tandemtest import tap

SRCDIR = os.environ.get("SRCDIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANDEM_SIM = os.environ.get("TANDEM_SIM", "./tandem-sim")
OPUSDEC = os.environ.get("OPUSDEC") or shutil.which("opusdec") or ""
SILENCE = os.path.join(SRCDIR, "t", "data", "silence-24k.ogg")
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

ok = tap.ok
is_ = tap.is_


# --- Ogg pages ---

def ogg_pages(data):
    """Split bytes into whole pages; raise ValueError on non-Ogg."""
    pages = []
    i = 0
    while i < len(data):
        if data[i:i + 4] != b"OggS" or len(data) - i < 27:
            raise ValueError("not an Ogg page at %d" % i)
        nseg = data[i + 26]
        segs = data[i + 27:i + 27 + nseg]
        n = 27 + nseg + sum(segs)
        if len(data) - i < n:
            raise ValueError("short page")
        pages.append(data[i:i + n])
        i += n
    return pages


def page_info(p):
    nseg = p[26]
    return {"flags": p[5], "granule": struct.unpack("<q", p[6:14])[0],
            "serial": struct.unpack("<I", p[14:18])[0],
            "seqno": struct.unpack("<I", p[18:22])[0],
            "body": p[27 + nseg:]}


SIL_PAGES = ogg_pages(open(SILENCE, "rb").read())
SIL_HEAD = b"".join(SIL_PAGES[:2])
SIL_AUDIO = SIL_PAGES[2:]          # 20 ms each


def audio_msg(data):
    return json.dumps({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(data).decode()})


# --- a tiny websocket client ---

class Closed(Exception):
    pass


class WS:
    def __init__(self, port, path="/v1/realtime", protocol="realtime", timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.lock = threading.Lock()
        self.key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, port, self.key))
        if protocol:
            req += "Sec-WebSocket-Protocol: %s\r\n" % protocol
        self.sock.sendall((req + "\r\n").encode())
        self.status = None
        self.headers = {}

    def handshake(self, timeout=5.0):
        """Read the answer; return the status code, None on EOF, raise on timeout."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                return None
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for l in lines[1:]:
            k, _, v = l.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def accept_ok(self):
        want = base64.b64encode(hashlib.sha1((self.key + GUID).encode()).digest()).decode()
        return self.headers.get("sec-websocket-accept") == want

    def send_frame(self, op, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        h = bytes([(0x80 if fin else 0) | op])
        if n < 126:
            h += bytes([0x80 | n])
        elif n < 65536:
            h += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            h += bytes([0x80 | 127]) + struct.pack(">Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(h + mask + body)

    def send(self, obj):
        self.send_frame(1, (obj if isinstance(obj, str) else json.dumps(obj)).encode())

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise Closed("eof")
            self.buf += d

    def recv_frame(self, timeout=5.0):
        self.sock.settimeout(timeout)
        self._need(2)
        op, n = self.buf[0] & 0x0f, self.buf[1] & 0x7f
        if self.buf[1] & 0x80:
            raise ValueError("server frame masked")
        hl = 2
        if n == 126:
            self._need(4)
            n = struct.unpack(">H", self.buf[2:4])[0]
            hl = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack(">Q", self.buf[2:10])[0]
            hl = 10
        self._need(hl + n)
        payload = self.buf[hl:hl + n]
        self.buf = self.buf[hl + n:]
        return op, payload

    def recv(self, timeout=5.0):
        """Next event: a dict, or ("close", code, reason), ("binary", b), ("text", s)."""
        while True:
            op, p = self.recv_frame(timeout)
            if op == 1:
                try:
                    return json.loads(p)
                except ValueError:
                    return ("text", p)
            if op == 2:
                return ("binary", p)
            if op == 8:
                code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None
                return ("close", code, p[2:].decode("utf-8", "replace"))
            if op == 10:
                return ("pong", p)

    def close(self):
        try:
            self.send_frame(8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.sock.close()


class Streamer(threading.Thread):
    """Sends the silence stream: headers first, then audio at `factor` x real time."""

    def __init__(self, ws, factor=10.0, bos=True):
        super().__init__(daemon=True)
        self.ws, self.factor, self.bos = ws, factor, bos
        self.stop = threading.Event()
        self.sent_ms = 0

    def run(self):
        i = 0
        first = self.bos
        try:
            while not self.stop.is_set():
                chunk = b"".join(SIL_AUDIO[(i + k) % len(SIL_AUDIO)] for k in range(10))
                i += 10
                if first:
                    chunk = SIL_HEAD + chunk
                    first = False
                self.ws.send(audio_msg(chunk))
                self.sent_ms += 200
                self.stop.wait(0.2 / self.factor)
        except OSError:
            pass


def collect(ws, until, timeout):
    """Events until until(ev) is true (included) or timeout; returns (events, hit)."""
    evs = []
    end = time.time() + timeout
    while time.time() < end:
        try:
            ev = ws.recv(timeout=max(0.05, end - time.time()))
        except socket.timeout:
            break
        except (Closed, OSError):
            evs.append(("eof",))
            return evs, until(("eof",))
        evs.append(ev)
        if until(ev):
            return evs, True
    return evs, False


def etype(ev):
    return ev.get("type") if isinstance(ev, dict) else ev[0]


def session_update(text, voice="unmute-prod-website/developer-1.mp3"):
    return {"type": "session.update",
            "session": {"instructions": {"type": "constant", "text": text},
                        "voice": voice, "allow_recording": False}}


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


# --- the tests ---

def test_http(port):
    st, body = http_get(port, "/v1/health")
    h = json.loads(body)
    ok(st == 200 and h == {"tts_up": True, "stt_up": True, "llm_up": True,
                           "voice_cloning_up": False, "ok": True}, "GET /v1/health", body)
    st, body = http_get(port, "/v1/voices")
    v = json.loads(body)
    ok(st == 200 and any(x["source"]["path_on_server"] == "unmute-prod-website/developer-1.mp3"
                         and x["good"] is True for x in v), "GET /v1/voices lists developer-1", body)
    st, body = http_get(port, "/")
    ok(st == 200 and b"Unmute backend" in body, "GET / answers the message")
    st, _ = http_get(port, "/v1/nothing")
    is_(st, 404, "an unknown path is 404")
    ws = WS(port, path="/v1/other")
    is_(ws.handshake(), 404, "an upgrade elsewhere than /v1/realtime is 404")
    ws.sock.close()


def test_handshake_and_errors(port):
    ws = WS(port)
    is_(ws.handshake(), 101, "upgrade answers 101")
    ok(ws.accept_ok(), "Sec-WebSocket-Accept is right")
    is_(ws.headers.get("sec-websocket-protocol"), "realtime", "subprotocol realtime echoed")
    ws.send({"type": "response.create"})
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev.get("type") == "error"
       and ev["error"]["type"] == "invalid_request_error"
       and ev["error"]["message"] == "Invalid message"
       and ev["error"]["details"][0]["type"] == "union_tag_invalid"
       and "'response.create'" in ev["error"]["details"][0]["msg"]
       and ev["event_id"].startswith("event_") and len(ev["event_id"]) == 27,
       "response.create: invalid_request_error, union_tag_invalid", ev)
    ws.send("{not json")
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev["error"]["type"] == "invalid_request_error"
       and ev["error"]["details"][0]["type"] == "json_invalid", "bad JSON: json_invalid", ev)
    ws.send({"type": "session.update",
             "session": {"instructions": "You are a pirate.", "allow_recording": False}})
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev["error"]["type"] == "invalid_request_error"
       and "Input should be an object" in json.dumps(ev), "string instructions rejected", ev)
    ws.send({"type": "session.update",
             "session": {"instructions": {"type": "constant", "text": "x"}}})
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev["error"]["details"][0]["type"] == "missing"
       and ev["error"]["details"][0]["loc"][-1] == "allow_recording",
       "allow_recording is required", ev)
    ws.send(session_update("Be brief."))
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev["type"] == "session.updated"
       and ev["session"]["instructions"] == {"type": "constant", "text": "Be brief.",
                                              "language": None}
       and ev["session"]["allow_recording"] is False
       and ev["session"]["voice"] == "unmute-prod-website/developer-1.mp3",
       "connection still open: session.updated echoes defaults filled", ev)
    ws.send_frame(9, b"hi")
    ev = ws.recv()
    is_(ev, ("pong", b"hi"), "ping answered with pong")
    # A fragmented text message.
    msg = json.dumps({"type": "input_audio_buffer.commit"}).encode()
    ws.send_frame(1, msg[:5], fin=False)
    ws.send_frame(0, msg[5:], fin=True)
    ev = ws.recv()
    ok(isinstance(ev, dict) and ev.get("type") == "error"
       and "input_audio_buffer.commit" in ev["error"]["details"][0]["msg"],
       "fragmented message reassembled (and commit rejected)", ev)
    # No greeting while no audio flows, nor while appends lack BOS.
    evs, hit = collect(ws, lambda e: etype(e) == "response.created", 1.0)
    ok(not hit, "no greeting without audio", evs)
    for _ in range(10):
        ws.send(audio_msg(b"".join(SIL_AUDIO[:10])))
    evs, hit = collect(ws, lambda e: etype(e) == "response.created", 1.0)
    ok(not hit, "appends before a BOS page are dropped (no greeting)", evs)
    ws.send_frame(2, b"\x01\x02")
    evs, hit = collect(ws, lambda e: etype(e) == "close", 3.0)
    ok(hit and evs[-2]["type"] == "error" and evs[-2]["error"]["type"] == "fatal"
       and evs[-2]["error"]["message"] == "Internal server error :( Complain to Kyutai"
       and evs[-1][1] == 1011, "binary frame: fatal error and close 1011", evs[-3:])
    ws.sock.close()

    ws = WS(port, protocol=None)
    ws.handshake()
    is_(ws.headers.get("sec-websocket-protocol"), "realtime",
        "subprotocol echoed even when not offered")
    ws.send({"type": "input_audio_buffer.append",
             "audio": base64.b64encode(b"OggS").decode()})
    evs, hit = collect(ws, lambda e: etype(e) == "close", 3.0)
    ok(hit and evs[-1][1] == 1011, "append shorter than 6 bytes before BOS: 1011", evs)
    ws.sock.close()


def turn_events(ws, timeout):
    """Events up to the end of a turn (response.audio.done)."""
    return collect(ws, lambda e: etype(e) in ("response.audio.done", "close", "eof"), timeout)


def test_turns(port):
    ws = WS(port)
    ws.handshake()
    text = ("You are a health assistant.\n\nThe user said: my knee hurts "
            "when I climb stairs")
    ws.send(session_update(text))
    ok(ws.recv()["type"] == "session.updated", "session.updated")
    st = Streamer(ws)
    st.start()
    evs, hit = turn_events(ws, 10)
    ok(hit and evs[-1]["type"] == "response.audio.done", "greeting turn ends with audio.done",
       [etype(e) for e in evs])
    types = [etype(e) for e in evs]
    created = [e for e in evs if etype(e) == "response.created"]
    ok(len(created) == 1, "one response.created")
    want = "You said: The user said: my knee hurts when I climb stairs"
    if created:
        r = created[0]["response"]
        ch = r["chat_history"]
        ok(ch[0]["role"] == "system" and text in ch[0]["content"]
           and ch[1] == {"role": "user", "content": "Hello!"}
           and ch[-1] == {"role": "assistant", "content": ""}
           and r["voice"] == "unmute-prod-website/developer-1.mp3"
           and r["status"] == "in_progress", "response.created: system prompt, Hello!, empty assistant", r)
    ready = [e["delta"] for e in evs if etype(e) == "unmute.response.text.delta.ready"]
    ok(ready and not ready[0].startswith(" ") and all(d.startswith(" ") for d in ready[1:]),
       "text.delta.ready: first word without a leading space, later with", ready)
    is_("".join(ready), want, "reply derived from the last paragraph")
    spoken = [e["delta"] for e in evs if etype(e) == "response.text.delta"]
    is_(" ".join(spoken), want, "response.text.delta words")
    done_i = types.index("response.text.done") if "response.text.done" in types else -1
    deltas_i = [i for i, t in enumerate(types) if t == "response.text.delta"]
    ok(done_i >= 0 and evs[done_i]["text"] == want and len(deltas_i) >= 2
       and deltas_i[-2] > done_i > deltas_i[-3], "text.done before the last two words")
    ok("unmute.additional_outputs" in types[-3:], "additional_outputs at the turn's end")
    audio = [base64.b64decode(e["delta"]) for e in evs if etype(e) == "response.audio.delta"]
    ok(audio and audio[0][:4] == b"OggS" and b"OpusHead" in audio[0][:80],
       "first audio delta starts with OggS + OpusHead")
    pages = []
    try:
        for a in audio:
            pages.extend(page_info(p) for p in ogg_pages(a))
        good = True
    except ValueError:
        good = False
    ok(good, "audio deltas are whole Ogg pages")
    if pages:
        h = pages[0]["body"]
        ok(pages[0]["flags"] & 2 and h[:8] == b"OpusHead" and h[9] == 1
           and struct.unpack("<H", h[10:12])[0] == 3840, "OpusHead: BOS, mono, pre-skip 3840")
        ok(pages[1]["body"][:8] == b"OpusTags" and b"KyutaiMoshi" in pages[1]["body"],
           "OpusTags, vendor KyutaiMoshi")
        ok(all(p["serial"] == 42 for p in pages), "serial 42")
        ok(len(ogg_pages(audio[1])) == 2, "a later delta holds 2 pages")
    first_audio = audio

    # Instructions replaced: the next silence turn speaks them.
    ws.send(session_update("Your first message must be exactly: Take two tablets daily. "
                           "Say nothing else."))
    t0 = st.sent_ms
    evs, hit = turn_events(ws, 15)
    types = [etype(e) for e in evs]
    ok(hit and "input_audio_buffer.speech_stopped" in types
       and types.index("input_audio_buffer.speech_stopped") < types.index("response.created"),
       "silence: speech_stopped then a new turn", types)
    waited = st.sent_ms - t0
    ok(waited >= 7500, "it took more than 7.5 s of streamed audio (%d ms)" % waited)
    cr = [e for e in evs if etype(e) == "response.created"]
    ok(cr and cr[0]["response"]["chat_history"][-2] == {"role": "user", "content": "..."},
       "the silence turn's user message is \"...\"")
    spoken = [e["delta"] for e in evs if etype(e) == "response.text.delta"]
    is_(" ".join(spoken), "Take two tablets daily", "new instructions spoken exactly")
    audio = [base64.b64decode(e["delta"]) for e in evs if etype(e) == "response.audio.delta"]
    ok(audio and b"OpusHead" not in b"".join(audio), "a later turn has no new headers")
    pg = [page_info(p) for a in audio for p in ogg_pages(a)]
    ok(pg and pg[0]["seqno"] == len(ogg_pages(b"".join(first_audio))),
       "and continues the page sequence")
    if OPUSDEC:
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "a.ogg")
            with open(f, "wb") as fh:
                fh.write(b"".join(first_audio) + b"".join(audio))
            r = subprocess.run([OPUSDEC, "--quiet", f, os.path.join(d, "a.wav")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ok(r.returncode == 0 and os.path.getsize(os.path.join(d, "a.wav")) > 44,
               "opusdec decodes both turns as one stream", r.stderr)

    # Three short silence replies, then "Bye!" and close 1000.
    replies = []
    for _ in range(4):
        evs, hit = turn_events(ws, 15)
        replies.append(" ".join(e["delta"] for e in evs if etype(e) == "response.text.delta"))
    ok(all(len(r.split()) <= 6 for r in replies[:3]) and replies[3].endswith("Bye!"),
       "silence replies are short, the fourth ends with Bye!", replies)
    t1 = time.time()
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof"), 5)
    ok(hit and evs[-1][0] == "close" and evs[-1][1] == 1000, "then close 1000", evs[-2:])
    ok(0.5 < time.time() - t1 < 3, "about 1 s after the goodbye turn")
    st.stop.set()
    ws.sock.close()


def test_max_clients(port):
    held = [WS(port) for _ in range(4)]
    ok(all(w.handshake() == 101 for w in held), "4 clients open")
    fifth = WS(port)
    try:
        fifth.handshake(timeout=2.0)
        answered = True
    except socket.timeout:
        answered = False
    ok(not answered, "the 5th client's handshake is held (no answer in 2 s)")
    held[0].close()
    try:
        st = fifth.handshake(timeout=3.0)
    except socket.timeout:
        st = "timeout"
    is_(st, 101, "a slot frees: the 5th proceeds")
    for w in held[1:] + [fifth]:
        w.close()
    time.sleep(0.3)


def fault_session(port, fault=None, marker=None):
    ws = WS(port, path="/v1/realtime" + ("?sim_fault=" + fault if fault else ""))
    st = ws.handshake()
    return ws, st


def test_faults(port):
    ws, st = fault_session(port, "busy")
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof"), 3)
    ok(st == 101 and evs and etype(evs[0]) == "error" and evs[0]["error"]["type"] == "fatal"
       and "Too many people" in evs[0]["error"]["message"]
       and evs[-1][0] == "close" and evs[-1][1] == 1011 and "Too many people" in evs[-1][2],
       "busy: fatal error then close 1011 with the reason", evs)
    ws.sock.close()

    ws, st = fault_session(port, "unhealthy")
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof"), 3)
    ok(st == 101 and len(evs) == 1 and evs[0][0] == "close" and evs[0][1] == 1011
       and evs[0][2].startswith("Server is not healthy:") and evs[0][2].endswith("ok=False"),
       "unhealthy: close 1011, no error event", evs)
    ws.sock.close()

    ws, st = fault_session(port, "http500")
    is_(st, 500, "http500: the upgrade answers 500")
    ws.sock.close()

    ws, st = fault_session(port, "eof")
    is_(st, None, "eof: connection closed with no response")
    ws.sock.close()

    ws = WS(port, path="/v1/realtime?sim_fault=hold")
    try:
        ws.handshake(timeout=1.5)
        held = False
    except socket.timeout:
        held = True
    ok(held, "hold: no answer to the handshake")
    ws.sock.close()

    for fault, check, name in (
            ("fatal", lambda evs: any(etype(e) == "error" and e["error"]["type"] == "fatal"
                                      for e in evs) and evs[-1][0] == "close" and evs[-1][1] == 1011,
             "marker fatal: greeting starts, fatal error, close 1011"),
            ("drop", lambda evs: evs[-1] == ("eof",) and "response.created" in map(etype, evs),
             "marker drop: TCP closed mid-turn with no close frame"),
            ("close1000", lambda evs: evs[-1][0] == "close" and evs[-1][1] == 1000,
             "marker close1000: close 1000 mid-turn"),
            ("close1011", lambda evs: evs[-1][0] == "close" and evs[-1][1] == 1011
             and not any(etype(e) == "error" for e in evs),
             "marker close1011: close 1011 mid-turn, no error event"),
            ("badogg", lambda evs: any(etype(e) == "response.audio.delta"
                                       and not base64.b64decode(e["delta"]).startswith(b"OggS")
                                       for e in evs),
             "marker badogg: an audio delta that is not Ogg"),
            ("nonjson", lambda evs: any(etype(e) == "text" for e in evs),
             "marker nonjson: a text frame that is not JSON"),
            ("binary", lambda evs: any(etype(e) == "binary" for e in evs),
             "marker binary: a binary frame")):
        ws = WS(port)
        ws.handshake()
        ws.send(session_update("Hello.\n\n[[unmute:%s]]Say hi" % fault))
        st = Streamer(ws)
        st.start()
        evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof", "response.audio.done"), 8)
        st.stop.set()
        ok(evs and check(evs), name, [etype(e) for e in evs])
        if fault == "badogg":
            spoken = [e["delta"] for e in evs if etype(e) == "response.text.delta"]
            is_(" ".join(spoken), "You said: Say hi", "the marker is not spoken")
        ws.sock.close()

    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hi.\n\n[[unmute:stall]]Say hi"))
    st = Streamer(ws)
    st.start()
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof", "response.audio.done"), 3)
    st.stop.set()
    ok(not hit and "response.created" in map(etype, evs), "marker stall: the turn stops mid-way")
    ws.close()

    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hi.\n\n[[unmute:slowgreet=1500]]Say hi"))
    st = Streamer(ws)
    t0 = time.time()
    st.start()
    evs, hit = collect(ws, lambda e: etype(e) == "response.created", 5)
    st.stop.set()
    ok(hit and time.time() - t0 >= 1.4, "marker slowgreet=1500 delays the greeting")
    ws.close()


def test_session_markers(port):
    """Keepalive pings, TTS warnings, an interruption, the STT held by a session."""
    # ping=300: pings every 0.3 s; answered, the session lives on.
    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hi.\n\n[[unmute:ping=300]][[unmute:slowgreet=600000]]Say hi"))
    pings, closed, end = 0, None, time.time() + 1.5
    while time.time() < end and closed is None:
        try:
            op, p = ws.recv_frame(timeout=max(0.05, end - time.time()))
        except socket.timeout:
            break
        if op == 9:
            pings += 1
            ws.send_frame(10, p)
        elif op == 8:
            closed = struct.unpack(">H", p[:2])[0]
    ok(pings >= 3 and closed is None, "ping=300: pings answered keep the session (%d pings)" % pings, closed)
    ws.close()
    # Unanswered, the session is closed 1011 after the timeout.
    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hi.\n\n[[unmute:ping=300]][[unmute:slowgreet=600000]]Say hi"))
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof"), 2)
    ok(hit and evs[-1][0] == "close" and evs[-1][1] == 1011 and "ping" in evs[-1][2],
       "ping=300 unanswered: close 1011 (keepalive ping timeout)", evs[-1:])
    ws.sock.close()

    # busy in a turn: TTS warnings first, then the fatal and 1011.
    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hi.\n\n[[unmute:busy]]Say hi"))
    st = Streamer(ws)
    st.start()
    evs, hit = collect(ws, lambda e: etype(e) in ("close", "eof"), 5)
    st.stop.set()
    errs = [e["error"] for e in evs if etype(e) == "error"]
    ok(len(errs) == 5 and all(e["type"] == "warning" and "Looking for the resources" in e["message"]
                              for e in errs[:4])
       and errs[4]["type"] == "fatal" and "Too many people" in errs[4]["message"]
       and evs[-1][0] == "close" and evs[-1][1] == 1011,
       "marker busy: four warnings, then fatal 'Too many people', close 1011", errs)
    ws.sock.close()

    # interrupt: the user's word cuts the greeting; its reply follows a pause.
    ws = WS(port)
    ws.handshake()
    ws.send(session_update("Hello.\n\n[[unmute:interrupt]]Say hi to everyone in this room today please"))
    st = Streamer(ws)
    st.start()
    evs, hit = collect(ws, lambda e: etype(e) == "response.audio.done", 8)
    st.stop.set()
    t = [etype(e) for e in evs]
    i = t.index("unmute.interrupted_by_vad") if "unmute.interrupted_by_vad" in t else -1
    ok(i > 0 and t.count("response.created") == 2 and t.index("response.created") < i
       and "input_audio_buffer.speech_started" in t[:i]
       and "conversation.item.input_audio_transcription.delta" in t[:i]
       and t.count("response.audio.done") == 1
       and "input_audio_buffer.speech_stopped" in t[i:]
       and t.index("input_audio_buffer.speech_stopped", i) < len(t) - 1 - t[::-1].index("response.created"),
       "marker interrupt: interrupted_by_vad, no audio.done, a reply after the pause", t)
    ok(i > 0 and t[i + 1] == "response.audio.delta", "interrupt: the flush audio follows", t[i:i + 3])
    j = len(t) - 1 - t[::-1].index("response.created") if "response.created" in t else 0
    spoken = [e["delta"] for e in evs[j:] if etype(e) == "response.text.delta"]
    is_(" ".join(spoken), "You said: Wait", "interrupt: the second turn answers the word")
    ws.close()

    # stt1: while that session is open (and 0.3 s after), others get 'stt' full.
    a = WS(port)
    a.handshake()
    a.send(session_update("Hi.\n\n[[unmute:stt1]][[unmute:slowgreet=600000]]Say hi"))
    collect(a, lambda e: etype(e) == "session.updated", 2)
    b = WS(port)
    b.handshake()
    evs, hit = collect(b, lambda e: etype(e) in ("close", "eof"), 3)
    ok(evs and etype(evs[0]) == "error" and evs[0]["error"]["type"] == "fatal"
       and "service 'stt'" in evs[0]["error"]["message"] and evs[-1][0] == "close" and evs[-1][1] == 1011,
       "stt1: another session gets the STT-full fatal and 1011", evs)
    b.sock.close()
    a.close()
    time.sleep(0.05)
    b = WS(port)
    b.handshake()
    evs, hit = collect(b, lambda e: etype(e) in ("close", "eof"), 3)
    ok(evs and etype(evs[0]) == "error" and evs[0]["error"]["type"] == "fatal",
       "stt1: just after it closes, the STT is still full", evs[:1])
    b.sock.close()
    time.sleep(0.5)
    b = WS(port)
    b.handshake()
    b.send(session_update("Hi.\n\nSay hi"))
    evs, hit = collect(b, lambda e: etype(e) in ("close", "eof", "error"), 0.5)
    ok(not hit and evs and etype(evs[0]) == "session.updated", "stt1: 0.5 s later the STT is free", evs[:1])
    b.close()


def main():
    if not os.path.exists(TANDEM_SIM):
        tap.skip_all("no tandem-sim at %s" % TANDEM_SIM)
    p = subprocess.Popen([TANDEM_SIM, "--unmute-port", "0", "--speed", "4"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        port = None
        for w in line.split():
            if w.startswith("unmute="):
                port = int(w.rsplit(":", 1)[1])
        if not ok(line.startswith("tandem-sim ready") and port, "tandem-sim ready", line):
            return 1
        test_http(port)
        test_handshake_and_errors(port)
        test_turns(port)
        test_max_clients(port)
        test_faults(port)
        test_session_markers(port)
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
    return 0


if __name__ == "__main__":
    main()
    tap.done()
