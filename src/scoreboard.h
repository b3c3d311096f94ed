/*
 * Pool-wide state shared by the master and every worker process
 * (anonymous MAP_SHARED memory made before fork), in the manner of
 * php-fpm's scoreboard: one row per worker slot, a process-shared robust
 * mutex for check-and-take limits (max_streams, Unmute sessions per URL).
 * Totals are sums over rows, so a worker that dies takes its counts with
 * it when the master clears its row.
 */
#ifndef TANDEM_SCOREBOARD_H
#define TANDEM_SCOREBOARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "conf.h"

#define SB_MAX_WORKERS	256

struct sb_row {
	atomic_int	 pid;		/* 0: free slot */
	atomic_llong	 started_ms;
	atomic_llong	 requests;	/* accepted by this process */
	atomic_int	 active;	/* streams in flight */
	atomic_int	 busy;		/* requests in flight (any route) */
	atomic_int	 unmute[CONF_MAX_UNMUTE_URLS];
	atomic_llong	 last_request_ms;
	/*
	 * The worker accepts no more (max_requests, drain) and only
	 * finishes its streams: the master starts its replacement now.
	 */
	atomic_int	 leaving;
};

struct scoreboard {
	pthread_mutex_t	 lock;		/* process-shared, robust */
	long long	 start_time;	/* epoch seconds */
	atomic_llong	 accepted;	/* all requests */
	atomic_llong	 streams;	/* streams started */
	atomic_llong	 rejected;	/* 503 overloaded */
	atomic_llong	 errors;	/* 4xx/5xx answers */
	atomic_llong	 slow;
	atomic_llong	 disconnects;	/* clients that left mid-stream */
	atomic_int	 peak_active;
	atomic_llong	 unmute_busy;
	atomic_int	 workers_spawned;
	atomic_int	 respawns;
	int		 nrows;
	struct sb_row	 rows[SB_MAX_WORKERS];
};

extern struct scoreboard *sb;	/* NULL until sb_create() */
extern int sb_slot;		/* this worker's row, -1 in the master */

int	 sb_create(void);		/* master, before fork; also tests */
void	 sb_clear_row(int slot);	/* master, after reaping */
/* Take a stream slot if fewer than max streams are active pool-wide. */
int	 sb_stream_acquire(int max);
void	 sb_stream_release(void);
/*
 * Take an Unmute session slot on one of n URLs: the one with the fewest
 * active sessions below max. Return the URL index, or -1 when all full.
 */
int	 sb_unmute_acquire(int n, int max);
void	 sb_unmute_release(int url);
int	 sb_total_active(void);
int	 sb_total_unmute(int url);

#endif
