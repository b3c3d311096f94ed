#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pm.h"
#include "privs.h"
#include "scoreboard.h"
#include "sse.h"
#include "worker.h"

#define TICK_MS		200
/* After drain_timeout, workers get this much more before SIGKILL. */
#define KILL_GRACE_MS	3000
/*
 * A worker that dies this soon after its start cannot serve: after
 * BACKOFF_AFTER such deaths in a row, starts are spaced out, doubling
 * from BACKOFF_MIN_MS up to BACKOFF_MAX_MS, so that a broken worker (a
 * missing library, no memory for its threads) is no fork bomb.
 */
#define FAST_DEATH_MS	1000
#define BACKOFF_AFTER	3
#define BACKOFF_MIN_MS	250
#define BACKOFF_MAX_MS	10000

enum pm_state {
	PM_RUNNING,
	PM_STOPPING
};

struct pool {
	struct conf	*conf;
	const char	*conf_path;
	int		 fd;
	enum pm_state	 state;
	long long	 stop_deadline;
	int		 killed;
	/* generation of each slot: workers of an older config are retired */
	int		 gen[SB_MAX_WORKERS];
	int		 retiring[SB_MAX_WORKERS];
	int		 generation;
	int		 booted;	/* the first maintenance pass ran */
	int		 fast_deaths;	/* in a row, see FAST_DEATH_MS */
	long long	 spawn_after;	/* no start before (monotonic ms) */
};

/* Whether slot i holds a worker that accepts requests. */
static int
serving(const struct pool *p, int i)
{
	return atomic_load(&sb->rows[i].pid) != 0 && !p->retiring[i] &&
	    !atomic_load(&sb->rows[i].leaving);
}

static int
count_workers(struct pool *p, int *idle)
{
	int i, n = 0;

	if (idle)
		*idle = 0;
	for (i = 0; i < SB_MAX_WORKERS; i++) {
		if (!serving(p, i))
			continue;
		n++;
		if (idle && atomic_load(&sb->rows[i].busy) == 0)
			(*idle)++;
	}
	return n;
}

static int
any_worker(void)
{
	int i;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		if (atomic_load(&sb->rows[i].pid) != 0)
			return 1;
	return 0;
}

static int
free_slot(void)
{
	int i;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		if (atomic_load(&sb->rows[i].pid) == 0)
			return i;
	return -1;
}

/* Fork one worker into a free slot. Return 0 or -1. */
static int
spawn(struct pool *p)
{
	int	slot = free_slot(), rc;
	pid_t	pid;
	sigset_t chld;

	if (slot < 0)
		return -1;
	sb_clear_row(slot);
	switch (pid = fork()) {
	case -1:
		log_err("fork: %s", strerror(errno));
		return -1;
	case 0:
		sb_slot = slot;
		atomic_store(&sb->rows[slot].pid, (int)getpid());
		atomic_store(&sb->rows[slot].started_ms, mono_ms());
		if (privs_drop(p->conf) == -1)
			_exit(1);
		/* A worker must not outlive its master (set after setuid,
		 * which clears it). */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(0);
		/*
		 * Keep the master's blocked signals blocked: worker_run takes
		 * them with sigtimedwait(), and in between a SIGTERM or SIGHUP
		 * would kill the new worker outright.
		 */
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
		rc = worker_run(p->conf, p->fd);
		_exit(rc);
	default:
		atomic_store(&sb->rows[slot].pid, (int)pid);
		atomic_store(&sb->rows[slot].started_ms, mono_ms());
		p->gen[slot] = p->generation;
		p->retiring[slot] = 0;
		atomic_fetch_add(&sb->workers_spawned, 1);
		log_info("worker started: pid %d, slot %d", (int)pid, slot);
		return 0;
	}
}

static void
signal_workers(struct pool *p, int sig)
{
	int i, pid;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		if ((pid = atomic_load(&sb->rows[i].pid)) != 0)
			kill(pid, sig);
}

static int
slot_of(pid_t pid)
{
	int i;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		if (atomic_load(&sb->rows[i].pid) == (int)pid)
			return i;
	return -1;
}

/* A worker died unexpectedly after living lived ms: back off if it was quick. */
static void
note_death(struct pool *p, long long lived)
{
	long long	delay = BACKOFF_MIN_MS;
	int		n;

	if (lived >= FAST_DEATH_MS) {
		p->fast_deaths = 0;
		return;
	}
	if (++p->fast_deaths < BACKOFF_AFTER)
		return;
	for (n = p->fast_deaths - BACKOFF_AFTER; n > 0 && delay < BACKOFF_MAX_MS; n--)
		delay *= 2;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	p->spawn_after = mono_ms() + delay;
	log_warn("workers die at start (%d in a row): next start in %lld ms",
	    p->fast_deaths, delay);
}

/* Reap every dead worker; say why it died when that may lose requests. */
static void
reap(struct pool *p)
{
	pid_t		pid;
	int		status, slot;
	long long	lived;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if ((slot = slot_of(pid)) < 0)
			continue;
		lived = mono_ms() - atomic_load(&sb->rows[slot].started_ms);
		if (WIFSIGNALED(status))
			log_warn("worker %d (slot %d) killed by signal %d", (int)pid,
			    slot, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			log_warn("worker %d exited with status %d", (int)pid,
			    WEXITSTATUS(status));
		else
			log_debug("worker %d exited", (int)pid);
		if (p->state == PM_RUNNING && !p->retiring[slot] &&
		    (WIFSIGNALED(status) || WEXITSTATUS(status) != 0)) {
			atomic_fetch_add(&sb->respawns, 1);
			note_death(p, lived);
		}
		p->retiring[slot] = 0;
		sb_clear_row(slot);
	}
}

/*
 * Ask one worker to leave: SIGQUIT drains (its streams get
 * drain_timeout), SIGUSR2 lets its streams run to their end (reload).
 */
static void
retire(struct pool *p, int slot, const char *why, int sig)
{
	int pid = atomic_load(&sb->rows[slot].pid);

	if (pid != 0 && !p->retiring[slot]) {
		p->retiring[slot] = 1;
		log_info("retiring %s worker: pid %d", why, pid);
		kill(pid, sig);
	}
}

static int
listen_pending(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) > 0;
}

/* Whether some worker has lived past FAST_DEATH_MS: starts work again. */
static int
any_settled(long long now)
{
	int i;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		if (atomic_load(&sb->rows[i].pid) != 0 &&
		    now - atomic_load(&sb->rows[i].started_ms) >= FAST_DEATH_MS)
			return 1;
	return 0;
}

/* One maintenance pass, php-fpm style. */
static void
maintain(struct pool *p)
{
	struct conf	*c = p->conf;
	int		 n, idle, i, want;
	long long	 now = mono_ms();

	if (p->state != PM_RUNNING)
		return;
	/*
	 * Workers of an older configuration stop accepting at once; their
	 * streams run to their end (request_timeout at most): a reload
	 * cuts no stream.
	 */
	for (i = 0; i < SB_MAX_WORKERS; i++)
		if (atomic_load(&sb->rows[i].pid) != 0 && p->gen[i] != p->generation)
			retire(p, i, "old-configuration", SIGUSR2);
	n = count_workers(p, &idle);
	switch (c->pm) {
	case PM_STATIC:
		want = c->processes;
		break;
	case PM_DYNAMIC:
		want = n;
		/* start_processes at start-up only, as php-fpm's start_servers. */
		if (!p->booted)
			want = c->start_processes;
		else if (idle < c->min_spare_processes)
			want = n + (c->min_spare_processes - idle);
		if (idle > c->max_spare_processes) {
			for (i = 0; i < SB_MAX_WORKERS && idle > c->max_spare_processes; i++)
				if (serving(p, i) && atomic_load(&sb->rows[i].busy) == 0) {
					retire(p, i, "spare", SIGQUIT);
					idle--;
				}
		}
		break;
	case PM_ONDEMAND:
	default:
		want = n;
		if (listen_pending(p->fd) && idle == 0)
			want = n + 1;
		for (i = 0; i < SB_MAX_WORKERS; i++)
			if (serving(p, i) && atomic_load(&sb->rows[i].busy) == 0 &&
			    now - atomic_load(&sb->rows[i].last_request_ms) >
			    c->process_idle_timeout_ms &&
			    now - atomic_load(&sb->rows[i].started_ms) >
			    c->process_idle_timeout_ms)
				retire(p, i, "idle", SIGQUIT);
		break;
	}
	if (want > c->processes)
		want = c->processes;
	if (p->fast_deaths > 0 && any_settled(now)) {
		if (p->fast_deaths >= BACKOFF_AFTER)
			log_notice("workers start again");
		p->fast_deaths = 0;
	}
	while (n < want && now >= p->spawn_after && spawn(p) == 0) {
		n++;
		/* While backing off, one start at a time. */
		if (p->fast_deaths >= BACKOFF_AFTER)
			break;
	}
	p->booted = 1;
}

static void
reload(struct pool *p)
{
	struct conf	 next;
	char		 err[512];

	if (conf_load(&next, p->conf_path, err, sizeof(err)) == -1) {
		log_err("reload refused, keeping the running configuration: %s", err);
		conf_free(&next);
		return;
	}
	if ((next.listen == NULL) != (p->conf->listen == NULL) ||
	    (next.listen && strcmp(next.listen, p->conf->listen) != 0))
		log_warn("reload: a new listen address needs a restart; keeping the socket");
	log_open(next.log, next.log_level, next.log_format);
	privs_give_log(&next);
	/* Workers of the old generation keep their copy of the old config. */
	conf_free(p->conf);
	*p->conf = next;
	p->generation++;
	log_notice("configuration reloaded (generation %d)", p->generation);
}

static void
begin_stop(struct pool *p, int sig)
{
	if (p->state == PM_STOPPING)
		return;
	p->state = PM_STOPPING;
	p->stop_deadline = mono_ms() + p->conf->drain_timeout_ms + KILL_GRACE_MS;
	log_notice("stopping on signal %d: draining workers", sig);
	signal_workers(p, SIGTERM);
}

static void
handle_signal(struct pool *p, int sig)
{
	switch (sig) {
	case SIGCHLD:
		reap(p);
		break;
	case SIGTERM:
	case SIGQUIT:
	case SIGINT:
		begin_stop(p, sig);
		break;
	case SIGHUP:
		reload(p);
		break;
	case SIGUSR1:
		log_reopen();
		privs_give_log(p->conf);
		signal_workers(p, SIGUSR1);
		break;
	}
}

int
pm_run(struct conf *conf, const char *conf_path, int fd)
{
	struct pool	 p;
	sigset_t	 set;
	struct timespec	 ts = { 0, TICK_MS * 1000000L };
	int		 sig;

	memset(&p, 0, sizeof(p));
	p.conf = conf;
	p.conf_path = conf_path;
	p.fd = fd;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_notice("pool started: pm %s, %d processes x %d threads, max_streams %d",
	    conf->pm == PM_STATIC ? "static" : conf->pm == PM_DYNAMIC ?
	    "dynamic" : "ondemand", conf->processes, conf->threads, conf->max_streams);
	for (;;) {
		maintain(&p);
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig > 0)
			handle_signal(&p, sig);
		reap(&p);
		if (p.state == PM_STOPPING) {
			if (!any_worker())
				break;
			if (!p.killed && mono_ms() > p.stop_deadline) {
				log_warn("workers still alive after drain: SIGKILL");
				signal_workers(&p, SIGKILL);
				p.killed = 1;
			}
		}
	}
	log_notice("pool stopped");
	return 0;
}
