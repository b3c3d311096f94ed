/*
 * The agent path (SPEC.md §2): runs the workflow on its own thread and
 * ties it to the job: events go to the stream, the route to job->route,
 * the answer to the voice path (job_set_answer(), called exactly once),
 * the outcome to job->agent_result.
 */
#include <stdlib.h>

#include "job.h"
#include "llm.h"
#include "workflow.h"

struct agent {
	struct job	*job;
	int		 answered;
};

static int
agent_emit(void *arg, const char *type, struct json_object *data)
{
	struct agent *a = arg;

	return sse_emit(a->job->sse, SSE_PATH_AGENT, type, data);
}

/* Publish the answer to speak, once (NULL: nothing to speak). */
static void
agent_answer(struct agent *a, const char *answer)
{
	if (a->answered)
		return;
	a->answered = 1;
	job_set_answer(a->job, answer != NULL && *answer != '\0' ?
	    answer : NULL);
}

/* The route is known: tell the voice path at once if it speaks nothing. */
static void
agent_routed(void *arg, enum route r, int speaks)
{
	struct agent *a = arg;

	atomic_store(&a->job->route, r);
	if (!speaks)
		agent_answer(a, NULL);
}

/* The stream ran out of time while node was running: say so. */
static void
emit_timeout(struct agent *a, const struct wf *w)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "node",
	    json_object_new_string(wf_node_name(w->current)));
	json_object_object_add(d, "code",
	    json_object_new_string(terr_code(TERR_STREAM_TIMEOUT)));
	json_object_object_add(d, "message",
	    json_object_new_string(terr_message(TERR_STREAM_TIMEOUT)));
	agent_emit(a, "workflow_error", d);
}

void *
agent_path(void *arg)
{
	struct job	*job = arg;
	struct agent	 a = { job, 0 };
	struct wf	 w;
	int		 why;

	wf_init(&w, job->conf, job->req, &job->stop);
	w.emit = agent_emit;
	w.routed = agent_routed;
	w.chat = llm_chat;
	w.arg = &a;
	w.tag = job->sse->request_id;
	switch (wf_run(&w, wf_node_fns)) {
	case WF_COMPLETE:
		agent_answer(&a, wf_route_speaks(w.route) ? w.answer : NULL);
		job->agent_result = PATH_COMPLETE;
		break;
	case WF_ERROR:
		agent_answer(&a, NULL);
		job->agent_result = PATH_ERROR;
		break;
	case WF_STOPPED:
		agent_answer(&a, NULL);
		why = atomic_load(&job->stop);
		if (why == JOB_STOP_DEADLINE || why == JOB_STOP_SHUTDOWN)
			emit_timeout(&a, &w);
		job->agent_result = why == JOB_STOP_DEADLINE ? PATH_TIMEOUT :
		    PATH_ERROR;
		break;
	}
	wf_free(&w);
	return NULL;
}
