/*
 * OpenAI-compatible chat completions client on libcurl (SPEC.md §2,
 * docs/fastcgi-sse-lws.md §4): POST {base_url}/chat/completions,
 * streamed (stream:true, parsed by llmsse.c) or not, cancellable.
 */
#ifndef TANDEM_LLM_H
#define TANDEM_LLM_H

#include <stdatomic.h>
#include <stddef.h>

#include <json-c/json.h>

#include "conf.h"
#include "err.h"

struct llm_call {
	const struct conf	*conf;
	enum llm_node		 node;		/* picks model/temperature/max_tokens */
	struct json_object	*messages;	/* borrowed: [{role, content}, …] */
	int			 json_mode;	/* ask for response_format json_object */
	/* streamed: called for each content delta; return non-zero to abort */
	int			(*on_token)(void *arg, const char *text, size_t len);
	void			*arg;
	const atomic_int	*stop;		/* non-zero: abort within ~100 ms */
};

struct llm_result {
	enum terr	 err;		/* TERR_OK, UPSTREAM_*, LLM_UNAVAILABLE, STREAM_TIMEOUT (stop) */
	long		 http_status;
	char		*text;		/* the whole content, malloc'd (also on error: what came) */
	char		 message[160];	/* for humans; no secrets, no patient data */
	int		 cancelled;	/* LLM_CANCEL_*: why err is STREAM_TIMEOUT */
	size_t		 ntokens;	/* content deltas passed to on_token */
};

/* llm_result.cancelled: 0, or who stopped the call (err STREAM_TIMEOUT). */
#define LLM_CANCEL_STOP		1	/* *call->stop was set */
#define LLM_CANCEL_CALLER	2	/* on_token returned non-zero */

/*
 * Run one call; stream when call->on_token is set. A json_mode call that
 * the server refuses with 400 or 422 (no JSON mode there) is asked once
 * more without response_format. Always fills res;
 * the caller frees res->text with llm_result_free(). Returns res->err:
 *   TERR_OK                  the answer is complete ([DONE] seen when
 *                            streaming, or a finish_reason and then a
 *                            clean end of the response); res->text
 *                            holds all of it
 *   TERR_LLM_UNAVAILABLE     no connection (refused, DNS, connect
 *                            timeout, TLS handshake, bad URL)
 *   TERR_UPSTREAM_HTTP       a non-2xx status ("LLM answered HTTP 429"),
 *                            or an error object in a 200 answer
 *   TERR_UPSTREAM_TIMEOUT    no body byte within first_token_timeout of
 *                            the request being sent, no byte for
 *                            stall_timeout once the body began, or the
 *                            hard ceiling timeout
 *   TERR_UPSTREAM_MALFORMED  bad SSE/JSON, a wrong shape, an answer over
 *                            max_response, or a stream cut before [DONE]
 *   TERR_STREAM_TIMEOUT      cancelled: res->cancelled says by whom; the
 *                            connection is closed at once
 *   TERR_INTERNAL            out of memory, curl setup failure
 */
enum terr	 llm_chat(const struct llm_call *, struct llm_result *);
void		 llm_result_free(struct llm_result *);
/*
 * Calls on one thread share a connection cache that lives until the
 * thread ends (freed then by a thread-specific destructor). Optional:
 * free it sooner, e.g. before a long idle spell.
 */
void		 llm_thread_cleanup(void);
/*
 * The URL of an API path ("chat/completions", "models") under base_url:
 * a trailing '/' dropped, "/v1" added when base_url has no path at all.
 * Return a malloc'd string or NULL.
 */
char		*llm_url(const char *base_url, const char *path);
/* Build a messages array: system prompt, history (may be NULL), user text. */
struct json_object *llm_messages(const char *system, struct json_object *history,
		    const char *user);

#endif
