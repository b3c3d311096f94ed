/*
 * SearxNG client. The answer is untrusted: only http(s) results with a
 * URL are kept, every string is bounded and valid UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "nodes.h"
#include "search.h"
#include "utf8.h"

#define SEARCH_DEPTH_MAX	32

/* A bounded copy of a string member, "" when absent or not text. */
static struct json_object *
bounded(struct json_object *o, const char *key, size_t max)
{
	struct json_object	*v;
	const char		*s;
	size_t			 n;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return json_object_new_string("");
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (!utf8_valid(s, n))
		return json_object_new_string("");
	return json_object_new_string_len(s, (int)utf8_cut(s, n, max));
}

static int
good_url(struct json_object *o)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(o, "url", &v) ||
	    !json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	return json_object_get_string_len(v) <= SEARCH_URL_MAX &&
	    utf8_valid(s, strlen(s)) &&
	    (strncasecmp(s, "http://", 7) == 0 ||
	    strncasecmp(s, "https://", 8) == 0);
}

struct json_object *
search_parse(const char *body, size_t len, int max)
{
	struct json_tokener	*tok;
	struct json_object	*root, *arr, *e, *out, *r;
	size_t			 i, n;

	if ((tok = json_tokener_new_ex(SEARCH_DEPTH_MAX)) == NULL)
		return NULL;
	root = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (root == NULL || !json_object_object_get_ex(root, "results", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		json_object_put(root);
		return NULL;
	}
	out = json_object_new_array();
	n = json_object_array_length(arr);
	for (i = 0; i < n && (int)json_object_array_length(out) < max; i++) {
		e = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(e, json_type_object) || !good_url(e))
			continue;
		r = json_object_new_object();
		json_object_object_add(r, "title",
		    bounded(e, "title", SEARCH_TITLE_MAX));
		json_object_object_add(r, "url",
		    bounded(e, "url", SEARCH_URL_MAX));
		json_object_object_add(r, "snippet",
		    bounded(e, "content", SEARCH_SNIPPET_MAX));
		json_object_array_add(out, r);
	}
	json_object_put(root);
	return out;
}

enum terr
search_query(const struct conf *conf, const char *q, const atomic_int *stop,
    struct json_object **results, char *msg, size_t msgsz)
{
	struct upstream_reply	 r;
	enum terr		 err;
	char			*url;

	*results = NULL;
	if ((url = upstream_url(conf->search.url, strlen(conf->search.url),
	    strchr(conf->search.url, '?') != NULL ? "&q=" : "?q=", q,
	    "&format=json")) == NULL) {
		snprintf(msg, msgsz, "search service: out of memory");
		return TERR_INTERNAL;
	}
	err = upstream_get(url, "application/json", conf->search.timeout_ms,
	    SEARCH_BODY_MAX, stop, &r, "search service", msg, msgsz);
	free(url);
	if (err != TERR_OK)
		return err;
	if (r.status < 200 || r.status > 299)
		err = TERR_UPSTREAM_HTTP;
	else if (r.body == NULL || (*results = search_parse(r.body, r.len,
	    conf->search.max_results)) == NULL) {
		err = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, msgsz, "search service: not a search answer");
	}
	upstream_reply_free(&r);
	return err;
}
