/*
 * Worker process. The listening socket is non-blocking and every
 * acceptor polls it with a timeout, so that draining never waits on a
 * blocked accept() (libfcgi returns -EAGAIN instead); one acceptor per
 * process polls at a time, so a connection wakes one thread per process.
 * Signals are blocked in every thread and taken with sigtimedwait() in
 * the main thread: libfcgi's own SIGTERM handler would only set a flag.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "conn.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "scoreboard.h"
#include "sse.h"
#include "worker.h"

#define ACCEPT_POLL_MS	200

static pthread_mutex_t	 accept_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int	 stop_accepting;
static atomic_int	 served;
static atomic_int	 live_threads;

struct acceptor {
	pthread_t		 tid;
	const struct conf	*conf;
	int			 fd;
};

static struct sb_row *
row(void)
{
	return &sb->rows[sb_slot < 0 ? 0 : sb_slot];
}

/* Wait for a connection and accept it. Return 0, or -1 when draining. */
static int
accept_one(FCGX_Request *req, int fd)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	int		rc;

	pthread_mutex_lock(&accept_mu);
	while (!atomic_load(&stop_accepting)) {
		if (poll(&pfd, 1, ACCEPT_POLL_MS) <= 0)
			continue;
		rc = FCGX_Accept_r(req);
		if (rc == 0) {
			pthread_mutex_unlock(&accept_mu);
			return 0;
		}
		if (rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR &&
		    rc != -ECONNABORTED) {
			log_err("accept failed: %s", strerror(-rc));
			usleep(100000);
		}
	}
	pthread_mutex_unlock(&accept_mu);
	return -1;
}

static void
count_request(const struct conf *c)
{
	int n = atomic_fetch_add(&served, 1) + 1;

	if (c->max_requests > 0 && n >= c->max_requests &&
	    !atomic_exchange(&stop_accepting, 1))
		log_info("served %d requests (max_requests): recycling", n);
}

static void *
acceptor_main(void *arg)
{
	struct acceptor	*a = arg;
	FCGX_Request	 req;
	struct conn	 c;

	FCGX_InitRequest(&req, a->fd, 0);
	while (accept_one(&req, a->fd) == 0) {
		atomic_fetch_add(&row()->busy, 1);
		conn_init_fcgi(&c, &req);
		http_serve(a->conf, &c);
		FCGX_Finish_r(&req);
		atomic_fetch_sub(&row()->busy, 1);
		count_request(a->conf);
	}
	FCGX_Free(&req, 1);
	atomic_fetch_sub(&live_threads, 1);
	return NULL;
}

static void
block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void
begin_drain(const struct conf *c, const char *why)
{
	if (atomic_load(&job_draining))
		return;
	log_info("draining (%s), %ld ms for streams in flight", why,
	    c->drain_timeout_ms);
	atomic_store(&job_drain_deadline_ms, mono_ms() + c->drain_timeout_ms);
	atomic_store(&job_draining, 1);
	atomic_store(&stop_accepting, 1);
}

/* The main thread: signals, until every acceptor has left. */
static void
wait_for_acceptors(const struct conf *c, sigset_t *set)
{
	struct timespec	ts = { 0, ACCEPT_POLL_MS * 1000000L };
	int		sig;

	while (atomic_load(&live_threads) > 0) {
		sig = sigtimedwait(set, NULL, &ts);
		switch (sig) {
		case SIGTERM:
		case SIGQUIT:
		case SIGINT:
			begin_drain(c, sig == SIGQUIT ? "SIGQUIT" : "SIGTERM");
			break;
		case SIGUSR1:
			log_reopen();
			break;
		default:
			break;
		}
	}
}

int
worker_run(const struct conf *c, int fd)
{
	struct acceptor	*a;
	sigset_t	 set;
	int		 i, fl;

	block_signals(&set);
	if (FCGX_Init() != 0) {
		log_err("FCGX_Init failed");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((fl = fcntl(fd, F_GETFL)) != -1)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if ((a = calloc((size_t)c->threads, sizeof(*a))) == NULL)
		return 1;
	for (i = 0; i < c->threads; i++) {
		a[i].conf = c;
		a[i].fd = fd;
		atomic_fetch_add(&live_threads, 1);
		if (pthread_create(&a[i].tid, NULL, acceptor_main, &a[i]) != 0) {
			atomic_fetch_sub(&live_threads, 1);
			log_err("cannot start acceptor thread %d", i);
			break;
		}
	}
	if (i == 0) {
		free(a);
		return 1;
	}
	wait_for_acceptors(c, &set);
	while (--i >= 0)
		pthread_join(a[i].tid, NULL);
	free(a);
	return 0;
}
