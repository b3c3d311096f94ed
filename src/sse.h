/*
 * The SSE stream of one request (SPEC.md §3.2): framing, seq, one
 * lock-protected flushed output shared by the voice and agent threads.
 * Events are queued under a short lock (which assigns seq, so the order
 * of each path is kept) and written by whichever thread holds the write
 * lock, so every event that is ready goes out in one flush.
 */
#ifndef TANDEM_SSE_H
#define TANDEM_SSE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

struct conn;

enum sse_path {
	SSE_PATH_STREAM,
	SSE_PATH_VOICE,
	SSE_PATH_AGENT
};

struct sse {
	pthread_mutex_t	 qlock;		/* pending, seq, closed */
	pthread_mutex_t	 wlock;		/* the output */
	struct conn	*conn;
	char		*pending;
	size_t		 plen, pcap;
	uint64_t	 seq;
	int		 closed;	/* stream_complete queued */
	atomic_int	 gone;		/* a write failed: the client left */
	atomic_llong	 last_write_ms;
	atomic_llong	 bytes;
	char		 request_id[40];
	char		 session_id[72];
};

void	 sse_init(struct sse *, struct conn *, const char *request_id,
	    const char *session_id);
void	 sse_destroy(struct sse *);
/*
 * Queue one event and flush. Takes ownership of data (may be NULL: {}).
 * Return 0, or -1 when the client is gone or the stream is closed.
 * Safe from any thread. "stream_complete" closes the stream.
 */
int	 sse_emit(struct sse *, enum sse_path, const char *type,
	    struct json_object *data);
/* Send ": ping" if nothing went out for interval_ms. */
int	 sse_heartbeat(struct sse *, long interval_ms);
int	 sse_gone(const struct sse *);
/*
 * Frame one event into buf (tests): "id: N\nevent: T\ndata: {...}\n\n".
 * Return a malloc'd string.
 */
char	*sse_frame(uint64_t seq, const char *type, enum sse_path,
	    const char *request_id, const char *session_id, long long ts_ms,
	    struct json_object *data);
long long now_ms(void);		/* wall clock, ms since the epoch */
long long mono_ms(void);	/* monotonic clock, ms */

#endif
