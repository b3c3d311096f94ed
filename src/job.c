/*
 * The life of one stream (SPEC.md §3.2, §5): two path threads, one
 * supervisor (the acceptor thread) that owns everything and frees it.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "job.h"
#include "log.h"
#include "scoreboard.h"

#define SUPERVISE_TICK_MS	50
/* How long stopped paths get to say their last words before stream_complete. */
#define STOP_GRACE_MS		1000
/* A stopped path still running after this long is logged. */
#define PATH_JOIN_WARN_S	10

atomic_int	 job_draining;
atomic_llong	 job_drain_deadline_ms;

static const char *const result_names[] = {
	[PATH_RUNNING] = "timeout",
	[PATH_COMPLETE] = "complete",
	[PATH_ERROR] = "error",
	[PATH_TIMEOUT] = "timeout",
	[PATH_SKIPPED] = "skipped",
};

int
job_stopped(const struct job *j)
{
	return atomic_load(&((struct job *)j)->stop) != 0;
}

void
job_set_answer(struct job *j, const char *answer)
{
	pthread_mutex_lock(&j->mu);
	if (j->answer_state == ANSWER_PENDING) {
		if (answer != NULL && (j->answer = strdup(answer)) != NULL)
			j->answer_state = ANSWER_READY;
		else
			j->answer_state = ANSWER_NONE;
	}
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

char *
job_wait_answer(struct job *j, long timeout_ms)
{
	struct timespec	 ts;
	long long	 end = mono_ms() + timeout_ms;
	char		*a = NULL;

	pthread_mutex_lock(&j->mu);
	while (j->answer_state == ANSWER_PENDING && !job_stopped(j) &&
	    mono_ms() < end) {
		/* Wake at least every 100 ms to notice stop. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&j->cv, &j->mu, &ts);
	}
	if (j->answer_state == ANSWER_READY && !job_stopped(j))
		a = strdup(j->answer);
	pthread_mutex_unlock(&j->mu);
	return a;
}

struct path_thread {
	pthread_t	 tid;
	int		 started;
	atomic_int	 done;
	void		*(*fn)(void *);
	struct job	*job;
	int		 wake_fd;	/* the supervisor's pipe */
};

static void *
path_main(void *arg)
{
	struct path_thread	*pt = arg;
	char			 b = 0;

	pt->fn(pt->job);
	atomic_store(&pt->done, 1);
	/* Wake the supervisor at once rather than at its next tick. */
	(void)write(pt->wake_fd, &b, 1);
	return NULL;
}

static int
path_start(struct path_thread *pt, void *(*fn)(void *), struct job *job)
{
	pt->fn = fn;
	pt->job = job;
	atomic_store(&pt->done, 0);
	pt->started = pthread_create(&pt->tid, NULL, path_main, pt) == 0;
	if (!pt->started)
		atomic_store(&pt->done, 1);
	return pt->started ? 0 : -1;
}

/*
 * Join a path. Both check stop at least every 100 ms, so one that is
 * still running long after the stream ended is a bug worth a log line;
 * the acceptor still waits for it, as the path borrows the job's state.
 */
static void
join_path(struct path_thread *pt, const char *name, const char *request_id)
{
	struct timespec	 ts;

	if (!pt->started)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += PATH_JOIN_WARN_S;
	if (pthread_timedjoin_np(pt->tid, NULL, &ts) == 0)
		return;
	log_err("%s: the %s path ignores stop; its thread is still waited for",
	    request_id, name);
	pthread_join(pt->tid, NULL);
}

static int
path_done(struct path_thread *pt)
{
	return atomic_load(&pt->done);
}

/*
 * Wait up to timeout_ms for the client to hang up or a path to finish.
 * Return 1 when the peer hung up (nginx closed the FastCGI connection).
 */
static int
client_hung_up(struct conn *c, int wake_fd, int timeout_ms)
{
	struct pollfd	pfd[2];
	char		drain[16];
	int		fd = conn_hangup_fd(c);

	pfd[0].fd = wake_fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = fd;		/* poll ignores a negative fd (CGI) */
	pfd[1].events = POLLIN | POLLRDHUP;
	pfd[0].revents = pfd[1].revents = 0;
	if (poll(pfd, 2, timeout_ms) <= 0)
		return 0;
	if (pfd[0].revents & POLLIN)
		(void)read(wake_fd, drain, sizeof(drain));
	/* All input was consumed, so anything readable means EOF or abort. */
	return fd >= 0 &&
	    (pfd[1].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static void
stop_paths(struct job *j, int why)
{
	int expected = 0;

	atomic_compare_exchange_strong(&j->stop, &expected, why);
}

/* Decide whether the stream must stop now, and why. */
static int
stop_reason(struct job *j, struct conn *c, int wake_fd)
{
	long long now;

	if (sse_gone(j->sse) || client_hung_up(c, wake_fd, SUPERVISE_TICK_MS))
		return JOB_STOP_GONE;
	now = mono_ms();
	if (now - j->started_ms >= j->conf->request_timeout_ms)
		return JOB_STOP_DEADLINE;
	if (atomic_load(&job_draining) &&
	    now >= atomic_load(&job_drain_deadline_ms))
		return JOB_STOP_SHUTDOWN;
	return 0;
}

static const char *
overall_status(enum path_result voice, enum path_result agent)
{
	int voice_ok = voice == PATH_COMPLETE || voice == PATH_SKIPPED;

	if (agent == PATH_COMPLETE && voice_ok)
		return "ok";
	if (agent != PATH_COMPLETE && !voice_ok)
		return "error";
	return "partial";
}

static void
emit_started(struct job *j)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "voice", json_object_new_boolean(j->req->voice));
	json_object_object_add(d, "route_forced", j->req->route == ROUTE_NONE ?
	    NULL : json_object_new_string(route_name(j->req->route)));
	sse_emit(j->sse, SSE_PATH_STREAM, "streaming_started", d);
}

static const char *
emit_complete(struct job *j)
{
	struct json_object	*d = json_object_new_object();
	enum path_result	 v = j->voice_result, a = j->agent_result;
	const char		*status;

	/* A path still running at the end was cut short by stop. */
	if (atomic_load(&j->stop) == JOB_STOP_DEADLINE) {
		if (v == PATH_RUNNING)
			v = PATH_TIMEOUT;
		if (a == PATH_RUNNING)
			a = PATH_TIMEOUT;
	} else {
		if (v == PATH_RUNNING)
			v = PATH_ERROR;
		if (a == PATH_RUNNING)
			a = PATH_ERROR;
	}
	status = overall_status(v, a);
	json_object_object_add(d, "status", json_object_new_string(status));
	json_object_object_add(d, "voice", json_object_new_string(result_names[v]));
	json_object_object_add(d, "agent", json_object_new_string(result_names[a ==
	    PATH_SKIPPED ? PATH_COMPLETE : a]));
	json_object_object_add(d, "elapsed_ms",
	    json_object_new_int64(mono_ms() - j->started_ms));
	sse_emit(j->sse, SSE_PATH_STREAM, "stream_complete", d);
	return status;
}

/*
 * Watch the paths until both are done or the stream must stop; after a
 * stop, give them STOP_GRACE_MS to finish their last events.
 */
static void
supervise(struct job *j, struct conn *c, int wake_fd, struct path_thread *voice,
    struct path_thread *agent)
{
	long long	 stopped_at = 0;
	int		 why;

	while (!(path_done(voice) && path_done(agent))) {
		if (stopped_at == 0 && (why = stop_reason(j, c, wake_fd)) != 0) {
			stop_paths(j, why);
			stopped_at = mono_ms();
			if (why == JOB_STOP_DEADLINE)
				log_info("%s: stream timeout", j->sse->request_id);
		} else if (stopped_at == 0) {
			if (sse_heartbeat(j->sse, j->conf->heartbeat_ms) == -1)
				continue;	/* noticed as gone next tick */
		} else {
			if (mono_ms() - stopped_at >= STOP_GRACE_MS)
				break;
			client_hung_up(c, wake_fd, SUPERVISE_TICK_MS);
		}
	}
}

void
job_run(const struct conf *conf, struct conn *conn, struct req *req,
    const char *request_id, struct job_outcome *out)
{
	struct sse		 sse;
	struct job		 j;
	struct path_thread	 voice, agent;
	int			 why, wake[2];

	memset(&j, 0, sizeof(j));
	memset(&voice, 0, sizeof(voice));
	memset(&agent, 0, sizeof(agent));
	sse_init(&sse, conn, request_id, req->session_id);
	j.conf = conf;
	j.req = req;
	j.sse = &sse;
	j.started_ms = mono_ms();
	atomic_store(&j.route, req->route);
	pthread_mutex_init(&j.mu, NULL);
	pthread_cond_init(&j.cv, NULL);
	j.answer_state = ANSWER_PENDING;
	j.voice_result = req->voice ? PATH_RUNNING : PATH_SKIPPED;
	j.agent_result = PATH_RUNNING;

	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) == -1)
		wake[0] = wake[1] = -1;
	voice.wake_fd = agent.wake_fd = wake[1];
	emit_started(&j);
	if (path_start(&agent, agent_path, &j) == -1)
		j.agent_result = PATH_ERROR;
	if (req->voice && path_start(&voice, voice_path, &j) == -1)
		j.voice_result = PATH_ERROR;
	if (!req->voice)
		atomic_store(&voice.done, 1);
	supervise(&j, conn, wake[0], &voice, &agent);
	out->status = emit_complete(&j);
	why = atomic_load(&j.stop);
	/* Paths that outlive the grace only find a closed stream. */
	stop_paths(&j, JOB_STOP_GONE);
	join_path(&agent, "agent", request_id);
	join_path(&voice, "voice", request_id);

	out->client_gone = sse_gone(&sse) || why == JOB_STOP_GONE;
	out->elapsed_ms = mono_ms() - j.started_ms;
	out->bytes = atomic_load(&sse.bytes);
	out->events = sse.seq;
	if (wake[0] != -1) {
		close(wake[0]);
		close(wake[1]);
	}
	free(j.answer);
	pthread_mutex_destroy(&j.mu);
	pthread_cond_destroy(&j.cv);
	sse_destroy(&sse);
}
