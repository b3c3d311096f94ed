/*
 * One client exchange, whichever way it came: a FastCGI request
 * (libfcgi, FCGX_Request) or a plain CGI run (environment, stdin,
 * stdout). The rest of tandem reads params and the body and writes the
 * answer through this, and never touches libfcgi's streams directly.
 */
#ifndef TANDEM_CONN_H
#define TANDEM_CONN_H

#include <stddef.h>

#include <fcgiapp.h>

struct conn {
	FCGX_Request	*fcgi;		/* NULL in CGI mode */
	char		**envp;		/* CGI mode */
	int		 in_eof;	/* the whole body was read */
	int		 failed;	/* a write failed: the client left */
	size_t		 written;	/* body bytes after the headers */
	/* "Name: value\r\n" lines every answer carries (CORS), or NULL */
	const char	*extra_headers;
};

void		 conn_init_fcgi(struct conn *, FCGX_Request *);
void		 conn_init_cgi(struct conn *, char **envp);
const char	*conn_param(const struct conn *, const char *name);
/*
 * Read the request body, at most max bytes. Return the length and a
 * malloc'd NUL-terminated buffer in *out; -1 on a read error, -2 when the
 * body is larger than max. Reads to the end of input, so that a FastCGI
 * connection then only becomes readable when nginx closes it.
 */
long		 conn_read_body(struct conn *, size_t max, char **out);
/* Write and flush. Return 0, or -1 once the client is gone. */
int		 conn_write(struct conn *, const char *, size_t);
/* fd that turns readable when the peer hangs up, or -1 (CGI). */
int		 conn_hangup_fd(const struct conn *);

#endif
