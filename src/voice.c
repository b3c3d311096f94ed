/*
 * PLACEHOLDER voice path (issue 5 replaces it): emits marked placeholder
 * events through the real stream machinery so the foundation can be
 * tested end to end.
 */
#include <unistd.h>

#include "job.h"

void *
voice_path(void *arg)
{
	struct job		*job = arg;
	struct json_object	*d;

	d = json_object_new_object();
	json_object_object_add(d, "placeholder", json_object_new_boolean(1));
	sse_emit(job->sse, SSE_PATH_VOICE, "unmute_complete", d);
	job->voice_result = PATH_COMPLETE;
	return NULL;
}
