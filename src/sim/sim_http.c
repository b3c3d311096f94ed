/*
 * tandem-sim, HTTP half (SPEC.md §7): stand-ins for the LLM, the web
 * search and the FHIR server, behaving as the real ones do so that
 * tandem is tested against the protocols, not against this file.
 * A small thread-per-connection HTTP/1.1 server, always Connection: close.
 *
 * Routes:
 *   POST /v1/chat/completions  OpenAI-compatible, stream true or false
 *   GET  /v1/models            one model, "sim-model"
 *   GET  /search?q=…&format=json   SearxNG JSON, 3 results derived from q
 *   GET  /fhir/Patient/{id}    FHIR R4 Patient (application/fhir+json);
 *                              "missing" 404, "gone" 410, "sim-NAME" fault
 *   GET  /sim/stats            the sim_stats counters as JSON
 *
 * Requests are checked as the real API does: a message with a role or a
 * member OpenAI does not know, or response_format json_object with no
 * message saying "json", is a 400 invalid_request_error.
 *
 * Chat answers are deterministic. U is the text of the LAST user message,
 * S the text of the first system message. S selects the node by a JSON
 * schema marker and the answer content is:
 *   S has {"route"     {"route":"<tag>"}, keyword classifier on U
 *                      (route_rules[] below: patient, web, add_treatment,
 *                      ui_change, medical, else text)
 *   S has {"remember"  {"remember":true|false,"relevant":[]}
 *   S has {"facts"     {"facts":{name, age, allergy, medication}} as found
 *                      in U ("my name is X", "I am N years old",
 *                      "allergic to X", "I take X"), {} if none
 *   S has {"action"    {"action":{"type":"add_treatment","name","dose",
 *                      "frequency","start_date":null}} for "add|prescribe
 *                      NAME N UNIT FREQ…" (dose, frequency null if absent); {"type":"navigate","target"} for "navigate
 *                      to X"/"go to X"/"open the X"; {"type":"show_panel",
 *                      "panel"} for "show [the] X panel"; {"type":"none"}
 *   otherwise (prose)  "Sim answer: " + the first 40 whitespace-separated
 *                      words of U joined by one space + " [end]"
 *                      ("Sim answer: [end]" when U has no words)
 * Streamed content is cut into tokens (leading spaces + at most 8 bytes,
 * never inside a UTF-8 character), 10 ms apart; max_tokens counts them
 * and truncates with finish_reason "length". The SSE stream carries a
 * role-only first delta, a "content":null delta after the first token, a
 * ": keep-alive" comment after the third (or the last), a finish chunk, a usage chunk
 * with "choices":[] and "data: [DONE]"; its events are written split
 * mid-line, whole, or two per write, and always split inside the first
 * non-ASCII character of an event. Line ends are LF, CRLF when the
 * request's "user" is "crlf" or the crlf fault is on.
 *
 * Faults: --http-fault NAME[,NAME…] for every request, or a marker
 * [[sim:NAME]] in any message content or in the search q, or the FHIR id
 * sim-NAME. NAME[@SCOPE], SCOPE one of route remember facts action prose
 * search fhir: the fault then applies to that node only. Names: 500, 429
 * (Retry-After: 1), slow / slow=MS (first token or answer after 3 s / MS),
 * stall (2 tokens then silence until the client leaves, at most 120 s),
 * cut (2 tokens, or half a body, then close without [DONE]), malformed
 * (an invalid JSON data line mid-stream, the rest follows; invalid JSON
 * body otherwise), shape (JSON of the wrong shape: {"choices":"nope"}
 * then [DONE] when streaming, {"foo":1} otherwise; in JSON-answer nodes
 * the content becomes {"unexpected":true}), crlf (CRLF line ends), split
 * (a streamed token ends inside a multi-byte character, the raw rest of
 * it opens the next delta, as a careless server's byte-level tokens do).
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sim.h"

#define HEAD_MAX	16384		/* request line + headers */
#define BODY_MAX	(1024 * 1024)
#define CONN_MAX	512
#define IO_TIMEOUT_S	30
#define STALL_MAX_MS	120000
#define SLOW_DEFAULT_MS	3000
#define TOKEN_GAP_MS	10
#define PIECE_GAP_MS	2
#define TOKEN_MAX	8		/* bytes of a streamed token, spaces aside */
#define PROSE_WORDS	40
#define CLAUSE_MAX	64		/* bytes of an extracted fact or target */
#define WORDS_MAX	64

enum fault_kind {
	F_NONE,
	F_500,
	F_429,
	F_SLOW,
	F_STALL,
	F_CUT,
	F_MALFORMED,
	F_SHAPE,
	F_CRLF,
	F_SPLIT
};

static const struct {
	const char	*name;
	enum fault_kind	 kind;
} fault_names[] = {
	{ "500",	F_500 },
	{ "429",	F_429 },
	{ "slow",	F_SLOW },
	{ "stall",	F_STALL },
	{ "cut",	F_CUT },
	{ "malformed",	F_MALFORMED },
	{ "shape",	F_SHAPE },
	{ "crlf",	F_CRLF },
	{ "split",	F_SPLIT },
};

/* What a request is for; the names are the fault scopes. */
enum node {
	N_PROSE,
	N_ROUTE,
	N_REMEMBER,
	N_FACTS,
	N_ACTION,
	N_SEARCH,
	N_FHIR,
	N__MAX
};

static const char *const node_names[N__MAX] = {
	"prose", "route", "remember", "facts", "action", "search", "fhir"
};

/* The schema key that S must hold as {"key" to select the node. */
static const char *const node_schema[N__MAX] = {
	NULL, "route", "remember", "facts", "action", NULL, NULL
};

struct fault {
	enum fault_kind	 kind;
	int		 slow_ms;
	int		 crlf;
};

struct conn {
	int			 fd;
	const struct sim_opts	*o;
	char			 buf[HEAD_MAX + 1];	/* head, then body input */
	size_t			 bpos, blen;
	char			 method[16];
	char			*target;		/* malloc'd */
	long long		 clen;			/* -1: none */
	int			 chunked;
	int			 expect;		/* 100-continue */
	char			*body;			/* malloc'd, NUL-terminated */
	size_t			 bodylen;
	int			 status;		/* for the log */
};

struct chat {
	char		 id[48];
	long long	 created;
	char		 model[128];
	const char	*S, *U;
	enum node	 node;
	struct fault	 f;
	long long	 max_tokens;		/* 0: no limit */
	long long	 prompt_tokens;
	char		*content;		/* malloc'd */
	size_t		 len;			/* of content, max_tokens applied */
	long long	 ntokens;
	const char	*finish;
};

struct sse_out {
	struct conn	*c;
	const char	*eol;
	unsigned	 nev;
	char		*pend;
	size_t		 plen, pcap;
	int		 dead;
};

static int		 http_lfd = -1;
static const char	*http_global_fault;
static atomic_long	 chat_seq;

/* ---- faults ---------------------------------------------------------- */

/*
 * Apply one fault spec NAME[=ARG][@SCOPE] of length len to f for a
 * request of node n. The first fault kind wins; crlf adds up. Return 0,
 * or -1 for an unknown name or scope (f untouched).
 */
static int
fault_apply(const char *spec, size_t len, enum node n, struct fault *f)
{
	char		 s[64], *at, *eq;
	size_t		 i;
	int		 scope = -1;
	long		 ms = SLOW_DEFAULT_MS;

	if (len == 0 || len >= sizeof(s))
		return -1;
	memcpy(s, spec, len);
	s[len] = '\0';
	if ((at = strchr(s, '@')) != NULL) {
		*at++ = '\0';
		for (i = 0; i < N__MAX; i++)
			if (strcmp(at, node_names[i]) == 0)
				scope = (int)i;
		if (scope == -1)
			return -1;
	}
	if ((eq = strchr(s, '=')) != NULL) {
		*eq++ = '\0';
		ms = strtol(eq, &at, 10);
		if (*eq == '\0' || *at != '\0' || ms < 0 || ms > 600000)
			return -1;
	}
	for (i = 0; i < sizeof(fault_names) / sizeof(fault_names[0]); i++)
		if (strcmp(s, fault_names[i].name) == 0)
			break;
	if (i == sizeof(fault_names) / sizeof(fault_names[0]))
		return -1;
	if (eq != NULL && fault_names[i].kind != F_SLOW)
		return -1;
	if (scope != -1 && scope != (int)n)
		return 0;
	if (fault_names[i].kind == F_CRLF)
		f->crlf = 1;
	else if (f->kind == F_NONE) {
		f->kind = fault_names[i].kind;
		f->slow_ms = (int)ms;
	}
	return 0;
}

/* Apply every [[sim:SPEC]] marker found in text; unknown ones are text. */
static void
fault_scan(const char *text, enum node n, struct fault *f)
{
	const char	*p, *e;

	if (text == NULL)
		return;
	for (p = text; (p = strstr(p, "[[sim:")) != NULL; p = e) {
		p += 6;
		if ((e = strstr(p, "]]")) == NULL)
			return;
		(void)fault_apply(p, (size_t)(e - p), n, f);
	}
}

/* Apply a comma-separated list (--http-fault); return -1 if one is bad. */
static int
fault_list(const char *list, enum node n, struct fault *f)
{
	const char	*p, *e;
	int		 rc = 0;

	if (list == NULL)
		return 0;
	for (p = list; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchrnul(p, ',');
		if (fault_apply(p, (size_t)(e - p), n, f) == -1)
			rc = -1;
	}
	return rc;
}

/* ---- socket I/O --------------------------------------------------- */

/* Write all of buf; return 0, or -1 when the peer is gone. */
static int
send_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Wait ms milliseconds, watching the peer. Return 0 after the time, -1
 * as soon as the peer has closed (anything it sends meanwhile is
 * discarded), so that llm_open follows the client promptly.
 */
static int
peer_wait(int fd, int ms)
{
	struct pollfd	 pfd;
	struct timespec	 t0, t;
	char		 junk[512];
	long		 left;
	ssize_t		 n;
	int		 r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - ((t.tv_sec - t0.tv_sec) * 1000L +
		    (t.tv_nsec - t0.tv_nsec) / 1000000L);
		if (left <= 0)
			return 0;
		pfd.fd = fd;
		pfd.events = POLLIN | POLLRDHUP;
		pfd.revents = 0;
		r = poll(&pfd, 1, (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0)
			return 0;
		if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
			return -1;
		n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			return -1;
	}
}

/* Read more input into c->buf after c->blen; return bytes, 0 EOF, -1. */
static ssize_t
conn_fill(struct conn *c)
{
	ssize_t	 n;

	if (c->bpos == c->blen)
		c->bpos = c->blen = 0;
	if (c->blen == HEAD_MAX)
		return -1;
	do
		n = recv(c->fd, c->buf + c->blen, HEAD_MAX - c->blen, 0);
	while (n == -1 && errno == EINTR);
	if (n > 0)
		c->blen += (size_t)n;
	return n;
}

/* Copy n body bytes into dst from the buffer, then the socket. */
static int
conn_read(struct conn *c, char *dst, size_t n)
{
	size_t	 k;

	while (n > 0) {
		if (c->bpos == c->blen && conn_fill(c) <= 0)
			return -1;
		k = c->blen - c->bpos;
		if (k > n)
			k = n;
		memcpy(dst, c->buf + c->bpos, k);
		c->bpos += k;
		dst += k;
		n -= k;
	}
	return 0;
}

/* Read one line (LF or CRLF) of at most max-1 bytes into line. */
static int
conn_line(struct conn *c, char *line, size_t max)
{
	size_t	 n = 0;
	char	 ch;

	for (;;) {
		if (conn_read(c, &ch, 1) == -1)
			return -1;
		if (ch == '\n')
			break;
		if (n + 1 >= max)
			return -1;
		line[n++] = ch;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return 0;
}

/* ---- responses ------------------------------------------------------- */

static const char *
status_reason(int status)
{
	static const struct {
		int		 code;
		const char	*reason;
	} reasons[] = {
		{ 200, "OK" }, { 400, "Bad Request" }, { 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" }, { 410, "Gone" },
		{ 411, "Length Required" }, { 413, "Content Too Large" },
		{ 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 500, "Internal Server Error" }, { 501, "Not Implemented" },
		{ 503, "Service Unavailable" },
		{ 505, "HTTP Version Not Supported" },
	};
	size_t	 i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == status)
			return reasons[i].reason;
	return "Unknown";
}

/*
 * Send a response head. extra is more header lines, each ending in CRLF,
 * or NULL; clen < 0 sends no Content-Length (a chunked body follows).
 */
static int
send_head(struct conn *c, int status, const char *ctype, const char *extra,
    long long clen)
{
	char	 h[1024], len[64];
	int	 n;

	c->status = status;
	if (clen >= 0)
		snprintf(len, sizeof(len), "Content-Length: %lld\r\n", clen);
	else
		snprintf(len, sizeof(len), "Transfer-Encoding: chunked\r\n");
	n = snprintf(h, sizeof(h),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: tandem-sim\r\n"
	    "Content-Type: %s\r\n"
	    "%s%s"
	    "Connection: close\r\n\r\n",
	    status, status_reason(status), ctype, len, extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(h))
		return -1;
	return send_all(c->fd, h, (size_t)n);
}

static int
send_reply(struct conn *c, int status, const char *ctype, const char *extra,
    const char *body, size_t len)
{
	if (send_head(c, status, ctype, extra, (long long)len) == -1)
		return -1;
	return send_all(c->fd, body, len);
}

static int
send_str(struct conn *c, int status, const char *ctype, const char *body)
{
	return send_reply(c, status, ctype, NULL, body, strlen(body));
}

/* Serialise and send obj, which this takes over. */
static int
send_json(struct conn *c, int status, const char *ctype, const char *extra,
    struct json_object *obj)
{
	const char	*s;
	size_t		 len;
	int		 rc;

	s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	rc = send_reply(c, status, ctype, extra, s, len);
	json_object_put(obj);
	return rc;
}

/* The OpenAI error shape: {"error":{"message","type","param","code"}}. */
static int
send_openai_error(struct conn *c, int status, const char *type,
    const char *code, const char *extra, const char *fmt, ...)
{
	struct json_object	*o, *e;
	char			 msg[256];
	va_list			 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_object_new_object();
	e = json_object_new_object();
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "param", NULL);
	json_object_object_add(e, "code",
	    code ? json_object_new_string(code) : NULL);
	json_object_object_add(o, "error", e);
	return send_json(c, status, "application/json", extra, o);
}

/* A FHIR OperationOutcome with one issue. */
static int
send_outcome(struct conn *c, int status, const char *code, const char *text,
    const char *extra)
{
	struct json_object	*o, *issues, *i;

	o = json_object_new_object();
	json_object_object_add(o, "resourceType",
	    json_object_new_string("OperationOutcome"));
	issues = json_object_new_array();
	i = json_object_new_object();
	json_object_object_add(i, "severity", json_object_new_string("error"));
	json_object_object_add(i, "code", json_object_new_string(code));
	json_object_object_add(i, "diagnostics", json_object_new_string(text));
	json_object_array_add(issues, i);
	json_object_object_add(o, "issue", issues);
	return send_json(c, status, "application/fhir+json", extra, o);
}

/*
 * Send body (a whole answer in ctype) bent by fault f: 500/429 send
 * errbody instead, slow delays, stall holds, cut sends half, malformed
 * sends broken JSON, shape sends shapebody. Return -1 if the peer left.
 */
static int
send_faulted(struct conn *c, const struct fault *f, const char *ctype,
    const char *body, const char *errbody)
{
	static const char	 broken[] = "{\"results\": [{\"title\": \"trunc";
	static const char	 shape[] = "{\"foo\":1}";

	switch (f->kind) {
	case F_500:
		return send_reply(c, 500, ctype, NULL, errbody, strlen(errbody));
	case F_429:
		return send_reply(c, 429, ctype, "Retry-After: 1\r\n", errbody,
		    strlen(errbody));
	case F_SLOW:
		if (peer_wait(c->fd, f->slow_ms) == -1)
			return -1;
		break;
	case F_STALL:
		c->status = 0;
		(void)peer_wait(c->fd, STALL_MAX_MS);
		return -1;
	case F_CUT:
		if (send_head(c, 200, ctype, NULL, (long long)strlen(body)) == -1)
			return -1;
		(void)send_all(c->fd, body, strlen(body) / 2);
		return -1;
	case F_MALFORMED:
		return send_reply(c, 200, ctype, NULL, broken, strlen(broken));
	case F_SHAPE:
		return send_reply(c, 200, ctype, NULL, shape, strlen(shape));
	default:
		break;
	}
	return send_reply(c, 200, ctype, NULL, body, strlen(body));
}

/* ---- text helpers ---------------------------------------------------- */

/* ASCII-only lower case copy: byte offsets stay those of s. */
static char *
lower_dup(const char *s)
{
	char	*d, *p;

	if ((d = strdup(s)) == NULL)
		return NULL;
	for (p = d; *p; p++)
		if ((unsigned char)*p < 0x80)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

static int
is_alpha(int ch)
{
	return isalpha(ch) && ch < 0x80;
}

/* Find needle in lu at a word start; NULL if absent. */
static const char *
find_word(const char *lu, const char *needle)
{
	const char	*p;

	for (p = lu; (p = strstr(p, needle)) != NULL; p++)
		if (p == lu || !is_alpha((unsigned char)p[-1]))
			return p;
	return NULL;
}

static int
any_of(const char *lu, const char *const *kw)
{
	for (; kw != NULL && *kw != NULL; kw++)
		if (strstr(lu, *kw) != NULL)
			return 1;
	return 0;
}

/* Does p hold a number followed by a dose unit ("200 mg", "5ml")? */
static int
has_dose(const char *p)
{
	static const char *const units[] = {
		"mg", "mcg", "g", "ml", "iu", "units", "unit", "tablets",
		"tablet", "puffs", "drops", "\xc2\xb5g", NULL
	};
	const char	*q, *start = p;
	size_t		 i, n;

	for (; *p; p++) {
		if (!isdigit((unsigned char)*p) ||
		    (p > start && isdigit((unsigned char)p[-1])))
			continue;
		q = p;
		while (isdigit((unsigned char)*q) || *q == '.' || *q == ',')
			q++;
		while (*q == ' ')
			q++;
		for (i = 0; units[i] != NULL; i++) {
			n = strlen(units[i]);
			if (strncmp(q, units[i], n) == 0 &&
			    !is_alpha((unsigned char)q[n]))
				return 1;
		}
	}
	return 0;
}

/* "add .* mg", or "add" followed by a dose. */
static int
is_add_dose(const char *lu)
{
	const char	*p;

	if ((p = find_word(lu, "add ")) == NULL)
		return 0;
	return strstr(p + 4, "mg") != NULL || has_dose(p + 4);
}

/* "show .* panel" */
static int
is_show_panel(const char *lu)
{
	const char	*p;

	return (p = find_word(lu, "show ")) != NULL &&
	    strstr(p + 5, "panel") != NULL;
}

static const char *const kw_patient[] = {
	"patient", "my record", "my chart", NULL
};
static const char *const kw_web[] = {
	"search", "web", "latest", "news", "look up", NULL
};
static const char *const kw_add[] = { "add treatment", "prescribe", NULL };
static const char *const kw_ui[] = { "navigate", "go to", "open the", NULL };
static const char *const kw_medical[] = {
	"symptom", "pain", "fever", "headache", "dose", "medication",
	"diabetes", "blood pressure", "medical", NULL
};

/* The sim's own route classifier; the first matching row wins. */
static const struct route_rule {
	const char		 *route;
	const char *const	 *kw;
	int			(*match)(const char *);
} route_rules[] = {
	{ "patient",		kw_patient,	NULL },
	{ "web",		kw_web,		NULL },
	{ "add_treatment",	kw_add,		is_add_dose },
	{ "ui_change",		kw_ui,		is_show_panel },
	{ "medical",		kw_medical,	NULL },
};

static const char *
classify_route(const char *lu)
{
	size_t	 i;

	for (i = 0; i < sizeof(route_rules) / sizeof(route_rules[0]); i++)
		if (any_of(lu, route_rules[i].kw) ||
		    (route_rules[i].match && route_rules[i].match(lu)))
			return route_rules[i].route;
	return "text";
}

/* Offset of "i am N year" / "i'm N year" in lu and N's span, or -1. */
static int
find_age(const char *lu, size_t *num, size_t *numlen)
{
	static const char *const lead[] = { "i am ", "i'm ", NULL };
	const char	*p, *q;
	size_t		 i;

	for (i = 0; lead[i] != NULL; i++)
		for (p = lu; (p = strstr(p, lead[i])) != NULL; p++) {
			q = p + strlen(lead[i]);
			if (!isdigit((unsigned char)*q))
				continue;
			*num = (size_t)(q - lu);
			while (isdigit((unsigned char)*q))
				q++;
			*numlen = (size_t)(q - lu) - *num;
			while (*q == ' ')
				q++;
			if (*numlen <= 3 && strncmp(q, "year", 4) == 0)
				return 0;
		}
	return -1;
}

static int
wants_remember(const char *lu)
{
	static const char *const kw[] = {
		"my name is", "i am allergic", "i'm allergic", "i have",
		"i take", NULL
	};
	size_t	 a, b;

	return any_of(lu, kw) || find_age(lu, &a, &b) == 0;
}

/*
 * Copy into out the clause of s starting at off: leading spaces skipped,
 * ended by . , ; ! ? newline or " and ", at most CLAUSE_MAX bytes cut on
 * a character boundary, trailing spaces dropped. lower: fold ASCII case.
 */
static size_t
clause(const char *s, const char *lu, size_t off, char *out, int lower)
{
	size_t	 i = off, n = 0;

	while (s[i] == ' ')
		i++;
	for (; s[i] && n < CLAUSE_MAX; i++, n++) {
		if (strchr(".,;!?\n\r", s[i]) != NULL ||
		    strncmp(lu + i, " and ", 5) == 0)
			break;
		out[n] = lower ? lu[i] : s[i];
	}
	if (n == CLAUSE_MAX && ((unsigned char)s[i] & 0xC0) == 0x80) {
		/* cut inside a character: drop its first bytes too */
		while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80)
			n--;
		if (n > 0)
			n--;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	return n;
}

/* Add key: clause after the phrase in U (case-folded match), if any. */
static void
fact_after(struct json_object *facts, const char *key, const char *U,
    const char *lu, const char *phrase)
{
	const char	*p;
	char		 v[CLAUSE_MAX + 1];

	if ((p = find_word(lu, phrase)) == NULL)
		return;
	if (clause(U, lu, (size_t)(p - lu) + strlen(phrase), v, 0) > 0)
		json_object_object_add(facts, key, json_object_new_string(v));
}

static struct json_object *
extract_facts(const char *U, const char *lu)
{
	struct json_object	*facts;
	const char		*p, *q;
	size_t			 off, len;

	facts = json_object_new_object();
	if ((p = find_word(lu, "my name is ")) != NULL) {
		p = U + (p - lu) + 11;
		while (*p == ' ')
			p++;
		for (q = p; *q && (isalnum((unsigned char)*q) || *q == '-' ||
		    *q == '\'' || (unsigned char)*q >= 0x80) && q - p < 64; q++)
			;
		while (q > p && ((unsigned char)*q & 0xC0) == 0x80)
			q--;		/* cut inside a character */
		if (q > p)
			json_object_object_add(facts, "name",
			    json_object_new_string_len(p, (int)(q - p)));
	}
	if (find_age(lu, &off, &len) == 0)
		json_object_object_add(facts, "age",
		    json_object_new_string_len(U + off, (int)len));
	fact_after(facts, "allergy", U, lu, "allergic to ");
	fact_after(facts, "medication", U, lu, "i take ");
	return facts;
}

/*
 * Split s into at most WORDS_MAX words (malloc'd copies), trailing
 * .,;!?: dropped; end[i], when end is not NULL, is the first of .,;!?
 * that closed word i, or 0.
 */
static size_t
split_words(const char *s, char **w, int *end)
{
	const char	*p, *e;
	size_t		 n = 0, len;

	for (p = s; *p && n < WORDS_MAX; p = e) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e && !isspace((unsigned char)*e); e++)
			;
		len = (size_t)(e - p);
		while (len > 0 && strchr(".,;!?:", p[len - 1]) != NULL)
			len--;
		if (len == 0 || (w[n] = strndup(p, len)) == NULL)
			continue;
		if (end != NULL)
			end[n] = len < (size_t)(e - p) &&
			    strchr(".,;!?", p[len]) != NULL ? p[len] : 0;
		n++;
	}
	return n;
}

static int
is_filler(const char *w)
{
	static const char *const fill[] = {
		"treatment", "medication", "medicine", "drug", "a", "an", "the",
		"new", "my", NULL
	};
	size_t	 i;

	for (i = 0; fill[i] != NULL; i++)
		if (strcasecmp(w, fill[i]) == 0)
			return 1;
	return 0;
}

/*
 * "add|prescribe NAME N UNIT FREQ…" → add_treatment, or NULL. The dose
 * and frequency end with the clause NAME is in; a comma may follow the
 * dose ("200 mg, twice daily").
 */
static struct json_object *
action_add(char **w, const int *end, size_t n)
{
	struct json_object	*a;
	char			 dose[128], freq[512];
	size_t			 i, j, k;

	for (i = 0; i < n && strcasecmp(w[i], "add") != 0 &&
	    strcasecmp(w[i], "prescribe") != 0; i++)
		;
	for (j = i + 1; j < n && is_filler(w[j]) && !end[j]; j++)
		;
	if (i >= n || j >= n || end[i])
		return NULL;
	a = json_object_new_object();
	json_object_object_add(a, "type", json_object_new_string("add_treatment"));
	json_object_object_add(a, "name", json_object_new_string(w[j]));
	dose[0] = freq[0] = '\0';
	if (end[j++])
		j = n;
	if (j < n && isdigit((unsigned char)w[j][0])) {
		k = strspn(w[j], "0123456789.,");
		if (w[j][k] != '\0')		/* "200mg" */
			snprintf(dose, sizeof(dose), "%.*s %s", (int)k, w[j],
			    w[j] + k);
		else if (!end[j] && j + 1 < n &&
		    is_alpha((unsigned char)w[j + 1][0]) &&
		    strlen(w[j + 1]) <= 8) {
			snprintf(dose, sizeof(dose), "%s %s", w[j], w[j + 1]);
			j++;
		} else
			snprintf(dose, sizeof(dose), "%s", w[j]);
		if (end[j] != 0 && end[j] != ',')
			j = n;
		j++;
	}
	for (; j < n; j++) {
		if (strlen(freq) + strlen(w[j]) + 2 >= sizeof(freq))
			break;
		if (freq[0])
			strcat(freq, " ");
		strcat(freq, w[j]);
		if (end[j])
			break;
	}
	json_object_object_add(a, "dose",
	    dose[0] ? json_object_new_string(dose) : NULL);
	json_object_object_add(a, "frequency",
	    freq[0] ? json_object_new_string(freq) : NULL);
	json_object_object_add(a, "start_date", NULL);
	return a;
}

static struct json_object *
action_of(const char *U, const char *lu)
{
	static const char *const nav[] = {
		"navigate to ", "go to ", "navigate ", "open the ", NULL
	};
	struct json_object	*a;
	char			*w[WORDS_MAX], v[CLAUSE_MAX + 1], *t, *pn;
	const char		*p;
	size_t			 i, n;
	int			 end[WORDS_MAX];

	n = split_words(U, w, end);
	a = action_add(w, end, n);
	for (i = 0; i < n; i++)
		free(w[i]);
	if (a != NULL)
		return a;
	for (i = 0; nav[i] != NULL; i++) {
		if ((p = find_word(lu, nav[i])) == NULL)
			continue;
		if (clause(U, lu, (size_t)(p - lu) + strlen(nav[i]), v, 1) == 0)
			continue;
		t = v;
		if (strncmp(t, "to ", 3) == 0)
			t += 3;
		if (strncmp(t, "the ", 4) == 0)
			t += 4;
		if (*t == '\0' || strcmp(t, "to") == 0)
			continue;
		a = json_object_new_object();
		if ((pn = strstr(t, " panel")) != NULL) {
			*pn = '\0';
			json_object_object_add(a, "type",
			    json_object_new_string("show_panel"));
			json_object_object_add(a, "panel",
			    json_object_new_string(t));
		} else {
			json_object_object_add(a, "type",
			    json_object_new_string("navigate"));
			json_object_object_add(a, "target",
			    json_object_new_string(t));
		}
		return a;
	}
	if ((p = find_word(lu, "show ")) != NULL &&
	    clause(U, lu, (size_t)(p - lu) + 5, v, 1) > 0 &&
	    (pn = strstr(v, "panel")) != NULL) {
		*pn = '\0';
		t = v;
		if (strncmp(t, "me ", 3) == 0)
			t += 3;
		if (strncmp(t, "the ", 4) == 0)
			t += 4;
		else if (strncmp(t, "my ", 3) == 0)
			t += 3;
		n = strlen(t);
		while (n > 0 && t[n - 1] == ' ')
			t[--n] = '\0';
		if (n > 0) {
			a = json_object_new_object();
			json_object_object_add(a, "type",
			    json_object_new_string("show_panel"));
			json_object_object_add(a, "panel",
			    json_object_new_string(t));
			return a;
		}
	}
	a = json_object_new_object();
	json_object_object_add(a, "type", json_object_new_string("none"));
	return a;
}

/* "Sim answer: " + first PROSE_WORDS words of U + " [end]"; malloc'd. */
static char *
prose_of(const char *U)
{
	const char	*p, *e;
	char		*out;
	size_t		 n = 0, len = 0, cap;
	int		 words = 0;

	cap = strlen(U) + 32;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	len = (size_t)snprintf(out, cap, "Sim answer:");
	for (p = U; words < PROSE_WORDS; p = e) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e && !isspace((unsigned char)*e); e++)
			;
		n = (size_t)(e - p);
		out[len++] = ' ';
		memcpy(out + len, p, n);
		len += n;
		words++;
	}
	memcpy(out + len, " [end]", 7);
	return out;
}

/* Does S hold {"key" (spaces allowed after the brace)? */
static int
has_schema(const char *S, const char *key)
{
	const char	*p, *q;
	size_t		 n = strlen(key);

	if (S == NULL)
		return 0;
	for (p = S; (p = strchr(p, '{')) != NULL; p++) {
		q = p + 1;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '"' && strncmp(q + 1, key, n) == 0 && q[n + 1] == '"')
			return 1;
	}
	return 0;
}

static enum node
node_of(const char *S)
{
	int	 i;

	for (i = 0; i < N__MAX; i++)
		if (node_schema[i] != NULL && has_schema(S, node_schema[i]))
			return (enum node)i;
	return N_PROSE;
}

/* The whole answer content for the chat; malloc'd, NULL on ENOMEM. */
static char *
content_of(const struct chat *ch)
{
	struct json_object	*o;
	char			*lu, *s;

	if (ch->node == N_PROSE)
		return prose_of(ch->U);
	if (ch->f.kind == F_SHAPE)
		return strdup("{\"unexpected\":true}");
	if ((lu = lower_dup(ch->U)) == NULL)
		return NULL;
	o = json_object_new_object();
	switch (ch->node) {
	case N_ROUTE:
		json_object_object_add(o, "route",
		    json_object_new_string(classify_route(lu)));
		break;
	case N_REMEMBER:
		json_object_object_add(o, "remember",
		    json_object_new_boolean(wants_remember(lu)));
		json_object_object_add(o, "relevant", json_object_new_array());
		break;
	case N_FACTS:
		json_object_object_add(o, "facts", extract_facts(ch->U, lu));
		break;
	default:
		json_object_object_add(o, "action", action_of(ch->U, lu));
		break;
	}
	s = strdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	free(lu);
	return s;
}

/* End of the token starting at pos: leading spaces, ≤ TOKEN_MAX bytes. */
static size_t
token_end(const char *s, size_t len, size_t pos)
{
	size_t	 e = pos, start;

	while (e < len && s[e] == ' ')
		e++;
	start = e;
	while (e < len && s[e] != ' ' && e - start < TOKEN_MAX)
		e++;
	while (e < len && ((unsigned char)s[e] & 0xC0) == 0x80)
		e++;
	return e;
}

/*
 * The split fault: end the token s[pos..e) just after the lead byte of
 * its first multi-byte character not at pos, if it has one.
 */
static size_t
split_end(const char *s, size_t pos, size_t e)
{
	size_t	 i;

	for (i = pos + 1; i < e; i++)
		if ((unsigned char)s[i] >= 0xC0)
			return i + 1;
	return e;
}

/* Count tokens and apply max_tokens to ch->len and ch->finish. */
static void
tokens_limit(struct chat *ch)
{
	size_t	 pos = 0, len = strlen(ch->content);

	ch->ntokens = 0;
	ch->finish = "stop";
	while (pos < len) {
		if (ch->max_tokens > 0 && ch->ntokens == ch->max_tokens) {
			ch->finish = "length";
			break;
		}
		pos = token_end(ch->content, len, pos);
		ch->ntokens++;
	}
	ch->len = pos;
}

/* ---- chat completions ---------------------------------------------- */

/* Text of a message content: a string, or an array of {type:text,text}. */
static const char *
content_text(struct json_object *msg, char **owned)
{
	struct json_object	*c, *part, *t;
	size_t			 i, n, len = 0, k;
	char			*s;

	*owned = NULL;
	if (!json_object_object_get_ex(msg, "content", &c) || c == NULL)
		return "";
	if (json_object_is_type(c, json_type_string))
		return json_object_get_string(c);
	if (!json_object_is_type(c, json_type_array))
		return "";
	n = json_object_array_length(c);
	for (i = 0; i < n; i++) {
		part = json_object_array_get_idx(c, i);
		if (json_object_object_get_ex(part, "text", &t) &&
		    json_object_is_type(t, json_type_string))
			len += (size_t)json_object_get_string_len(t) + 1;
	}
	if ((s = calloc(1, len + 1)) == NULL)
		return "";
	for (i = 0, len = 0; i < n; i++) {
		part = json_object_array_get_idx(c, i);
		if (!json_object_object_get_ex(part, "text", &t) ||
		    !json_object_is_type(t, json_type_string))
			continue;
		if (len > 0)
			s[len++] = '\n';
		k = (size_t)json_object_get_string_len(t);
		memcpy(s + len, json_object_get_string(t), k);
		len += k;
	}
	*owned = s;
	return s;
}

static long long
count_words(const char *s)
{
	long long	 n = 0;
	int		 in = 0;

	for (; *s; s++) {
		if (isspace((unsigned char)*s))
			in = 0;
		else if (!in) {
			in = 1;
			n++;
		}
	}
	return n;
}

static struct json_object *
usage_of(const struct chat *ch)
{
	struct json_object	*u;

	u = json_object_new_object();
	json_object_object_add(u, "prompt_tokens",
	    json_object_new_int64(ch->prompt_tokens));
	json_object_object_add(u, "completion_tokens",
	    json_object_new_int64(ch->ntokens));
	json_object_object_add(u, "total_tokens",
	    json_object_new_int64(ch->prompt_tokens + ch->ntokens));
	return u;
}

/* The fields every completion object and chunk starts with. */
static struct json_object *
envelope(const struct chat *ch, const char *object)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(ch->id));
	json_object_object_add(o, "object", json_object_new_string(object));
	json_object_object_add(o, "created", json_object_new_int64(ch->created));
	json_object_object_add(o, "model", json_object_new_string(ch->model));
	json_object_object_add(o, "system_fingerprint", NULL);
	return o;
}

/* The non-streamed chat.completion, bent by ch->f. -1: peer gone. */
static int
chat_plain(struct conn *c, struct chat *ch)
{
	struct json_object	*o, *choices, *choice, *msg;
	int			 rc;

	o = envelope(ch, "chat.completion");
	choices = json_object_new_array();
	choice = json_object_new_object();
	msg = json_object_new_object();
	json_object_object_add(msg, "role", json_object_new_string("assistant"));
	json_object_object_add(msg, "content",
	    json_object_new_string_len(ch->content, (int)ch->len));
	json_object_object_add(choice, "index", json_object_new_int(0));
	json_object_object_add(choice, "message", msg);
	json_object_object_add(choice, "logprobs", NULL);
	json_object_object_add(choice, "finish_reason",
	    json_object_new_string(ch->finish));
	json_object_array_add(choices, choice);
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", usage_of(ch));
	if (ch->node != N_PROSE && ch->f.kind == F_SHAPE)
		ch->f.kind = F_NONE;	/* the content carries it */
	c->status = 200;
	rc = send_faulted(c, &ch->f, "application/json",
	    json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
	    "{}");			/* 500 and 429 were answered before */
	json_object_put(o);
	return rc;
}

/* Write one HTTP chunk; marks o dead when the peer is gone. */
static void
out_chunk(struct sse_out *o, const char *p, size_t n)
{
	char	 hex[24];
	char	*b;
	int	 h;

	if (o->dead || n == 0)
		return;
	h = snprintf(hex, sizeof(hex), "%zx\r\n", n);
	if ((b = malloc((size_t)h + n + 2)) == NULL) {
		o->dead = 1;
		return;
	}
	memcpy(b, hex, (size_t)h);
	memcpy(b + h, p, n);
	memcpy(b + h + n, "\r\n", 2);
	if (send_all(o->c->fd, b, (size_t)h + n + 2) == -1)
		o->dead = 1;
	free(b);
}

/* Write what is pending, split in two pieces at cut (0: whole). */
static void
out_flush(struct sse_out *o, size_t cut)
{
	if (cut > 0 && cut < o->plen) {
		out_chunk(o, o->pend, cut);
		if (!o->dead && peer_wait(o->c->fd, PIECE_GAP_MS) == -1)
			o->dead = 1;
		out_chunk(o, o->pend + cut, o->plen - cut);
	} else
		out_chunk(o, o->pend, o->plen);
	o->plen = 0;
}

/*
 * Queue raw stream text and write it the way real servers' bytes
 * arrive: in turn split mid-line, held back, or written together with
 * the held one; split inside a multi-byte character whenever there is one.
 */
static void
out_put(struct sse_out *o, const char *s, size_t n)
{
	size_t	 i;
	char	*p;

	if (o->dead)
		return;
	if (o->plen + n > o->pcap) {
		if ((p = realloc(o->pend, o->plen + n + 256)) == NULL) {
			o->dead = 1;
			return;
		}
		o->pend = p;
		o->pcap = o->plen + n + 256;
	}
	memcpy(o->pend + o->plen, s, n);
	o->plen += n;
	for (i = 0; i < o->plen; i++)
		if ((unsigned char)o->pend[i] >= 0xC0) {
			out_flush(o, i + 1);
			return;
		}
	switch (o->nev++ % 3) {
	case 0:
		out_flush(o, o->plen / 2);
		break;
	case 1:
		break;			/* goes out with the next event */
	default:
		out_flush(o, 0);
		break;
	}
}

/* One "data: …" event; takes over obj when it is not NULL. */
static void
out_event(struct sse_out *o, struct json_object *obj, const char *raw)
{
	const char	*s;
	char		*ev;
	size_t		 len, n;

	s = obj ? json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len) : raw;
	if (!obj)
		len = strlen(raw);
	n = 6 + len + 2 * strlen(o->eol);
	if ((ev = malloc(n + 1)) != NULL) {
		snprintf(ev, n + 1, "data: %s%s%s", s, o->eol, o->eol);
		out_put(o, ev, n);
		free(ev);
	} else
		o->dead = 1;
	if (obj)
		json_object_put(obj);
}

/* A chunk with one choice whose delta is given; finish may be NULL. */
static struct json_object *
delta_chunk(const struct chat *ch, struct json_object *delta,
    const char *finish)
{
	struct json_object	*o, *choices, *choice;

	o = envelope(ch, "chat.completion.chunk");
	choices = json_object_new_array();
	choice = json_object_new_object();
	json_object_object_add(choice, "index", json_object_new_int(0));
	json_object_object_add(choice, "delta", delta);
	json_object_object_add(choice, "logprobs", NULL);
	json_object_object_add(choice, "finish_reason",
	    finish ? json_object_new_string(finish) : NULL);
	json_object_array_add(choices, choice);
	json_object_object_add(o, "choices", choices);
	return o;
}

static struct json_object *
delta_text(const char *role, const char *s, size_t n, int null_content)
{
	struct json_object	*d;

	d = json_object_new_object();
	if (role)
		json_object_object_add(d, "role", json_object_new_string(role));
	json_object_object_add(d, "content", null_content ? NULL :
	    json_object_new_string_len(s, (int)n));
	return d;
}

/*
 * The streamed answer as OpenAI sends it (chunked SSE, see the comment
 * at the top), bent by ch->f; returns as soon as the peer is gone.
 */
static void
chat_stream(struct conn *c, struct chat *ch)
{
	struct sse_out		 o;
	struct json_object	*u;
	size_t			 pos = 0, e;
	long long		 i;
	char			 ka[32];

	memset(&o, 0, sizeof(o));
	o.c = c;
	o.eol = ch->f.crlf ? "\r\n" : "\n";
	if (send_head(c, 200, "text/event-stream; charset=utf-8",
	    "Cache-Control: no-cache\r\n", -1) == -1)
		return;
	if (ch->f.kind == F_SLOW && peer_wait(c->fd, ch->f.slow_ms) == -1)
		return;
	out_event(&o, delta_chunk(ch, delta_text("assistant", "", 0, 0), NULL),
	    NULL);
	if (ch->f.kind == F_SHAPE && ch->node == N_PROSE) {
		out_event(&o, NULL, "{\"choices\":\"nope\"}");
		goto done;
	}
	for (i = 0; pos < ch->len && !o.dead; i++) {
		if (i == 2 && (ch->f.kind == F_STALL || ch->f.kind == F_CUT)) {
			out_flush(&o, 0);
			if (ch->f.kind == F_STALL && !o.dead)
				(void)peer_wait(c->fd, STALL_MAX_MS);
			free(o.pend);
			return;
		}
		if (i == 2 && ch->f.kind == F_MALFORMED)
			out_event(&o, NULL, "{\"id\":\"x\",\"choices\":[{\"delta\":"
			    "{\"content\":\"oops\"");
		if (i > 0 && peer_wait(c->fd, TOKEN_GAP_MS) == -1) {
			o.dead = 1;
			break;
		}
		e = token_end(ch->content, ch->len, pos);
		if (ch->f.kind == F_SPLIT)
			e = split_end(ch->content, pos, e);
		out_event(&o, delta_chunk(ch,
		    delta_text(NULL, ch->content + pos, e - pos, 0), NULL), NULL);
		pos = e;
		if (i == 0)
			out_event(&o, delta_chunk(ch,
			    delta_text(NULL, NULL, 0, 1), NULL), NULL);
		if (i == 2 || (pos == ch->len && i < 2)) {
			snprintf(ka, sizeof(ka), ": keep-alive%s%s", o.eol, o.eol);
			out_put(&o, ka, strlen(ka));
		}
	}
	if (o.dead)
		goto out;
	out_event(&o, delta_chunk(ch, json_object_new_object(), ch->finish),
	    NULL);
	u = envelope(ch, "chat.completion.chunk");
	json_object_object_add(u, "choices", json_object_new_array());
	json_object_object_add(u, "usage", usage_of(ch));
	out_event(&o, u, NULL);
done:
	out_event(&o, NULL, "[DONE]");
	out_flush(&o, 0);
	if (!o.dead)
		(void)send_all(c->fd, "0\r\n\r\n", 5);
out:
	free(o.pend);
}

/* o[key] as a string in *v: 1, absent or null 0, not a string -1. */
static int
get_string(struct json_object *o, const char *key, const char **v)
{
	struct json_object	*x;

	if (!json_object_object_get_ex(o, key, &x) || x == NULL)
		return 0;
	if (!json_object_is_type(x, json_type_string))
		return -1;
	*v = json_object_get_string(x);
	return 1;
}

/* The body as a JSON object (owned by the caller), or NULL. */
static struct json_object *
body_json(const struct conn *c)
{
	struct json_tokener	*tok;
	struct json_object	*o;

	if ((tok = json_tokener_new_ex(64)) == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, c->body, (int)c->bodylen);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != c->bodylen ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* The members and roles OpenAI accepts in a message; others are a 400. */
static const char *const msg_members[] = {
	"role", "content", "name", "tool_calls", "tool_call_id",
	"function_call", "refusal", "audio", NULL
};
static const char *const msg_roles[] = {
	"system", "developer", "user", "assistant", "tool", "function", NULL
};

static int
in_list(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/* As the real API: 400 for an unknown role or member. Return 0 or -1. */
static int
check_message(struct conn *c, struct json_object *m, size_t i,
    const char *role)
{
	if (!in_list(role, msg_roles)) {
		send_openai_error(c, 400, "invalid_request_error", NULL, NULL,
		    "messages[%zu].role: invalid value '%s'", i, role);
		return -1;
	}
	json_object_object_foreach(m, k, v) {
		(void)v;
		if (!in_list(k, msg_members)) {
			send_openai_error(c, 400, "invalid_request_error", NULL,
			    NULL, "Additional properties are not allowed "
			    "('%s' was unexpected) - 'messages.%zu'", k, i);
			return -1;
		}
	}
	return 0;
}

/*
 * Fill ch from the request's messages: S, U (pointing into req or into
 * owned[0], owned[1], which the caller frees), the node, the faults of
 * the markers, the prompt size. Return 0, or -1 after answering 400.
 */
static int
chat_messages(struct conn *c, struct json_object *req, struct chat *ch,
    char *owned[2])
{
	struct json_object	*msgs, *m;
	const char		*role, *text;
	char			*tmp;
	size_t			 i, n;

	if (!json_object_object_get_ex(req, "messages", &msgs) ||
	    !json_object_is_type(msgs, json_type_array) ||
	    (n = json_object_array_length(msgs)) == 0) {
		send_openai_error(c, 400, "invalid_request_error", NULL, NULL,
		    "'messages' must be a non-empty array");
		return -1;
	}
	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(msgs, i);
		if (!json_object_is_type(m, json_type_object) ||
		    get_string(m, "role", &role) != 1) {
			send_openai_error(c, 400, "invalid_request_error", NULL,
			    NULL, "messages[%zu]: 'role' is required", i);
			return -1;
		}
		if (check_message(c, m, i, role) == -1)
			return -1;
		text = content_text(m, &tmp);
		ch->prompt_tokens += count_words(text);
		if (strcmp(role, "system") == 0 && ch->S == NULL) {
			ch->S = text;
			owned[0] = tmp;
		} else if (strcmp(role, "user") == 0) {
			free(owned[1]);
			ch->U = text;
			owned[1] = tmp;
		} else
			free(tmp);
	}
	/* The node is known only now, and markers are scoped by it. */
	ch->node = node_of(ch->S);
	for (i = 0; i < n; i++) {
		text = content_text(json_object_array_get_idx(msgs, i), &tmp);
		fault_scan(text, ch->node, &ch->f);
		free(tmp);
	}
	(void)fault_list(http_global_fault, ch->node, &ch->f);
	return 0;
}

/*
 * Whether the request asks for response_format json_object while no
 * message says "json": OpenAI answers that with a 400.
 */
static int
json_mode_unasked(struct json_object *req)
{
	struct json_object	*rf, *t, *msgs;
	const char		*text;
	char			*tmp;
	size_t			 i, n;
	int			 found = 0;

	if (!json_object_object_get_ex(req, "response_format", &rf) ||
	    !json_object_object_get_ex(rf, "type", &t) ||
	    !json_object_is_type(t, json_type_string) ||
	    strcmp(json_object_get_string(t), "json_object") != 0)
		return 0;
	json_object_object_get_ex(req, "messages", &msgs);
	n = json_object_array_length(msgs);
	for (i = 0; i < n && !found; i++) {
		text = content_text(json_object_array_get_idx(msgs, i), &tmp);
		found = strcasestr(text, "json") != NULL;
		free(tmp);
	}
	return !found;
}

/*
 * POST /v1/chat/completions. Validates like the real API (400 with an
 * invalid_request_error), then answers per the comment at the top.
 */
static void
route_chat(struct conn *c)
{
	struct json_object	*req, *x;
	struct chat		 ch;
	char			*owned[2] = { NULL, NULL };
	const char		*text;
	int			 stream = 0;

	atomic_fetch_add(&sim_stats.llm_requests, 1);
	memset(&ch, 0, sizeof(ch));
	ch.U = "";
	if ((req = body_json(c)) == NULL) {
		send_openai_error(c, 400, "invalid_request_error", NULL, NULL,
		    "We could not parse the JSON body of your request.");
		return;
	}
	if (chat_messages(c, req, &ch, owned) == -1)
		goto out;
	if (get_string(req, "user", &text) == 1 && strcmp(text, "crlf") == 0)
		ch.f.crlf = 1;
	if (json_object_object_get_ex(req, "stream", &x))
		stream = json_object_get_boolean(x);
	if (json_mode_unasked(req)) {
		send_openai_error(c, 400, "invalid_request_error", NULL, NULL,
		    "'messages' must contain the word 'json' in some form, to "
		    "use 'response_format' of type 'json_object'.");
		goto out;
	}
	if ((json_object_object_get_ex(req, "max_completion_tokens", &x) ||
	    json_object_object_get_ex(req, "max_tokens", &x)) &&
	    json_object_is_type(x, json_type_int))
		ch.max_tokens = json_object_get_int64(x);
	if (get_string(req, "model", &text) != 1 || *text == '\0')
		text = "sim-model";
	snprintf(ch.model, sizeof(ch.model), "%s", text);
	snprintf(ch.id, sizeof(ch.id), "chatcmpl-sim%ld",
	    atomic_fetch_add(&chat_seq, 1) + 1);
	ch.created = (long long)time(NULL);

	if (ch.f.kind == F_500)
		send_openai_error(c, 500, "server_error", NULL, NULL,
		    "sim: injected server error");
	else if (ch.f.kind == F_429)
		send_openai_error(c, 429, "requests", "rate_limit_exceeded",
		    "Retry-After: 1\r\n", "sim: injected rate limit");
	else if ((ch.content = content_of(&ch)) == NULL)
		send_openai_error(c, 500, "server_error", NULL, NULL,
		    "sim: out of memory");
	else {
		tokens_limit(&ch);
		if (c->o->verbose)
			fprintf(stderr, "tandem-sim http: chat node=%s "
			    "stream=%d fault=%d crlf=%d\n",
			    node_names[ch.node], stream, ch.f.kind, ch.f.crlf);
		if (stream)
			chat_stream(c, &ch);
		else
			chat_plain(c, &ch);
	}
out:
	free(ch.content);
	free(owned[0]);
	free(owned[1]);
	json_object_put(req);
}

/* ---- other routes ------------------------------------------------------ */

static void
route_models(struct conn *c)
{
	static const char	 body[] = "{\"object\":\"list\",\"data\":[{\"id\":"
	    "\"sim-model\",\"object\":\"model\",\"created\":1700000000,"
	    "\"owned_by\":\"tandem-sim\"}]}";

	send_reply(c, 200, "application/json", NULL, body, sizeof(body) - 1);
}

static void
route_stats(struct conn *c)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "llm_open",
	    json_object_new_int(atomic_load(&sim_stats.llm_open)));
	json_object_object_add(o, "llm_requests",
	    json_object_new_int64(atomic_load(&sim_stats.llm_requests)));
	json_object_object_add(o, "http_open",
	    json_object_new_int(atomic_load(&sim_stats.http_open)));
	json_object_object_add(o, "unmute_open",
	    json_object_new_int(atomic_load(&sim_stats.unmute_open)));
	json_object_object_add(o, "unmute_waiting",
	    json_object_new_int(atomic_load(&sim_stats.unmute_waiting)));
	json_object_object_add(o, "unmute_sessions",
	    json_object_new_int64(atomic_load(&sim_stats.unmute_sessions)));
	send_json(c, 200, "application/json", NULL, o);
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Decode a form-urlencoded value in place; -1 on a bad escape or NUL. */
static int
url_decode(char *s)
{
	char	*d = s;
	int	 h, l;

	for (; *s; s++) {
		if (*s == '+')
			*d++ = ' ';
		else if (*s == '%') {
			if ((h = hexval((unsigned char)s[1])) == -1 ||
			    (l = hexval((unsigned char)s[2])) == -1 ||
			    (h == 0 && l == 0))
				return -1;
			*d++ = (char)(h << 4 | l);
			s += 2;
		} else
			*d++ = *s;
	}
	*d = '\0';
	return 0;
}

/* Valid UTF-8 without overlongs or surrogates? */
static int
utf8_ok(const unsigned char *s)
{
	unsigned	 cp;
	int		 n, i;

	while (*s) {
		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xC2 && *s <= 0xDF)
			n = 1, cp = *s & 0x1F;
		else if (*s >= 0xE0 && *s <= 0xEF)
			n = 2, cp = *s & 0x0F;
		else if (*s >= 0xF0 && *s <= 0xF4)
			n = 3, cp = *s & 0x07;
		else
			return 0;
		for (i = 1; i <= n; i++) {
			if ((s[i] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i] & 0x3F);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return 0;
		s += n + 1;
	}
	return 1;
}

/* Value of key in the query string qs (decoded, malloc'd), or NULL. */
static char *
query_get(const char *qs, const char *key, int *bad)
{
	const char	*p, *e, *eq;
	size_t		 kl = strlen(key);
	char		*v;

	for (p = qs; p && *p; p = *e ? e + 1 : NULL) {
		e = strchrnul(p, '&');
		eq = memchr(p, '=', (size_t)(e - p));
		if (eq == NULL || (size_t)(eq - p) != kl ||
		    strncmp(p, key, kl) != 0)
			continue;
		if ((v = strndup(eq + 1, (size_t)(e - eq - 1))) == NULL)
			return NULL;
		if (url_decode(v) == -1 || !utf8_ok((unsigned char *)v)) {
			*bad = 1;
			free(v);
			return NULL;
		}
		return v;
	}
	return NULL;
}

/* GET /search?q=…&format=json, SearxNG's JSON answer. */
static void
route_search(struct conn *c, const char *qs)
{
	struct json_object	*o, *res, *r;
	struct fault		 f;
	char			*q, *fmt, *w[WORDS_MAX], lead[256], slug[128];
	char			 s[512];
	size_t			 n, i, k;
	int			 bad = 0;

	q = query_get(qs, "q", &bad);
	fmt = query_get(qs, "format", &bad);
	if (bad || q == NULL || *q == '\0') {
		send_str(c, 400, "application/json",
		    "{\"error\":\"missing or bad q\"}");
		goto out;
	}
	if (fmt == NULL || strcmp(fmt, "json") != 0) {
		send_str(c, 403, "text/plain", "Forbidden\n");
		goto out;
	}
	memset(&f, 0, sizeof(f));
	fault_scan(q, N_SEARCH, &f);
	(void)fault_list(http_global_fault, N_SEARCH, &f);

	n = split_words(q, w, NULL);
	lead[0] = slug[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i < 6 && strlen(lead) + strlen(w[i]) + 2 < sizeof(lead)) {
			if (i > 0)
				strcat(lead, " ");
			strcat(lead, w[i]);
		}
		for (k = 0; w[i][k] && strlen(slug) + 2 < sizeof(slug) &&
		    strlen(slug) < 60; k++)
			if (isalnum((unsigned char)w[i][k]) &&
			    (unsigned char)w[i][k] < 0x80) {
				if (k == 0 && slug[0])
					strcat(slug, "-");
				slug[strlen(slug) + 1] = '\0';
				slug[strlen(slug)] =
				    (char)tolower((unsigned char)w[i][k]);
			}
		free(w[i]);
	}
	if (slug[0] == '\0')
		strcpy(slug, "search");
	o = json_object_new_object();
	json_object_object_add(o, "query", json_object_new_string(q));
	json_object_object_add(o, "number_of_results", json_object_new_int(3));
	res = json_object_new_array();
	for (i = 1; i <= 3; i++) {
		r = json_object_new_object();
		snprintf(s, sizeof(s), "%s: sim result %zu", lead, i);
		json_object_object_add(r, "title", json_object_new_string(s));
		snprintf(s, sizeof(s), "https://example.org/%s/%zu", slug, i);
		json_object_object_add(r, "url", json_object_new_string(s));
		snprintf(s, sizeof(s), "Result %zu of the sim search for %s.",
		    i, lead);
		json_object_object_add(r, "content", json_object_new_string(s));
		json_object_object_add(r, "engine", json_object_new_string("sim"));
		json_object_object_add(r, "engines", json_object_new_array());
		json_object_array_add(json_object_object_get(r, "engines"),
		    json_object_new_string("sim"));
		json_object_object_add(r, "score",
		    json_object_new_double(1.0 / (double)i));
		json_object_object_add(r, "category",
		    json_object_new_string("general"));
		json_object_array_add(res, r);
	}
	json_object_object_add(o, "results", res);
	json_object_object_add(o, "answers", json_object_new_array());
	json_object_object_add(o, "corrections", json_object_new_array());
	json_object_object_add(o, "infoboxes", json_object_new_array());
	json_object_object_add(o, "suggestions", json_object_new_array());
	json_object_object_add(o, "unresponsive_engines",
	    json_object_new_array());
	send_faulted(c, &f, "application/json", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
	    "{\"error\":\"sim: injected fault\"}");
	json_object_put(o);
out:
	free(q);
	free(fmt);
}

/* Patients by id; ids not listed get the first row's person. */
static const struct {
	const char	*id, *family, *given, *gender, *birth;
} patients[] = {
	{ "p1", "Doe", "Jane", "female", "1980-04-01" },
	{ "p2", "Roe", "John", "male", "1975-11-23" },
	{ "p3", "Moreau", "Am\xc3\xa9lie", "female", "1992-07-14" },
};

static int
fhir_id_ok(const char *id)
{
	size_t	 n = strlen(id);

	return n >= 1 && n <= 64 && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789.-") == n;
}

/* GET /fhir/Patient/{id}, FHIR R4. */
static void
route_fhir(struct conn *c, const char *id)
{
	struct json_object	*o, *names, *nm, *given;
	struct fault		 f;
	char			 err[256];
	size_t			 i, row = 0;

	memset(&f, 0, sizeof(f));
	if (!fhir_id_ok(id)) {
		send_outcome(c, 400, "invalid", "bad resource id", NULL);
		return;
	}
	if (strcmp(id, "missing") == 0) {
		send_outcome(c, 404, "not-found",
		    "Resource Patient/missing is not known", NULL);
		return;
	}
	if (strcmp(id, "gone") == 0) {
		send_outcome(c, 410, "deleted",
		    "Resource Patient/gone has been deleted", NULL);
		return;
	}
	if (strncmp(id, "sim-", 4) == 0 &&
	    fault_apply(id + 4, strlen(id + 4), N_FHIR, &f) == -1) {
		send_outcome(c, 404, "not-found", "unknown sim fault", NULL);
		return;
	}
	(void)fault_list(http_global_fault, N_FHIR, &f);
	for (i = 0; i < sizeof(patients) / sizeof(patients[0]); i++)
		if (strcmp(id, patients[i].id) == 0)
			row = i;
	o = json_object_new_object();
	json_object_object_add(o, "resourceType", json_object_new_string("Patient"));
	json_object_object_add(o, "id", json_object_new_string(id));
	names = json_object_new_array();
	nm = json_object_new_object();
	json_object_object_add(nm, "use", json_object_new_string("official"));
	json_object_object_add(nm, "family",
	    json_object_new_string(patients[row].family));
	given = json_object_new_array();
	json_object_array_add(given, json_object_new_string(patients[row].given));
	json_object_object_add(nm, "given", given);
	json_object_array_add(names, nm);
	json_object_object_add(o, "name", names);
	json_object_object_add(o, "gender",
	    json_object_new_string(patients[row].gender));
	json_object_object_add(o, "birthDate",
	    json_object_new_string(patients[row].birth));
	snprintf(err, sizeof(err), "{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"severity\":\"error\",\"code\":\"%s\","
	    "\"diagnostics\":\"sim: injected fault\"}]}",
	    f.kind == F_429 ? "throttled" : "exception");
	send_faulted(c, &f, "application/fhir+json",
	    json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), err);
	json_object_put(o);
}

/* Route a parsed request with its body read. */
static void
dispatch(struct conn *c)
{
	char		*path, *qs;
	int		 get = strcmp(c->method, "GET") == 0;
	int		 post = strcmp(c->method, "POST") == 0;

	path = c->target;
	if ((qs = strchr(path, '?')) != NULL)
		*qs++ = '\0';
	if (strcmp(path, "/v1/chat/completions") == 0) {
		if (!post) {
			send_openai_error(c, 405, "invalid_request_error", NULL,
			    "Allow: POST\r\n", "Method not allowed");
			return;
		}
		atomic_fetch_add(&sim_stats.llm_open, 1);
		route_chat(c);
		atomic_fetch_sub(&sim_stats.llm_open, 1);
		return;
	}
	if (strcmp(path, "/v1/models") == 0 && get)
		route_models(c);
	else if (strcmp(path, "/sim/stats") == 0 && get)
		route_stats(c);
	else if (strcmp(path, "/search") == 0 && get)
		route_search(c, qs ? qs : "");
	else if (strncmp(path, "/fhir/Patient/", 14) == 0 && get)
		route_fhir(c, path + 14);
	else if (strncmp(path, "/fhir/", 6) == 0)
		send_outcome(c, 404, "not-supported", "unknown resource", NULL);
	else
		send_str(c, 404, "application/json",
		    "{\"error\":{\"message\":\"not found\",\"type\":"
		    "\"invalid_request_error\",\"code\":\"not_found\"}}");
}

/* ---- request parsing ----------------------------------------------- */

/* Case-insensitive "does this header line name hdr"; value in *v. */
static int
header_is(char *line, const char *hdr, char **v)
{
	size_t	 n = strlen(hdr);
	char	*p, *e;

	if (strncasecmp(line, hdr, n) != 0 || line[n] != ':')
		return 0;
	for (p = line + n + 1; *p == ' ' || *p == '\t'; p++)
		;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	*v = p;
	return 1;
}

/*
 * Read and parse the request head (16 KiB at most). Return 0, or the
 * HTTP status to answer with, or -1 to close without an answer.
 */
static int
read_head(struct conn *c)
{
	char		*end, *crlf, *line, *next, *v, *sp1, *sp2, *ep;
	size_t		 hl;
	long long	 cl;

	for (;;) {
		crlf = memmem(c->buf, c->blen, "\r\n\r\n", 4);
		end = memmem(c->buf, c->blen, "\n\n", 2);
		if (crlf != NULL && (end == NULL || crlf < end)) {
			end = crlf;
			hl = (size_t)(end - c->buf) + 4;
			break;
		}
		if (end != NULL) {
			hl = (size_t)(end - c->buf) + 2;
			break;
		}
		if (c->blen == HEAD_MAX)
			return 431;
		if (conn_fill(c) <= 0)
			return -1;
	}
	if (memchr(c->buf, '\0', hl) != NULL)
		return 400;
	*end = '\0';
	c->bpos = hl;
	c->clen = -1;

	line = c->buf;
	next = strchr(line, '\n');
	if (next)
		*next++ = '\0';
	if ((ep = strchr(line, '\r')) != NULL)
		*ep = '\0';
	if ((sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
	    (size_t)(sp1 - line) >= sizeof(c->method) || sp1 == line)
		return 400;
	*sp1 = *sp2 = '\0';
	if (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)
		return strncmp(sp2 + 1, "HTTP/", 5) == 0 ? 505 : 400;
	memcpy(c->method, line, (size_t)(sp1 - line) + 1);
	if (sp1[1] != '/' || (c->target = strdup(sp1 + 1)) == NULL)
		return 400;

	for (line = next; line && *line; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((ep = strchr(line, '\r')) != NULL)
			*ep = '\0';
		if (*line == '\0')
			break;
		if (*line == ' ' || *line == '\t' || strchr(line, ':') == NULL)
			return 400;
		if (header_is(line, "Content-Length", &v)) {
			errno = 0;
			cl = strtoll(v, &ep, 10);
			if (*v < '0' || *v > '9' || *ep != '\0' || errno ||
			    (c->clen != -1 && c->clen != cl))
				return 400;
			c->clen = cl;
		} else if (header_is(line, "Transfer-Encoding", &v)) {
			if (strcasecmp(v, "chunked") != 0)
				return 501;
			c->chunked = 1;
		} else if (header_is(line, "Expect", &v)) {
			if (strcasecmp(v, "100-continue") == 0)
				c->expect = 1;
		}
	}
	if (c->chunked && c->clen != -1)
		return 400;
	return 0;
}

/* Read the body; return 0, an HTTP status, or -1 (peer gone). */
static int
read_body(struct conn *c)
{
	char		 line[256], *ep;
	unsigned long	 sz;

	if (c->clen > BODY_MAX)
		return 413;
	if (c->expect && (c->clen > 0 || c->chunked) &&
	    send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) == -1)
		return -1;
	if (!c->chunked) {
		c->bodylen = c->clen > 0 ? (size_t)c->clen : 0;
		if ((c->body = malloc(c->bodylen + 1)) == NULL)
			return 500;
		if (conn_read(c, c->body, c->bodylen) == -1)
			return -1;
		c->body[c->bodylen] = '\0';
		return 0;
	}
	if ((c->body = malloc(BODY_MAX + 1)) == NULL)
		return 500;
	for (;;) {
		if (conn_line(c, line, sizeof(line)) == -1)
			return 400;
		errno = 0;
		sz = strtoul(line, &ep, 16);
		if (ep == line || (*ep != '\0' && *ep != ';' && *ep != ' ') ||
		    errno)
			return 400;
		if (sz > BODY_MAX - c->bodylen)
			return 413;
		if (sz == 0)
			break;
		if (conn_read(c, c->body + c->bodylen, sz) == -1 ||
		    conn_line(c, line, sizeof(line)) == -1 || line[0] != '\0')
			return 400;
		c->bodylen += sz;
	}
	do {			/* trailers */
		if (conn_line(c, line, sizeof(line)) == -1)
			return 400;
	} while (line[0] != '\0');
	c->body[c->bodylen] = '\0';
	return 0;
}

/*
 * Answer an error before the body was read, then let the client's
 * unread bytes drain so that closing does not reset the connection
 * under the answer.
 */
static void
reject(struct conn *c, int status)
{
	struct pollfd	 pfd;
	struct timespec	 t0, t;
	char		 junk[65536], msg[128];
	size_t		 total = 0;
	ssize_t		 n;

	snprintf(msg, sizeof(msg), "{\"error\":{\"message\":\"%s\","
	    "\"type\":\"invalid_request_error\"}}", status_reason(status));
	if (send_str(c, status, "application/json", msg) == -1)
		return;
	shutdown(c->fd, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (total < 8 * BODY_MAX) {
		pfd.fd = c->fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 500) <= 0)
			break;
		if ((n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT)) <= 0)
			break;
		total += (size_t)n;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 5)
			break;
	}
}

static void *
conn_main(void *arg)
{
	struct conn	*c = arg;
	struct timeval	 tv = { IO_TIMEOUT_S, 0 };
	int		 one = 1, rc;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((rc = read_head(c)) == 0)
		rc = read_body(c);
	if (rc > 0)
		reject(c, rc);
	else if (rc == 0)
		dispatch(c);
	if (c->o->verbose)
		fprintf(stderr, "tandem-sim http: %s %s -> %d\n", c->method,
		    c->target ? c->target : "-", c->status);
	/* before close: a client that saw EOF then sees the count fall */
	atomic_fetch_sub(&sim_stats.http_open, 1);
	close(c->fd);
	free(c->target);
	free(c->body);
	free(c);
	return NULL;
}

static void *
accept_main(void *arg)
{
	static const char	 busy[] = "HTTP/1.1 503 Service Unavailable"
	    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	const struct sim_opts	*o = arg;
	pthread_attr_t		 attr;
	pthread_t		 t;
	struct conn		*c;
	int			 fd;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	for (;;) {
		fd = accept4(http_lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				poll(NULL, 0, 100);
			continue;
		}
		if (atomic_load(&sim_stats.http_open) >= CONN_MAX ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			(void)send_all(fd, busy, sizeof(busy) - 1);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->o = o;
		atomic_fetch_add(&sim_stats.http_open, 1);
		if (pthread_create(&t, &attr, conn_main, c) != 0) {
			atomic_fetch_sub(&sim_stats.http_open, 1);
			close(fd);
			free(c);
		}
	}
	return NULL;
}

int
sim_http_start(struct sim_opts *o)
{
	struct addrinfo		 hints, *res, *ai;
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	struct fault		 f;
	pthread_t		 t;
	char			 port[16];
	int			 one = 1, e, fd = -1;

	memset(&f, 0, sizeof(f));
	if (fault_list(o->http_fault, N_PROSE, &f) == -1) {
		fprintf(stderr, "tandem-sim: unknown --http-fault: %s\n",
		    o->http_fault);
		return -1;
	}
	http_global_fault = o->http_fault;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", o->http_port);
	if ((e = getaddrinfo(o->host, port, &hints, &res)) != 0) {
		fprintf(stderr, "tandem-sim: %s: %s\n", o->host,
		    gai_strerror(e));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 128) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		fprintf(stderr, "tandem-sim: http: cannot listen on %s:%d: %s\n",
		    o->host, o->http_port, strerror(errno));
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		o->http_port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
	http_lfd = fd;
	if ((e = pthread_create(&t, NULL, accept_main, o)) != 0) {
		fprintf(stderr, "tandem-sim: http: %s\n", strerror(e));
		close(fd);
		return -1;
	}
	pthread_detach(t);
	return 0;
}
