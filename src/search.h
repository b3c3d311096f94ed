/*
 * The web node's search client: SearxNG's JSON API (SPEC.md §2),
 * GET {url}?q=…&format=json.
 */
#ifndef TANDEM_SEARCH_H
#define TANDEM_SEARCH_H

#include <stdatomic.h>
#include <stddef.h>

#include <json-c/json.h>

#include "conf.h"
#include "err.h"

#define SEARCH_BODY_MAX		(1024 * 1024)
#define SEARCH_SNIPPET_MAX	500	/* bytes, cut on a character */
#define SEARCH_TITLE_MAX	300
#define SEARCH_URL_MAX		2048

/*
 * Query the configured search service. Return TERR_OK and a new array of
 * at most conf->search.max_results {title, url, snippet} in *results, or
 * an error (UPSTREAM_*, STREAM_TIMEOUT when stopped) with a message.
 */
enum terr	 search_query(const struct conf *, const char *q,
		    const atomic_int *stop, struct json_object **results,
		    char *msg, size_t msgsz);
/*
 * Turn a SearxNG answer into results: entries without an http(s) url
 * are skipped, the snippet comes from "content". Return a new array,
 * or NULL when the body is not a SearxNG answer.
 */
struct json_object *search_parse(const char *body, size_t len, int max);

#endif
