/*
 * The real nodes with a fake LLM (no network): the tagger's fallback,
 * the degrading of semantic_precheck/semantic_update, memory_update,
 * the medical safety note, ui_action checks, the patient record from
 * the request, web without a search service; and the pure helpers of
 * search.c, fhir.c and prompts.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir.h"
#include "prompts.h"
#include "search.h"
#include "tap.h"
#include "workflow.h"

/* The fake LLM's answers, by the schema marker of the system prompt. */
static struct {
	const char	*marker;
	const char	*text;		/* NULL: fail with err */
	enum terr	 err;
} script[8];
static int	 nscript;
static int	 calls;
static char	 last_prose[4096];	/* messages of the last prose call */

static void
answer(const char *marker, const char *text, enum terr err)
{
	script[nscript].marker = marker;
	script[nscript].text = text;
	script[nscript].err = err;
	nscript++;
}

static enum terr
fake_chat(const struct llm_call *call, struct llm_result *res)
{
	struct json_object	*sys = json_object_array_get_idx(call->messages, 0);
	struct json_object	*content;
	const char		*s, *p;
	int			 i;

	calls++;
	memset(res, 0, sizeof(*res));
	if (!call->json_mode)
		snprintf(last_prose, sizeof(last_prose), "%s",
		    json_object_to_json_string_ext(call->messages,
		    JSON_C_TO_STRING_PLAIN));
	json_object_object_get_ex(sys, "content", &content);
	s = json_object_get_string(content);
	for (i = 0; i < nscript; i++) {
		if (script[i].marker != NULL && strstr(s, script[i].marker) == NULL)
			continue;
		if (script[i].marker == NULL && strstr(s, "{\"") != NULL &&
		    call->json_mode)
			continue;
		if (script[i].text == NULL) {
			res->err = script[i].err;
			snprintf(res->message, sizeof(res->message), "fake %s",
			    terr_code(script[i].err));
			return res->err;
		}
		res->text = strdup(script[i].text);
		/* Stream prose word by word. */
		if (call->on_token != NULL)
			for (p = script[i].text; *p != '\0'; p++)
				if (call->on_token(call->arg, p, 1))
					return res->err = TERR_STREAM_TIMEOUT;
		return res->err = TERR_OK;
	}
	res->err = TERR_LLM_UNAVAILABLE;
	return res->err;
}

/* The events of one run, as a list of (type, data). */
static struct json_object	*events;

static int
rec(void *arg, const char *type, struct json_object *d)
{
	struct json_object *e = json_object_new_object();

	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "data", d);
	json_object_array_add(events, e);
	return 0;
}

/* The data of the first event of type, or NULL. */
static struct json_object *
ev(const char *type)
{
	struct json_object	*e, *t, *d;
	size_t			 i;

	for (i = 0; i < json_object_array_length(events); i++) {
		e = json_object_array_get_idx(events, i);
		json_object_object_get_ex(e, "type", &t);
		if (strcmp(json_object_get_string(t), type) == 0) {
			json_object_object_get_ex(e, "data", &d);
			return d;
		}
	}
	return NULL;
}

static const char *
ev_str(const char *type, const char *key)
{
	struct json_object *d = ev(type), *v;

	if (d == NULL || !json_object_object_get_ex(d, key, &v) || v == NULL)
		return NULL;
	return json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) :
	    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

static struct conf	 conf;

/* Run the real graph on a request body; return how it ended. */
static enum wf_result
run(const char *body)
{
	struct req	 req;
	struct wf	 w;
	enum wf_result	 res;
	atomic_int	 stop = 0;
	char		 field[64];

	json_object_put(events);
	events = json_object_new_array();
	calls = 0;
	if (req_parse(&req, body, strlen(body), field, sizeof(field)) !=
	    TERR_OK) {
		ok(0, "request parses: %s", body);
		return WF_ERROR;
	}
	wf_init(&w, &conf, &req, &stop);
	w.emit = rec;
	w.chat = fake_chat;
	w.tag = "test";
	res = wf_run(&w, wf_node_fns);
	wf_free(&w);
	req_free(&req);
	nscript = 0;
	return res;
}

static void
test_tagger(void)
{
	answer("{\"route\"", "```json\n{\"route\": \"web\"}\n```", TERR_OK);
	answer(NULL, "ok", TERR_OK);
	is_int(run("{\"message\":\"hi\"}"), WF_COMPLETE, "tagged run");
	is_str(ev_str("route_tagged", "route"), "web", "LLM's route");
	is_str(ev_str("route_tagged", "by"), "llm", "by llm");

	answer("{\"route\"", NULL, TERR_UPSTREAM_HTTP);
	answer(NULL, "ok", TERR_OK);
	run("{\"message\":\"I have a fever\"}");
	is_str(ev_str("route_tagged", "route"), "medical", "LLM fails: keywords");
	is_str(ev_str("route_tagged", "by"), "fallback", "by fallback");

	answer("{\"route\"", "Medical.", TERR_OK);
	answer(NULL, "ok", TERR_OK);
	run("{\"message\":\"hello\"}");
	is_str(ev_str("route_tagged", "route"), "medical", "a bare route word");
	is_str(ev_str("route_tagged", "by"), "llm", "  by llm");

	answer("{\"route\"", "{\"route\": \"surgery\"}", TERR_OK);
	answer(NULL, "ok", TERR_OK);
	run("{\"message\":\"go to settings\"}");
	is_str(ev_str("route_tagged", "by"), "fallback", "invalid tag: fallback");
	is_str(ev_str("route_tagged", "route"), "ui_change", "fallback's route");

	answer(NULL, "ok", TERR_OK);
	run("{\"message\":\"hi\",\"route\":\"text\"}");
	is_str(ev_str("route_tagged", "by"), "forced", "forced route");
	ok(ev("node_started") != NULL, "forced: the tagger node still runs");
}

static void
test_text_route(void)
{
	answer("{\"remember\"", "{\"remember\": true, \"relevant\": []}", TERR_OK);
	answer("{\"facts\"", "Facts: {\"facts\": {\"name\": \"Ada\"}}", TERR_OK);
	answer(NULL, "Hello Ada", TERR_OK);
	is_int(run("{\"message\":\"I am Ada\",\"route\":\"text\","
	    "\"memory\":{\"city\":\"Oslo\",\"name\":\"Bob\"}}"), WF_COMPLETE,
	    "text route");
	is_str(ev_str("memory_update", "facts"),
	    "{\"city\":\"Oslo\",\"name\":\"Ada\"}", "memory_update: merged");
	is_str(ev_str("workflow_complete", "answer"), "Hello Ada", "answer");
	is_str(ev_str("agent_text_chunk", "node"), "postprocess", "chunk node");
	is_int(calls, 3, "three LLM calls");

	/* Facts already known: no memory_update. */
	answer("{\"remember\"", "{\"remember\": true}", TERR_OK);
	answer("{\"facts\"", "{\"facts\": {\"name\": \"Ada\"}}", TERR_OK);
	answer(NULL, "Hi", TERR_OK);
	run("{\"message\":\"I am Ada\",\"route\":\"text\","
	    "\"memory\":{\"name\":\"Ada\"}}");
	ok(ev("memory_update") == NULL, "nothing new: no memory_update");
	ok(strstr(ev_str("workflow_complete", "nodes"), "semantic_update") != NULL,
	    "semantic_update ran");

	/* Precheck and update degrade silently. */
	answer("{\"remember\"", "{\"remember\": \"maybe\"}", TERR_OK);
	answer(NULL, "Hi", TERR_OK);
	is_int(run("{\"message\":\"I am Ada\",\"route\":\"text\"}"), WF_COMPLETE,
	    "precheck invalid: completes");
	ok(strstr(ev_str("workflow_complete", "nodes"), "semantic_update") == NULL,
	    "precheck invalid: no semantic_update");
	answer("{\"remember\"", "{\"remember\": true}", TERR_OK);
	answer("{\"facts\"", NULL, TERR_UPSTREAM_TIMEOUT);
	answer(NULL, "Hi", TERR_OK);
	is_int(run("{\"message\":\"I am Ada\",\"route\":\"text\"}"), WF_COMPLETE,
	    "update fails: completes");
	ok(ev("memory_update") == NULL && ev("workflow_error") == NULL,
	    "update fails: silent");

	/*
	 * History goes to the LLM as {role, content} only: OpenAI rejects
	 * a message with any other member.
	 */
	answer("{\"remember\"", "{\"remember\": false}", TERR_OK);
	answer(NULL, "Hi", TERR_OK);
	run("{\"message\":\"and now?\",\"route\":\"text\",\"history\":["
	    "{\"role\":\"user\",\"content\":\"hi\",\"ts\":1},"
	    "{\"role\":\"assistant\",\"content\":\"hello\",\"id\":\"m2\"}]}");
	ok(strstr(last_prose, ",{\"role\":\"user\",\"content\":\"hi\"},"
	    "{\"role\":\"assistant\",\"content\":\"hello\"},"
	    "{\"role\":\"user\",\"content\":\"and now?\"}]") != NULL,
	    "history passed as role and content only: %s", last_prose);

	/* Postprocess failure is the workflow's. */
	answer("{\"remember\"", "{\"remember\": false}", TERR_OK);
	answer(NULL, NULL, TERR_LLM_UNAVAILABLE);
	is_int(run("{\"message\":\"hi\",\"route\":\"text\"}"), WF_ERROR,
	    "postprocess fails");
	is_str(ev_str("workflow_error", "code"), "llm_unavailable", "LLM's code");
	is_str(ev_str("workflow_error", "node"), "postprocess", "failing node");
}

static void
test_medical(void)
{
	answer("{\"facts\"", "{\"facts\": {}}", TERR_OK);
	answer(NULL, "Rest and drink water.", TERR_OK);
	run("{\"message\":\"headache\",\"route\":\"medical\","
	    "\"patient\":{\"name\":\"Ada\",\"allergies\":[\"aspirin\"]}}");
	ok(ev_str("workflow_complete", "answer") != NULL &&
	    strstr(ev_str("workflow_complete", "answer"), "doctor") != NULL,
	    "safety note added when missing");
	ok(ev("memory_update") == NULL, "empty facts: no memory_update");

	answer("{\"facts\"", "{\"facts\": {}}", TERR_OK);
	answer(NULL, "See a doctor if it persists.", TERR_OK);
	run("{\"message\":\"headache\",\"route\":\"medical\"}");
	is_str(ev_str("workflow_complete", "answer"),
	    "See a doctor if it persists.", "model's own note kept, no second");
}

static void
test_ui_and_patient_and_web(void)
{
	answer("{\"action\"", "{\"action\": {\"type\": \"navigate\", "
	    "\"target\": \"home\"}}", TERR_OK);
	is_int(run("{\"message\":\"go home\",\"route\":\"ui_change\"}"),
	    WF_COMPLETE, "ui_change");
	is_str(ev_str("ui_action", "action"),
	    "{\"type\":\"navigate\",\"target\":\"home\"}", "ui_action");
	answer("{\"action\"", "{\"action\": {\"type\": \"rm -rf\"}}", TERR_OK);
	is_int(run("{\"message\":\"go\",\"route\":\"ui_change\"}"), WF_ERROR,
	    "unknown action");
	is_str(ev_str("workflow_error", "code"), "upstream_malformed",
	    "rejected action: upstream_malformed");
	ok(ev("ui_action") == NULL, "no ui_action");
	answer("{\"action\"", "I cannot do that.", TERR_OK);
	run("{\"message\":\"go\",\"route\":\"add_treatment\"}");
	is_str(ev_str("workflow_error", "code"), "upstream_malformed",
	    "prose instead of JSON: upstream_malformed");

	is_int(run("{\"message\":\"me\",\"route\":\"patient\",\"patient\":"
	    "{\"id\":\"p7\",\"sex\":\"female\"}}"), WF_COMPLETE, "patient");
	is_str(ev_str("patient_info", "source"), "request", "from the request");
	is_str(ev_str("patient_info", "patient"), "{\"id\":\"p7\","
	    "\"sex\":\"female\"}", "the request's patient used as is");
	is_int(calls, 0, "patient: no LLM call");
	run("{\"message\":\"me\",\"route\":\"patient\",\"patient\":{\"id\":\"p7\","
	    "\"name\":\"Ann\",\"conditions\":[\"asthma\"],\"mrn\":\"123\"}}");
	is_str(ev_str("patient_info", "patient"), "{\"id\":\"p7\",\"name\":\"Ann\","
	    "\"conditions\":[\"asthma\"],\"mrn\":\"123\"}",
	    "the request's patient used as is, members of its own too");
	is_str(ev_str("workflow_complete", "answer"), "Patient record: Ann.",
	    "summary of the request's patient");
	run("{\"message\":\"me\",\"route\":\"patient\",\"patient\":{\"id\":\"p7\","
	    "\"name\":null}}");
	is_str(ev_str("patient_info", "source"), "none",
	    "id and null members only: an id-only patient");
	run("{\"message\":\"me\",\"route\":\"patient\",\"patient\":{\"id\":\"p7\"}}");
	is_str(ev_str("patient_info", "source"), "none", "id only, no FHIR: none");
	is_str(ev_str("workflow_complete", "answer"), "", "no record: empty answer");

	answer(NULL, "No results, but here is what I know.", TERR_OK);
	is_int(run("{\"message\":\"news\",\"route\":\"web\"}"), WF_COMPLETE,
	    "web without a search service");
	is_str(ev_str("web_results", "results"), "[]", "web: no results");
}

static void
test_helpers(void)
{
	struct json_object	*r, *p;
	const char		*body = "{\"results\":["
	    "{\"title\":\"A\",\"url\":\"https://a.example/\",\"content\":\"aa\"},"
	    "{\"title\":\"B\",\"url\":\"javascript:alert(1)\",\"content\":\"b\"},"
	    "{\"title\":3,\"url\":\"http://c.example/\"},"
	    "{\"title\":\"D\",\"url\":\"http://d.example/\",\"content\":\"d\"}]}";
	char			*s;

	r = search_parse(body, strlen(body), 2);
	is_str(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE),
	    "[{\"title\":\"A\",\"url\":\"https://a.example/\",\"snippet\":\"aa\"},"
	    "{\"title\":\"\",\"url\":\"http://c.example/\",\"snippet\":\"\"}]",
	    "search: non-http skipped, bad types blanked, max kept");
	json_object_put(r);
	ok(search_parse("{\"answers\":[]}", 14, 5) == NULL, "search: no results");
	ok(search_parse("<html>", 6, 5) == NULL, "search: not JSON");

	r = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"p1\","
	    "\"name\":[{\"given\":[\"Jane\",\"Q\"],\"family\":\"Doe\"}],"
	    "\"gender\":\"female\",\"birthDate\":\"1980-04-01\"}");
	p = fhir_map_patient(r);
	is_str(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN),
	    "{\"id\":\"p1\",\"name\":\"Jane Q Doe\",\"birth_date\":\"1980-04-01\","
	    "\"sex\":\"female\",\"conditions\":[],\"medications\":[],"
	    "\"allergies\":[]}", "FHIR Patient mapped");
	json_object_put(p);
	json_object_put(r);
	r = json_tokener_parse("{\"resourceType\":\"Patient\",\"name\":"
	    "[{\"text\":\"Dr. X\"}]}");
	p = fhir_map_patient(r);
	is_str(json_object_get_string(json_object_object_get(p, "name")),
	    "Dr. X", "FHIR name text");
	json_object_put(p);
	json_object_put(r);
	r = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"p2\","
	    "\"name\":[{\"use\":\"old\",\"family\":\"Roe\",\"given\":[\"Jo\"]},"
	    "{\"use\":\"nickname\",\"given\":[\"JJ\"]},"
	    "{\"use\":\"official\",\"family\":\"Smith\",\"given\":[\"Jo\"]}]}");
	p = fhir_map_patient(r);
	is_str(json_object_get_string(json_object_object_get(p, "name")),
	    "Jo Smith", "FHIR: the official name, not an old one listed first");
	json_object_put(p);
	json_object_put(r);
	r = json_tokener_parse("{\"resourceType\":\"Patient\",\"name\":"
	    "[{\"use\":\"usual\",\"text\":\"Jo\"},{\"use\":\"maiden\","
	    "\"family\":\"Roe\"}]}");
	p = fhir_map_patient(r);
	is_str(json_object_get_string(json_object_object_get(p, "name")),
	    "Jo", "FHIR: a usual name before others");
	json_object_put(p);
	json_object_put(r);
	r = json_tokener_parse("{\"resourceType\":\"OperationOutcome\"}");
	ok(fhir_map_patient(r) == NULL, "not a Patient");
	json_object_put(r);
	ok(fhir_valid_id("p-1.2") && !fhir_valid_id("") &&
	    !fhir_valid_id("../x") && !fhir_valid_id("a b") &&
	    !fhir_valid_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
	    "FHIR ids");

	ok(strstr(prompt_default(LLM_NODE_TAGGER), "{\"route\": \"<one of: text, "
	    "patient, web, medical, ui_change, add_treatment>\"}") != NULL,
	    "tagger prompt states its schema");
	ok(strstr(prompt_default(LLM_NODE_PRECHECK), "{\"remember\"") &&
	    strstr(prompt_default(LLM_NODE_UPDATE), "{\"facts\"") &&
	    strstr(prompt_default(LLM_NODE_UI_CHANGE), "{\"action\""),
	    "JSON prompts carry their markers");
	conf.llm.node[LLM_NODE_TAGGER].prompt = "Route it.";
	s = prompt_build(&conf, LLM_NODE_TAGGER, "ctx");
	ok(strncmp(s, "Route it.", 9) == 0 && strstr(s, "{\"route\"") &&
	    strstr(s, "ctx"), "configured prompt gets schema and context");
	free(s);
	conf.llm.node[LLM_NODE_TAGGER].prompt = "Say {\"route\": \"x\"} as json";
	s = prompt_build(&conf, LLM_NODE_TAGGER, NULL);
	is_str(s, "Say {\"route\": \"x\"} as json",
	    "prompt with its marker kept as is");
	free(s);
	conf.llm.node[LLM_NODE_TAGGER].prompt = "Say {\"route\": \"x\"}";
	s = prompt_build(&conf, LLM_NODE_TAGGER, NULL);
	is_str(s, "Say {\"route\": \"x\"}\nAnswer in JSON.",
	    "marker without the word JSON: a line says it (OpenAI needs it)");
	free(s);
	conf.llm.node[LLM_NODE_POSTPROCESS].prompt = "Be kind.";
	s = prompt_build(&conf, LLM_NODE_POSTPROCESS, NULL);
	is_str(s, "Be kind.", "prose prompt: no JSON line");
	free(s);
	conf.llm.node[LLM_NODE_POSTPROCESS].prompt = NULL;
	conf.llm.node[LLM_NODE_TAGGER].prompt = NULL;
}

int
main(void)
{
	test_tagger();
	test_text_route();
	test_medical();
	test_ui_and_patient_and_web();
	test_helpers();
	json_object_put(events);
	return done();
}
