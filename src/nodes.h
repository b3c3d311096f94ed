/*
 * Private to the agent path: helpers the nodes share.
 */
#ifndef TANDEM_NODES_H
#define TANDEM_NODES_H

#include <stdatomic.h>
#include <stddef.h>

#include "err.h"

struct upstream_reply {
	long	 status;	/* HTTP status, 0 when none came */
	char	*body;		/* NUL-terminated, malloc'd */
	size_t	 len;
};

/*
 * GET url with an Accept header, a whole-transfer timeout, at most
 * max_body bytes of body, and abort within ~100 ms of *stop. Return
 * TERR_OK with any HTTP answer in r (the caller judges the status), or
 * UPSTREAM_TIMEOUT, UPSTREAM_HTTP (no answer), UPSTREAM_MALFORMED (body
 * too large), STREAM_TIMEOUT (stopped), INTERNAL; what names the
 * service in msg ("search service: timed out"). Free r with
 * upstream_reply_free().
 */
enum terr	 upstream_get(const char *url, const char *accept, long timeout_ms,
		    size_t max_body, const atomic_int *stop, struct upstream_reply *r,
		    const char *what, char *msg, size_t msgsz);
void		 upstream_reply_free(struct upstream_reply *);
/*
 * base (its first blen bytes) + sep + value URL-escaped + suffix, as a
 * malloc'd string; NULL when out of memory.
 */
char		*upstream_url(const char *base, size_t blen, const char *sep,
		    const char *value, const char *suffix);

#endif
