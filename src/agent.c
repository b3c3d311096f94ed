/*
 * PLACEHOLDER agent path (issue 4 replaces it): emits marked placeholder
 * events through the real stream machinery so the foundation can be
 * tested end to end.
 */
#include <unistd.h>

#include "job.h"

void *
agent_path(void *arg)
{
	struct job		*job = arg;
	struct json_object	*d;
	int			 i;

	for (i = 0; i < 3 && !job_stopped(job); i++) {
		d = json_object_new_object();
		json_object_object_add(d, "text", json_object_new_string("placeholder "));
		json_object_object_add(d, "node", json_object_new_string("placeholder"));
		sse_emit(job->sse, SSE_PATH_AGENT, "agent_text_chunk", d);
		usleep(20000);
	}
	job_set_answer(job, NULL);
	d = json_object_new_object();
	json_object_object_add(d, "placeholder", json_object_new_boolean(1));
	sse_emit(job->sse, SSE_PATH_AGENT, "workflow_complete", d);
	job->agent_result = PATH_COMPLETE;
	return NULL;
}
