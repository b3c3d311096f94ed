/*
 * One accepted stream: what its two path threads share. The acceptor
 * thread owns it, starts the voice and agent threads, supervises the
 * client and the deadline, joins both and sends stream_complete.
 */
#ifndef TANDEM_JOB_H
#define TANDEM_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include "conf.h"
#include "req.h"
#include "sse.h"

enum path_result {
	PATH_RUNNING,
	PATH_COMPLETE,
	PATH_ERROR,
	PATH_TIMEOUT,
	PATH_SKIPPED
};

enum answer_state {
	ANSWER_PENDING,		/* the agent path may still produce one */
	ANSWER_NONE,		/* this route speaks nothing more */
	ANSWER_READY
};

struct job {
	const struct conf	*conf;
	struct req		*req;
	struct sse		*sse;
	long long		 started_ms;	/* monotonic */
	/* set when the client left, the deadline passed or the worker drains */
	atomic_int		 stop;
	/* set by the agent path once it knows the route (-1 until then) */
	atomic_int		 route;
	/* follow-up turn: the agent's final answer to be spoken */
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	enum answer_state	 answer_state;
	char			*answer;
	enum path_result	 voice_result;
	enum path_result	 agent_result;
};

/* Agent path: publish the answer to speak (NULL: nothing to speak). */
void	 job_set_answer(struct job *, const char *answer);
/*
 * Voice path: wait up to timeout_ms for the answer; return a malloc'd
 * copy, or NULL when there is none, on stop or on timeout.
 */
char	*job_wait_answer(struct job *, long timeout_ms);
int	 job_stopped(const struct job *);

/* The two paths; each returns its result in job->{voice,agent}_result. */
void	*voice_path(void *job);
void	*agent_path(void *job);

#endif
