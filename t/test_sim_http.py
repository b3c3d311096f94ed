"""
Self-test of tandem-sim's HTTP half (src/sim/sim_http.c): the OpenAI
chat API (plain and streamed), its deterministic answers and faults, the
SearxNG search, the FHIR Patient route and /sim/stats. Speaks raw HTTP
on loopback so the wire itself (chunk framing, line ends) is checked.
Prints TAP.
"""
import json
import os
import socket
import subprocess
import sys
import time

from tandemtest import tap

SIM = os.environ.get("TANDEM_SIM", "./tandem-sim")
SLOW = float(os.environ.get("TANDEM_TEST_SLOW", "1"))
ok = tap.ok
is_ = tap.is_


def start(*extra):
    p = subprocess.Popen([SIM, "--http-port", "0"] + list(extra),
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    return p, line


class Resp:
    pass


def request(port, method, path, body=None, headers=None, timeout=15,
            close_after=None):
    """One request on a fresh connection, read to EOF. close_after(bytes)
    may return True to hang up early."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    h = {"Host": "127.0.0.1"}
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    s.sendall(head.encode())
    if body:
        s.sendall(body)
    raw = b""
    r = Resp()
    r.t0 = time.time()
    r.hung_up = False
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        raw += d
        if close_after and close_after(raw):
            r.hung_up = True
            break
    s.close()
    r.t1 = time.time()
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    r.status = int(lines[0].split()[1]) if lines[0] else 0
    r.headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        r.headers[k.strip().lower()] = v.strip()
    r.chunks = None
    r.complete = True
    if r.headers.get("transfer-encoding") == "chunked":
        r.chunks, r.complete = dechunk(rest)
        r.body = b"".join(r.chunks)
    else:
        r.body = rest
    return r


def dechunk(b):
    chunks = []
    while True:
        line, sep, b = b.partition(b"\r\n")
        if not sep:
            return chunks, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return chunks, True
        if len(b) < size + 2:
            chunks.append(b[:size])
            return chunks, False
        chunks.append(b[:size])
        b = b[size + 2:]


def sse(body):
    """Parse an SSE body: list of ('data', str) and ('comment', str)."""
    out = []
    text = body.decode("utf-8").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", line[1:].strip()))
            elif line.startswith("data: "):
                out.append(("data", line[6:]))
    return out


def reassemble(events):
    text = ""
    for kind, d in events:
        if kind != "data" or d == "[DONE]":
            continue
        try:
            o = json.loads(d)
        except ValueError:
            continue
        if not isinstance(o.get("choices"), list):
            continue
        for c in o["choices"]:
            t = c.get("delta", {}).get("content")
            if t:
                text += t
    return text


def chat(port, text, system=None, stream=False, **kw):
    msgs = []
    if system is not None:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": text})
    body = {"model": "m", "messages": msgs, "stream": stream}
    body.update(kw)
    return request(port, "POST", "/v1/chat/completions", body)


def content(r):
    return json.loads(r.body)["choices"][0]["message"]["content"]


def stats(port):
    return json.loads(request(port, "GET", "/sim/stats").body)


def main():
    if not os.path.exists(SIM):
        tap.skip_all("no tandem-sim at %s" % SIM)
    p, line = start()
    try:
        return run(p, line)
    finally:
        p.terminate()
        try:
            rc = p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        is_(rc, 0, "exits 0 on SIGTERM")


def run(p, line):
    parts = line.split()
    ok(line.startswith("tandem-sim ready http=127.0.0.1:") and
       parts[-1] == "unmute=-", "ready line", line)
    port = int(parts[2].split(":")[1])

    r = request(port, "GET", "/v1/models")
    is_(json.loads(r.body)["data"][0]["id"], "sim-model", "models lists sim-model")

    # Prose, plain and streamed.
    u = "Hello there,   how are you today?"
    want = "Sim answer: Hello there, how are you today? [end]"
    r = chat(port, u, system="You are kind.")
    is_((r.status, content(r)), (200, want), "plain prose answer")
    o = json.loads(r.body)
    ok(o["object"] == "chat.completion" and o["choices"][0]["finish_reason"] == "stop"
       and o["usage"]["completion_tokens"] > 0, "plain answer has OpenAI shape")
    long_u = " ".join("w%d" % i for i in range(60))
    is_(content(chat(port, long_u)),
        "Sim answer: " + " ".join("w%d" % i for i in range(40)) + " [end]",
        "prose keeps the first 40 words")

    r = chat(port, u, stream=True)
    ev = sse(r.body)
    is_(r.headers.get("content-type", "").split(";")[0], "text/event-stream",
        "stream content type")
    is_(reassemble(ev), want, "streamed prose reassembles")
    first = json.loads(ev[0][1])
    is_(first["choices"][0]["delta"], {"role": "assistant", "content": ""},
        "first delta is role only")
    datas = [json.loads(d) for k, d in ev if k == "data" and d != "[DONE]"]
    ok(any(x["choices"] and x["choices"][0]["delta"].get("content", 1) is None
           for x in datas), "a delta with content null")
    ok(("comment", "keep-alive") in ev, "a keep-alive comment")
    ok(datas[-2]["choices"][0]["finish_reason"] == "stop" and
       datas[-2]["choices"][0]["delta"] == {}, "finish chunk")
    ok(datas[-1]["choices"] == [] and "usage" in datas[-1], "usage chunk")
    is_(ev[-1], ("data", "[DONE]"), "ends with [DONE]")
    ok(r.complete, "chunked body terminated")
    ok(any(not c.endswith(b"\n") for c in r.chunks), "some writes split mid-line")
    ok(any(c.count(b"data: ") >= 2 for c in r.chunks), "some writes carry two events")
    ok(b"\r" not in r.body, "LF line ends by default")

    u8 = "Un caf\u00e9 na\u00efve"
    r = chat(port, u8, stream=True)
    is_(reassemble(sse(r.body)), "Sim answer: " + u8 + " [end]", "UTF-8 reassembles")
    split = False
    for c in r.chunks:
        try:
            c.decode("utf-8")
        except UnicodeDecodeError:
            split = True
    ok(split, "a write splits a UTF-8 character")

    r = chat(port, "hello", stream=True, user="crlf")
    ok(b"\r\n\r\n" in r.body and b"\n\n" not in r.body.replace(b"\r\n", b""),
       "user crlf gives CRLF line ends")
    r = chat(port, "hello [[sim:crlf]]", stream=True)
    ok(b"data: [DONE]\r\n\r\n" in r.body, "crlf fault gives CRLF line ends")

    r = chat(port, "one two three four five six", max_tokens=3)
    o = json.loads(r.body)
    is_((content(r), o["choices"][0]["finish_reason"]),
        ("Sim answer: one", "length"), "max_tokens truncates with length")

    # JSON-schema answers.
    routes = [
        ("Show me my patient record", "patient"),
        ("Search the web for the latest flu news", "web"),
        ("Add ibuprofen 200 mg twice daily", "add_treatment"),
        ("Please navigate to settings", "ui_change"),
        ("show the vitals panel", "ui_change"),
        ("I have a headache and fever", "medical"),
        ("Tell me a story", "text"),
    ]
    for text, want in routes:
        r = chat(port, text, system='Reply as {"route": "..."}')
        is_(json.loads(content(r)), {"route": want}, "route %s" % want)
    r = chat(port, "Tell me a story", system='{"route"', stream=True)
    is_(reassemble(sse(r.body)), '{"route":"text"}', "streamed JSON answer")

    is_(json.loads(content(chat(port, "My name is Ana", system='{"remember": true}'))),
        {"remember": True, "relevant": []}, "remember true")
    is_(json.loads(content(chat(port, "What time is it", system='{"remember"'))),
        {"remember": False, "relevant": []}, "remember false")
    is_(json.loads(content(chat(
        port, "My name is Ana, I am 42 years old and allergic to penicillin. "
              "I take metformin daily.", system='{"facts": {}}'))),
        {"facts": {"name": "Ana", "age": "42", "allergy": "penicillin",
                   "medication": "metformin daily"}}, "facts extracted")
    is_(json.loads(content(chat(port, "nothing here", system='{"facts"'))),
        {"facts": {}}, "no facts")
    actions = [
        ("Add ibuprofen 200 mg twice daily",
         {"type": "add_treatment", "name": "ibuprofen", "dose": "200 mg",
          "frequency": "twice daily", "start_date": None}),
        ("Prescribe amoxicillin 500mg, three times daily. Thanks",
         {"type": "add_treatment", "name": "amoxicillin", "dose": "500 mg",
          "frequency": "three times daily", "start_date": None}),
        ("Go to Settings", {"type": "navigate", "target": "settings"}),
        ("open the Lab panel", {"type": "show_panel", "panel": "lab"}),
        ("show the Vitals panel", {"type": "show_panel", "panel": "vitals"}),
        ("hello", {"type": "none"}),
    ]
    for text, want in actions:
        is_(json.loads(content(chat(port, text, system='{"action"'))),
            {"action": want}, "action %s" % want["type"])

    # Faults.
    r = chat(port, "hi [[sim:500]]")
    ok(r.status == 500 and json.loads(r.body)["error"]["type"] == "server_error",
       "500 fault", r.body)
    r = chat(port, "hi [[sim:429]]", stream=True)
    ok(r.status == 429 and r.headers.get("retry-after") == "1" and
       "error" in json.loads(r.body), "429 fault with Retry-After")
    r = chat(port, "hi [[sim:slow=400]]", stream=True)
    ok(r.t1 - r.t0 >= 0.4 and reassemble(sse(r.body)).startswith("Sim answer"),
       "slow=400 delays the answer")
    r = chat(port, "hi [[sim:500@route]]")
    is_(r.status, 200, "scoped fault skips other nodes")
    r = chat(port, "hi [[sim:500@route]]", system='{"route"')
    is_(r.status, 500, "scoped fault hits its node")
    r = chat(port, "one two three four [[sim:cut]]", stream=True)
    ok(r.status == 200 and not r.complete and b"[DONE]" not in r.body and
       reassemble(sse(r.body)) == "Sim answer:", "cut after 2 tokens", r.body)
    r = chat(port, "one two three [[sim:malformed]]", stream=True)
    bad = 0
    for k, d in sse(r.body):
        if k == "data" and d != "[DONE]":
            try:
                json.loads(d)
            except ValueError:
                bad += 1
    ok(bad == 1 and sse(r.body)[-1] == ("data", "[DONE]"), "malformed data line mid-stream")
    r = chat(port, "hi [[sim:malformed]]")
    try:
        json.loads(r.body)
        good = True
    except ValueError:
        good = False
    ok(r.status == 200 and not good, "malformed plain body")
    r = chat(port, "hi [[sim:shape]]", stream=True)
    ok(("data", '{"choices":"nope"}') in sse(r.body), "shape fault streamed")
    is_(json.loads(chat(port, "hi [[sim:shape]]").body), {"foo": 1}, "shape fault plain")
    is_(content(chat(port, "hi [[sim:shape]]", system='{"route"')),
        '{"unexpected":true}', "shape fault in JSON mode")

    # stall: two tokens, then silence until we hang up; llm_open follows.
    seen = {}

    def two_tokens(raw):
        seen["raw"] = raw
        return raw.count(b'"content":"') >= 3
    r = request(port, "POST", "/v1/chat/completions",
                {"stream": True, "messages": [{"role": "user", "content": "a b c d [[sim:stall]]"}]},
                timeout=5, close_after=two_tokens)
    ok(r.hung_up and b"[DONE]" not in seen["raw"], "stall sends tokens then holds")
    t = time.time()
    while time.time() - t < 3 * SLOW and stats(port)["llm_open"] != 0:
        time.sleep(0.05)
    is_(stats(port)["llm_open"], 0, "llm_open drops when the client leaves")

    r = request(port, "POST", "/v1/chat/completions",
                {"stream": True, "messages": [{"role": "user",
                                               "content": "caf\u00e9 [[sim:split]]"}]})
    raw = r.body
    ok(b'caf\xc3"' in raw and b'"content":"\xa9"' in raw,
       "split: a delta ends inside a character, the next holds its rest", raw[:600])
    r = request(port, "POST", "/v1/chat/completions",
                {"response_format": {"type": "json_object"},
                 "messages": [{"role": "user", "content": "route it"}]})
    ok(r.status == 400 and "word 'json'" in json.loads(r.body)["error"]["message"],
       "400 on json_object without the word json, as OpenAI", r.body)
    r = request(port, "POST", "/v1/chat/completions",
                {"response_format": {"type": "json_object"},
                 "messages": [{"role": "system", "content": "Answer in JSON."},
                              {"role": "user", "content": "route it"}]})
    is_(r.status, 200, "json_object with the word JSON: 200")
    r = request(port, "POST", "/v1/chat/completions", "{not json")
    ok(r.status == 400 and json.loads(r.body)["error"]["type"] == "invalid_request_error",
       "400 on invalid JSON")
    r = request(port, "POST", "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "x", "ts": 1}]})
    ok(r.status == 400 and "'ts' was unexpected" in json.loads(r.body)["error"]["message"],
       "400 on an unknown message member, as OpenAI", r.body)
    r = request(port, "POST", "/v1/chat/completions",
                {"messages": [{"role": "robot", "content": "x"}]})
    is_(r.status, 400, "400 on an unknown role")
    r = request(port, "POST", "/v1/chat/completions",
                {"messages": [{"role": "system", "content": "s", "name": "n"},
                              {"role": "user", "content": "x"}]})
    is_(r.status, 200, "name is a known member")
    big = b'{"messages":[{"role":"user","content":"' + b"a" * (1024 * 1024) + b'"}]}'
    r = request(port, "POST", "/v1/chat/completions", big)
    is_(r.status, 413, "413 over 1 MiB")

    # Expect: 100-continue is answered before the body is sent.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    b = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(b))
    first = s.recv(100)
    s.sendall(b)
    rest = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    s.close()
    ok(first.startswith(b"HTTP/1.1 100 Continue") and b"Sim answer: x [end]" in rest,
       "Expect: 100-continue")

    # Search.
    r = request(port, "GET", "/search?q=caf%C3%A9+latest%20news%21&format=json")
    o = json.loads(r.body)
    ok(o["query"] == "caf\u00e9 latest news!" and len(o["results"]) == 3 and
       o["number_of_results"] == 3, "search decodes q", o.get("query"))
    ok(all(x["url"].startswith("https://example.org/") and "caf\u00e9 latest" in x["title"]
           and x["engine"] == "sim" for x in o["results"]), "search results shape")
    r = request(port, "GET", "/search?q=x+%5B%5Bsim%3A500%5D%5D&format=json")
    is_(r.status, 500, "search 500 by marker")
    r = request(port, "GET", "/search?q=x+[[sim:malformed]]&format=json")
    ok(r.status == 200 and r.body.startswith(b"{") and not r.body.endswith(b"}"),
       "search malformed by marker")

    r = request(port, "GET", "/search?q=x+%5B%5Bsim%3Aslow%3D300%5D%5D&format=json")
    ok(r.status == 200 and r.t1 - r.t0 >= 0.3, "search slow=300 by marker")

    # FHIR.
    r = request(port, "GET", "/fhir/Patient/p1")
    ok(r.status == 200 and r.headers.get("content-type") == "application/fhir+json",
       "FHIR p1 200 fhir+json")
    is_(json.loads(r.body), {"resourceType": "Patient", "id": "p1",
        "name": [{"use": "official", "family": "Doe", "given": ["Jane"]}],
        "gender": "female", "birthDate": "1980-04-01"}, "FHIR p1 resource")
    r = request(port, "GET", "/fhir/Patient/missing")
    ok(r.status == 404 and json.loads(r.body)["resourceType"] == "OperationOutcome",
       "FHIR missing 404 OperationOutcome")
    is_(request(port, "GET", "/fhir/Patient/gone").status, 410, "FHIR gone 410")
    is_(request(port, "GET", "/fhir/Patient/sim-500").status, 500, "FHIR sim-500")
    r = request(port, "GET", "/fhir/Patient/sim-malformed")
    ok(r.status == 200 and not r.body.endswith(b"}"), "FHIR sim-malformed")
    is_(request(port, "GET", "/nowhere").status, 404, "404 elsewhere")

    st = stats(port)
    ok(set(st) >= {"llm_open", "llm_requests", "http_open", "unmute_open",
                   "unmute_waiting", "unmute_sessions"} and st["llm_requests"] > 20
       and st["http_open"] == 1, "stats", st)

    # A global fault with a scope.
    p2, line2 = start("--http-fault", "500@search")
    try:
        port2 = int(line2.split()[2].split(":")[1])
        ok(request(port2, "GET", "/search?q=a&format=json").status == 500 and
           chat(port2, "hi").status == 200, "--http-fault 500@search")
    finally:
        p2.terminate()
        p2.wait(5)
    p3 = subprocess.run([SIM, "--http-port", "0", "--http-fault", "bogus"],
                        capture_output=True, timeout=5)
    ok(p3.returncode != 0, "unknown --http-fault refused")
    return 0


if __name__ == "__main__":
    main()
    tap.done()
