/*
 * The nodes of the agent path (SPEC.md §2), each a function of struct
 * wf. LLM nodes build their system prompt (prompts.c) plus a context
 * section, call the LLM through w->chat, and either stream the answer
 * (agent_text_chunk) or check a JSON answer (jsonans.c). The tagger,
 * semantic_precheck and semantic_update never fail the workflow; the
 * others do, with the upstream's error code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fallback.h"
#include "fhir.h"
#include "jsonans.h"
#include "log.h"
#include "prompts.h"
#include "search.h"
#include "utf8.h"
#include "workflow.h"

#define CONTEXT_MAX	(96 * 1024)	/* bytes of context in a prompt */
#define QUERY_MAX	500		/* bytes of message sent as a query */

static const char safety_note[] =
    "\n\nThis is general information, not a diagnosis. Please see a doctor "
    "if symptoms persist or worsen, and call emergency services for severe "
    "or sudden symptoms.";

/* A growing context text, silently bounded at CONTEXT_MAX. */
struct ctx {
	char	*buf;
	size_t	 len;
};

static void
ctx_add(struct ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ctx_add(struct ctx *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*s, *nb;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n == -1)
		return;
	if (c->len + (size_t)n <= CONTEXT_MAX &&
	    (nb = realloc(c->buf, c->len + n + 1)) != NULL) {
		memcpy(nb + c->len, s, n + 1);
		c->buf = nb;
		c->len += n;
	}
	free(s);
}

/* Memory as "- key: value" lines under a title; nothing when empty. */
static void
ctx_memory(struct ctx *c, struct json_object *memory, const char *title)
{
	if (memory == NULL || json_object_object_length(memory) == 0)
		return;
	ctx_add(c, "%s\n", title);
	json_object_object_foreach(memory, k, v)
		ctx_add(c, "- %s: %s\n", k, json_object_get_string(v));
}

static void
ctx_list(struct ctx *c, struct json_object *p, const char *key,
    const char *label)
{
	struct json_object	*a;
	size_t			 i, n;

	if (!json_object_object_get_ex(p, key, &a) ||
	    (n = json_object_array_length(a)) == 0)
		return;
	ctx_add(c, "- %s: ", label);
	for (i = 0; i < n; i++)
		ctx_add(c, "%s%s", i ? ", " : "",
		    json_object_get_string(json_object_array_get_idx(a, i)));
	ctx_add(c, "\n");
}

static void
ctx_patient(struct ctx *c, struct json_object *p)
{
	static const char *const scalars[][2] = {
		{ "name", "name" }, { "birth_date", "born" }, { "sex", "sex" },
	};
	struct json_object	*v;
	size_t			 i;

	ctx_add(c, "Patient record:\n");
	for (i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
		if (json_object_object_get_ex(p, scalars[i][0], &v) && v != NULL)
			ctx_add(c, "- %s: %s\n", scalars[i][1],
			    json_object_get_string(v));
	ctx_list(c, p, "conditions", "conditions");
	ctx_list(c, p, "medications", "medications");
	ctx_list(c, p, "allergies", "allergies");
}

static void
ctx_results(struct ctx *c, struct json_object *results)
{
	size_t i, n;

	if (results == NULL || (n = json_object_array_length(results)) == 0) {
		ctx_add(c, "Web search results: none.\n");
		return;
	}
	ctx_add(c, "Web search results:\n");
	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(results, i);
		struct json_object *t, *u, *s;

		json_object_object_get_ex(r, "title", &t);
		json_object_object_get_ex(r, "url", &u);
		json_object_object_get_ex(r, "snippet", &s);
		ctx_add(c, "[%zu] %s (%s)\n%s\n", i + 1,
		    json_object_get_string(t), json_object_get_string(u),
		    json_object_get_string(s));
	}
}

/*
 * Ask node n for a JSON answer, not streamed. Return TERR_OK and the
 * answer's text in *text (malloc'd, the caller frees it), or the LLM's
 * error; msg says why.
 */
static enum terr
chat_text(struct wf *w, enum llm_node n, const char *context, char **text,
    char *msg, size_t msgsz)
{
	struct llm_call		 call;
	struct llm_result	 res;
	char			*sys;
	enum terr		 e;

	*text = NULL;
	if ((sys = prompt_build(w->conf, n, context)) == NULL) {
		snprintf(msg, msgsz, "out of memory");
		return TERR_INTERNAL;
	}
	memset(&call, 0, sizeof(call));
	memset(&res, 0, sizeof(res));
	call.conf = w->conf;
	call.node = n;
	call.messages = llm_messages(sys, NULL, w->req->message);
	call.json_mode = 1;
	call.stop = w->stop;
	e = w->chat(&call, &res);
	snprintf(msg, msgsz, "%s", res.message[0] ? res.message :
	    terr_message(e));
	if (e == TERR_OK && (*text = strdup(res.text != NULL ? res.text :
	    "")) == NULL) {
		e = TERR_INTERNAL;
		snprintf(msg, msgsz, "out of memory");
	}
	json_object_put(call.messages);
	llm_result_free(&res);
	free(sys);
	return e;
}

/*
 * Ask node n for a JSON answer. Return TERR_OK and the parsed object
 * (the caller puts it), or the LLM's error, or UPSTREAM_MALFORMED when
 * the content holds no JSON object; msg says why.
 */
static enum terr
chat_json(struct wf *w, enum llm_node n, const char *context,
    struct json_object **ans, char *msg, size_t msgsz)
{
	enum terr	 e;
	char		*text;

	*ans = NULL;
	e = chat_text(w, n, context, &text, msg, msgsz);
	if (e == TERR_OK && (*ans = jsonans_parse(text, strlen(text))) ==
	    NULL) {
		e = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, msgsz, "the language model's answer is not JSON");
	}
	free(text);
	return e;
}

struct stream_arg {
	struct wf	*w;
	const char	*node;
};

/* Relay one streamed token; non-zero aborts the call (client gone). */
static int
on_token(void *arg, const char *text, size_t len)
{
	struct stream_arg	*sa = arg;
	struct json_object	*d;

	if (len == 0)
		return 0;
	d = json_object_new_object();
	json_object_object_add(d, "text",
	    json_object_new_string_len(text, (int)len));
	json_object_object_add(d, "node", json_object_new_string(sa->node));
	return wf_emit(sa->w, "agent_text_chunk", d) == -1 || wf_stopped(sa->w);
}

/*
 * Stream node n's prose answer as agent_text_chunk events and keep it in
 * w->answer. Return 0, or -1 through wf_fail() with the LLM's error.
 */
static int
chat_stream(struct wf *w, enum llm_node n, const char *context)
{
	struct llm_call		 call;
	struct llm_result	 res;
	struct stream_arg	 sa = { w, conf_node_name(n) };
	char			*sys;
	enum terr		 e;
	int			 rc = 0;

	if ((sys = prompt_build(w->conf, n, context)) == NULL)
		return wf_fail(w, TERR_INTERNAL, "out of memory");
	memset(&call, 0, sizeof(call));
	memset(&res, 0, sizeof(res));
	call.conf = w->conf;
	call.node = n;
	/* History as {role, content} only: servers reject other members. */
	call.messages = llm_messages(sys, w->req->history, w->req->message);
	call.on_token = on_token;
	call.arg = &sa;
	call.stop = w->stop;
	e = w->chat(&call, &res);
	if (e != TERR_OK)
		rc = wf_fail(w, e, "%s", res.message[0] ? res.message :
		    terr_message(e));
	else {
		free(w->answer);
		w->answer = strdup(res.text != NULL ? res.text : "");
	}
	json_object_put(call.messages);
	llm_result_free(&res);
	free(sys);
	return rc;
}

static int
node_tagger(struct wf *w)
{
	enum route		 r = ROUTE_NONE;
	enum terr		 e;
	char			 msg[160], *text;

	if (w->req->route != ROUTE_NONE) {
		wf_set_route(w, w->req->route, WF_BY_FORCED);
		return 0;
	}
	e = chat_text(w, LLM_NODE_TAGGER, NULL, &text, msg, sizeof(msg));
	if (wf_stopped(w)) {
		free(text);
		return 0;
	}
	/* JSON as asked, or a bare route word (a server without JSON mode). */
	if (e == TERR_OK && (r = jsonans_route_text(text, strlen(text))) ==
	    ROUTE_NONE)
		snprintf(msg, sizeof(msg), "no valid route in the answer");
	free(text);
	if (r != ROUTE_NONE) {
		wf_set_route(w, r, WF_BY_LLM);
		return 0;
	}
	log_info("%s: llm_tagger: keyword fallback (%s: %s)", w->tag,
	    terr_code(e), msg);
	wf_set_route(w, fallback_route(w->req->message), WF_BY_FALLBACK);
	return 0;
}

/* The branch is taken by the edges of workflow.c; nothing to do here. */
static int
node_router(struct wf *w)
{
	log_debug("%s: processing_router: route %s", w->tag,
	    route_name(w->route));
	return 0;
}

static int
node_precheck(struct wf *w)
{
	struct json_object	*ans;
	struct ctx		 c = { NULL, 0 };
	enum terr		 e;
	char			 msg[160];
	int			 first = 1;

	ctx_add(&c, "Stored memory keys: ");
	json_object_object_foreach(w->memory, k, v) {
		(void)v;
		ctx_add(&c, "%s%s", first ? "" : ", ", k);
		first = 0;
	}
	ctx_add(&c, "%s\n", first ? "(none)" : "");
	e = chat_json(w, LLM_NODE_PRECHECK, c.buf, &ans, msg, sizeof(msg));
	free(c.buf);
	if (e == TERR_OK &&
	    jsonans_precheck(ans, &w->remember, &w->relevant) == -1) {
		e = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, sizeof(msg), "answer not of the schema");
	}
	json_object_put(ans);
	if (e != TERR_OK) {
		/* Degrade: no facts flagged, nothing marked relevant. */
		w->remember = 0;
		if (!wf_stopped(w))
			log_info("%s: semantic_precheck: skipped (%s: %s)",
			    w->tag, terr_code(e), msg);
	}
	return 0;
}

static int
node_postprocess(struct wf *w)
{
	struct ctx	c = { NULL, 0 };
	int		rc;

	ctx_memory(&c, w->memory, "Known about the user:");
	/* semantic_precheck's pick, so the model weighs those first. */
	if (w->relevant != NULL && json_object_array_length(w->relevant) > 0)
		ctx_add(&c, "Most relevant to this message: %s\n",
		    json_object_to_json_string_ext(w->relevant,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (w->route == ROUTE_WEB)
		ctx_results(&c, w->results);
	rc = chat_stream(w, LLM_NODE_POSTPROCESS, c.buf);
	free(c.buf);
	return rc;
}

/* Return 1 if facts adds a key to memory or changes a value. */
static int
facts_are_new(struct json_object *memory, struct json_object *facts)
{
	struct json_object *old;

	json_object_object_foreach(facts, k, v) {
		if (!json_object_object_get_ex(memory, k, &old) ||
		    !json_object_is_type(old, json_type_string) ||
		    strcmp(json_object_get_string(old),
		    json_object_get_string(v)) != 0)
			return 1;
	}
	return 0;
}

static int
node_update(struct wf *w)
{
	struct json_object	*ans, *facts = NULL, *merged, *d;
	struct ctx		 c = { NULL, 0 };
	enum terr		 e;
	char			 msg[160];

	ctx_memory(&c, w->memory, "Current memory:");
	e = chat_json(w, LLM_NODE_UPDATE, c.buf, &ans, msg, sizeof(msg));
	free(c.buf);
	if (e == TERR_OK && (facts = jsonans_facts(ans)) == NULL) {
		e = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, sizeof(msg), "answer not of the schema");
	}
	json_object_put(ans);
	if (e != TERR_OK) {
		if (!wf_stopped(w))
			log_info("%s: semantic_update: skipped (%s: %s)",
			    w->tag, terr_code(e), msg);
		return 0;
	}
	if (facts_are_new(w->memory, facts)) {
		merged = jsonans_merge(w->memory, facts);
		json_object_put(w->memory);
		w->memory = merged;
		/* The event gets its own copy: w->memory lives on. */
		ans = NULL;
		if (json_object_deep_copy(merged, &ans, NULL) != 0)
			ans = NULL;
		d = json_object_new_object();
		json_object_object_add(d, "facts", ans != NULL ? ans :
		    json_object_new_object());
		wf_emit(w, "memory_update", d);
	}
	json_object_put(facts);
	return 0;
}

/* Return 1 if text already carries a safety note of its own. */
static int
has_safety_note(const char *text)
{
	static const char *const words[] = {
		"doctor", "clinician", "physician", "healthcare provider",
		"health care provider", "medical professional", "emergency",
		"not medical advice", "not a diagnosis", NULL
	};
	int i;

	for (i = 0; words[i] != NULL; i++)
		if (strcasestr(text, words[i]) != NULL)
			return 1;
	return 0;
}

static int
node_medical(struct wf *w)
{
	struct json_object	*p = NULL, *d;
	struct ctx		 c = { NULL, 0 };
	char			*a;
	int			 rc;

	ctx_memory(&c, w->memory, "Known about the user:");
	if (patient_has_details(w->req->patient)) {
		p = patient_normalise(w->req->patient);
		ctx_patient(&c, p);
		json_object_put(p);
	}
	rc = chat_stream(w, LLM_NODE_MEDICAL, c.buf);
	free(c.buf);
	if (rc != 0 || wf_stopped(w) || has_safety_note(w->answer))
		return rc;
	/* The model forgot the note the prompt asks for: add it. */
	d = json_object_new_object();
	json_object_object_add(d, "text", json_object_new_string(safety_note));
	json_object_object_add(d, "node", json_object_new_string("medical"));
	wf_emit(w, "agent_text_chunk", d);
	if (asprintf(&a, "%s%s", w->answer, safety_note) != -1) {
		free(w->answer);
		w->answer = a;
	}
	return 0;
}

/* A one-line summary of a record for workflow_complete's answer. */
static char *
patient_summary(struct json_object *p)
{
	struct json_object	*name, *born, *sex;
	char			*s;

	json_object_object_get_ex(p, "name", &name);
	json_object_object_get_ex(p, "birth_date", &born);
	json_object_object_get_ex(p, "sex", &sex);
	if (asprintf(&s, "Patient record%s%s%s%s%s%s.",
	    name ? ": " : "", name ? json_object_get_string(name) : "",
	    born ? ", born " : "", born ? json_object_get_string(born) : "",
	    sex ? ", " : "", sex ? json_object_get_string(sex) : "") == -1)
		return NULL;
	return s;
}

static int
node_patient(struct wf *w)
{
	struct json_object	*rp = w->req->patient, *p = NULL, *id, *d;
	const char		*source = "none";
	enum terr		 e;
	char			 msg[160];

	if (patient_has_details(rp)) {
		/* SPEC §3.2: used as is (it is the client's own, checked). */
		if (json_object_deep_copy(rp, &p, NULL) != 0)
			return wf_fail(w, TERR_INTERNAL, "out of memory");
		source = "request";
	} else if (rp != NULL && json_object_object_get_ex(rp, "id", &id) &&
	    json_object_is_type(id, json_type_string) &&
	    w->conf->fhir.base_url != NULL && *w->conf->fhir.base_url) {
		if (!fhir_valid_id(json_object_get_string(id)))
			/* No FHIR server can hold it: there is no record. */
			log_info("%s: patient: not a FHIR id", w->tag);
		else if ((e = fhir_patient(w->conf, json_object_get_string(id),
		    w->stop, &p, msg, sizeof(msg))) != TERR_OK)
			return wf_fail(w, e, "%s", msg);
		else if (p != NULL)
			source = "fhir";
	}
	d = json_object_new_object();
	json_object_object_add(d, "patient", p != NULL ?
	    json_object_get(p) : NULL);
	json_object_object_add(d, "source", json_object_new_string(source));
	wf_emit(w, "patient_info", d);
	if (p != NULL) {
		free(w->answer);
		w->answer = patient_summary(p);
	}
	json_object_put(p);
	return 0;
}

static int
node_web(struct wf *w)
{
	struct json_object	*d;
	enum terr		 e;
	char			 msg[160], *q;
	size_t			 n;

	json_object_put(w->results);
	w->results = NULL;
	if (w->conf->search.url == NULL || *w->conf->search.url == '\0') {
		/* No search service: postprocess answers without results. */
		log_info("%s: web: no [search] url configured", w->tag);
		w->results = json_object_new_array();
	} else {
		n = strlen(w->req->message);
		if ((q = strndup(w->req->message,
		    utf8_cut(w->req->message, n, QUERY_MAX))) == NULL)
			return wf_fail(w, TERR_INTERNAL, "out of memory");
		e = search_query(w->conf, q, w->stop, &w->results, msg,
		    sizeof(msg));
		free(q);
		if (e != TERR_OK)
			return wf_fail(w, e, "%s", msg);
	}
	d = json_object_new_object();
	json_object_object_add(d, "results", json_object_get(w->results));
	wf_emit(w, "web_results", d);
	return 0;
}

static int
node_ui_change(struct wf *w)
{
	struct json_object	*ans, *action, *d;
	enum terr		 e;
	char			 msg[160], why[160], ctx[64];
	time_t			 now = time(NULL);
	struct tm		 tm;

	gmtime_r(&now, &tm);
	strftime(ctx, sizeof(ctx), "Today is %Y-%m-%d.", &tm);
	e = chat_json(w, LLM_NODE_UI_CHANGE, ctx, &ans, msg, sizeof(msg));
	if (e != TERR_OK)
		return wf_fail(w, e, "%s", msg);
	action = jsonans_action(ans, why, sizeof(why));
	json_object_put(ans);
	if (action == NULL) {
		log_info("%s: ui_change: action rejected: %s", w->tag, why);
		return wf_fail(w, TERR_UPSTREAM_MALFORMED,
		    "the UI action was rejected: %s", why);
	}
	d = json_object_new_object();
	json_object_object_add(d, "action", action);
	wf_emit(w, "ui_action", d);
	return 0;
}

const wf_fn wf_node_fns[WN__MAX] = {
	[WN_TAGGER] = node_tagger,
	[WN_ROUTER] = node_router,
	[WN_PRECHECK] = node_precheck,
	[WN_POSTPROCESS] = node_postprocess,
	[WN_UPDATE] = node_update,
	[WN_MEDICAL] = node_medical,
	[WN_PATIENT] = node_patient,
	[WN_WEB] = node_web,
	[WN_UI_CHANGE] = node_ui_change,
};
