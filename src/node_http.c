/*
 * The nodes' own HTTP GETs (search, FHIR) on libcurl, in a multi handle
 * polled every 100 ms so that a stop is noticed at once
 * (docs/fastcgi-sse-lws.md §4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "nodes.h"

#define POLL_MS			100
#define CONNECT_TIMEOUT_MS	5000

struct sink {
	char	*buf;
	size_t	 len, cap, max;
	int	 too_big;
};

/* Keep the body up to max bytes; past that, fail the transfer. */
static size_t
sink_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink	*s = arg;
	size_t		 n = size * nmemb, cap;
	char		*nb;

	if (s->len + n > s->max) {
		s->too_big = 1;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n + 1)
			cap *= 2;
		if ((nb = realloc(s->buf, cap)) == NULL)
			return 0;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static CURL *
easy_new(const char *url, struct curl_slist *hdr, long timeout_ms,
    struct sink *s)
{
	CURL *e;

	if ((e = curl_easy_init()) == NULL)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tandem");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS,
	    (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	return e;
}

/* Drive the transfer to its end; return its code, or -1 when stopped. */
static int
run_transfer(CURLM *m, const atomic_int *stop)
{
	CURLMsg	*msg;
	int	 running = 1, left;

	while (running) {
		if (stop != NULL && atomic_load(stop) != 0)
			return -1;
		if (curl_multi_perform(m, &running) != CURLM_OK)
			return CURLE_FAILED_INIT;
		if (running && curl_multi_poll(m, NULL, 0, POLL_MS, NULL) !=
		    CURLM_OK)
			return CURLE_FAILED_INIT;
	}
	while ((msg = curl_multi_info_read(m, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			return msg->data.result;
	return CURLE_FAILED_INIT;
}

enum terr
upstream_get(const char *url, const char *accept, long timeout_ms,
    size_t max_body, const atomic_int *stop, struct upstream_reply *r,
    const char *what, char *msg, size_t msgsz)
{
	struct sink		 s = { NULL, 0, 0, max_body, 0 };
	struct curl_slist	*hdr = NULL;
	char			 ah[128];
	CURLM			*m = NULL;
	CURL			*e = NULL;
	enum terr		 err = TERR_INTERNAL;
	int			 rc;

	memset(r, 0, sizeof(*r));
	snprintf(msg, msgsz, "%s: internal error", what);
	snprintf(ah, sizeof(ah), "Accept: %s", accept);
	if ((hdr = curl_slist_append(NULL, ah)) == NULL ||
	    (e = easy_new(url, hdr, timeout_ms, &s)) == NULL ||
	    (m = curl_multi_init()) == NULL ||
	    curl_multi_add_handle(m, e) != CURLM_OK)
		goto out;
	rc = run_transfer(m, stop);
	if (rc == -1) {
		err = TERR_STREAM_TIMEOUT;
		snprintf(msg, msgsz, "%s: stopped", what);
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		err = TERR_UPSTREAM_TIMEOUT;
		snprintf(msg, msgsz, "%s: timed out", what);
	} else if (s.too_big) {
		err = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, msgsz, "%s: answer too large", what);
	} else if (rc != CURLE_OK) {
		err = TERR_UPSTREAM_HTTP;
		snprintf(msg, msgsz, "%s: %s", what,
		    curl_easy_strerror((CURLcode)rc));
	} else {
		err = TERR_OK;
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
		r->body = s.buf != NULL ? s.buf : strdup("");
		r->len = s.len;
		s.buf = NULL;
		snprintf(msg, msgsz, "%s: HTTP %ld", what, r->status);
	}
out:
	if (m != NULL && e != NULL)
		curl_multi_remove_handle(m, e);
	if (e != NULL)
		curl_easy_cleanup(e);
	if (m != NULL)
		curl_multi_cleanup(m);
	curl_slist_free_all(hdr);
	free(s.buf);
	return err;
}

void
upstream_reply_free(struct upstream_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

char *
upstream_url(const char *base, size_t blen, const char *sep, const char *value,
    const char *suffix)
{
	char	*esc, *url;

	if ((esc = curl_easy_escape(NULL, value, 0)) == NULL)
		return NULL;
	if (asprintf(&url, "%.*s%s%s%s", (int)blen, base, sep, esc, suffix) == -1)
		url = NULL;
	curl_free(esc);
	return url;
}
