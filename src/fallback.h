/*
 * The embedded keyword classifier of llm_tagger (SPEC.md §2): when the
 * LLM cannot give a route, the stream still gets one.
 */
#ifndef TANDEM_FALLBACK_H
#define TANDEM_FALLBACK_H

#include "req.h"

/*
 * Return the route of message by keywords (ASCII case-insensitive; other
 * bytes are compared as they are). NULL or empty gives ROUTE_TEXT.
 */
enum route	 fallback_route(const char *message);

#endif
