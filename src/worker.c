/*
 * Worker process. The listening socket is non-blocking and every
 * acceptor polls it with a timeout, so that draining never waits on a
 * blocked accept(); one acceptor per process polls at a time, so a
 * connection wakes one thread per process. tandem accepts the connection
 * itself and hands it to libfcgi, which then reads the request from it:
 * libfcgi would read the params while our accept lock is held, with no
 * timeout, so one peer that stalls would stop every acceptor.
 * Signals are blocked in every thread and taken with sigtimedwait() in
 * the main thread: libfcgi's own SIGTERM handler would only set a flag.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
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

/*
 * nginx sends the params and the body at once; a peer silent this long
 * while tandem reads its request is dropped.
 */
#define PEER_READ_TIMEOUT_S	10
/*
 * A write that makes no progress for this many heartbeat intervals means
 * a client that no longer reads: the stream ends as if it had left.
 */
#define WRITE_STALL_BEATS	4
#define WRITE_STALL_MIN_MS	1000

/*
 * FCGI_WEB_SERVER_ADDRS, as libfcgi's own accept honours it: a TCP peer
 * must be in the comma-separated list when the list is set. Return 1
 * when the peer may talk to us.
 */
static int
peer_allowed(int fd)
{
	const char		*list = getenv("FCGI_WEB_SERVER_ADDRS");
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);
	char			 addr[INET6_ADDRSTRLEN], *copy, *tok, *save;
	int			 ok = 0;

	if (list == NULL || *list == '\0')
		return 1;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_UNIX)
		return 1;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr,
		    sizeof(addr));
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr,
		    sizeof(addr));
	else
		return 0;
	if ((copy = strdup(list)) == NULL)
		return 0;
	for (tok = strtok_r(copy, ", ", &save); tok != NULL && !ok;
	    tok = strtok_r(NULL, ", ", &save))
		ok = strcmp(tok, addr) == 0;
	free(copy);
	return ok;
}

/* Bound how long one peer can hold this thread in a read or a write. */
static void
set_peer_timeouts(int fd, const struct conf *c)
{
	struct timeval	rcv = { PEER_READ_TIMEOUT_S, 0 }, snd;
	long		ms = c->heartbeat_ms * WRITE_STALL_BEATS;
	int		one = 1;

	if (ms < WRITE_STALL_MIN_MS)
		ms = WRITE_STALL_MIN_MS;
	snd.tv_sec = ms / 1000;
	snd.tv_usec = (ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
	/* Fails harmlessly on a Unix socket. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Wait for a connection and accept it. Return its fd, or -1 when draining. */
static int
take_connection(int lfd)
{
	struct pollfd	pfd = { .fd = lfd, .events = POLLIN };
	int		fd = -1;

	pthread_mutex_lock(&accept_mu);
	while (fd == -1 && !atomic_load(&stop_accepting)) {
		if (poll(&pfd, 1, ACCEPT_POLL_MS) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR && errno != ECONNABORTED && errno != EPROTO) {
			log_err("accept failed: %s", strerror(errno));
			usleep(100000);
		} else if (fd != -1 && !peer_allowed(fd)) {
			close(fd);
			fd = -1;
		}
	}
	pthread_mutex_unlock(&accept_mu);
	return fd;
}

/*
 * Take the next request. Return 0, or -1 when draining. The request is
 * read outside the accept lock and under PEER_READ_TIMEOUT_S, so a peer
 * that stalls or sends garbage costs its own thread that long at most.
 * The request was made with listen_sock -1: libfcgi never accepts by
 * itself, and after a bad peer it returns -EBADF instead.
 */
static int
accept_one(FCGX_Request *req, int lfd, const struct conf *c)
{
	int fd;

	while (!atomic_load(&stop_accepting)) {
		/* With fastcgi_keep_conn on, the next request comes on ipcFd. */
		if (req->ipcFd < 0) {
			if ((fd = take_connection(lfd)) == -1)
				continue;
			set_peer_timeouts(fd, c);
			req->ipcFd = fd;
			/* So that FCGX_Accept_r reads fd rather than closing it. */
			req->keepConnection = 1;
		}
		if (FCGX_Accept_r(req) == 0)
			return 0;
		/* libfcgi closed a peer that sent no valid request. */
	}
	return -1;
}

static void
count_request(const struct conf *c)
{
	int n = atomic_fetch_add(&served, 1) + 1;

	if (c->max_requests > 0 && n >= c->max_requests &&
	    !atomic_exchange(&stop_accepting, 1)) {
		atomic_store(&row()->leaving, 1);
		log_info("served %d requests (max_requests): recycling", n);
	}
}

static void *
acceptor_main(void *arg)
{
	struct acceptor	*a = arg;
	FCGX_Request	 req;
	struct conn	 c;

	FCGX_InitRequest(&req, -1, 0);
	while (accept_one(&req, a->fd, a->conf) == 0) {
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
	atomic_store(&row()->leaving, 1);
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
		case SIGUSR2:
			/* Retired after a reload: finish the streams, take no more. */
			if (!atomic_exchange(&stop_accepting, 1))
				log_info("retiring: finishing the streams in flight");
			atomic_store(&row()->leaving, 1);
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
