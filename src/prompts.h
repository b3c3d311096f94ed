/*
 * Built-in system prompts of the LLM nodes, the defaults of
 * [node.NAME] prompt (SPEC.md §6). A JSON node's prompt always states
 * its answer's schema, with a marker such as {"route" that
 * OpenAI-compatible stand-ins (tandem-sim) key on.
 */
#ifndef TANDEM_PROMPTS_H
#define TANDEM_PROMPTS_H

#include "conf.h"

/* The built-in prompt of a node. */
const char	*prompt_default(enum llm_node);
/* The schema line of a JSON node, or NULL for a prose node. */
const char	*prompt_schema(enum llm_node);
/*
 * The system prompt of a node: the configured one or the default, with
 * the schema line appended when a configured prompt lacks it, then
 * context (may be NULL) under a heading. Return a malloc'd string or
 * NULL (no memory).
 */
char		*prompt_build(const struct conf *, enum llm_node,
		    const char *context);

#endif
