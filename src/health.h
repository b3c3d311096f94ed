#ifndef TANDEM_HEALTH_H
#define TANDEM_HEALTH_H

#include "conf.h"
#include "conn.h"

/* GET /api/agent/health, ?deep=1 also probes Unmute and the LLM. */
void	 health_serve(const struct conf *, struct conn *, const char *query);
/* "ws://u:p@h:8000/api/v1/realtime?x" -> "http://h:8000/api/v1/health". */
int	 health_unmute_url(const char *ws, char *out, size_t sz);
/* A URL with userinfo and query removed, for events and logs. */
void	 url_redact(const char *url, char *out, size_t sz);

#endif
