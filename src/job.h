/*
 * One accepted stream: what its two path threads share. The acceptor
 * thread owns it, starts the voice and agent threads, supervises the
 * client and the deadline, joins both and sends stream_complete.
 */
#ifndef TANDEM_JOB_H
#define TANDEM_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

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

/* job->stop values */
#define JOB_STOP_GONE		1	/* the client left */
#define JOB_STOP_DEADLINE	2	/* request_timeout passed */
#define JOB_STOP_SHUTDOWN	3	/* the worker drains and its grace ran out */

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
	/* why the paths must stop: 0 not, else a JOB_STOP_* value */
	atomic_int		 stop;
	/* set by the agent path once it knows the route (-1 until then) */
	atomic_int		 route;
	/* follow-up turn: the agent's final answer to be spoken */
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	enum answer_state	 answer_state;
	char			*answer;
	/* written by the paths, read by the supervisor: atomic */
	_Atomic enum path_result voice_result;
	_Atomic enum path_result agent_result;
};

/* Agent path: publish the answer to speak (NULL: nothing to speak). */
void	 job_set_answer(struct job *, const char *answer);
/*
 * Voice path: wait up to timeout_ms for the answer; return a malloc'd
 * copy, or NULL when there is none, on stop or on timeout.
 */
char	*job_wait_answer(struct job *, long timeout_ms);
int	 job_stopped(const struct job *);

/*
 * The two paths; each leaves its result in job->{voice,agent}_result.
 * voice_path is not started when the request says "voice": false
 * (voice_result is then PATH_SKIPPED).
 */
void	*voice_path(void *job);
void	*agent_path(void *job);

#endif

struct conn;

/* What a finished stream reports for the access log. */
struct job_outcome {
	const char	*status;	/* ok, partial, error */
	int		 client_gone;
	long long	 elapsed_ms;
	long long	 bytes;
	uint64_t	 events;
};

/* Set by the worker when it drains; then streams get drain_deadline_ms. */
extern atomic_int	 job_draining;
extern atomic_llong	 job_drain_deadline_ms;	/* monotonic */

/*
 * Run one accepted stream on the calling (acceptor) thread: the response
 * headers are already sent. Sends streaming_started, runs the paths,
 * watches the client, the heartbeat and the deadline, and always ends
 * with stream_complete (unless the client is gone).
 */
void	 job_run(const struct conf *, struct conn *, struct req *,
	    const char *request_id, struct job_outcome *);
