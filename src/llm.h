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
};

/*
 * Run one call; stream when call->on_token is set. Always fills res;
 * the caller frees res->text with llm_result_free().
 */
enum terr	 llm_chat(const struct llm_call *, struct llm_result *);
void		 llm_result_free(struct llm_result *);
/* Build a messages array: system prompt, history (may be NULL), user text. */
struct json_object *llm_messages(const char *system, struct json_object *history,
		    const char *user);

#endif
