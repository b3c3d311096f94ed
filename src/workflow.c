/*
 * The workflow engine: a table of edges read by one loop. Adding a node
 * is a row in node_names and a function in nodes.c; adding a route or a
 * branch is a row in edges.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "workflow.h"

static const char *const node_names[WN__MAX] = {
	[WN_TAGGER] = "llm_tagger",
	[WN_ROUTER] = "processing_router",
	[WN_PRECHECK] = "semantic_precheck",
	[WN_POSTPROCESS] = "postprocess",
	[WN_UPDATE] = "semantic_update",
	[WN_MEDICAL] = "medical",
	[WN_PATIENT] = "patient",
	[WN_WEB] = "web",
	[WN_UI_CHANGE] = "ui_change",
};

static const char *const by_names[] = {
	[WF_BY_LLM] = "llm",
	[WF_BY_FALLBACK] = "fallback",
	[WF_BY_FORCED] = "forced",
};

/* Routes whose answer the voice path speaks ("→ unmute" in SPEC §2). */
static const int route_speaks[ROUTE__MAX] = {
	[ROUTE_WEB] = 1,
	[ROUTE_MEDICAL] = 1,
};

/* postprocess → semantic_update when semantic_precheck flagged facts. */
static int
flagged_facts(const struct wf *w)
{
	return w->remember;
}

/*
 * The graph. From a node, the first edge whose route matches (ROUTE_NONE:
 * any) and whose predicate holds (NULL: always) is taken.
 */
static const struct wf_edge {
	enum wf_node	 from;
	enum route	 route;
	int		(*when)(const struct wf *);
	enum wf_node	 to;
} edges[] = {
	{ WN_TAGGER,	ROUTE_NONE,	NULL,	WN_ROUTER },
	/* processing_router: the first node of each route */
	{ WN_ROUTER,	ROUTE_TEXT,	NULL,	WN_PRECHECK },
	{ WN_ROUTER,	ROUTE_PATIENT,	NULL,	WN_PATIENT },
	{ WN_ROUTER,	ROUTE_WEB,	NULL,	WN_WEB },
	{ WN_ROUTER,	ROUTE_MEDICAL,	NULL,	WN_UPDATE },
	{ WN_ROUTER,	ROUTE_UI_CHANGE, NULL,	WN_UI_CHANGE },
	{ WN_ROUTER,	ROUTE_ADD_TREATMENT, NULL, WN_UI_CHANGE },
	/* text */
	{ WN_PRECHECK,	ROUTE_NONE,	NULL,	WN_POSTPROCESS },
	{ WN_POSTPROCESS, ROUTE_TEXT,	flagged_facts, WN_UPDATE },
	{ WN_POSTPROCESS, ROUTE_NONE,	NULL,	WN_END },
	/* medical */
	{ WN_UPDATE,	ROUTE_MEDICAL,	NULL,	WN_MEDICAL },
	{ WN_UPDATE,	ROUTE_NONE,	NULL,	WN_END },
	{ WN_MEDICAL,	ROUTE_NONE,	NULL,	WN_END },
	/* web */
	{ WN_WEB,	ROUTE_NONE,	NULL,	WN_POSTPROCESS },
	{ WN_PATIENT,	ROUTE_NONE,	NULL,	WN_END },
	{ WN_UI_CHANGE,	ROUTE_NONE,	NULL,	WN_END },
};

/* The route as JSON: its name, or null when there is none. */
static struct json_object *
route_json(enum route r)
{
	const char *name = route_name(r);

	return name != NULL ? json_object_new_string(name) : NULL;
}

const char *
wf_node_name(enum wf_node n)
{
	return n < WN__MAX ? node_names[n] : "end";
}

const char *
wf_by_name(enum wf_by b)
{
	return by_names[b];
}

int
wf_route_speaks(enum route r)
{
	return r >= 0 && r < ROUTE__MAX && route_speaks[r];
}

void
wf_init(struct wf *w, const struct conf *conf, const struct req *req,
    const atomic_int *stop)
{
	memset(w, 0, sizeof(*w));
	w->conf = conf;
	w->req = req;
	w->stop = stop;
	w->route = ROUTE_NONE;
	w->memory = req != NULL && req->memory != NULL ?
	    json_object_get(req->memory) : json_object_new_object();
}

void
wf_free(struct wf *w)
{
	json_object_put(w->relevant);
	json_object_put(w->memory);
	json_object_put(w->results);
	free(w->answer);
	w->relevant = w->memory = w->results = NULL;
	w->answer = NULL;
}

int
wf_stopped(const struct wf *w)
{
	return w->stop != NULL && atomic_load(w->stop) != 0;
}

int
wf_emit(struct wf *w, const char *type, struct json_object *data)
{
	if (w->emit == NULL) {
		json_object_put(data);
		return 0;
	}
	return w->emit(w->arg, type, data);
}

int
wf_fail(struct wf *w, enum terr e, const char *fmt, ...)
{
	va_list ap;

	w->err = e;
	va_start(ap, fmt);
	vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
	va_end(ap);
	return -1;
}

void
wf_set_route(struct wf *w, enum route r, enum wf_by by)
{
	struct json_object *d = json_object_new_object();

	w->route = r;
	w->by = by;
	json_object_object_add(d, "route", route_json(r));
	json_object_object_add(d, "by", json_object_new_string(by_names[by]));
	wf_emit(w, "route_tagged", d);
	if (w->routed != NULL)
		w->routed(w->arg, r, wf_route_speaks(r));
}

/* Return the node after from, or WN__MAX + 1 when no edge fits. */
static enum wf_node
next_node(const struct wf *w, enum wf_node from)
{
	size_t i;

	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		if (edges[i].from != from)
			continue;
		if (edges[i].route != ROUTE_NONE && edges[i].route != w->route)
			continue;
		if (edges[i].when != NULL && !edges[i].when(w))
			continue;
		return edges[i].to;
	}
	return (enum wf_node)(WN__MAX + 1);
}

static void
emit_node(struct wf *w, const char *type, enum wf_node n, long long elapsed)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "node", json_object_new_string(node_names[n]));
	if (elapsed >= 0)
		json_object_object_add(d, "elapsed_ms",
		    json_object_new_int64(elapsed));
	wf_emit(w, type, d);
}

static void
emit_error(struct wf *w)
{
	struct json_object *d = json_object_new_object();

	if (w->err == TERR_OK)
		w->err = TERR_INTERNAL;
	json_object_object_add(d, "node",
	    json_object_new_string(node_names[w->current]));
	json_object_object_add(d, "code",
	    json_object_new_string(terr_code(w->err)));
	json_object_object_add(d, "message", json_object_new_string(
	    w->errmsg[0] != '\0' ? w->errmsg : terr_message(w->err)));
	wf_emit(w, "workflow_error", d);
}

static void
emit_complete(struct wf *w)
{
	struct json_object	*d = json_object_new_object();
	struct json_object	*nodes = json_object_new_array();
	int			 i;

	for (i = 0; i < w->nvisited; i++)
		json_object_array_add(nodes,
		    json_object_new_string(node_names[w->visited[i]]));
	json_object_object_add(d, "route", route_json(w->route));
	json_object_object_add(d, "nodes", nodes);
	json_object_object_add(d, "answer", json_object_new_string(
	    w->answer != NULL ? w->answer : ""));
	json_object_object_add(d, "elapsed_ms",
	    json_object_new_int64(mono_ms() - w->started_ms));
	wf_emit(w, "workflow_complete", d);
}

enum wf_result
wf_run(struct wf *w, const wf_fn *fns)
{
	enum wf_node	 n = WN_TAGGER;
	long long	 t0;
	int		 rc;

	w->started_ms = mono_ms();
	while (n != WN_END) {
		if (wf_stopped(w))
			return WF_STOPPED;
		if (n > WN_END || w->nvisited == WF_STEPS_MAX) {
			/* A route without a branch: a bug, not the input. */
			wf_fail(w, TERR_INTERNAL, "no way on from %s",
			    node_names[w->current]);
			emit_error(w);
			return WF_ERROR;
		}
		w->current = n;
		w->visited[w->nvisited++] = n;
		t0 = mono_ms();
		emit_node(w, "node_started", n, -1);
		rc = fns[n](w);
		if (wf_stopped(w))
			return WF_STOPPED;
		if (rc != 0) {
			emit_error(w);
			return WF_ERROR;
		}
		emit_node(w, "node_complete", n, mono_ms() - t0);
		n = next_node(w, n);
	}
	emit_complete(w);
	return WF_COMPLETE;
}
