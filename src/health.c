/*
 * GET /api/agent/health (SPEC.md §3.3). Shallow: this worker answers.
 * Deep (?deep=1): also GET Unmute's /v1/health and the LLM's /models
 * with short timeouts; still 200, with status "degraded" if one fails.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "health.h"
#include "http.h"
#include "llm.h"
#include "sse.h"

#define PROBE_TIMEOUT_MS	2000
#define PROBE_BODY_MAX		65536

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

void
url_redact(const char *url, char *out, size_t sz)
{
	const char	*scheme_end, *at, *host, *slash;

	snprintf(out, sz, "%s", url);
	if ((scheme_end = strstr(url, "://")) == NULL)
		return;
	host = scheme_end + 3;
	slash = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(slash - host));
	if (at != NULL)
		snprintf(out, sz, "%.*s%s", (int)(host - url), url, at + 1);
	out[strcspn(out, "?#")] = '\0';
}

int
health_unmute_url(const char *ws, char *out, size_t sz)
{
	char	 clean[1024], *path, *rt;
	int	 tls = strncmp(ws, "wss://", 6) == 0;

	url_redact(ws, clean, sizeof(clean));
	path = strchr(clean + (tls ? 6 : 5), '/');
	if (path != NULL && (rt = strstr(path, "/realtime")) != NULL &&
	    rt[9] == '\0')
		*rt = '\0';
	else if (path != NULL)
		*path = '\0';
	return snprintf(out, sz, "%s://%s/health", tls ? "https" : "http",
	    clean + (tls ? 6 : 5)) < (int)sz ? 0 : -1;
}

struct probe_body {
	char	buf[PROBE_BODY_MAX];
	size_t	len;
};

static size_t
probe_write(char *p, size_t sz, size_t n, void *arg)
{
	struct probe_body *b = arg;
	size_t take = sz * n;

	if (take > sizeof(b->buf) - 1 - b->len)
		take = sizeof(b->buf) - 1 - b->len;
	memcpy(b->buf + b->len, p, take);
	b->len += take;
	b->buf[b->len] = '\0';
	return sz * n;
}

/* GET url; return 1 when it answered 2xx (and, for Unmute, "ok":true). */
static int
probe(const char *url, const char *bearer, int want_ok_field, long *ms)
{
	CURL			*h;
	struct curl_slist	*hdr = NULL;
	struct probe_body	 b = { .len = 0 };
	long			 code = 0;
	long long		 t0 = mono_ms();
	char			 auth[512];
	int			 up;

	if ((h = curl_easy_init()) == NULL)
		return 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)PROBE_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)PROBE_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, probe_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (bearer != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		hdr = curl_slist_append(hdr, auth);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	}
	up = curl_easy_perform(h) == CURLE_OK &&
	    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
	    code >= 200 && code < 300;
	if (up && want_ok_field) {
		struct json_object *o = json_tokener_parse(b.buf), *ok;
		up = o != NULL && json_object_object_get_ex(o, "ok", &ok) &&
		    json_object_get_boolean(ok);
		json_object_put(o);
	}
	*ms = (long)(mono_ms() - t0);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	explicit_bzero(auth, sizeof(auth));
	return up;
}

static struct json_object *
check_json(const char *url, int up, long ms)
{
	struct json_object	*o = json_object_new_object();
	char			 clean[1024];

	url_redact(url, clean, sizeof(clean));
	json_object_object_add(o, "url", json_object_new_string(clean));
	json_object_object_add(o, "ok", json_object_new_boolean(up));
	json_object_object_add(o, "ms", json_object_new_int64(ms));
	return o;
}

static int
deep_checks(const struct conf *c, struct json_object *root)
{
	struct json_object	*checks = json_object_new_object(), *u;
	char			 url[1200], *models;
	int			 all = 1, up, i;
	long			 ms;

	u = json_object_new_array();
	for (i = 0; i < c->unmute.nurls; i++) {
		if (health_unmute_url(c->unmute.urls[i], url, sizeof(url)) == -1)
			continue;
		up = probe(url, NULL, 1, &ms);
		all &= up;
		json_object_array_add(u, check_json(url, up, ms));
	}
	json_object_object_add(checks, "unmute", u);
	if ((models = llm_url(c->llm.base_url, "models")) == NULL)
		return 0;
	up = probe(models, c->llm.api_key, 0, &ms);
	all &= up;
	json_object_object_add(checks, "llm", check_json(models, up, ms));
	free(models);
	json_object_object_add(root, "checks", checks);
	return all;
}

void
health_serve(const struct conf *c, struct conn *conn, const char *query)
{
	struct json_object	*root = json_object_new_object();
	int			 deep = query != NULL && (strstr(query, "deep=1") ||
				    strstr(query, "deep=true"));
	int			 ok = 1;

	json_object_object_add(root, "version", json_object_new_string(PACKAGE_VERSION));
	if (deep)
		ok = deep_checks(c, root);
	json_object_object_add(root, "status",
	    json_object_new_string(ok ? "ok" : "degraded"));
	http_json(conn, 200, json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), NULL);
	json_object_put(root);
}
