/*
 * The agent path's workflow (SPEC.md §2) as data: nodes and the edges
 * between them. wf_run() walks the graph from llm_tagger, announcing
 * each node (node_started, node_complete), and ends with
 * workflow_complete or workflow_error. It knows nothing of HTTP or
 * threads: events, the route and the stop flag come through struct wf,
 * so tests drive it with fake nodes.
 */
#ifndef TANDEM_WORKFLOW_H
#define TANDEM_WORKFLOW_H

#include <stdatomic.h>
#include <stddef.h>

#include <json-c/json.h>

#include "conf.h"
#include "err.h"
#include "llm.h"
#include "req.h"

enum wf_node {
	WN_TAGGER,
	WN_ROUTER,
	WN_PRECHECK,
	WN_POSTPROCESS,
	WN_UPDATE,
	WN_MEDICAL,
	WN_PATIENT,
	WN_WEB,
	WN_UI_CHANGE,
	WN__MAX,
	WN_END = WN__MAX
};

#define WF_STEPS_MAX	16	/* nodes one run may visit */

enum wf_result {
	WF_COMPLETE,
	WF_ERROR,
	WF_STOPPED
};

enum wf_by {
	WF_BY_LLM,
	WF_BY_FALLBACK,
	WF_BY_FORCED
};

struct wf;

/* A node: return 0, or -1 after wf_fail() (a plain -1 is "internal"). */
typedef int	(*wf_fn)(struct wf *);

struct wf {
	/* inputs, borrowed */
	const struct conf	*conf;
	const struct req	*req;
	const atomic_int	*stop;		/* non-zero: stop now */

	/* hooks */
	int	(*emit)(void *arg, const char *type, struct json_object *data);
	/* the route is known; speaks: its answer will be spoken */
	void	(*routed)(void *arg, enum route, int speaks);
	/* the LLM client: llm_chat, or a test's fake */
	enum terr (*chat)(const struct llm_call *, struct llm_result *);
	void	 *arg;
	const char		*tag;		/* for logs: the request id */

	/* state shared by the nodes */
	enum route		 route;
	enum wf_by		 by;
	int			 remember;	/* precheck flagged facts */
	struct json_object	*relevant;	/* precheck: memory keys, or NULL */
	struct json_object	*memory;	/* the memory as it stands (owned) */
	struct json_object	*results;	/* web results (owned) or NULL */
	char			*answer;	/* malloc'd, or NULL */

	/* the failure */
	enum terr		 err;
	char			 errmsg[160];

	/* what was visited; current is the node running or last run */
	enum wf_node		 current;
	enum wf_node		 visited[WF_STEPS_MAX];
	int			 nvisited;
	long long		 started_ms;
};

/* Zero w and set its inputs; memory starts as req's. Hooks are NULL. */
void		 wf_init(struct wf *, const struct conf *, const struct req *,
		    const atomic_int *stop);
void		 wf_free(struct wf *);
/*
 * Run the graph with the node functions fns[WN__MAX] (wf_node_fns for
 * the real ones). Return how it ended; events are emitted on the way.
 */
enum wf_result	 wf_run(struct wf *, const wf_fn *fns);
/* Record why the current node fails; return -1. */
int		 wf_fail(struct wf *, enum terr, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
int		 wf_stopped(const struct wf *);
/*
 * The tagger's verdict: set the route, emit route_tagged and tell the
 * routed hook.
 */
void		 wf_set_route(struct wf *, enum route, enum wf_by);
/* Emit one agent event (takes data); return 0 or -1 (client gone). */
int		 wf_emit(struct wf *, const char *type, struct json_object *);
const char	*wf_node_name(enum wf_node);
const char	*wf_by_name(enum wf_by);
/* Whether a route's answer is spoken as a follow-up turn (web, medical). */
int		 wf_route_speaks(enum route);

/* The real nodes (nodes.c). */
extern const wf_fn wf_node_fns[WN__MAX];

#endif
