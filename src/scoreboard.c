#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "scoreboard.h"

struct scoreboard	*sb;
int			 sb_slot = -1;

int
sb_create(void)
{
	pthread_mutexattr_t a;

	sb = mmap(NULL, sizeof(*sb), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sb == MAP_FAILED) {
		sb = NULL;
		return -1;
	}
	memset(sb, 0, sizeof(*sb));
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	/* A worker killed while holding it must not wedge the pool. */
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&sb->lock, &a);
	pthread_mutexattr_destroy(&a);
	sb->start_time = (long long)time(NULL);
	return 0;
}

static void
sb_lock(void)
{
	if (pthread_mutex_lock(&sb->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&sb->lock);
}

static void
sb_unlock(void)
{
	pthread_mutex_unlock(&sb->lock);
}

static struct sb_row *
my_row(void)
{
	return &sb->rows[sb_slot < 0 ? 0 : sb_slot];
}

void
sb_clear_row(int slot)
{
	struct sb_row *r = &sb->rows[slot];
	int i;

	sb_lock();
	atomic_store(&r->pid, 0);
	atomic_store(&r->active, 0);
	atomic_store(&r->busy, 0);
	atomic_store(&r->requests, 0);
	atomic_store(&r->leaving, 0);
	for (i = 0; i < CONF_MAX_UNMUTE_URLS; i++)
		atomic_store(&r->unmute[i], 0);
	sb_unlock();
}

/* Sum over rows; sb->lock held or a racy read is fine (status). */
static int
sum_active(void)
{
	int i, n = 0;

	for (i = 0; i < SB_MAX_WORKERS; i++)
		n += atomic_load(&sb->rows[i].active);
	return n;
}

int
sb_total_active(void)
{
	return sb ? sum_active() : 0;
}

int
sb_total_unmute(int url)
{
	int i, n = 0;

	if (sb == NULL)
		return 0;
	for (i = 0; i < SB_MAX_WORKERS; i++)
		n += atomic_load(&sb->rows[i].unmute[url]);
	return n;
}

int
sb_stream_acquire(int max)
{
	int n, peak;

	sb_lock();
	n = sum_active();
	if (n >= max) {
		sb_unlock();
		atomic_fetch_add(&sb->rejected, 1);
		return -1;
	}
	atomic_fetch_add(&my_row()->active, 1);
	sb_unlock();
	atomic_fetch_add(&sb->streams, 1);
	peak = atomic_load(&sb->peak_active);
	while (n + 1 > peak &&
	    !atomic_compare_exchange_weak(&sb->peak_active, &peak, n + 1))
		;
	return 0;
}

void
sb_stream_release(void)
{
	atomic_fetch_sub(&my_row()->active, 1);
}

int
sb_unmute_acquire(int n, int max)
{
	int i, best = -1, best_load = max, load;

	sb_lock();
	for (i = 0; i < n && i < CONF_MAX_UNMUTE_URLS; i++) {
		load = sb_total_unmute(i);
		if (load < best_load) {
			best = i;
			best_load = load;
		}
	}
	if (best >= 0)
		atomic_fetch_add(&my_row()->unmute[best], 1);
	sb_unlock();
	return best;
}

void
sb_unmute_release(int url)
{
	if (url >= 0 && url < CONF_MAX_UNMUTE_URLS)
		atomic_fetch_sub(&my_row()->unmute[url], 1);
}
