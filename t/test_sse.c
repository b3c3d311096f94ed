/*
 * Unit tests of the SSE writer (src/sse.c, SPEC.md §3.2): the framing
 * of one event, JSON escaping on one line, the envelope, and sse_emit
 * through a CGI-mode struct conn whose fd 1 is a pipe for the length of
 * a test (seq without gaps under two threads, nothing after
 * stream_complete, heartbeats only after silence, a client that left).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "sse.h"
#include "tap.h"

/* What a reader thread collected from the pipe on fd 1. */
struct capture {
	int		 saved_stdout;
	int		 rfd;
	pthread_t	 th;
	char		*buf;
	size_t		 len, cap;
};

static void *
capture_reader(void *arg)
{
	struct capture	*cp = arg;
	ssize_t		 n;

	for (;;) {
		if (cp->len + 65536 + 1 > cp->cap) {
			cp->cap = (cp->cap ? cp->cap * 2 : 1 << 20);
			if ((cp->buf = realloc(cp->buf, cp->cap)) == NULL)
				abort();
		}
		n = read(cp->rfd, cp->buf + cp->len, 65536);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		cp->len += (size_t)n;
	}
	cp->buf[cp->len] = '\0';
	return NULL;
}

/* Point fd 1 at a pipe read by a thread. No TAP output until the end. */
static int
capture_begin(struct capture *cp)
{
	int p[2];

	memset(cp, 0, sizeof(*cp));
	fflush(stdout);
	if (pipe(p) == -1 || (cp->saved_stdout = dup(1)) == -1)
		return -1;
	if (dup2(p[1], 1) == -1)
		return -1;
	close(p[1]);
	cp->rfd = p[0];
	return pthread_create(&cp->th, NULL, capture_reader, cp) == 0 ? 0 : -1;
}

/* Restore fd 1 (closing the pipe's last writer) and wait for the reader. */
static void
capture_end(struct capture *cp)
{
	dup2(cp->saved_stdout, 1);
	close(cp->saved_stdout);
	pthread_join(cp->th, NULL);
	close(cp->rfd);
}

/* One parsed SSE block. */
struct block {
	int			 ping;
	unsigned long long	 id;
	char			 event[64];
	struct json_object	*data;	/* owned */
	int			 data_lines;
};

/*
 * Split captured output into blocks. Return the count, or -1 when a
 * block is not exactly "id: N\nevent: T\ndata: J" or ": ping".
 */
static int
parse_blocks(const char *buf, struct block *out, int max)
{
	const char	*p = buf, *end, *l2, *l3;
	int		 n = 0;
	char		*json;

	while (*p != '\0') {
		if ((end = strstr(p, "\n\n")) == NULL || n == max)
			return -1;
		memset(&out[n], 0, sizeof(out[n]));
		if (strncmp(p, ": ping\n\n", 8) == 0) {
			out[n++].ping = 1;
			p = end + 2;
			continue;
		}
		if (sscanf(p, "id: %llu\n", &out[n].id) != 1 ||
		    (l2 = strchr(p, '\n')) == NULL || l2 > end ||
		    strncmp(l2 + 1, "event: ", 7) != 0 ||
		    (l3 = strchr(l2 + 1, '\n')) == NULL || l3 > end ||
		    strncmp(l3 + 1, "data: ", 6) != 0 ||
		    memchr(l3 + 1, '\n', (size_t)(end - l3 - 1)) != NULL ||
		    memchr(l3 + 1, '\r', (size_t)(end - l3 - 1)) != NULL)
			return -1;
		snprintf(out[n].event, sizeof(out[n].event), "%.*s",
		    (int)(l3 - l2 - 8), l2 + 8);
		json = strndup(l3 + 7, (size_t)(end - l3 - 7));
		out[n].data = json_tokener_parse(json);
		free(json);
		if (out[n].data == NULL)
			return -1;
		out[n].data_lines = 1;
		n++;
		p = end + 2;
	}
	return n;
}

static void
free_blocks(struct block *b, int n)
{
	int i;

	for (i = 0; i < n; i++)
		json_object_put(b[i].data);
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static long long
jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return -1;
	return json_object_get_int64(v);
}

static void
test_frame_exact(void)
{
	struct json_object	*d = json_object_new_object();
	char			*f;

	json_object_object_add(d, "text", json_object_new_string("Hello"));
	json_object_object_add(d, "source", json_object_new_string("unmute"));
	f = sse_frame(7, "text_chunk", SSE_PATH_VOICE, "req-1", "sess-1",
	    1732434000123LL, d);
	is_str(f, "id: 7\nevent: text_chunk\ndata: {\"type\":\"text_chunk\","
	    "\"seq\":7,\"request_id\":\"req-1\",\"session_id\":\"sess-1\","
	    "\"ts\":1732434000123,\"path\":\"voice\",\"data\":{\"text\":\"Hello\","
	    "\"source\":\"unmute\"}}\n\n", "exact SSE block (SPEC §3.2 example)");
	free(f);
	is_int(json_object_object_length(d), 2, "sse_frame leaves data intact");
	json_object_put(d);	/* sse_frame took its own reference */

	f = sse_frame(1, "streaming_started", SSE_PATH_STREAM, "r", "s", 5, NULL);
	is_str(f, "id: 1\nevent: streaming_started\ndata: {\"type\":\"streaming_started\","
	    "\"seq\":1,\"request_id\":\"r\",\"session_id\":\"s\",\"ts\":5,"
	    "\"path\":\"stream\",\"data\":{}}\n\n", "NULL data becomes {}");
	free(f);
	f = sse_frame(18446744073709551615ULL, "node_started", SSE_PATH_AGENT,
	    "r", "s", 0, NULL);
	ok(f != NULL && strncmp(f, "id: 18446744073709551615\n", 25) == 0,
	    "largest seq in the id line");
	ok(f != NULL && strstr(f, "\"path\":\"agent\"") != NULL, "path agent");
	free(f);
}

/* Frame text as data.text and check it survives, on one line. */
static void
check_roundtrip(const char *text, const char *name)
{
	struct json_object	*d = json_object_new_object(), *ev, *dd;
	char			*f, *line;
	const char		*got;
	struct block		 b[2];
	int			 n;

	json_object_object_add(d, "text", json_object_new_string(text));
	f = sse_frame(3, "agent_text_chunk", SSE_PATH_AGENT,
	    "id\"with\\quote", "sess\n1", 1, d);
	json_object_put(d);
	n = f ? parse_blocks(f, b, 2) : -1;
	ok(n == 1, "%s: one block, data on one line", name);
	if (n != 1) {
		printf("#   frame: %s\n", f ? f : "(null)");
		free(f);
		return;
	}
	ev = b[0].data;
	dd = json_object_object_get(ev, "data");
	got = jstr(dd, "text");
	ok(got != NULL && strcmp(got, text) == 0, "%s: round-trips", name);
	line = strstr(f, "data: ");
	ok(strstr(line, "\\/") == NULL, "%s: no \\/ escaping", name);
	is_str(jstr(ev, "request_id"), "id\"with\\quote", "request_id escaped");
	is_str(jstr(ev, "session_id"), "sess\n1", "session_id escaped");
	free_blocks(b, n);
	free(f);
}

static void
test_frame_escaping(void)
{
	struct json_object	*d;
	char			*f;

	check_roundtrip("say \"hi\"", "quotes");
	check_roundtrip("back\\slash", "backslash");
	check_roundtrip("two\nlines\n\nand a blank", "newlines");
	check_roundtrip("cr\rlf\r\n", "CR");
	check_roundtrip("tab\there", "tab");
	check_roundtrip("ctl\x01\x02\x1f\b\f", "control characters");
	check_roundtrip("del\x7f", "DEL");
	check_roundtrip("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
	    "non-ASCII");
	check_roundtrip("http://a/b</script>", "slashes");
	check_roundtrip("data: id: event: \n\nid: 99\nevent: stream_complete\n",
	    "SSE injection attempt");
	check_roundtrip("\xe2\x80\xa8\xe2\x80\xa9", "U+2028 U+2029");

	d = json_object_new_object();
	json_object_object_add(d, "text", json_object_new_string(
	    "q\" b\\ n\n r\r t\t c\x01 s/ \xc3\xa9"));
	f = sse_frame(2, "text_chunk", SSE_PATH_VOICE, "r", "s", 1, d);
	json_object_put(d);
	ok(f && strstr(f, "\"text\":\"q\\\" b\\\\ n\\n r\\r t\\t c\\u0001 s/ ") != NULL,
	    "escapes spelled \\\" \\\\ \\n \\r \\t \\u0001, '/' plain");
	ok(f && strstr(f, "\xc3\xa9\"") != NULL, "UTF-8 kept raw, not \\u-escaped");
	free(f);
}

static void
test_time(void)
{
	long long a = now_ms(), m1 = mono_ms(), m2;

	ok(a > 1600000000000LL && a < 4102444800000LL, "now_ms is epoch ms");
	usleep(20000);
	m2 = mono_ms();
	ok(m2 - m1 >= 19 && m2 - m1 < 5000, "mono_ms advances in ms");
}

static void
test_emit_sequence(void)
{
	struct capture		 cp;
	struct conn		 c;
	struct sse		 s;
	struct block		 b[16];
	struct json_object	*d;
	long long		 t0, t1;
	int			 n, rc[8], i;

	if (capture_begin(&cp) == -1) {
		ok(0, "capture");
		return;
	}
	conn_init_cgi(&c, NULL);
	sse_init(&s, &c, "req-42", "sess-42");
	t0 = now_ms();
	d = json_object_new_object();
	json_object_object_add(d, "voice", json_object_new_boolean(1));
	rc[0] = sse_emit(&s, SSE_PATH_STREAM, "streaming_started", d);
	rc[1] = sse_emit(&s, SSE_PATH_VOICE, "unmute_connecting", NULL);
	d = json_object_new_object();
	json_object_object_add(d, "node", json_object_new_string("llm_tagger"));
	rc[2] = sse_emit(&s, SSE_PATH_AGENT, "node_started", d);
	rc[3] = sse_emit(&s, SSE_PATH_STREAM, "stream_complete", NULL);
	/* Nothing after stream_complete, neither events nor pings. */
	d = json_object_new_object();
	rc[4] = sse_emit(&s, SSE_PATH_AGENT, "agent_text_chunk", d);
	rc[5] = sse_emit(&s, SSE_PATH_STREAM, "stream_complete", NULL);
	rc[6] = sse_heartbeat(&s, 0);
	t1 = now_ms();
	capture_end(&cp);

	is_int(rc[0] | rc[1] | rc[2] | rc[3], 0, "four emits return 0");
	is_int(rc[4], -1, "emit after stream_complete returns -1");
	is_int(rc[5], -1, "second stream_complete returns -1");
	is_int(rc[6], 0, "heartbeat after close: 0, nothing sent");
	is_int(sse_gone(&s), 0, "client not gone");
	is_int((long long)atomic_load(&s.bytes), (long long)cp.len,
	    "bytes counter matches the output");
	is_int((long long)c.written, (long long)cp.len, "conn.written matches");
	n = parse_blocks(cp.buf, b, 16);
	is_int(n, 4, "exactly four blocks written");
	for (i = 0; i < n && i < 4; i++) {
		is_int(b[i].id, i + 1, "id counts from 1");
		is_int(jint(b[i].data, "seq"), i + 1, "seq equals id");
		is_str(jstr(b[i].data, "type"), b[i].event, "type equals event");
		is_str(jstr(b[i].data, "request_id"), "req-42", "request_id");
		is_str(jstr(b[i].data, "session_id"), "sess-42", "session_id");
		ok(jint(b[i].data, "ts") >= t0 && jint(b[i].data, "ts") <= t1,
		    "ts is the emit time");
		ok(json_object_is_type(json_object_object_get(b[i].data, "data"),
		    json_type_object), "data is an object");
	}
	if (n == 4) {
		is_str(b[0].event, "streaming_started", "first event");
		is_str(jstr(b[0].data, "path"), "stream", "path stream");
		ok(json_object_get_boolean(json_object_object_get(
		    json_object_object_get(b[0].data, "data"), "voice")),
		    "data.voice carried");
		is_str(jstr(b[1].data, "path"), "voice", "path voice");
		is_int(json_object_object_length(json_object_object_get(b[1].data,
		    "data")), 0, "NULL data is {}");
		is_str(jstr(b[2].data, "path"), "agent", "path agent");
		is_str(b[3].event, "stream_complete", "last event");
	}
	free_blocks(b, n > 0 ? n : 0);
	free(cp.buf);
	sse_destroy(&s);
}

static void
test_heartbeat(void)
{
	struct capture	 cp;
	struct conn	 c;
	struct sse	 s;
	struct block	 b[16];
	int		 rc[8], n;
	long long	 t0;

	if (capture_begin(&cp) == -1) {
		ok(0, "capture");
		return;
	}
	conn_init_cgi(&c, NULL);
	sse_init(&s, &c, "r", "s");
	rc[0] = sse_heartbeat(&s, 200);		/* just started: silent */
	rc[1] = sse_emit(&s, SSE_PATH_STREAM, "streaming_started", NULL);
	rc[2] = sse_heartbeat(&s, 200);		/* just wrote: silent */
	t0 = mono_ms();
	usleep(120000);
	rc[3] = sse_heartbeat(&s, 200);		/* 120 ms of silence: silent */
	usleep(130000);
	rc[4] = sse_heartbeat(&s, 200);		/* 250 ms: ping */
	rc[5] = sse_heartbeat(&s, 200);		/* the ping counts as output */
	usleep(250000);
	rc[6] = sse_heartbeat(&s, 200);		/* ping again */
	rc[7] = sse_emit(&s, SSE_PATH_STREAM, "stream_complete", NULL);
	capture_end(&cp);

	ok(mono_ms() - t0 >= 500, "slept 500 ms");
	ok((rc[0] | rc[1] | rc[2] | rc[3] | rc[4] | rc[5] | rc[6] | rc[7]) == 0,
	    "heartbeats and emits return 0");
	n = parse_blocks(cp.buf, b, 16);
	is_int(n, 4, "event, ping, ping, event");
	if (n == 4) {
		ok(!b[0].ping && b[1].ping && b[2].ping && !b[3].ping,
		    "pings only after the interval of silence");
		is_int(b[3].id, 2, "pings take no seq");
	} else
		printf("#   output: %s\n", cp.buf);
	ok(strstr(cp.buf, "\n\n: ping\n\n: ping\n\nid: 2\n") != NULL,
	    "ping is ': ping' and a blank line");
	free_blocks(b, n > 0 ? n : 0);
	free(cp.buf);
	sse_destroy(&s);
}

#define NTHREADS	2
#define NEVENTS		1000

struct emitter {
	struct sse	*s;
	int		 id;
	int		 fails;
};

static void *
emitter_main(void *arg)
{
	struct emitter		*e = arg;
	struct json_object	*d;
	int			 i;

	for (i = 0; i < NEVENTS; i++) {
		d = json_object_new_object();
		json_object_object_add(d, "thread", json_object_new_int(e->id));
		json_object_object_add(d, "i", json_object_new_int(i));
		json_object_object_add(d, "text", json_object_new_string(
		    "padding so that events are a few hundred bytes long and "
		    "the pipe fills up: \"quoted\" \\ \n \xc3\xa9"));
		if (sse_emit(e->s, e->id ? SSE_PATH_AGENT : SSE_PATH_VOICE,
		    e->id ? "agent_text_chunk" : "text_chunk", d) != 0)
			e->fails++;
	}
	return NULL;
}

/* Pings from a third thread while the emitters run: never inside an event. */
static void *
pinger_main(void *arg)
{
	struct emitter	*e = arg;
	int		 i;

	for (i = 0; i < 300; i++) {
		if (sse_heartbeat(e->s, 0) != 0)
			e->fails++;
		usleep(100);
	}
	return NULL;
}

static void
test_concurrent(void)
{
	struct capture		 cp;
	struct conn		 c;
	struct sse		 s;
	struct emitter		 em[NTHREADS], pe;
	pthread_t		 th[NTHREADS], pth;
	struct block		*b;
	struct json_object	*dd;
	int			 n, i, t, next[NTHREADS] = { 0 }, ev, pings = 0;
	int			 seq_ok = 1, order_ok = 1, path_ok = 1, fails = 0;

	if (capture_begin(&cp) == -1) {
		ok(0, "capture");
		return;
	}
	conn_init_cgi(&c, NULL);
	sse_init(&s, &c, "req-c", "sess-c");
	pe.s = &s;
	pe.id = -1;
	pe.fails = 0;
	pthread_create(&pth, NULL, pinger_main, &pe);
	for (t = 0; t < NTHREADS; t++) {
		em[t].s = &s;
		em[t].id = t;
		em[t].fails = 0;
		pthread_create(&th[t], NULL, emitter_main, &em[t]);
	}
	for (t = 0; t < NTHREADS; t++) {
		pthread_join(th[t], NULL);
		fails += em[t].fails;
	}
	pthread_join(pth, NULL);
	fails += pe.fails;
	sse_emit(&s, SSE_PATH_STREAM, "stream_complete", NULL);
	capture_end(&cp);

	is_int(fails, 0, "every concurrent emit returned 0");
	b = calloc(NTHREADS * NEVENTS + 400, sizeof(*b));
	n = parse_blocks(cp.buf, b, NTHREADS * NEVENTS + 400);
	for (i = 0, ev = 0; i < n; i++) {
		if (b[i].ping) {
			pings++;
			continue;
		}
		ev++;
		if (b[i].id != (unsigned long long)ev ||
		    jint(b[i].data, "seq") != ev)
			seq_ok = 0;
		if (strcmp(b[i].event, "stream_complete") == 0)
			continue;
		dd = json_object_object_get(b[i].data, "data");
		t = (int)jint(dd, "thread");
		if (t < 0 || t >= NTHREADS || jint(dd, "i") != next[t]++)
			order_ok = 0;
		else if (strcmp(jstr(b[i].data, "path"), t ? "agent" : "voice") != 0)
			path_ok = 0;
	}
	is_int(ev, NTHREADS * NEVENTS + 1, "2000 events + stream_complete, all whole");
	ok(pings > 0 && pings <= 300, "pings between whole events (%d)", pings);
	ok(seq_ok, "seq 1..2001 in output order, no gaps, no repeats");
	ok(order_ok, "each thread's events in its own order");
	ok(next[0] == NEVENTS && next[1] == NEVENTS, "all of both threads' events");
	ok(path_ok, "each event keeps its path");
	ok(n > 0 && strcmp(b[n - 1].event, "stream_complete") == 0,
	    "stream_complete last");
	free_blocks(b, n > 0 ? n : 0);
	free(b);
	free(cp.buf);
	sse_destroy(&s);
}

/* The client left: writes fail, emit says so, nothing more is tried. */
static void
test_gone(void)
{
	struct conn	 c;
	struct sse	 s;
	int		 p[2], saved, rc[4];

	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);
	if (pipe(p) == -1 || (saved = dup(1)) == -1) {
		ok(0, "pipe");
		return;
	}
	dup2(p[1], 1);
	close(p[1]);
	close(p[0]);		/* nobody reads: EPIPE */
	conn_init_cgi(&c, NULL);
	sse_init(&s, &c, "r", "s");
	rc[0] = sse_emit(&s, SSE_PATH_STREAM, "streaming_started", NULL);
	rc[1] = sse_gone(&s);
	rc[2] = sse_emit(&s, SSE_PATH_VOICE, "text_chunk", json_object_new_object());
	usleep(20000);
	rc[3] = sse_heartbeat(&s, 10);
	dup2(saved, 1);
	close(saved);
	is_int(rc[0], -1, "emit to a closed pipe returns -1");
	is_int(rc[1], 1, "sse_gone after a failed write");
	is_int(rc[2], -1, "later emits return -1");
	is_int(rc[3], -1, "heartbeat returns -1 once gone");
	is_int(c.failed, 1, "conn marked failed");
	sse_destroy(&s);
}

int
main(void)
{
	test_frame_exact();
	test_frame_escaping();
	test_time();
	test_emit_sequence();
	test_heartbeat();
	test_concurrent();
	test_gone();
	return done();
}
