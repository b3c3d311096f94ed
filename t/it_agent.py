#!/usr/bin/env python3
"""The agent path against tandem-sim: every route tagged by the LLM and
forced, the content of its events, every LLM/search/FHIR fault (a
workflow_error with the right code, or the keyword fallback, or a silent
degrade), a client that leaves mid-answer, the stream deadline."""
import time

from tandemtest import Stack, check_framing, tap

NODES = {
    "text": ["llm_tagger", "processing_router", "semantic_precheck", "postprocess"],
    "text+facts": ["llm_tagger", "processing_router", "semantic_precheck", "postprocess",
                   "semantic_update"],
    "patient": ["llm_tagger", "processing_router", "patient"],
    "web": ["llm_tagger", "processing_router", "web", "postprocess"],
    "medical": ["llm_tagger", "processing_router", "semantic_update", "medical"],
    "ui_change": ["llm_tagger", "processing_router", "ui_change"],
    "add_treatment": ["llm_tagger", "processing_router", "ui_change"],
}


def agent(r):
    return [e for e in r.events if e["path"] == "agent"]


def data(r, typ):
    e = r.first(typ)
    return e["data"] if e else None


def check_common(r, name):
    """Framing, one agent ending, node_started/complete paired."""
    probs = check_framing(r)
    ends = [e["type"] for e in r.events if e["type"] in ("workflow_complete", "workflow_error")]
    if len(ends) != 1:
        probs.append("agent endings: %r" % ends)
    started = [e["data"]["node"] for e in r.of("node_started")]
    done = [e["data"]["node"] for e in r.of("node_complete")]
    if ends == ["workflow_complete"] and started != done:
        probs.append("started %r != complete %r" % (started, done))
    if ends == ["workflow_complete"] and data(r, "workflow_complete")["nodes"] != started:
        probs.append("nodes %r != started %r" % (data(r, "workflow_complete")["nodes"], started))
    if any(not isinstance(e["data"].get("elapsed_ms"), int) for e in r.of("node_complete")):
        probs.append("node_complete without elapsed_ms")
    return tap.ok(not probs, "%s: framing and agent event shape" % name, "\n".join(probs))


def complete(r, name, route, nodes, by):
    check_common(r, name)
    wc = data(r, "workflow_complete")
    tap.ok(wc is not None, "%s: workflow_complete" % name, r.types())
    if wc is None:
        return None
    tap.is_(data(r, "route_tagged"), {"route": route, "by": by}, "%s: route_tagged" % name)
    tap.is_(wc["route"], route, "%s: workflow_complete.route" % name)
    tap.is_(wc["nodes"], NODES[nodes], "%s: nodes in order" % name)
    tap.ok(isinstance(wc["answer"], str) and isinstance(wc["elapsed_ms"], int),
           "%s: answer and elapsed_ms" % name, wc)
    tap.is_(data(r, "stream_complete")["agent"], "complete", "%s: stream_complete.agent" % name)
    return wc


def failed(r, name, node, codes):
    check_common(r, name)
    we = data(r, "workflow_error")
    tap.ok(we is not None and we["node"] == node and we["code"] in codes and we["message"],
           "%s: workflow_error at %s with %s" % (name, node, "/".join(codes)), we or r.types())
    tap.is_(data(r, "stream_complete")["agent"], "error", "%s: stream_complete.agent error" % name)
    tap.ok(r.first("workflow_complete") is None, "%s: no workflow_complete" % name)


def chunks(r, node):
    return "".join(e["data"]["text"] for e in r.of("agent_text_chunk") if e["data"]["node"] == node)


with Stack(conf={"search.max_results": 2}) as s:
    # --- every route, tagged by the LLM ---
    r = s.stream({"message": "Hello, my name is Ada", "voice": False,
                  "memory": {"city": "Oslo"}})
    wc = complete(r, "text", "text", "text+facts", "llm")
    tap.is_(data(r, "memory_update"), {"facts": {"city": "Oslo", "name": "Ada"}},
            "text: memory_update merges request memory and new facts")
    text = chunks(r, "postprocess")
    tap.is_(text, "Sim answer: Hello, my name is Ada [end]", "text: streamed answer")
    tap.is_(wc and wc["answer"], text, "text: answer is the streamed text")
    tap.ok(len(r.of("agent_text_chunk")) > 3, "text: streamed in several chunks")

    r = s.stream({"message": "and now?", "voice": False, "route": "text",
                  "history": [{"role": "user", "content": "hi", "ts": 1},
                              {"role": "assistant", "content": "hello", "id": "m2"}]})
    complete(r, "history with extra members", "text", "text", "forced")

    # a server whose deltas end inside a character: valid UTF-8 events all the same
    msg = "caf\u00e9 ol\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u65e5\u672c [[sim:split@prose]]"
    r = s.stream({"message": msg, "voice": False, "route": "text"})
    wc = complete(r, "split characters", "text", "text", "forced")
    tap.is_(chunks(r, "postprocess"), "Sim answer: %s [end]" % msg,
            "split characters: put back together in agent_text_chunk")
    tap.ok(all(e["data"]["text"] and "\ufffd" not in e["data"]["text"]
               for e in r.of("agent_text_chunk")), "split characters: no empty or U+FFFD chunk")

    r = s.stream({"message": "How are you today?", "voice": False})
    complete(r, "text without facts", "text", "text", "llm")
    tap.ok(r.first("memory_update") is None, "text without facts: no memory_update")

    r = s.stream({"message": "search the latest flu news", "voice": False})
    wc = complete(r, "web", "web", "web", "llm")
    res = (data(r, "web_results") or {}).get("results")
    tap.ok(isinstance(res, list) and len(res) == 2 and
           all(set(x) == {"title", "url", "snippet"} and x["url"].startswith("http")
               for x in res), "web: top max_results results {title,url,snippet}", res)
    tap.ok(r.types().index("web_results") < r.types().index("agent_text_chunk"),
           "web: results before the summary")
    tap.ok(chunks(r, "postprocess").startswith("Sim answer: search the latest"),
           "web: postprocess summary streamed")

    r = s.stream({"message": "I have a bad headache", "voice": False})
    wc = complete(r, "medical", "medical", "medical", "llm")
    med = chunks(r, "medical")
    tap.ok(med.startswith("Sim answer: I have a bad headache") and "doctor" in med,
           "medical: streamed answer with a safety note", med)
    tap.is_(wc and wc["answer"], med, "medical: answer is the streamed text")

    r = s.stream({"message": "show my patient record", "voice": False,
                  "patient": {"id": "p1"}})
    wc = complete(r, "patient fhir", "patient", "patient", "llm")
    pi = data(r, "patient_info")
    tap.ok(pi and pi["source"] == "fhir" and pi["patient"]["name"] == "Jane Doe" and
           pi["patient"]["id"] == "p1" and
           set(pi["patient"]) == {"id", "name", "birth_date", "sex", "conditions",
                                  "medications", "allergies"},
           "patient: FHIR record mapped to SPEC fields", pi)
    tap.ok(wc and "Jane Doe" in wc["answer"], "patient: summary answer", wc)

    r = s.stream({"message": "add metformin 500 mg twice daily", "voice": False})
    complete(r, "add_treatment", "add_treatment", "add_treatment", "llm")
    tap.is_(data(r, "ui_action"), {"action": {"type": "add_treatment", "name": "metformin",
                                              "dose": "500 mg", "frequency": "twice daily",
                                              "start_date": None}},
            "add_treatment: ui_action")

    r = s.stream({"message": "go to settings", "voice": False})
    complete(r, "navigate", "ui_change", "ui_change", "llm")
    tap.is_(data(r, "ui_action"), {"action": {"type": "navigate", "target": "settings"}},
            "navigate: ui_action")

    r = s.stream({"message": "show the vitals panel", "voice": False})
    complete(r, "show_panel", "ui_change", "ui_change", "llm")
    tap.is_(data(r, "ui_action"), {"action": {"type": "show_panel", "panel": "vitals"}},
            "show_panel: ui_action")

    # --- forced routes ---
    for route, msg, nodes in (("text", "search the web", "text"),
                              ("web", "hello", "web"),
                              ("medical", "hello", "medical"),
                              ("add_treatment", "add aspirin 81 mg daily", "add_treatment")):
        r = s.stream({"message": msg, "voice": False, "route": route})
        complete(r, "forced %s" % route, route, nodes, "forced")
    r = s.stream({"message": "hello", "voice": False, "route": "patient",
                  "patient": {"id": "x9", "name": "Max Mustermann", "allergies": ["penicillin"]}})
    complete(r, "forced patient", "patient", "patient", "forced")
    tap.is_(data(r, "patient_info"),
            {"source": "request", "patient": {"id": "x9", "name": "Max Mustermann",
                                              "allergies": ["penicillin"]}},
            "patient: the request's record, used as is (SPEC 3.2)")
    r = s.stream({"message": "hello", "voice": False, "route": "patient"})
    complete(r, "patient none", "patient", "patient", "forced")
    tap.is_(data(r, "patient_info"), {"patient": None, "source": "none"}, "no patient: null, none")
    for pid in ("missing", "gone", "bad id!"):
        r = s.stream({"message": "hello", "voice": False, "route": "patient",
                      "patient": {"id": pid}})
        complete(r, "patient %s" % pid, "patient", "patient", "forced")
        tap.is_(data(r, "patient_info"), {"patient": None, "source": "none"},
                "patient %s: null, none" % pid)
    r = s.stream({"message": "hello", "voice": False, "route": "ui_change"})
    failed(r, "ui_change without an action", "ui_change", ["upstream_malformed"])

    # --- tagger faults: keyword fallback ---
    for f in ("500", "429", "malformed", "shape", "cut", "stall", "slow=6000"):
        r = s.stream({"message": "[[sim:%s@route]] I have a fever" % f, "voice": False})
        complete(r, "tagger %s" % f, "medical", "medical", "fallback")

    # --- precheck / update faults: silent degrade ---
    r = s.stream({"message": "my name is Ada [[sim:500@remember]]", "voice": False,
                  "route": "text"})
    complete(r, "precheck 500", "text", "text", "forced")
    tap.ok(r.first("memory_update") is None, "precheck 500: no memory_update")
    r = s.stream({"message": "my name is Ada [[sim:shape@facts]]", "voice": False,
                  "route": "text"})
    complete(r, "update shape", "text", "text+facts", "forced")
    tap.ok(r.first("memory_update") is None, "update shape: no memory_update")
    r = s.stream({"message": "headache, my name is Ada [[sim:500@facts]]", "voice": False,
                  "route": "medical"})
    complete(r, "medical update 500", "medical", "medical", "forced")

    # --- prose faults: workflow_error with the LLM's code ---
    for f, codes in (("500", ["upstream_http_error"]), ("429", ["upstream_http_error"]),
                     ("stall", ["upstream_timeout"]), ("cut", ["upstream_malformed"]),
                     ("shape", ["upstream_malformed"])):
        r = s.stream({"message": "hello [[sim:%s@prose]]" % f, "voice": False, "route": "text"})
        failed(r, "postprocess %s" % f, "postprocess", codes)
    r = s.stream({"message": "hello [[sim:500@prose]]", "voice": False, "route": "medical"})
    failed(r, "medical 500", "medical", ["upstream_http_error"])
    for f, code in (("500", "upstream_http_error"), ("shape", "upstream_malformed")):
        r = s.stream({"message": "go to settings [[sim:%s@action]]" % f, "voice": False})
        failed(r, "ui_change %s" % f, "ui_change", [code])

    # --- search and FHIR faults ---
    for f, code in (("500", "upstream_http_error"), ("malformed", "upstream_malformed"),
                    ("shape", "upstream_malformed")):
        r = s.stream({"message": "news [[sim:%s@search]]" % f, "voice": False, "route": "web"})
        failed(r, "search %s" % f, "web", [code])
    for pid, code in (("sim-500", "upstream_http_error"), ("sim-malformed", "upstream_malformed")):
        r = s.stream({"message": "hello", "voice": False, "route": "patient",
                      "patient": {"id": pid}})
        failed(r, "fhir %s" % pid, "patient", [code])

    # --- a client that leaves mid-answer: the LLM call closes ---
    ev = s.abort_stream({"message": "tell me a story [[sim:stall@prose]]", "voice": False,
                         "route": "text"}, after_event="agent_text_chunk")
    tap.ok(any(e["type"] == "agent_text_chunk" for e in ev.events), "left mid-answer")
    t0 = time.time()
    n = None
    while time.time() - t0 < 3:
        n = s.sim_stats().get("llm_open")
        if n == 0:
            break
        time.sleep(0.05)
    took = time.time() - t0
    tap.ok(n == 0 and took < 1.0, "llm_open drops to 0 within 1 s (%.2f s)" % took, n)

# A custom prompt without the schema: the schema is appended.
with Stack(conf={"node.llm_tagger.prompt": "Route the message.",
                 "search.timeout": "300ms", "fhir.timeout": "300ms"}) as s:
    r = s.stream({"message": "search the web for news", "voice": False})
    complete(r, "custom tagger prompt", "web", "web", "llm")
    r = s.stream({"message": "news [[sim:slow=2000@search]]", "voice": False, "route": "web"})
    failed(r, "search slow", "web", ["upstream_timeout"])
    tap.ok(r.times[-1] < 1.5, "search timeout honoured (%.2f s)" % r.times[-1])

# A slow tagger hits its own ceiling and the keyword classifier routes.
with Stack(conf={"node.llm_tagger.timeout": "700ms", "llm.first_token_timeout": "30s"}) as s:
    r = s.stream({"message": "I have a headache [[sim:slow=5000@route]]", "voice": False})
    complete(r, "slow tagger", "medical", "medical", "fallback")
    rt = [t for t, e in zip(r.times, r.events) if e["type"] == "route_tagged"]
    tap.ok(rt and rt[0] < 2.0, "tagger ceiling honoured (%.2f s)" % (rt[0] if rt else -1))

# The stream deadline while the LLM stalls: workflow_error stream_timeout.
with Stack(conf={"request_timeout": "1500ms", "llm.stall_timeout": "60s",
                 "unmute.connect_timeout": "500ms", "heartbeat_interval": "1s"}) as s:
    r = s.stream({"message": "hello [[sim:stall@prose]]", "voice": False, "route": "text"})
    check_framing(r)
    we = data(r, "workflow_error")
    tap.ok(we and we["code"] == "stream_timeout" and we["node"] == "postprocess",
           "deadline: workflow_error stream_timeout at postprocess", we)
    tap.is_(data(r, "stream_complete")["agent"], "timeout", "deadline: agent timeout")
    tap.ok(r.times[-1] < 3.0, "deadline: stream ends promptly (%.2f s)" % r.times[-1])

tap.done()
