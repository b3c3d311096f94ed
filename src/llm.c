/*
 * The chat completions client (SPEC.md §2, docs/fastcgi-sse-lws.md §4).
 *
 * One call = one easy handle in a multi handle, driven with
 * curl_multi_poll() at most 100 ms at a time, so that the stop flag,
 * the first-byte and the stall timers (kept here on the monotonic
 * clock) are looked at ten times a second.
 *
 * The multi handle (and so its connection cache) belongs to the calling
 * thread and lives until the thread ends: the calls of one agent path
 * (tagger, precheck, postprocess, …) reuse one connection instead of a
 * TCP and TLS handshake each. Any call that does not end cleanly throws
 * the multi handle away, which closes its connections: a cancelled or
 * failed call never leaves a half-read answer on a reused connection.
 *
 * The status is looked at before any byte of the body is parsed: a
 * non-2xx body is only kept (bounded) to find a short error message.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "llm.h"
#include "llmsse.h"
#include "log.h"
#include "utf8.h"

#define POLL_MS		100
#define ERRBODY_MAX	4096	/* bytes of a non-2xx body kept */
#define DONE_GRACE_MS	30	/* after [DONE], for the response's end */

enum body_mode {
	MODE_NONE,		/* no body byte yet */
	MODE_SSE,		/* 2xx, text/event-stream: parsed as it comes */
	MODE_JSON,		/* 2xx, one JSON answer: kept whole */
	MODE_ERROR		/* not 2xx: kept, bounded, for its message */
};

struct buf {
	char	*p;
	size_t	 len, cap;
};

/* One call in flight. */
struct xfer {
	const struct llm_call	*call;
	CURL			*easy;
	int			 streaming;
	enum body_mode		 mode;
	size_t			 max_response;
	struct llmsse		 sse;
	struct buf		 body;		/* MODE_JSON, MODE_ERROR */
	struct buf		 text;		/* content so far */
	size_t			 ntokens;
	long long		 start_ms;
	long long		 last_byte_ms;	/* 0: no body byte yet */
	int			 cancelled;	/* LLM_CANCEL_* */
	enum terr		 err;		/* set by a timer or a cap */
	char			 message[160];
};

static long long
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pthread_key_t	multi_key;
static pthread_once_t	multi_once = PTHREAD_ONCE_INIT;

static void
multi_destroy(void *m)
{
	curl_multi_cleanup(m);
}

static void
multi_key_init(void)
{
	pthread_key_create(&multi_key, multi_destroy);
}

/* This thread's multi handle, made on first use; NULL if out of memory. */
static CURLM *
thread_multi(void)
{
	CURLM	*m;

	pthread_once(&multi_once, multi_key_init);
	if ((m = pthread_getspecific(multi_key)) == NULL &&
	    (m = curl_multi_init()) != NULL &&
	    pthread_setspecific(multi_key, m) != 0) {
		curl_multi_cleanup(m);
		m = NULL;
	}
	return m;
}

void
llm_thread_cleanup(void)
{
	CURLM	*m;

	pthread_once(&multi_once, multi_key_init);
	if ((m = pthread_getspecific(multi_key)) != NULL) {
		pthread_setspecific(multi_key, NULL);
		curl_multi_cleanup(m);
	}
}

/* Append n bytes, keeping a NUL after them. Return 0, or -1 past max. */
static int
buf_add(struct buf *b, const char *s, size_t n, size_t max)
{
	char	*np;
	size_t	 ncap;

	if (n > max || b->len > max - n)
		return -1;
	if (b->len + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 1024;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		if ((np = realloc(b->p, ncap)) == NULL)
			return -1;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* Record the first error of a call; later ones do not overwrite it. */
static void
xfer_fail(struct xfer *x, enum terr err, const char *msg)
{
	if (x->err == TERR_OK) {
		x->err = err;
		snprintf(x->message, sizeof(x->message), "%s", msg);
	}
}

/* A content delta: keep it (bounded) and pass it on. */
static int
on_delta(void *arg, const char *text, size_t len)
{
	struct xfer *x = arg;

	if (buf_add(&x->text, text, len, x->max_response) == -1) {
		xfer_fail(x, TERR_UPSTREAM_MALFORMED,
		    "LLM answer exceeds max_response");
		return 1;
	}
	x->ntokens++;
	if (x->call->on_token != NULL &&
	    x->call->on_token(x->call->arg, text, len) != 0) {
		x->cancelled = LLM_CANCEL_CALLER;
		return 1;
	}
	return 0;
}

/*
 * On the first body bytes p[0..n): the status, the type and perhaps the
 * bytes decide how to read it. MODE_NONE: not yet known.
 */
static enum body_mode
pick_mode(struct xfer *x, const char *p, size_t n)
{
	long	 status = 0;
	char	*ctype = NULL;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return MODE_ERROR;
	if (!x->streaming)
		return MODE_JSON;
	/*
	 * A server that ignores "stream": true answers one JSON object,
	 * not always labelled as such; an event stream never opens with
	 * '{', so the first byte that is not white space tells.
	 */
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ctype);
	if (ctype != NULL && strncasecmp(ctype, "application/json", 16) == 0)
		return MODE_JSON;
	if (ctype != NULL && strncasecmp(ctype, "text/event-stream", 17) == 0)
		return MODE_SSE;
	while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		p++;
		n--;
	}
	if (n == 0)
		return MODE_NONE;	/* decide on a later byte */
	return *p == '{' ? MODE_JSON : MODE_SSE;
}

/*
 * The curl write callback. Return n to go on, anything else to end the
 * transfer (curl then reports CURLE_WRITE_ERROR; the reason is in x).
 */
static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer	*x = arg;
	size_t		 n = size * nmemb;
	enum llmsse_status st;

	x->last_byte_ms = mono_now();
	if (x->mode == MODE_NONE)
		x->mode = pick_mode(x, ptr, n);
	switch (x->mode) {
	case MODE_NONE:
		/* White space before a JSON answer: keep it, it parses. */
		if (buf_add(&x->body, ptr, n, ERRBODY_MAX) == -1)
			x->mode = MODE_SSE;
		return n;
	case MODE_ERROR:
		if (x->body.len < ERRBODY_MAX)
			buf_add(&x->body, ptr, n < ERRBODY_MAX - x->body.len ?
			    n : ERRBODY_MAX - x->body.len, ERRBODY_MAX);
		return n;
	case MODE_JSON:
		if (buf_add(&x->body, ptr, n, x->max_response) == -1) {
			xfer_fail(x, TERR_UPSTREAM_MALFORMED,
			    "LLM answer exceeds max_response");
			return CURL_WRITEFUNC_ERROR;
		}
		return n;
	default:
		st = llmsse_feed(&x->sse, ptr, n);
		return st == LLMSSE_OK || st == LLMSSE_DONE ? n :
		    CURL_WRITEFUNC_ERROR;
	}
}

char *
llm_url(const char *base, const char *path)
{
	const char	*host;
	size_t		 n = strlen(base);
	char		*url;

	while (n > 0 && base[n - 1] == '/')
		n--;
	/*
	 * A base_url with no path ("http://host:8080") is the server: the
	 * OpenAI-compatible API of every known server is under /v1 there.
	 */
	host = strstr(base, "://");
	host = host != NULL ? host + 3 : base;
	if (asprintf(&url, "%.*s%s/%s", (int)n, base,
	    memchr(host, '/', n - (size_t)(host - base)) == NULL ? "/v1" : "",
	    path) == -1)
		return NULL;
	return url;
}

/* The request body, malloc'd; NULL when out of memory. */
static char *
request_body(const struct llm_call *call)
{
	const struct conf	*c = call->conf;
	const struct conf_node	*nd = NULL;
	struct json_object	*o, *rf;
	const char		*model = c->llm.model, *js;
	char			*out, num[32];

	if ((unsigned)call->node < LLM_NODE__MAX) {
		nd = &c->llm.node[call->node];
		if (nd->model != NULL && nd->model[0] != '\0')
			model = nd->model;
	}
	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "model",
	    json_object_new_string(model != NULL ? model : "default"));
	json_object_object_add(o, "messages", call->messages != NULL ?
	    json_object_get(call->messages) : json_object_new_array());
	json_object_object_add(o, "stream",
	    json_object_new_boolean(call->on_token != NULL));
	if (nd != NULL && nd->temperature >= 0) {
		/* as written in the config, not 0.69999999999999996 */
		snprintf(num, sizeof(num), "%.6g", nd->temperature);
		json_object_object_add(o, "temperature",
		    json_object_new_double_s(nd->temperature, num));
	}
	if (nd != NULL && nd->max_tokens > 0)
		json_object_object_add(o, "max_tokens",
		    json_object_new_int(nd->max_tokens));
	if (call->json_mode) {
		rf = json_object_new_object();
		json_object_object_add(rf, "type",
		    json_object_new_string("json_object"));
		json_object_object_add(o, "response_format", rf);
	}
	js = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	out = js != NULL ? strdup(js) : NULL;
	json_object_put(o);
	return out;
}

/*
 * Headers of the request. The Authorization line is built in a local
 * buffer and wiped; curl keeps its own copy in the list, which
 * llm_chat frees when the call ends.
 */
static struct curl_slist *
request_headers(const struct llm_call *call)
{
	struct curl_slist	*h = NULL, *t;
	const char		*key = call->conf->llm.api_key;
	char			*auth;
	size_t			 n;

	static const char *const fixed[] = {
		"Content-Type: application/json",
		"Expect:",	/* no 100-continue round trip */
	};
	size_t	 i;

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if ((t = curl_slist_append(h, fixed[i])) == NULL)
			goto fail;
		h = t;
	}
	t = curl_slist_append(h, call->on_token != NULL ?
	    "Accept: text/event-stream" : "Accept: application/json");
	if (t == NULL)
		goto fail;
	h = t;
	if (key != NULL && key[0] != '\0') {
		if (key[strcspn(key, "\r\n")] != '\0')
			goto fail;	/* never a header break in a key */
		n = strlen(key) + sizeof("Authorization: Bearer ");
		if ((auth = malloc(n)) == NULL)
			goto fail;
		snprintf(auth, n, "Authorization: Bearer %s", key);
		t = curl_slist_append(h, auth);
		explicit_bzero(auth, n);
		free(auth);
		if (t == NULL)
			goto fail;
		h = t;
	}
	return h;
fail:
	curl_slist_free_all(h);
	return NULL;
}

/* Wipe and free a header list (one line holds the API key). */
static void
free_headers(struct curl_slist *h)
{
	struct curl_slist *t;

	for (t = h; t != NULL; t = t->next)
		explicit_bzero(t->data, strlen(t->data));
	curl_slist_free_all(h);
}

/* The hard ceiling of one call: the node's own, else [llm] timeout. */
static long
call_ceiling(const struct llm_call *call)
{
	const struct conf *c = call->conf;

	if (call->node < LLM_NODE__MAX && c->llm.node[call->node].timeout_ms > 0)
		return c->llm.node[call->node].timeout_ms;
	return c->llm.timeout_ms;
}

static int
setup_easy(struct xfer *x, const char *url, const char *body,
    struct curl_slist *hdrs)
{
	const struct conf	*c = x->call->conf;
	CURL			*e = x->easy;
	CURLcode		 rc = CURLE_OK;

#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_USERAGENT, "tandem");
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TCP_NODELAY, 1L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	if (c->llm.connect_timeout_ms > 0)
		SET(CURLOPT_CONNECTTIMEOUT_MS, c->llm.connect_timeout_ms);
	if (call_ceiling(x->call) > 0)
		SET(CURLOPT_TIMEOUT_MS, call_ceiling(x->call));
#undef SET
	return rc == CURLE_OK ? 0 : -1;
}

/*
 * When the request went out: the start plus curl's pre-transfer time
 * (name lookup, connect, TLS). 0 while still connecting.
 */
static long long
sent_ms(struct xfer *x)
{
	curl_off_t	 us = 0;

	if (curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &us) !=
	    CURLE_OK || us <= 0)
		return 0;
	return x->start_ms + us / 1000;
}

/* Our own timers. Return 1 when one has run out (x->err is set). */
static int
timed_out(struct xfer *x, long long now)
{
	const struct conf	*c = x->call->conf;
	long long		 sent;
	char			 msg[96];

	if (x->last_byte_ms == 0) {
		if (c->llm.first_token_timeout_ms <= 0 ||
		    (sent = sent_ms(x)) == 0 ||
		    now - sent < c->llm.first_token_timeout_ms)
			return 0;
		snprintf(msg, sizeof(msg), "LLM sent nothing within %ld ms",
		    c->llm.first_token_timeout_ms);
	} else {
		if (c->llm.stall_timeout_ms <= 0 ||
		    now - x->last_byte_ms < c->llm.stall_timeout_ms)
			return 0;
		snprintf(msg, sizeof(msg), "LLM stream stalled for %ld ms",
		    c->llm.stall_timeout_ms);
	}
	xfer_fail(x, TERR_UPSTREAM_TIMEOUT, msg);
	return 1;
}

/*
 * Drive the transfer until it ends, [DONE] is seen, the stop flag is
 * set or a timer runs out. Return the curl result (CURLE_OK when left
 * early on purpose: x says why).
 */
static CURLcode
drive(struct xfer *x, CURLM *m)
{
	const atomic_int	*stop = x->call->stop;
	CURLMsg			*msg;
	CURLMcode		 mc;
	long long		 now, done_ms = 0;
	int			 running = 1, left, wait = POLL_MS;

	for (;;) {
		if ((mc = curl_multi_perform(m, &running)) != CURLM_OK) {
			xfer_fail(x, TERR_INTERNAL, curl_multi_strerror(mc));
			return CURLE_OK;
		}
		if (running == 0)
			break;
		now = mono_now();
		/*
		 * After [DONE] the answer is whole; wait a moment for the
		 * end of the response so the connection can be kept, no more.
		 */
		if (x->mode == MODE_SSE && x->sse.status == LLMSSE_DONE) {
			if (done_ms == 0)
				done_ms = now;
			if (now - done_ms >= DONE_GRACE_MS)
				return CURLE_OK;
			wait = DONE_GRACE_MS - (int)(now - done_ms);
		}
		if (stop != NULL && atomic_load(stop)) {
			if (done_ms == 0)
				x->cancelled = LLM_CANCEL_STOP;
			return CURLE_OK;
		}
		if (done_ms == 0 && timed_out(x, now))
			return CURLE_OK;
		if ((mc = curl_multi_poll(m, NULL, 0, wait, NULL)) !=
		    CURLM_OK) {
			xfer_fail(x, TERR_INTERNAL, curl_multi_strerror(mc));
			return CURLE_OK;
		}
	}
	while ((msg = curl_multi_info_read(m, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == x->easy)
			return msg->data.result;
	return CURLE_OK;
}

/* A curl failure with no usable answer: which error is it? */
static void
curl_failure(struct xfer *x, CURLcode rc)
{
	curl_off_t	 connect_us = 0;
	char		 msg[160];

	curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		if (connect_us > 0) {
			xfer_fail(x, TERR_UPSTREAM_TIMEOUT,
			    "LLM call exceeded its time limit");
			return;
		}
		/* FALLTHROUGH */
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
		snprintf(msg, sizeof(msg), "LLM unavailable: %s",
		    curl_easy_strerror(rc));
		xfer_fail(x, TERR_LLM_UNAVAILABLE, msg);
		return;
	default:
		snprintf(msg, sizeof(msg), "LLM answer broke off: %s",
		    curl_easy_strerror(rc));
		xfer_fail(x, connect_us > 0 ? TERR_UPSTREAM_MALFORMED :
		    TERR_LLM_UNAVAILABLE, msg);
		return;
	}
}

/* A non-2xx answer: "LLM answered HTTP 429[: short message]". */
static void
http_failure(struct xfer *x, long status)
{
	struct json_object	*o;
	char			 emsg[128] = "", msg[160];

	if (x->body.p != NULL &&
	    (o = json_tokener_parse(x->body.p)) != NULL) {
		llmsse_error_object(o, emsg, sizeof(emsg));
		json_object_put(o);
	}
	if (emsg[0] != '\0')
		snprintf(msg, sizeof(msg), "LLM answered HTTP %ld: %s", status,
		    emsg);
	else
		snprintf(msg, sizeof(msg), "LLM answered HTTP %ld", status);
	xfer_fail(x, TERR_UPSTREAM_HTTP, msg);
}

/*
 * The text of a message's content: a string, or a list of parts whose
 * "text" parts are joined (some servers answer so). Return a malloc'd
 * string with its length in *len, or NULL when content is neither.
 */
static char *
content_text(struct json_object *content, size_t *len)
{
	struct json_object	*part, *type, *t;
	struct buf		 b = { NULL, 0, 0 };
	size_t			 i, n;

	*len = 0;
	if (json_object_is_type(content, json_type_string)) {
		/* not strndup: the text may hold a NUL, cleaned out later */
		if (buf_add(&b, json_object_get_string(content),
		    (size_t)json_object_get_string_len(content),
		    SIZE_MAX / 4) == -1)
			return NULL;
		*len = b.len;
		return b.p != NULL ? b.p : strdup("");
	}
	if (!json_object_is_type(content, json_type_array))
		return NULL;
	n = json_object_array_length(content);
	for (i = 0; i < n; i++) {
		part = json_object_array_get_idx(content, i);
		if (json_object_object_get_ex(part, "type", &type) &&
		    json_object_is_type(type, json_type_string) &&
		    strcmp(json_object_get_string(type), "text") != 0)
			continue;
		if (!json_object_object_get_ex(part, "text", &t) ||
		    !json_object_is_type(t, json_type_string))
			continue;
		if (buf_add(&b, json_object_get_string(t),
		    (size_t)json_object_get_string_len(t), SIZE_MAX / 4) == -1) {
			free(b.p);
			return NULL;
		}
	}
	*len = b.len;
	return b.p != NULL ? b.p : strdup("");
}

/*
 * A whole JSON answer: choices[0].message.content must be text (a
 * string or text parts), cleaned to valid UTF-8 as stream tokens are.
 * When the call streams (the server ignored "stream"), the content is
 * passed on as one token.
 */
static void
json_answer(struct xfer *x)
{
	struct json_object	*o, *choices, *c0, *m, *content;
	char			 emsg[128], msg[160], *text = NULL, *clean;
	const char		*why = NULL;
	size_t			 len = 0;

	o = x->body.p != NULL ? json_tokener_parse(x->body.p) : NULL;
	if (!json_object_is_type(o, json_type_object))
		why = "LLM answer is not a JSON object";
	else if (llmsse_error_object(o, emsg, sizeof(emsg))) {
		if (emsg[0] != '\0')
			snprintf(msg, sizeof(msg), "LLM error: %s", emsg);
		else
			snprintf(msg, sizeof(msg), "LLM error");
		xfer_fail(x, TERR_UPSTREAM_HTTP, msg);
	} else if (!json_object_object_get_ex(o, "choices", &choices) ||
	    !json_object_is_type(choices, json_type_array) ||
	    json_object_array_length(choices) == 0 ||
	    !json_object_is_type(c0 = json_object_array_get_idx(choices, 0),
	    json_type_object) ||
	    !json_object_object_get_ex(c0, "message", &m) ||
	    !json_object_object_get_ex(m, "content", &content) ||
	    (text = content_text(content, &len)) == NULL)
		why = "LLM answer has no choices[0].message.content";
	else if (utf8_valid(text, len)) {
		if (len > 0)
			on_delta(x, text, len);
	} else if ((clean = malloc(3 * len)) == NULL)
		xfer_fail(x, TERR_INTERNAL, "out of memory");
	else {
		len = llmsse_utf8_clean(text, len, clean, NULL);
		if (len > 0)
			on_delta(x, clean, len);
		free(clean);
	}
	if (why != NULL)
		xfer_fail(x, TERR_UPSTREAM_MALFORMED, why);
	free(text);
	json_object_put(o);
}

/*
 * The end of a 2xx stream: [DONE] or why not. Some servers (older
 * llama.cpp among them) close the response after the finish_reason
 * chunk without a [DONE]: an answer that says it is finished and whose
 * response ended cleanly (rc) is whole. A stream cut before that is not.
 */
static void
sse_answer(struct xfer *x, CURLcode rc)
{
	enum llmsse_status st = llmsse_finish(&x->sse);

	switch (st) {
	case LLMSSE_DONE:
		return;
	case LLMSSE_CUT:
		if (x->sse.finished && rc == CURLE_OK)
			return;
		xfer_fail(x, TERR_UPSTREAM_MALFORMED, x->sse.message);
		return;
	case LLMSSE_ABORTED:
		return;		/* x->cancelled or x->err says why */
	case LLMSSE_UPSTREAM_ERROR:
		xfer_fail(x, TERR_UPSTREAM_HTTP, x->sse.message);
		return;
	case LLMSSE_NOMEM:
		xfer_fail(x, TERR_INTERNAL, x->sse.message);
		return;
	default:
		xfer_fail(x, TERR_UPSTREAM_MALFORMED, x->sse.message);
		return;
	}
}

/*
 * Decide the outcome once the transfer is over. The status comes
 * first; then a curl failure, unless the answer was already complete
 * or the stream itself tells what went wrong (a cut stream is
 * "stream ended before [DONE]" however the connection ended).
 */
static void
conclude(struct xfer *x, CURLcode rc)
{
	long	 status = 0;

	if (x->cancelled || x->err != TERR_OK)
		return;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 0 && (status < 200 || status > 299)) {
		http_failure(x, status);
		return;
	}
	if (x->mode == MODE_SSE && x->sse.status == LLMSSE_DONE)
		return;		/* whatever came after [DONE] does not matter */
	if (rc == CURLE_OPERATION_TIMEDOUT ||
	    (rc != CURLE_OK && rc != CURLE_WRITE_ERROR && x->mode != MODE_SSE)) {
		curl_failure(x, rc);
		return;
	}
	if (x->mode == MODE_NONE)
		x->mode = x->streaming ? MODE_SSE : MODE_JSON;
	if (x->mode == MODE_SSE)
		sse_answer(x, rc);
	else
		json_answer(x);
}

/* One request and its answer; see llm_chat(). */
static enum terr
chat_once(const struct llm_call *call, struct llm_result *res)
{
	struct xfer		 x;
	struct curl_slist	*hdrs = NULL;
	CURLM			*m = NULL;
	CURLcode		 rc = CURLE_OK;
	char			*url = NULL, *body = NULL;

	memset(res, 0, sizeof(*res));
	memset(&x, 0, sizeof(x));
	x.call = call;
	x.streaming = call->on_token != NULL;
	x.max_response = call->conf->llm.max_response > 0 ?
	    call->conf->llm.max_response : 256 * 1024;
	llmsse_init(&x.sse, on_delta, &x);
	x.sse.max_line = x.sse.max_event = x.max_response + 4096;

	if (call->conf->llm.base_url == NULL ||
	    (url = llm_url(call->conf->llm.base_url, "chat/completions")) == NULL ||
	    (body = request_body(call)) == NULL ||
	    (hdrs = request_headers(call)) == NULL ||
	    (x.easy = curl_easy_init()) == NULL ||
	    (m = thread_multi()) == NULL ||
	    setup_easy(&x, url, body, hdrs) == -1 ||
	    curl_multi_add_handle(m, x.easy) != CURLM_OK)
		xfer_fail(&x, TERR_INTERNAL, "LLM call setup failed");
	else {
		x.start_ms = mono_now();
		rc = drive(&x, m);
		conclude(&x, rc);
		curl_multi_remove_handle(m, x.easy);
	}
	res->http_status = 0;
	if (x.easy != NULL)
		curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE,
		    &res->http_status);
	if (x.easy != NULL)
		curl_easy_cleanup(x.easy);
	/* only a clean end keeps the connection for the next call */
	if (x.cancelled || x.err != TERR_OK)
		llm_thread_cleanup();
	free_headers(hdrs);
	free(url);
	free(body);
	llmsse_free(&x.sse);
	free(x.body.p);

	if (x.cancelled) {
		res->err = TERR_STREAM_TIMEOUT;
		res->cancelled = x.cancelled;
		snprintf(res->message, sizeof(res->message), "%s",
		    x.cancelled == LLM_CANCEL_STOP ? "LLM call cancelled" :
		    "LLM call aborted by the caller");
	} else {
		res->err = x.err;
		snprintf(res->message, sizeof(res->message), "%s",
		    x.err == TERR_OK ? "ok" : x.message);
	}
	res->ntokens = x.ntokens;
	res->text = x.text.p != NULL ? x.text.p : strdup("");
	return res->err;
}

enum terr
llm_chat(const struct llm_call *call, struct llm_result *res)
{
	struct llm_call	 plain;

	if (chat_once(call, res) != TERR_UPSTREAM_HTTP || !call->json_mode ||
	    (res->http_status != 400 && res->http_status != 422))
		return res->err;
	/*
	 * Servers without a JSON mode (older llama.cpp, some vLLM models)
	 * refuse response_format with a 400 (422 from FastAPI ones): ask
	 * once more without it. The prompt asks for JSON all the same.
	 */
	log_info("llm: %s; retrying without response_format", res->message);
	llm_result_free(res);
	plain = *call;
	plain.json_mode = 0;
	return chat_once(&plain, res);
}

void
llm_result_free(struct llm_result *res)
{
	free(res->text);
	res->text = NULL;
}

/* Add {"role": role, "content": content} to arr. */
static void
add_message(struct json_object *arr, const char *role, const char *content,
    size_t len)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "role", json_object_new_string(role));
	json_object_object_add(o, "content",
	    json_object_new_string_len(content, (int)len));
	json_object_array_add(arr, o);
}

/*
 * [system?, history items (role and content only)…, user?]. History
 * items that are not {role: string, content: string} are skipped.
 * Return a new reference; the caller puts it.
 */
struct json_object *
llm_messages(const char *system, struct json_object *history,
    const char *user)
{
	struct json_object	*arr, *item, *role, *content;
	size_t			 i, n;

	if ((arr = json_object_new_array()) == NULL)
		return NULL;
	if (system != NULL)
		add_message(arr, "system", system, strlen(system));
	n = json_object_is_type(history, json_type_array) ?
	    json_object_array_length(history) : 0;
	for (i = 0; i < n; i++) {
		item = json_object_array_get_idx(history, i);
		if (!json_object_object_get_ex(item, "role", &role) ||
		    !json_object_is_type(role, json_type_string) ||
		    !json_object_object_get_ex(item, "content", &content) ||
		    !json_object_is_type(content, json_type_string))
			continue;
		add_message(arr, json_object_get_string(role),
		    json_object_get_string(content),
		    (size_t)json_object_get_string_len(content));
	}
	if (user != NULL)
		add_message(arr, "user", user, strlen(user));
	return arr;
}
