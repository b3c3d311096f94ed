/*
 * tandem-sim's Unmute stand-in: a thread-per-connection HTTP and
 * websocket server that follows docs/unmute-protocol.md (subprotocol
 * "realtime", MAX_CLIENTS held before the handshake answer, BOS gate,
 * turns driven only by received audio, response.create rejected, real
 * Ogg/Opus audio), with scripted faults (SPEC.md §7).
 *
 * Written by hand, not with a websocket library, because faults need a
 * handshake held open or dropped half way.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "oggopus.h"
#include "sim.h"

#define REQ_MAX		16384		/* HTTP request head */
#define MSG_MAX		(16 << 20)	/* uvicorn's websocket cap */
#define HOLD_SEC	10.0		/* a held handshake is dropped */
#define RATE		24000
#define AUDIO_MAX_SAMPLES (RATE * 5)	/* one append decodes to <= 5 s */
#define SILENCE_SEC	7.0		/* USER_SILENCE_TIMEOUT */
#define FLUSH_SEC	0.5		/* STT flush before a reply */
#define AHEAD_SEC	0.32		/* audio sent ahead of real time */
#define WORD_TONE	5760		/* 240 ms */
#define WORD_GAP	1920		/* 80 ms */
#define DELTA_PAGES	2		/* 80 ms per response.audio.delta */
#define REPLY_WORDS	30
#define PING_SEC	20.0		/* uvicorn's ws_ping_interval/timeout */
#define STT_LAG_SEC	0.3		/* an STT slot frees after its session */
#define PAUSE_SEC	0.3		/* the VAD hears the user's pause */
#define WARNINGS	4		/* "Looking for the resources" retries */

#define MSG_FATAL	"Internal server error :( Complain to Kyutai"
#define MSG_BUSY	"Too many people are connected to service 'stt'. " \
			"Please try again later."
#define MSG_TTS_BUSY	"Too many people are connected to service 'tts'. " \
			"Please try again later."
#define MSG_WARNING	"Looking for the resources, expect some latency."
#define MSG_UNHEALTHY	"Server is not healthy: tts_up=False stt_up=True " \
			"llm_up=True voice_cloning_up=False ok=False"
#define EXPECTED_TAGS	"'session.update', 'input_audio_buffer.append', " \
			"'unmute.input_audio_buffer.append_anonymized'"
#define PYDANTIC_URL	"https://errors.pydantic.dev/2.11/v/"
#define DEFAULT_PROMPT	"You are a good conversationalist."

enum fault {
	F_NONE,
	F_BUSY,
	F_FATAL,
	F_UNHEALTHY,
	F_CLOSE1011,
	F_CLOSE1000,
	F_DROP,
	F_BINARY,
	F_NONJSON,
	F_BADOGG,
	F_STALL,
	F_HOLD,
	F_EOF,
	F_HTTP500,
	F_SLOWGREET,
	F_INTERRUPT,
	F_STT1,
	F_PING,
	F__MAX
};

static const char *const fault_names[F__MAX] = {
	[F_NONE] = "none",
	[F_BUSY] = "busy",
	[F_FATAL] = "fatal",
	[F_UNHEALTHY] = "unhealthy",
	[F_CLOSE1011] = "close1011",
	[F_CLOSE1000] = "close1000",
	[F_DROP] = "drop",
	[F_BINARY] = "binary",
	[F_NONJSON] = "nonjson",
	[F_BADOGG] = "badogg",
	[F_STALL] = "stall",
	[F_HOLD] = "hold",
	[F_EOF] = "eof",
	[F_HTTP500] = "http500",
	[F_SLOWGREET] = "slowgreet",
	[F_INTERRUPT] = "interrupt",
	[F_STT1] = "stt1",
	[F_PING] = "ping",
};

/* Faults that take "=MS". */
#define HAS_MS(f)	((f) == F_SLOWGREET || (f) == F_PING)

struct fault_spec {
	enum fault	 f;
	int		 ms;		/* slowgreet=MS, ping=MS */
};

/* What a queued item does when its time comes. */
enum item_kind {
	I_TEXT,		/* send data as a text frame */
	I_BINARY,	/* send data as a binary frame */
	I_CLOSE,	/* close frame (code, data as reason), end */
	I_DROP,		/* close TCP with no close frame */
	I_STALL,	/* send nothing more */
	I_TURN_END,	/* the bot's turn is over: data is its reply */
	I_USER_WORD	/* the bot was interrupted by the user's word (data) */
};

struct item {
	double		 due;		/* monotonic seconds */
	long		 seq;		/* ties keep insertion order */
	enum item_kind	 kind;
	int		 code;
	char		*data;
	size_t		 len;
};

struct session {
	int		 fd;
	unsigned char	*rbuf;		/* unparsed frame bytes */
	size_t		 rlen, rcap;
	unsigned char	*msg;		/* a fragmented message */
	size_t		 msglen;
	int		 msgop;		/* 0: none under way */

	struct fault_spec fault;	/* every turn of the session */
	struct fault_spec turn_fault;	/* from a marker, next turn only */
	char		*instr;		/* constant text, markers removed */
	struct json_object *instr_echo;	/* instructions with defaults */
	char		*voice;
	int		 have_instr;
	int		 instr_new;	/* not spoken from yet */
	int		 turns;
	int		 silences;

	struct oo_dec	*dec;
	int		 bos_seen;
	double		 audio_sec;	/* received audio, the turn clock */
	double		 waiting_start;
	double		 flush_until;	/* < 0: no silence reply pending */
	double		 idle_out;	/* audio_sec of the last idle output */
	int		 speaking;
	double		 done_wall;

	struct oo_enc	*enc;
	int		 tone;		/* varies the pitch per word */
	struct json_object *history;	/* no system prompt */

	struct item	*q;
	size_t		 nq, qcap;
	long		 qseq;
	int		 stalled;
	int		 ended;		/* 1: close frame sent, 2: drop */
	double		 ping_at;	/* next keepalive ping */
	double		 ping_sent;	/* > 0: a ping awaits its pong */
	double		 ping_sec;	/* interval and timeout */
	int		 stt_hold;	/* holds the only STT slot (stt1) */
	char		*user_said;	/* a word awaiting its reply */
	double		 pause_at;	/* audio_sec when the VAD hears a pause */
};

struct sim_unmute {
	struct sim_opts	 o;
	int		 lfd;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 used;		/* slots taken */
	int		 stt_held;	/* sessions holding the STT (stt1) */
	double		 stt_free_at;	/* the STT is full until then */
};

static struct sim_unmute U = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
};

/* --- small helpers --- */

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
vlog(const char *fmt, const char *a)
{
	if (U.o.verbose)
		fprintf(stderr, fmt, a);
}

/* Parse "name" or "slowgreet=MS" (n bytes). Return 0, or -1. */
static int
parse_fault(const char *s, size_t n, struct fault_spec *fs)
{
	size_t i, k;
	char *end;
	long ms;

	for (i = 0; i < F__MAX; i++) {
		k = strlen(fault_names[i]);
		if (n < k || strncmp(s, fault_names[i], k) != 0)
			continue;
		if (n == k && !HAS_MS(i)) {
			fs->f = (enum fault)i;
			fs->ms = 0;
			return 0;
		}
		if (HAS_MS(i) && n > k + 1 && s[k] == '=') {
			errno = 0;
			ms = strtol(s + k + 1, &end, 10);
			if (errno || end != s + n || ms < 0 || ms > 600000)
				return -1;
			fs->f = (enum fault)i;
			fs->ms = (int)ms;
			return 0;
		}
	}
	return -1;
}

/* --- SHA-1 (RFC 3174) and base64, for the handshake and the audio --- */

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80], a, b, c, d, e, f, k, t;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		    (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (i = 16; i < 80; i++)
		w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (i = 0; i < 80; i++) {
		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		t = ROL(a, 5) + f + e + k + w[i];
		e = d, d = c, c = ROL(b, 30), b = a, a = t;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void
sha1(const unsigned char *p, size_t n, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
	    0xc3d2e1f0 };
	unsigned char blk[64];
	uint64_t bits = (uint64_t)n * 8;
	size_t i, r;

	for (i = 0; i + 64 <= n; i += 64)
		sha1_block(h, p + i);
	r = n - i;
	memset(blk, 0, sizeof(blk));
	memcpy(blk, p + i, r);
	blk[r] = 0x80;
	if (r >= 56) {
		sha1_block(h, blk);
		memset(blk, 0, sizeof(blk));
	}
	for (i = 0; i < 8; i++)
		blk[63 - i] = (unsigned char)(bits >> (8 * i));
	sha1_block(h, blk);
	for (i = 0; i < 20; i++)
		out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Return a malloc'd NUL-terminated base64 of p, or NULL. */
static char *
b64_encode(const unsigned char *p, size_t n)
{
	char *out, *o;
	size_t i;
	uint32_t v;

	if ((out = malloc((n + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	for (o = out, i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = b64chars[v & 63];
	}
	if (i < n) {
		v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/*
 * Decode base64 as Python's b64decode does without validate: other
 * characters are skipped, and a short final quantum needs its padding.
 * Return a malloc'd buffer (length in *outlen), or NULL on bad padding.
 */
static unsigned char *
b64_decode(const char *s, size_t *outlen)
{
	unsigned char *out;
	const char *c;
	uint32_t v = 0;
	size_t n = 0, q = 0, pad = 0;

	if ((out = malloc(strlen(s) / 4 * 3 + 3)) == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		if (*s == '=') {
			if (q >= 2)
				pad++;
			if (q + pad == 4)
				break;
			continue;
		}
		if ((unsigned char)*s >= 0x80)
			goto bad;
		if ((c = strchr(b64chars, *s)) == NULL || *s == '\0')
			continue;
		if (pad > 0)
			goto bad;
		v = v << 6 | (uint32_t)(c - b64chars);
		if (++q == 4) {
			out[n++] = (unsigned char)(v >> 16);
			out[n++] = (unsigned char)(v >> 8);
			out[n++] = (unsigned char)v;
			q = 0;
			v = 0;
		}
	}
	if (q == 1 || (q > 0 && q + pad < 4))
		goto bad;
	if (q == 2)
		out[n++] = (unsigned char)(v >> 4);
	else if (q == 3) {
		out[n++] = (unsigned char)(v >> 10);
		out[n++] = (unsigned char)(v >> 2);
	}
	*outlen = n;
	return out;
bad:
	free(out);
	return NULL;
}

/* --- sockets --- */

static int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	ssize_t w;

	while (n > 0) {
		w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Did the peer close (or reset) its side? Never blocks. */
static int
peer_gone(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	if (pfd.revents & (POLLERR | POLLHUP))
		return 1;
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int
ws_send(int fd, int op, const void *p, size_t n)
{
	unsigned char h[10];
	size_t hl;

	h[0] = (unsigned char)(0x80 | op);
	if (n < 126) {
		h[1] = (unsigned char)n;
		hl = 2;
	} else if (n < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (hl = 0; hl < 8; hl++)
			h[2 + hl] = (unsigned char)((uint64_t)n >> (56 - 8 * hl));
		hl = 10;
	}
	if (write_all(fd, h, hl) == -1)
		return -1;
	return n > 0 ? write_all(fd, p, n) : 0;
}

static int
ws_close_frame(int fd, int code, const char *reason)
{
	unsigned char b[125];
	size_t rl = reason != NULL ? strlen(reason) : 0;

	if (rl > sizeof(b) - 2)
		rl = sizeof(b) - 2;
	b[0] = (unsigned char)(code >> 8);
	b[1] = (unsigned char)code;
	if (rl > 0)
		memcpy(b + 2, reason, rl);
	return ws_send(fd, 0x8, b, rl + 2);
}

static int
http_reply(int fd, const char *status, const char *type, const char *body)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\n"
	    "Server: uvicorn\r\nConnection: close\r\n\r\n",
	    status, type, strlen(body));
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	if (write_all(fd, head, (size_t)n) == -1)
		return -1;
	return write_all(fd, body, strlen(body));
}

/* --- the opening handshake --- */

struct req {
	char		 buf[REQ_MAX + 1];
	size_t		 len;
	char		*method, *target, *path, *query;
	const char	*key, *upgrade;
};

/* Read the request head within HOLD_SEC. Return 0, or -1. */
static int
read_head(int fd, struct req *r)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	double deadline = mono() + HOLD_SEC;
	ssize_t n;

	r->len = 0;
	while (r->len < REQ_MAX) {
		if (poll(&pfd, 1, (int)((deadline - mono()) * 1000) + 1) <= 0)
			return -1;
		n = recv(fd, r->buf + r->len, REQ_MAX - r->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		r->len += (size_t)n;
		r->buf[r->len] = '\0';
		if (strstr(r->buf, "\r\n\r\n") != NULL)
			return 0;
		if (mono() > deadline)
			return -1;
	}
	return -1;
}

/* The value of a "Name: value" line, or NULL if the name differs. */
static const char *
header_value(const char *line, const char *name)
{
	size_t k = strlen(name);

	if (strncasecmp(line, name, k) != 0 || line[k] != ':')
		return NULL;
	for (line += k + 1; *line == ' ' || *line == '\t'; line++)
		continue;
	return line;
}

/* Split the request line and find the headers we need; 0 or -1. */
static int
parse_head(struct req *r)
{
	char *p, *line, *eol;
	const char *v;

	if ((p = strstr(r->buf, "\r\n\r\n")) == NULL)
		return -1;
	p[2] = '\0';
	if ((eol = strstr(r->buf, "\r\n")) == NULL)
		return -1;
	*eol = '\0';
	r->method = r->buf;
	if ((p = strchr(r->buf, ' ')) == NULL)
		return -1;
	*p++ = '\0';
	r->target = p;
	if ((p = strchr(p, ' ')) == NULL)
		return -1;
	*p = '\0';
	r->path = r->target;
	if ((r->query = strchr(r->target, '?')) != NULL)
		*r->query++ = '\0';
	r->key = r->upgrade = NULL;
	for (line = eol + 2; (eol = strstr(line, "\r\n")) != NULL;
	    line = eol + 2) {
		*eol = '\0';
		if ((v = header_value(line, "Sec-WebSocket-Key")) != NULL)
			r->key = v;
		else if ((v = header_value(line, "Upgrade")) != NULL)
			r->upgrade = v;
	}
	return 0;
}

/* sim_fault=NAME in a query string, if any. */
static int
query_fault(const char *q, struct fault_spec *fs)
{
	const char *p, *e;

	for (p = q; p != NULL && *p != '\0'; p = e + (*e == '&')) {
		e = p + strcspn(p, "&");
		if (strncmp(p, "sim_fault=", 10) == 0)
			return parse_fault(p + 10, (size_t)(e - p - 10), fs);
		if (*e == '\0')
			break;
	}
	return 0;
}

static const char voices_json[] =
    "[{\"name\":\"Watercooler\",\"good\":true,"
    "\"instructions\":{\"type\":\"smalltalk\",\"language\":null},"
    "\"source\":{\"source_type\":\"file\","
    "\"path_on_server\":\"unmute-prod-website/p329_022.wav\","
    "\"description\":null,\"description_link\":null}},"
    "{\"name\":\"Dev (news)\",\"good\":true,"
    "\"instructions\":{\"type\":\"news\",\"language\":null},"
    "\"source\":{\"source_type\":\"file\","
    "\"path_on_server\":\"unmute-prod-website/developer-1.mp3\","
    "\"description\":null,\"description_link\":null}},"
    "{\"name\":\"Explanation\",\"good\":true,"
    "\"instructions\":{\"type\":\"unmute_explanation\"},"
    "\"source\":{\"source_type\":\"file\","
    "\"path_on_server\":"
    "\"unmute-prod-website/ex04_narration_longform_00001.wav\","
    "\"description\":null,\"description_link\":null}}]";

/* The plain HTTP routes. */
static void
serve_http(int fd, const struct req *r)
{
	if (strcmp(r->method, "GET") != 0)
		http_reply(fd, "405 Method Not Allowed", "application/json",
		    "{\"detail\":\"Method Not Allowed\"}");
	else if (strcmp(r->path, "/") == 0)
		http_reply(fd, "200 OK", "application/json", "{\"message\":"
		    "\"You've reached the Unmute backend server.\"}");
	else if (strcmp(r->path, "/v1/health") == 0)
		http_reply(fd, "200 OK", "application/json",
		    "{\"tts_up\":true,\"stt_up\":true,\"llm_up\":true,"
		    "\"voice_cloning_up\":false,\"ok\":true}");
	else if (strcmp(r->path, "/v1/voices") == 0)
		http_reply(fd, "200 OK", "application/json", voices_json);
	else
		http_reply(fd, "404 Not Found", "application/json",
		    "{\"detail\":\"Not Found\"}");
}

/*
 * Take a MAX_CLIENTS slot, waiting up to HOLD_SEC like uvicorn does for
 * the semaphore. Return 0 with the slot, or -1 (timeout, peer gone).
 */
static int
slot_take(int fd)
{
	struct timespec ts;
	double deadline = mono() + HOLD_SEC;
	int rc = -1, waiting = 0;

	pthread_mutex_lock(&U.mu);
	while (U.used >= U.o.max_clients) {
		if (!waiting) {
			waiting = 1;
			atomic_fetch_add(&sim_stats.unmute_waiting, 1);
		}
		if (mono() >= deadline || peer_gone(fd))
			goto out;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&U.cv, &U.mu, &ts);
	}
	U.used++;
	rc = 0;
out:
	if (waiting)
		atomic_fetch_sub(&sim_stats.unmute_waiting, 1);
	pthread_mutex_unlock(&U.mu);
	return rc;
}

static void
slot_give(void)
{
	pthread_mutex_lock(&U.mu);
	U.used--;
	pthread_cond_broadcast(&U.cv);
	pthread_mutex_unlock(&U.mu);
}

/* Sleep until the peer goes or secs pass. */
static void
hold(int fd, double secs)
{
	double deadline = mono() + secs;

	while (mono() < deadline && !peer_gone(fd))
		usleep(50 * 1000);
}

static int
send_accept(int fd, const char *key)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char cat[256], head[512], *acc;
	unsigned char md[20];
	size_t kl;
	int n, rc;

	kl = strcspn(key, " \t");
	if (kl == 0 || kl > 128)
		return -1;
	memcpy(cat, key, kl);
	memcpy(cat + kl, guid, sizeof(guid));
	sha1((unsigned char *)cat, kl + sizeof(guid) - 1, md);
	if ((acc = b64_encode(md, sizeof(md))) == NULL)
		return -1;
	n = snprintf(head, sizeof(head), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n"
	    "Sec-WebSocket-Protocol: realtime\r\n\r\n", acc);
	free(acc);
	rc = n > 0 && (size_t)n < sizeof(head) ?
	    write_all(fd, head, (size_t)n) : -1;
	return rc;
}

/* --- server events --- */

static void
event_id(char out[28])
{
	static const char an[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned int seed = (unsigned int)(mono() * 1e6) ^
	    (unsigned int)(uintptr_t)out;
	int i;

	memcpy(out, "event_", 6);
	for (i = 0; i < 21; i++)
		out[6 + i] = an[rand_r(&seed) % (sizeof(an) - 1)];
	out[27] = '\0';
}

static struct json_object *
event_new(const char *type)
{
	struct json_object *o = json_object_new_object();
	char id[28];

	event_id(id);
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "event_id", json_object_new_string(id));
	return o;
}

static void
q_add(struct session *s, double due, enum item_kind kind, int code,
    const char *data, size_t len)
{
	struct item *it, *nq;
	size_t ncap;

	if (s->nq == s->qcap) {
		ncap = s->qcap ? s->qcap * 2 : 64;
		if ((nq = realloc(s->q, ncap * sizeof(*nq))) == NULL)
			return;
		s->q = nq;
		s->qcap = ncap;
	}
	it = &s->q[s->nq];
	it->data = NULL;
	if (data != NULL) {
		if ((it->data = malloc(len + 1)) == NULL)
			return;
		memcpy(it->data, data, len);
		it->data[len] = '\0';
	}
	it->due = due;
	it->seq = s->qseq++;
	it->kind = kind;
	it->code = code;
	it->len = len;
	s->nq++;
}

/* Queue an event (and free it). */
static void
q_event(struct session *s, double due, struct json_object *ev)
{
	const char *t;

	t = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	q_add(s, due, I_TEXT, 0, t, strlen(t));
	json_object_put(ev);
}

static int
item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	if (x->due != y->due)
		return x->due < y->due ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
q_clear(struct session *s)
{
	size_t i;

	for (i = 0; i < s->nq; i++)
		free(s->q[i].data);
	s->nq = 0;
}

/* Send an event at once. */
static int
send_event(struct session *s, struct json_object *ev)
{
	const char *t;
	int rc;

	t = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = ws_send(s->fd, 0x1, t, strlen(t));
	json_object_put(ev);
	return rc;
}

static struct json_object *
error_event(const char *type, const char *message,
    struct json_object *details)
{
	struct json_object *ev = event_new("error"), *e;

	e = json_object_new_object();
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "code", NULL);
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(e, "param", NULL);
	json_object_object_add(e, "details", details);
	json_object_object_add(ev, "error", e);
	return ev;
}

/* One pydantic-style error detail. input is taken over. */
static struct json_object *
detail(const char *type, const char *msg, struct json_object *loc,
    struct json_object *input, struct json_object *ctx)
{
	struct json_object *d = json_object_new_object(), *arr;
	char url[128];

	json_object_object_add(d, "type", json_object_new_string(type));
	json_object_object_add(d, "loc",
	    loc != NULL ? loc : json_object_new_array());
	json_object_object_add(d, "msg", json_object_new_string(msg));
	json_object_object_add(d, "input", input);
	if (ctx != NULL)
		json_object_object_add(d, "ctx", ctx);
	snprintf(url, sizeof(url), PYDANTIC_URL "%s", type);
	json_object_object_add(d, "url", json_object_new_string(url));
	arr = json_object_new_array();
	json_object_array_add(arr, d);
	return arr;
}

static struct json_object *
loc3(const char *a, const char *b, const char *c)
{
	struct json_object *l = json_object_new_array();

	json_object_array_add(l, json_object_new_string(a));
	if (b != NULL)
		json_object_array_add(l, json_object_new_string(b));
	if (c != NULL)
		json_object_array_add(l, json_object_new_string(c));
	return l;
}

static void
invalid(struct session *s, struct json_object *details)
{
	send_event(s, error_event("invalid_request_error", "Invalid message",
	    details));
}

/* A fatal error event then close 1011 with the same reason. */
static void
fatal(struct session *s, const char *message)
{
	vlog("tandem-sim: unmute: fatal: %s\n", message);
	send_event(s, error_event("fatal", message, NULL));
	ws_close_frame(s->fd, 1011, message);
	s->ended = 1;
}

/* --- replies --- */

static void
squeeze(char *s)
{
	char *r, *w;
	int sp = 1;

	for (r = w = s; *r != '\0'; r++) {
		if (isspace((unsigned char)*r)) {
			if (!sp)
				*w++ = ' ';
			sp = 1;
		} else {
			*w++ = *r;
			sp = 0;
		}
	}
	if (w > s && w[-1] == ' ')
		w--;
	*w = '\0';
}

/*
 * The reply the "LLM" gives to instructions text: the text after
 * "must be exactly: " up to ". Say nothing else", else "You said: " and
 * the last paragraph, at most REPLY_WORDS words. Return malloc'd.
 */
static char *
derive_reply(const char *text)
{
	const char *p, *e, *para;
	char *out, *w;
	size_t n;
	int words;

	if ((p = strstr(text, "must be exactly: ")) != NULL) {
		p += strlen("must be exactly: ");
		if ((e = strstr(p, ". Say nothing else")) == NULL)
			e = p + strlen(p);
		if ((out = strndup(p, (size_t)(e - p))) == NULL)
			return NULL;
		squeeze(out);
		if (*out == '\0') {
			free(out);
			return strdup("Hello!");
		}
		return out;
	}
	para = text;
	for (p = text; (p = strstr(p, "\n\n")) != NULL; p++) {
		e = p + 2;
		while (isspace((unsigned char)*e))
			e++;
		if (*e != '\0')
			para = e;
	}
	n = strlen(para);
	if ((out = malloc(n + 16)) == NULL)
		return NULL;
	memcpy(out, "You said: ", 10);
	memcpy(out + 10, para, n + 1);
	squeeze(out);
	for (w = out, words = 0; *w != '\0'; w++)
		if (*w == ' ' && ++words == REPLY_WORDS) {
			*w = '\0';
			break;
		}
	return out;
}

/* Words of a reply, in place; return the count (at most max). */
static int
split_words(char *s, char **w, int max)
{
	int n = 0;
	char *p, *save = NULL;

	for (p = strtok_r(s, " ", &save); p != NULL && n < max;
	    p = strtok_r(NULL, " ", &save))
		w[n++] = p;
	return n;
}

static int
ends_with_bye(const char *s)
{
	size_t n = strlen(s);

	return n >= 4 && strcasecmp(s + n - 4, "bye!") == 0;
}

static struct json_object *
msg_obj(const char *role, const char *content)
{
	struct json_object *m = json_object_new_object();

	json_object_object_add(m, "role", json_object_new_string(role));
	json_object_object_add(m, "content", json_object_new_string(content));
	return m;
}

static struct json_object *
history_copy(struct session *s, int with_system, const char *reply)
{
	struct json_object *h = json_object_new_array();
	size_t i;

	if (with_system)
		json_object_array_add(h, msg_obj("system",
		    s->instr != NULL ? s->instr : DEFAULT_PROMPT));
	for (i = 0; i < json_object_array_length(s->history); i++)
		json_object_array_add(h, json_object_get(
		    json_object_array_get_idx(s->history, i)));
	if (reply != NULL)
		json_object_array_add(h, msg_obj("assistant", reply));
	return h;
}

static struct json_object *
additional_outputs(struct session *s, const char *reply)
{
	struct json_object *ev = event_new("unmute.additional_outputs"), *a;

	a = json_object_new_object();
	json_object_object_add(a, "chat_history",
	    history_copy(s, 0, reply));
	json_object_object_add(a, "debug_dict", json_object_new_object());
	json_object_object_add(a, "debug_plot_data", json_object_new_array());
	json_object_object_add(ev, "args", a);
	return ev;
}

/* A quiet tone per word and a gap, encoded; pages appended to *out. */
static int
synth(struct session *s, int nwords, unsigned char **out, size_t *outlen)
{
	int16_t pcm[WORD_TONE + WORD_GAP];
	double f, env;
	int i, w;

	for (w = 0; w < nwords; w++) {
		f = 200.0 + 40.0 * (s->tone++ % 6);
		for (i = 0; i < WORD_TONE; i++) {
			env = i < 240 ? i / 240.0 : (WORD_TONE - i < 240 ?
			    (WORD_TONE - i) / 240.0 : 1.0);
			pcm[i] = (int16_t)(2000.0 * env *
			    sin(2 * M_PI * f * i / RATE));
		}
		memset(pcm + WORD_TONE, 0, WORD_GAP * sizeof(int16_t));
		if (oo_enc_pcm(s->enc, pcm, WORD_TONE + WORD_GAP, out,
		    outlen) == -1)
			return -1;
	}
	/* The flush the server pushes at the end of a turn. */
	memset(pcm, 0, WORD_GAP * sizeof(int16_t));
	return oo_enc_pcm(s->enc, pcm, WORD_GAP, out, outlen);
}

/*
 * The user speaks over the bot at time t: the STT word (the first of a
 * session is ""), speech_started, interrupted_by_vad, the 1920-sample
 * flush, and no response.audio.done; the word gets its reply once the
 * VAD hears a pause in the received audio.
 */
static void
q_interrupt(struct session *s, double t, const char *word)
{
	struct json_object *ev;
	int16_t pcm[WORD_GAP];
	unsigned char *ogg = NULL;
	size_t ogglen = 0;
	char *b;

	ev = event_new("conversation.item.input_audio_transcription.delta");
	json_object_object_add(ev, "delta", json_object_new_string(""));
	json_object_object_add(ev, "start_time",
	    json_object_new_double(s->audio_sec));
	q_event(s, t, ev);
	ev = event_new("conversation.item.input_audio_transcription.delta");
	json_object_object_add(ev, "delta", json_object_new_string(word));
	json_object_object_add(ev, "start_time",
	    json_object_new_double(s->audio_sec + 0.1));
	q_event(s, t, ev);
	q_event(s, t, event_new("input_audio_buffer.speech_started"));
	q_event(s, t, event_new("unmute.interrupted_by_vad"));
	memset(pcm, 0, sizeof(pcm));
	if (oo_enc_pcm(s->enc, pcm, WORD_GAP, &ogg, &ogglen) == 0 &&
	    ogglen > 0 && (b = b64_encode(ogg, ogglen)) != NULL) {
		ev = event_new("response.audio.delta");
		json_object_object_add(ev, "delta", json_object_new_string(b));
		free(b);
		q_event(s, t, ev);
	}
	free(ogg);
	q_add(s, t, I_USER_WORD, 0, word, strlen(word));
}

/* Queue the fault f at time t in a turn; return 1 if the turn ends. */
static int
q_fault(struct session *s, double t, enum fault f)
{
	struct json_object *ev;
	char *b;
	int i;

	switch (f) {
	case F_FATAL:
		q_event(s, t, error_event("fatal", MSG_FATAL, NULL));
		q_add(s, t, I_CLOSE, 1011, MSG_FATAL, strlen(MSG_FATAL));
		return 1;
	case F_BUSY:
		/* TTS full when a reply starts: warnings, then the fatal. */
		for (i = 0; i < WARNINGS; i++)
			q_event(s, t - (WARNINGS - i) * 0.0001,
			    error_event("warning", MSG_WARNING, NULL));
		q_event(s, t, error_event("fatal", MSG_TTS_BUSY, NULL));
		q_add(s, t, I_CLOSE, 1011, MSG_TTS_BUSY, strlen(MSG_TTS_BUSY));
		return 1;
	case F_UNHEALTHY:
		q_add(s, t, I_CLOSE, 1011, MSG_UNHEALTHY,
		    strlen(MSG_UNHEALTHY));
		return 1;
	case F_CLOSE1011:
		q_add(s, t, I_CLOSE, 1011, "", 0);
		return 1;
	case F_CLOSE1000:
		q_add(s, t, I_CLOSE, 1000, "", 0);
		return 1;
	case F_DROP:
		q_add(s, t, I_DROP, 0, NULL, 0);
		return 1;
	case F_STALL:
		q_add(s, t, I_STALL, 0, NULL, 0);
		return 1;
	case F_BINARY:
		q_add(s, t, I_BINARY, 0, "\x00\x01\x02\x03OggS", 8);
		return 0;
	case F_NONJSON:
		q_add(s, t, I_TEXT, 0, "this is not JSON {", 18);
		return 0;
	case F_INTERRUPT:
		q_interrupt(s, t, "Wait");
		return 1;
	case F_BADOGG:
		ev = event_new("response.audio.delta");
		b = b64_encode((const unsigned char *)"this is not an Ogg page",
		    23);
		json_object_object_add(ev, "delta",
		    json_object_new_string(b != NULL ? b : ""));
		free(b);
		q_event(s, t, ev);
		return 0;
	default:
		return 0;
	}
}

/* Queue the turn's audio: 2 pages per delta, paced AHEAD_SEC ahead. */
static int
q_audio(struct session *s, double now, int nwords)
{
	struct json_object *ev;
	struct oo_reader rd;
	struct oo_page pg;
	unsigned char *ogg = NULL, *d = NULL, *nd;
	size_t ogglen = 0, dlen = 0;
	double t;
	char *b;
	int npages = 0, ndelta = 0;

	if (synth(s, nwords, &ogg, &ogglen) == -1) {
		free(ogg);
		return 0;
	}
	oo_reader_init(&rd, ogglen + 1);
	oo_reader_feed(&rd, ogg, ogglen);
	while (oo_reader_next(&rd, &pg) == 1) {
		if ((nd = realloc(d, dlen + pg.len)) == NULL)
			break;
		d = nd;
		memcpy(d + dlen, pg.data, pg.len);
		dlen += pg.len;
		/* The very first delta also carries the header pages. */
		if (pg.is_header || ++npages % DELTA_PAGES != 0)
			continue;
		t = now + fmax(0.0, ndelta * 0.08 - AHEAD_SEC) / U.o.speed +
		    0.001;
		ev = event_new("response.audio.delta");
		b = b64_encode(d, dlen);
		json_object_object_add(ev, "delta",
		    json_object_new_string(b != NULL ? b : ""));
		free(b);
		q_event(s, t, ev);
		dlen = 0;
		ndelta++;
	}
	oo_reader_free(&rd);
	free(d);
	free(ogg);
	return ndelta;
}

/*
 * Schedule a whole bot turn from now: response.created, the LLM words,
 * then audio and spoken words paced together, text.done before the
 * last two words, additional outputs, audio.done. The turn's fault, if
 * any, strikes FAULT_SEC of audio into the turn, after the first word;
 * a fault that ends the session takes the rest of the turn with it.
 */
#define FAULT_SEC	0.35

static void
start_turn(struct session *s, const char *user, const char *reply)
{
	struct json_object *ev, *r;
	struct fault_spec fs;
	char *words_buf, *w[REPLY_WORDS * 8], *sp;
	double now = mono(), speed = U.o.speed, t, tend, tf;
	size_t first = s->nq, i, k;
	int nw, ndelta;

	fs = s->turn_fault.f != F_NONE ? s->turn_fault : s->fault;
	s->turn_fault.f = F_NONE;
	if (fs.f == F_SLOWGREET && s->turns == 0)
		now += fs.ms / 1000.0;
	s->turns++;
	s->speaking = 1;
	json_object_array_add(s->history, msg_obj("user", user));

	ev = event_new("response.created");
	r = json_object_new_object();
	json_object_object_add(r, "object",
	    json_object_new_string("realtime.response"));
	json_object_object_add(r, "status",
	    json_object_new_string("in_progress"));
	json_object_object_add(r, "voice", json_object_new_string(
	    s->voice != NULL ? s->voice : "missing"));
	json_object_object_add(r, "chat_history", history_copy(s, 1, ""));
	json_object_object_add(ev, "response", r);
	q_event(s, now, ev);

	words_buf = strdup(reply);
	nw = words_buf != NULL ?
	    split_words(words_buf, w, (int)(sizeof(w) / sizeof(w[0]))) : 0;
	for (i = 0; i < (size_t)nw; i++) {
		ev = event_new("unmute.response.text.delta.ready");
		if (asprintf(&sp, "%s%s", i ? " " : "", w[i]) == -1)
			sp = NULL;
		json_object_object_add(ev, "delta",
		    json_object_new_string(sp ? sp : w[i]));
		free(sp);
		q_event(s, now + 0.005 * i / speed, ev);
	}
	ndelta = q_audio(s, now, nw);

	/* Spoken words as their audio plays; text.done before the last 2. */
	for (i = 0; i < (size_t)nw; i++) {
		t = now + (i * (WORD_TONE + WORD_GAP) / (double)RATE) / speed +
		    0.002;
		if (i == (size_t)(nw >= 2 ? nw - 2 : 0)) {
			ev = event_new("response.text.done");
			json_object_object_add(ev, "text",
			    json_object_new_string(reply));
			q_event(s, t, ev);
		}
		ev = event_new("response.text.delta");
		json_object_object_add(ev, "delta", json_object_new_string(w[i]));
		q_event(s, t, ev);
	}
	free(words_buf);
	tend = now + 0.003 + fmax(fmax(0.0, ndelta * 0.08 - AHEAD_SEC),
	    nw > 0 ? (nw - 1) * (WORD_TONE + WORD_GAP) / (double)RATE : 0) /
	    speed;
	q_event(s, tend, additional_outputs(s, reply));
	q_event(s, tend, event_new("response.audio.done"));
	q_add(s, tend, I_TURN_END, 0, reply, strlen(reply));
	if (ends_with_bye(reply))
		q_add(s, tend + 1.0, I_CLOSE, 1000, "", 0);

	if (fs.f != F_NONE && fs.f != F_SLOWGREET && fs.f != F_STT1 &&
	    fs.f != F_PING) {
		tf = now + FAULT_SEC / speed + 0.0025;
		if (tf > tend)
			tf = tend - 0.0001;
		if (q_fault(s, tf, fs.f)) {
			/* Drop this turn's items after the fault. */
			for (i = k = first; i < s->nq; i++) {
				if (s->q[i].due > tf) {
					free(s->q[i].data);
					continue;
				}
				s->q[k++] = s->q[i];
			}
			s->nq = k;
		}
	}
	qsort(s->q, s->nq, sizeof(*s->q), item_cmp);
}

/* The bot's next reply: to new instructions, a word, or a silence. */
static char *
next_reply(struct session *s, int greeting, const char *word)
{
	char *r;

	if (greeting || s->instr_new) {
		s->instr_new = 0;
		s->silences = 0;
		return derive_reply(s->instr != NULL ? s->instr :
		    DEFAULT_PROMPT);
	}
	if (word != NULL) {
		s->silences = 0;
		return asprintf(&r, "You said: %s", word) == -1 ? NULL : r;
	}
	if (++s->silences > 3)
		return strdup("Okay, I will let you go now. Bye!");
	return strdup("Are you still there?");
}

/*
 * A word the user said (an interruption): speech_stopped once the VAD
 * hears a pause in the received audio, the STT flush, then the reply.
 */
static void
user_turn(struct session *s, double now)
{
	char *reply;

	if (s->flush_until < 0) {
		if (s->audio_sec >= s->pause_at) {
			q_event(s, now,
			    event_new("input_audio_buffer.speech_stopped"));
			s->flush_until = s->audio_sec + FLUSH_SEC;
		}
		return;
	}
	if (s->audio_sec < s->flush_until)
		return;
	s->flush_until = -1;
	s->waiting_start = s->audio_sec;
	if ((reply = next_reply(s, 0, s->user_said)) != NULL)
		start_turn(s, s->user_said, reply);
	free(reply);
	free(s->user_said);
	s->user_said = NULL;
}

/* The turn rules, run on every decoded piece of audio (§6, §10). */
static void
on_audio(struct session *s, long samples)
{
	double now = mono();
	char *reply;

	s->audio_sec += (double)samples / RATE;
	if (s->stalled)
		return;
	if (s->turns == 0 && s->have_instr) {
		if ((reply = next_reply(s, 1, NULL)) != NULL)
			start_turn(s, "Hello!", reply);
		free(reply);
		return;
	}
	if (!s->speaking && s->user_said != NULL) {
		user_turn(s, now);
		return;
	}
	if (s->speaking || now < s->done_wall + 1.0 / U.o.speed) {
		s->waiting_start = s->audio_sec;
		return;
	}
	if (s->flush_until < 0 &&
	    s->audio_sec - s->waiting_start > SILENCE_SEC) {
		q_event(s, now, event_new("input_audio_buffer.speech_stopped"));
		s->flush_until = s->audio_sec + FLUSH_SEC;
		return;
	}
	if (s->flush_until >= 0 && s->audio_sec >= s->flush_until) {
		s->flush_until = -1;
		s->waiting_start = s->audio_sec;
		if ((reply = next_reply(s, 0, NULL)) != NULL)
			start_turn(s, "...", reply);
		free(reply);
		return;
	}
	if (s->audio_sec - s->idle_out >= 1.0) {
		s->idle_out = s->audio_sec;
		q_event(s, now, additional_outputs(s, NULL));
	}
}

/* --- client events --- */

static const char *const languages[] = { "en", "fr", "en/fr", "fr/en" };
static const char *const instr_types[] = { "constant", "smalltalk",
    "guess_animal", "quiz_show", "news", "unmute_explanation" };

static int
in_list(const char *s, const char *const *l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(s, l[i]) == 0)
			return 1;
	return 0;
}

/* stt1: this session holds the STT's only slot (compose batch_size 1). */
static void
stt_take(struct session *s)
{
	if (s->stt_hold)
		return;
	pthread_mutex_lock(&U.mu);
	U.stt_held++;
	pthread_mutex_unlock(&U.mu);
	s->stt_hold = 1;
}

static void
stt_give(struct session *s)
{
	if (!s->stt_hold)
		return;
	pthread_mutex_lock(&U.mu);
	U.stt_held--;
	U.stt_free_at = mono() + STT_LAG_SEC;
	pthread_mutex_unlock(&U.mu);
	s->stt_hold = 0;
}

static int
stt_full(void)
{
	int full;

	pthread_mutex_lock(&U.mu);
	full = U.stt_held > 0 || mono() < U.stt_free_at;
	pthread_mutex_unlock(&U.mu);
	return full;
}

/* A marker or fault for the session (stt1, ping=MS) or its next turn. */
static void
set_fault(struct session *s, const struct fault_spec *f,
    struct fault_spec *turn)
{
	if (f->f == F_STT1)
		stt_take(s);
	else if (f->f == F_PING) {
		s->ping_sec = f->ms / 1000.0;
		s->ping_at = mono() + s->ping_sec;
	} else
		*turn = *f;
}

/* Pull [[unmute:NAME]] markers out of text, in place; the last wins. */
static void
take_markers(struct session *s, char *text)
{
	char *p, *e;
	struct fault_spec f;

	while ((p = strstr(text, "[[unmute:")) != NULL &&
	    (e = strstr(p, "]]")) != NULL) {
		if (parse_fault(p + 9, (size_t)(e - p - 9), &f) == 0)
			set_fault(s, &f, &s->turn_fault);
		memmove(p, e + 2, strlen(e + 2) + 1);
	}
}

/*
 * Validate instructions as pydantic would; fill *echo with defaults.
 * Return NULL, or the details array of the error.
 */
static struct json_object *
check_instructions(struct json_object *in, struct json_object **echo,
    const char **text)
{
	struct json_object *t, *v, *lang;
	const char *type;

	*text = NULL;
	*echo = NULL;
	if (in == NULL) {
		*echo = NULL;
		return NULL;
	}
	if (!json_object_is_type(in, json_type_object))
		return detail("model_attributes_type",
		    "Input should be an object",
		    loc3("session.update", "session", "instructions"),
		    json_object_get(in), NULL);
	if (!json_object_object_get_ex(in, "type", &t) ||
	    !json_object_is_type(t, json_type_string) ||
	    !in_list(json_object_get_string(t), instr_types, 6))
		return detail("union_tag_invalid", "Input tag found using "
		    "'type' does not match any of the expected tags",
		    loc3("session.update", "session", "instructions"),
		    json_object_get(in), NULL);
	type = json_object_get_string(t);
	if (json_object_object_get_ex(in, "language", &lang) && lang != NULL &&
	    (!json_object_is_type(lang, json_type_string) ||
	    !in_list(json_object_get_string(lang), languages, 4)))
		return detail("literal_error", "Input should be 'en', 'fr', "
		    "'en/fr' or 'fr/en'", loc3("session.update", "session",
		    "instructions"), json_object_get(lang), NULL);
	*echo = json_object_new_object();
	json_object_object_add(*echo, "type", json_object_new_string(type));
	if (strcmp(type, "constant") == 0) {
		if (json_object_object_get_ex(in, "text", &v) && v != NULL) {
			if (!json_object_is_type(v, json_type_string)) {
				json_object_put(*echo);
				return detail("string_type",
				    "Input should be a valid string",
				    loc3("session.update", "session",
				    "instructions"), json_object_get(v), NULL);
			}
			*text = json_object_get_string(v);
		}
		json_object_object_add(*echo, "text", json_object_new_string(
		    *text != NULL ? *text : DEFAULT_PROMPT));
	}
	if (strcmp(type, "unmute_explanation") != 0)
		json_object_object_add(*echo, "language",
		    lang != NULL && json_object_object_get_ex(in, "language",
		    NULL) ? json_object_get(lang) : NULL);
	return NULL;
}

static void
session_update(struct session *s, struct json_object *ev)
{
	struct json_object *ss, *ar, *in = NULL, *voice = NULL, *echo, *err;
	struct json_object *out, *os;
	const char *text;
	char *t;

	if (!json_object_object_get_ex(ev, "session", &ss) ||
	    !json_object_is_type(ss, json_type_object)) {
		invalid(s, detail("missing", "Field required",
		    loc3("session.update", "session", NULL),
		    json_object_get(ev), NULL));
		return;
	}
	if (!json_object_object_get_ex(ss, "allow_recording", &ar)) {
		invalid(s, detail("missing", "Field required",
		    loc3("session.update", "session", "allow_recording"),
		    json_object_get(ss), NULL));
		return;
	}
	if (!json_object_is_type(ar, json_type_boolean)) {
		invalid(s, detail("bool_type", "Input should be a valid boolean",
		    loc3("session.update", "session", "allow_recording"),
		    json_object_get(ar), NULL));
		return;
	}
	if (json_object_object_get_ex(ss, "voice", &voice) && voice != NULL &&
	    !json_object_is_type(voice, json_type_string)) {
		invalid(s, detail("string_type", "Input should be a valid string",
		    loc3("session.update", "session", "voice"),
		    json_object_get(voice), NULL));
		return;
	}
	json_object_object_get_ex(ss, "instructions", &in);
	if ((err = check_instructions(in, &echo, &text)) != NULL) {
		invalid(s, err);
		return;
	}

	free(s->voice);
	s->voice = voice != NULL ? strdup(json_object_get_string(voice)) : NULL;
	if (echo != NULL) {
		t = strdup(text != NULL ? text : DEFAULT_PROMPT);
		if (t != NULL) {
			take_markers(s, t);
			free(s->instr);
			s->instr = t;
			s->have_instr = 1;
			s->instr_new = 1;
		}
		json_object_put(s->instr_echo);
		s->instr_echo = echo;
	}

	out = event_new("session.updated");
	os = json_object_new_object();
	json_object_object_add(os, "instructions",
	    json_object_get(s->instr_echo));
	json_object_object_add(os, "voice",
	    s->voice != NULL ? json_object_new_string(s->voice) : NULL);
	json_object_object_add(os, "allow_recording",
	    json_object_new_boolean(json_object_get_boolean(ar)));
	json_object_object_add(out, "session", os);
	send_event(s, out);
}

static void
audio_append(struct session *s, struct json_object *ev)
{
	struct json_object *a;
	unsigned char *bytes;
	size_t n;
	long got;

	if (!json_object_object_get_ex(ev, "audio", &a) ||
	    !json_object_is_type(a, json_type_string)) {
		invalid(s, detail(a == NULL ? "missing" : "string_type",
		    a == NULL ? "Field required" :
		    "Input should be a valid string",
		    loc3("input_audio_buffer.append", "audio", NULL),
		    json_object_get(ev), NULL));
		return;
	}
	if ((bytes = b64_decode(json_object_get_string(a), &n)) == NULL) {
		fatal(s, MSG_FATAL);
		return;
	}
	if (!s->bos_seen) {
		/* Python indexes decoded_bytes[5]: IndexError if short. */
		if (n < 6) {
			free(bytes);
			fatal(s, MSG_FATAL);
			return;
		}
		if (!(bytes[5] & 0x02)) {
			free(bytes);
			return;
		}
		s->bos_seen = 1;
	}
	got = oo_dec_feed(s->dec, bytes, n, NULL, AUDIO_MAX_SAMPLES);
	free(bytes);
	if (got < 0) {
		fatal(s, MSG_FATAL);
		return;
	}
	if (got > 0)
		on_audio(s, got);
}

/* A JSON string of the first bytes of p, non-ASCII as '?'. */
static struct json_object *
ascii_string(const char *p, size_t n)
{
	char b[201];
	size_t i;

	if (n > sizeof(b) - 1)
		n = sizeof(b) - 1;
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)p[i] < 0x80 ? p[i] : '?';
	return json_object_new_string_len(b, (int)n);
}

static void
on_text(struct session *s, const char *p, size_t n)
{
	struct json_tokener *tok;
	struct json_object *ev, *t, *ctx, *in;
	const char *type;
	char tag[300];

	if ((tok = json_tokener_new()) == NULL) {
		fatal(s, MSG_FATAL);
		return;
	}
	ev = json_tokener_parse_ex(tok, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (ev == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    (size_t)json_tokener_get_parse_end(tok) != n) {
		json_object_put(ev);
		json_tokener_free(tok);
		ctx = json_object_new_object();
		json_object_object_add(ctx, "error",
		    json_object_new_string("expected value at line 1 column 1"));
		invalid(s, detail("json_invalid",
		    "Invalid JSON: expected value at line 1 column 1", NULL,
		    ascii_string(p, n), ctx));
		return;
	}
	json_tokener_free(tok);
	if (!json_object_is_type(ev, json_type_object) ||
	    !json_object_object_get_ex(ev, "type", &t) ||
	    !json_object_is_type(t, json_type_string)) {
		ctx = json_object_new_object();
		json_object_object_add(ctx, "discriminator",
		    json_object_new_string("'type'"));
		invalid(s, detail(json_object_is_type(ev, json_type_object) ?
		    "union_tag_not_found" : "model_attributes_type",
		    "Unable to extract tag using discriminator 'type'", NULL,
		    json_object_get(ev), ctx));
		json_object_put(ev);
		return;
	}
	type = json_object_get_string(t);
	if (strcmp(type, "session.update") == 0)
		session_update(s, ev);
	else if (strcmp(type, "input_audio_buffer.append") == 0)
		audio_append(s, ev);
	else if (strcmp(type,
	    "unmute.input_audio_buffer.append_anonymized") == 0)
		vlog("tandem-sim: unmute: %s: ignored\n", type);
	else {
		snprintf(tag, sizeof(tag), "Input tag '%.100s' found using "
		    "'type' does not match any of the expected tags: %s",
		    type, EXPECTED_TAGS);
		ctx = json_object_new_object();
		json_object_object_add(ctx, "discriminator",
		    json_object_new_string("'type'"));
		json_object_object_add(ctx, "tag", json_object_new_string(type));
		json_object_object_add(ctx, "expected_tags",
		    json_object_new_string(EXPECTED_TAGS));
		in = json_object_get(ev);
		invalid(s, detail("union_tag_invalid", tag, NULL, in, ctx));
	}
	json_object_put(ev);
}

/* --- frames from the client --- */

static void
protocol_close(struct session *s, int code, const char *why)
{
	vlog("tandem-sim: unmute: closing: %s\n", why);
	ws_close_frame(s->fd, code, why);
	s->ended = 1;
}

static void
on_message(struct session *s, int op, const unsigned char *p, size_t n)
{
	if (op == 0x2) {
		/* receive_text() on a binary frame: a server exception. */
		fatal(s, MSG_FATAL);
		return;
	}
	on_text(s, (const char *)p, n);
}

static void
on_frame(struct session *s, int fin, int op, unsigned char *p, size_t n)
{
	unsigned char *nm;

	if (op & 0x8) {
		if (!fin || n > 125) {
			protocol_close(s, 1002, "bad control frame");
			return;
		}
		if (op == 0x8) {
			/* Echo the code back and end. */
			ws_send(s->fd, 0x8, p, n >= 2 ? 2 : 0);
			s->ended = 1;
		} else if (op == 0x9)
			ws_send(s->fd, 0xa, p, n);
		else if (op == 0xa)
			s->ping_sent = 0;	/* the client is alive */
		else
			protocol_close(s, 1002, "unknown opcode");
		return;
	}
	if (op != 0x0 && op != 0x1 && op != 0x2) {
		protocol_close(s, 1002, "unknown opcode");
		return;
	}
	if ((op == 0x0) != (s->msgop != 0)) {
		protocol_close(s, 1002, "bad continuation");
		return;
	}
	if (op == 0x0 || !fin) {
		if (s->msglen + n > MSG_MAX) {
			protocol_close(s, 1009, "message too big");
			return;
		}
		if ((nm = realloc(s->msg, s->msglen + n + 1)) == NULL) {
			fatal(s, MSG_FATAL);
			return;
		}
		s->msg = nm;
		memcpy(s->msg + s->msglen, p, n);
		s->msglen += n;
		if (op != 0x0)
			s->msgop = op;
		if (!fin)
			return;
		op = s->msgop;
		s->msgop = 0;
		on_message(s, op, s->msg, s->msglen);
		s->msglen = 0;
		return;
	}
	on_message(s, op, p, n);
}

/* Parse whole frames out of rbuf. */
static void
parse_frames(struct session *s)
{
	unsigned char *p;
	size_t off = 0, hl, avail, i;
	uint64_t len;
	int fin, op;

	while (!s->ended) {
		p = s->rbuf + off;
		avail = s->rlen - off;
		if (avail < 2)
			break;
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		if (p[0] & 0x70) {
			protocol_close(s, 1002, "reserved bits set");
			break;
		}
		if (!(p[1] & 0x80)) {
			protocol_close(s, 1002, "client frame not masked");
			break;
		}
		len = p[1] & 0x7f;
		hl = 2;
		if (len == 126) {
			if (avail < 4)
				break;
			len = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				break;
			for (len = 0, i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			hl = 10;
		}
		if (len > MSG_MAX) {
			protocol_close(s, 1009, "message too big");
			break;
		}
		if (avail < hl + 4 + len)
			break;
		for (i = 0; i < len; i++)
			p[hl + 4 + i] ^= p[hl + i % 4];
		on_frame(s, fin, op, p + hl + 4, (size_t)len);
		off += hl + 4 + (size_t)len;
	}
	memmove(s->rbuf, s->rbuf + off, s->rlen - off);
	s->rlen -= off;
}

/* Read what is there. Return 0, or -1 on EOF or error. */
static int
read_frames(struct session *s)
{
	unsigned char *nb;
	size_t ncap;
	ssize_t n;

	if (s->rcap - s->rlen < 65536) {
		ncap = s->rcap ? s->rcap * 2 : 131072;
		if (ncap > MSG_MAX + 65536 + 14)
			ncap = MSG_MAX + 65536 + 14;
		if (ncap > s->rcap) {
			if ((nb = realloc(s->rbuf, ncap)) == NULL)
				return -1;
			s->rbuf = nb;
			s->rcap = ncap;
		}
	}
	if (s->rcap == s->rlen)
		return -1;
	n = recv(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return -1;
	s->rlen += (size_t)n;
	parse_frames(s);
	return 0;
}

/* Run the items that are due. */
static void
run_due(struct session *s)
{
	struct item *it;
	double now = mono();
	size_t done = 0, i;

	while (done < s->nq && !s->ended && !s->stalled) {
		it = &s->q[done];
		if (it->due > now)
			break;
		done++;
		switch (it->kind) {
		case I_TEXT:
			if (ws_send(s->fd, 0x1, it->data, it->len) == -1)
				s->ended = 1;
			break;
		case I_BINARY:
			if (ws_send(s->fd, 0x2, it->data, it->len) == -1)
				s->ended = 1;
			break;
		case I_CLOSE:
			ws_close_frame(s->fd, it->code, it->data);
			s->ended = 1;
			break;
		case I_DROP:
			s->ended = 2;
			break;
		case I_STALL:
			s->stalled = 1;
			break;
		case I_TURN_END:
			s->speaking = 0;
			s->done_wall = now;
			s->waiting_start = s->audio_sec;
			json_object_array_add(s->history,
			    msg_obj("assistant", it->data));
			break;
		case I_USER_WORD:
			s->speaking = 0;
			s->done_wall = now;
			s->waiting_start = s->audio_sec;
			s->flush_until = -1;
			free(s->user_said);
			s->user_said = strdup(it->data);
			s->pause_at = s->audio_sec + PAUSE_SEC;
			break;
		}
	}
	if (done == 0)
		return;
	for (i = 0; i < done; i++)
		free(s->q[i].data);
	memmove(s->q, s->q + done, (s->nq - done) * sizeof(*s->q));
	s->nq -= done;
	if (s->stalled)
		q_clear(s);
}

/* After our close frame, give the client a moment to answer it. */
static void
linger_close(struct session *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	double deadline = mono() + 1.0;
	char buf[4096];

	shutdown(s->fd, SHUT_WR);
	while (mono() < deadline &&
	    poll(&pfd, 1, (int)((deadline - mono()) * 1000) + 1) > 0)
		if (recv(s->fd, buf, sizeof(buf), 0) <= 0)
			break;
}

/* Ping like uvicorn; no pong within PING_SEC closes 1011. 0 or -1. */
static int
keepalive(struct session *s)
{
	double now = mono();

	if (s->ping_sent > 0 && now - s->ping_sent > s->ping_sec) {
		ws_close_frame(s->fd, 1011, "keepalive ping timeout");
		s->ended = 1;
		return -1;
	}
	if (now >= s->ping_at) {
		s->ping_at = now + s->ping_sec;
		if (s->ping_sent == 0)
			s->ping_sent = now;
		if (ws_send(s->fd, 0x9, "sim", 3) == -1) {
			s->ended = 2;
			return -1;
		}
	}
	return 0;
}

static void
session_run(struct session *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	double wait;
	int ms;

	if (s->ping_at == 0)
		s->ping_at = mono() + s->ping_sec;
	while (!s->ended) {
		run_due(s);
		if (s->ended)
			break;
		if (keepalive(s) == -1)
			break;
		wait = s->nq > 0 ? s->q[0].due - mono() : 1.0;
		wait = fmin(wait, s->ping_at - mono());
		ms = wait <= 0 ? 0 : wait > 1.0 ? 1000 : (int)(wait * 1000) + 1;
		if (poll(&pfd, 1, ms) > 0 && read_frames(s) == -1)
			break;
	}
	if (s->ended == 1)
		linger_close(s);
}

static void
session_free(struct session *s)
{
	q_clear(s);
	free(s->q);
	free(s->rbuf);
	free(s->msg);
	free(s->instr);
	free(s->voice);
	free(s->user_said);
	json_object_put(s->instr_echo);
	json_object_put(s->history);
	oo_dec_free(s->dec);
	oo_enc_free(s->enc);
}

/* A websocket session after the 101: the slot is ours. */
static void
session(int fd, const struct fault_spec *fs)
{
	struct session s;

	memset(&s, 0, sizeof(s));
	s.fd = fd;
	s.flush_until = -1;
	s.ping_sec = PING_SEC;
	s.history = json_object_new_array();
	s.dec = oo_dec_new(RATE, 1 << 20);
	s.enc = oo_enc_new_rate(RATE, 40);
	if (s.dec == NULL || s.enc == NULL ||
	    oo_enc_set_header(s.enc, 42, 3840, 48000, "KyutaiMoshi") == -1) {
		fatal(&s, MSG_FATAL);
		linger_close(&s);
		session_free(&s);
		return;
	}
	atomic_fetch_add(&sim_stats.unmute_open, 1);
	atomic_fetch_add(&sim_stats.unmute_sessions, 1);
	/* STT full at connect time (a stt1 session holds it). */
	if (fs->f != F_BUSY && fs->f != F_UNHEALTHY && stt_full()) {
		fatal(&s, MSG_BUSY);
		linger_close(&s);
		goto out;
	}
	set_fault(&s, fs, &s.fault);
	switch (fs->f) {
	case F_BUSY:
		/* STT full at connect time. */
		fatal(&s, MSG_BUSY);
		linger_close(&s);
		break;
	case F_UNHEALTHY:
		ws_close_frame(fd, 1011, MSG_UNHEALTHY);
		s.ended = 1;
		linger_close(&s);
		break;
	default:
		session_run(&s);
		break;
	}
out:
	stt_give(&s);
	atomic_fetch_sub(&sim_stats.unmute_open, 1);
	session_free(&s);
}

static void *
conn_main(void *arg)
{
	struct req *r;
	struct fault_spec fs = { F_NONE, 0 };
	int fd = (int)(intptr_t)arg;
	struct timeval tv = { 10, 0 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto out;
	if (U.o.unmute_fault != NULL)
		parse_fault(U.o.unmute_fault, strlen(U.o.unmute_fault), &fs);
	if (read_head(fd, r) == -1 || parse_head(r) == -1)
		goto out;
	if (strcmp(r->path, "/v1/realtime") != 0 || r->upgrade == NULL ||
	    strcasecmp(r->upgrade, "websocket") != 0) {
		serve_http(fd, r);
		goto out;
	}
	if (query_fault(r->query, &fs) == -1) {
		http_reply(fd, "400 Bad Request", "text/plain",
		    "unknown sim_fault\n");
		goto out;
	}
	if (strcmp(r->method, "GET") != 0 || r->key == NULL) {
		http_reply(fd, "400 Bad Request", "text/plain",
		    "Invalid websocket upgrade\n");
		goto out;
	}
	switch (fs.f) {
	case F_HOLD:
		hold(fd, HOLD_SEC);
		goto out;
	case F_EOF:
		goto out;
	case F_HTTP500:
		http_reply(fd, "500 Internal Server Error", "text/plain",
		    "Internal Server Error");
		goto out;
	default:
		break;
	}
	/* MAX_CLIENTS: the semaphore is taken before accept(). */
	if (slot_take(fd) == -1)
		goto out;
	if (send_accept(fd, r->key) == 0) {
		free(r);
		r = NULL;
		session(fd, &fs);
	}
	slot_give();
out:
	free(r);
	close(fd);
	return NULL;
}

static void *
accept_main(void *arg)
{
	pthread_t t;
	pthread_attr_t at;
	int fd, one = 1;

	(void)arg;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 1 << 20);
	for (;;) {
		fd = accept(U.lfd, NULL, NULL);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(100 * 1000);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, &at, conn_main,
		    (void *)(intptr_t)fd) != 0)
			close(fd);
	}
	return NULL;
}

int
sim_unmute_start(struct sim_opts *o)
{
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct fault_spec fs;
	pthread_t t;
	char port[16];
	int fd = -1, one = 1, rc;

	if (o->unmute_fault != NULL && parse_fault(o->unmute_fault,
	    strlen(o->unmute_fault), &fs) == -1) {
		fprintf(stderr, "tandem-sim: unknown --unmute-fault: %s\n",
		    o->unmute_fault);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", o->unmute_port);
	rc = getaddrinfo(o->host != NULL ? o->host : "127.0.0.1", port,
	    &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "tandem-sim: unmute: %s: %s\n", o->host,
		    gai_strerror(rc));
		return -1;
	}
	if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(fd, 128) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		fprintf(stderr, "tandem-sim: unmute: port %d: %s\n",
		    o->unmute_port, strerror(errno));
		if (fd != -1)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	o->unmute_port = ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	U.o = *o;
	if (U.o.max_clients < 1)
		U.o.max_clients = 4;
	if (!(U.o.speed > 0))
		U.o.speed = 1.0;
	U.lfd = fd;
	if (pthread_create(&t, NULL, accept_main, NULL) != 0) {
		fprintf(stderr, "tandem-sim: unmute: cannot start a thread\n");
		close(fd);
		return -1;
	}
	pthread_detach(t);
	return 0;
}
