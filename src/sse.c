/*
 * The SSE stream writer (SPEC.md §3.2). See sse.h for the locking scheme.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "sse.h"

/* Queued bytes beyond which an emitting path waits for the writer. */
#define SSE_PENDING_MAX	(1024 * 1024)

static const char *const path_names[] = {
	[SSE_PATH_STREAM] = "stream",
	[SSE_PATH_VOICE] = "voice",
	[SSE_PATH_AGENT] = "agent",
};

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
sse_init(struct sse *s, struct conn *c, const char *request_id,
    const char *session_id)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->qlock, NULL);
	pthread_mutex_init(&s->wlock, NULL);
	s->conn = c;
	snprintf(s->request_id, sizeof(s->request_id), "%s", request_id);
	snprintf(s->session_id, sizeof(s->session_id), "%s", session_id);
	atomic_store(&s->last_write_ms, mono_ms());
}

void
sse_destroy(struct sse *s)
{
	pthread_mutex_destroy(&s->qlock);
	pthread_mutex_destroy(&s->wlock);
	free(s->pending);
	s->pending = NULL;
}

/*
 * One event as one SSE block. The envelope is built with json-c so
 * every string is escaped; PLAIN + NOSLASHESCAPE keeps it on one line.
 */
char *
sse_frame(uint64_t seq, const char *type, enum sse_path path,
    const char *request_id, const char *session_id, long long ts_ms,
    struct json_object *data)
{
	struct json_object	*ev;
	const char		*js;
	char			*out;
	size_t			 n;

	ev = json_object_new_object();
	json_object_object_add(ev, "type", json_object_new_string(type));
	json_object_object_add(ev, "seq", json_object_new_int64((int64_t)seq));
	json_object_object_add(ev, "request_id", json_object_new_string(request_id));
	json_object_object_add(ev, "session_id", json_object_new_string(session_id));
	json_object_object_add(ev, "ts", json_object_new_int64(ts_ms));
	json_object_object_add(ev, "path", json_object_new_string(path_names[path]));
	json_object_object_add(ev, "data",
	    data != NULL ? json_object_get(data) : json_object_new_object());
	js = json_object_to_json_string_ext(ev,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	n = strlen(js) + strlen(type) + 64;
	if ((out = malloc(n)) != NULL)
		snprintf(out, n, "id: %llu\nevent: %s\ndata: %s\n\n",
		    (unsigned long long)seq, type, js);
	json_object_put(ev);
	return out;
}

/* Append to the pending buffer; qlock held. Return 0 or -1. */
static int
pending_add(struct sse *s, const char *p, size_t n)
{
	char	*np;
	size_t	 cap;

	if (s->plen + n > s->pcap) {
		cap = s->pcap ? s->pcap : 4096;
		while (cap < s->plen + n)
			cap *= 2;
		if ((np = realloc(s->pending, cap)) == NULL)
			return -1;
		s->pending = np;
		s->pcap = cap;
	}
	memcpy(s->pending + s->plen, p, n);
	s->plen += n;
	return 0;
}

/*
 * Write out whatever is pending, in one flush. Whoever holds wlock
 * writes for everyone: a thread that finds it taken leaves its events to
 * the holder, which looks at the queue again after letting go, so no
 * event is stranded and no path waits on another's slow write — unless
 * the queue has grown past SSE_PENDING_MAX, where waiting is the
 * back-pressure a slow client must exert.
 */
static int
sse_drain(struct sse *s)
{
	char	*buf;
	size_t	 len;
	int	 more;

	for (;;) {
		if (pthread_mutex_trylock(&s->wlock) != 0) {
			pthread_mutex_lock(&s->qlock);
			more = s->plen > SSE_PENDING_MAX;
			pthread_mutex_unlock(&s->qlock);
			if (!more)
				break;
			pthread_mutex_lock(&s->wlock);
		}
		for (;;) {
			pthread_mutex_lock(&s->qlock);
			buf = s->pending;
			len = s->plen;
			s->pending = NULL;
			s->plen = s->pcap = 0;
			pthread_mutex_unlock(&s->qlock);
			if (len == 0)
				break;
			if (!atomic_load(&s->gone) &&
			    conn_write(s->conn, buf, len) == -1)
				atomic_store(&s->gone, 1);
			else if (!atomic_load(&s->gone)) {
				atomic_fetch_add(&s->bytes, (long long)len);
				atomic_store(&s->last_write_ms, mono_ms());
			}
			free(buf);
		}
		pthread_mutex_unlock(&s->wlock);
		pthread_mutex_lock(&s->qlock);
		more = s->plen > 0;
		pthread_mutex_unlock(&s->qlock);
		if (!more)
			break;
	}
	return atomic_load(&s->gone) ? -1 : 0;
}

int
sse_emit(struct sse *s, enum sse_path path, const char *type,
    struct json_object *data)
{
	char	*block;
	int	 rc = 0;

	pthread_mutex_lock(&s->qlock);
	if (s->closed || atomic_load(&s->gone)) {
		pthread_mutex_unlock(&s->qlock);
		json_object_put(data);
		return -1;
	}
	block = sse_frame(++s->seq, type, path, s->request_id, s->session_id,
	    now_ms(), data);
	if (block == NULL || pending_add(s, block, strlen(block)) == -1) {
		s->seq--;
		rc = -1;
	}
	if (strcmp(type, "stream_complete") == 0)
		s->closed = 1;
	pthread_mutex_unlock(&s->qlock);
	free(block);
	json_object_put(data);
	if (rc == -1)
		return -1;
	return sse_drain(s);
}

int
sse_heartbeat(struct sse *s, long interval_ms)
{
	static const char ping[] = ": ping\n\n";
	int queued = 0;

	if (mono_ms() - atomic_load(&s->last_write_ms) < interval_ms)
		return atomic_load(&s->gone) ? -1 : 0;
	pthread_mutex_lock(&s->qlock);
	if (!s->closed && !atomic_load(&s->gone))
		queued = pending_add(s, ping, sizeof(ping) - 1) == 0;
	pthread_mutex_unlock(&s->qlock);
	if (!queued)
		return atomic_load(&s->gone) ? -1 : 0;
	return sse_drain(s);
}

int
sse_gone(const struct sse *s)
{
	return atomic_load(&s->gone);
}
