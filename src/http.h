/*
 * Routing and answers of SPEC.md §3: one entry point per accepted
 * request, whatever transport brought it (struct conn).
 */
#ifndef TANDEM_HTTP_H
#define TANDEM_HTTP_H

#include "conf.h"
#include "conn.h"
#include "err.h"

/* Serve one request. */
void	 http_serve(const struct conf *, struct conn *);
/* Answer a JSON error {"error":{"code","message"}} with extra headers. */
void	 http_error(struct conn *, enum terr, const char *message,
	    const char *extra_headers);
/* Answer status + JSON body + extra headers ("Name: value\r\n" lines). */
void	 http_json(struct conn *, int status, const char *body,
	    const char *extra_headers);
const char *http_reason(int status);

#endif
