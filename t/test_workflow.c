/*
 * The workflow graph of SPEC.md §2 driven with fake nodes: for each
 * route, the nodes visited and the events, in order; the conditional
 * edge both ways; errors and stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "workflow.h"

/* What a fake run should do. */
static enum route	 tag_route;
static int		 flag_facts;
static enum wf_node	 fail_at = WN_END;
static enum wf_node	 stop_at = WN_END;
static atomic_int	 stop;

/* What the hooks saw. */
static char		 events[4096];
static int		 routed_calls, routed_speaks;
static enum route	 routed_route;

static int
rec_emit(void *arg, const char *type, struct json_object *d)
{
	struct json_object *n;

	strncat(events, type, sizeof(events) - strlen(events) - 1);
	if (json_object_object_get_ex(d, "node", &n) &&
	    strncmp(type, "node_", 5) == 0) {
		strncat(events, ":", sizeof(events) - strlen(events) - 1);
		strncat(events, json_object_get_string(n),
		    sizeof(events) - strlen(events) - 1);
	}
	strncat(events, " ", sizeof(events) - strlen(events) - 1);
	json_object_put(d);
	return 0;
}

static void
rec_routed(void *arg, enum route r, int speaks)
{
	routed_calls++;
	routed_route = r;
	routed_speaks = speaks;
}

/* One fake for every node: fail or stop where told, else succeed. */
static int
fake(struct wf *w)
{
	if (w->current == stop_at)
		atomic_store(&stop, 2);
	if (w->current == fail_at)
		return wf_fail(w, TERR_UPSTREAM_HTTP, "fake failure");
	switch (w->current) {
	case WN_TAGGER:
		wf_set_route(w, tag_route, WF_BY_LLM);
		break;
	case WN_PRECHECK:
		w->remember = flag_facts;
		break;
	case WN_POSTPROCESS:
	case WN_MEDICAL:
		free(w->answer);
		w->answer = strdup("the answer");
		break;
	default:
		break;
	}
	return 0;
}

static const wf_fn fakes[WN__MAX] = {
	fake, fake, fake, fake, fake, fake, fake, fake, fake
};

/* Run one route; return the visited nodes as "a b c". */
static enum wf_result
run(enum route r, int facts, char *visited, size_t sz)
{
	struct wf	 w;
	enum wf_result	 res;
	int		 i;

	tag_route = r;
	flag_facts = facts;
	events[0] = '\0';
	routed_calls = 0;
	atomic_store(&stop, 0);
	wf_init(&w, NULL, NULL, &stop);
	w.emit = rec_emit;
	w.routed = rec_routed;
	res = wf_run(&w, fakes);
	visited[0] = '\0';
	for (i = 0; i < w.nvisited; i++) {
		if (i > 0)
			strncat(visited, " ", sz - strlen(visited) - 1);
		strncat(visited, wf_node_name(w.visited[i]),
		    sz - strlen(visited) - 1);
	}
	wf_free(&w);
	return res;
}

static const struct {
	enum route	 route;
	int		 facts;
	const char	*nodes;
	int		 speaks;
} routes[] = {
	{ ROUTE_TEXT, 0, "llm_tagger processing_router semantic_precheck "
	    "postprocess", 0 },
	{ ROUTE_TEXT, 1, "llm_tagger processing_router semantic_precheck "
	    "postprocess semantic_update", 0 },
	{ ROUTE_PATIENT, 0, "llm_tagger processing_router patient", 0 },
	{ ROUTE_PATIENT, 1, "llm_tagger processing_router patient", 0 },
	{ ROUTE_WEB, 0, "llm_tagger processing_router web postprocess", 1 },
	{ ROUTE_WEB, 1, "llm_tagger processing_router web postprocess", 1 },
	{ ROUTE_MEDICAL, 0, "llm_tagger processing_router semantic_update "
	    "medical", 1 },
	{ ROUTE_UI_CHANGE, 0, "llm_tagger processing_router ui_change", 0 },
	{ ROUTE_ADD_TREATMENT, 0, "llm_tagger processing_router ui_change", 0 },
};

static void
test_routes(void)
{
	char	v[512];
	size_t	i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		is_int(run(routes[i].route, routes[i].facts, v, sizeof(v)),
		    WF_COMPLETE, "route completes");
		if (!ok(strcmp(v, routes[i].nodes) == 0, "%s%s: %s",
		    route_name(routes[i].route),
		    routes[i].facts ? " (facts flagged)" : "", routes[i].nodes))
			printf("#   got '%s'\n", v);
		is_int(routed_calls, 1, "routed hook called once");
		is_int(routed_route, routes[i].route, "routed hook's route");
		is_int(routed_speaks, routes[i].speaks, "speaks");
	}
}

static void
test_events(void)
{
	char v[512];

	run(ROUTE_WEB, 0, v, sizeof(v));
	is_str(events, "node_started:llm_tagger route_tagged "
	    "node_complete:llm_tagger node_started:processing_router "
	    "node_complete:processing_router node_started:web "
	    "node_complete:web node_started:postprocess "
	    "node_complete:postprocess workflow_complete ",
	    "web: events in order");
}

static void
test_error_and_stop(void)
{
	char v[512];

	fail_at = WN_WEB;
	is_int(run(ROUTE_WEB, 0, v, sizeof(v)), WF_ERROR, "web fails");
	is_str(events, "node_started:llm_tagger route_tagged "
	    "node_complete:llm_tagger node_started:processing_router "
	    "node_complete:processing_router node_started:web workflow_error ",
	    "error ends the path: no node_complete, no workflow_complete");
	is_str(v, "llm_tagger processing_router web", "stopped at web");
	fail_at = WN_END;

	stop_at = WN_PRECHECK;
	is_int(run(ROUTE_TEXT, 1, v, sizeof(v)), WF_STOPPED, "stop inside a node");
	ok(strstr(events, "workflow_") == NULL, "no workflow_* event on stop");
	ok(strstr(events, "postprocess") == NULL, "no node after stop");
	stop_at = WN_END;

	/* A route the graph does not know is an internal error. */
	is_int(run(ROUTE_NONE, 0, v, sizeof(v)), WF_ERROR, "no branch");
	ok(strstr(events, "workflow_error") != NULL, "workflow_error sent");
}

static void
test_tables(void)
{
	int i;

	for (i = 0; i < WN__MAX; i++)
		ok(wf_node_name(i) != NULL && *wf_node_name(i) != '\0',
		    "node %d named %s", i, wf_node_name(i));
	is_str(wf_by_name(WF_BY_FALLBACK), "fallback", "by name");
	is_int(wf_route_speaks(ROUTE_NONE), 0, "ROUTE_NONE speaks not");
}

int
main(void)
{
	test_routes();
	test_events();
	test_error_and_stop();
	test_tables();
	return done();
}
