#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

void
conn_init_fcgi(struct conn *c, FCGX_Request *r)
{
	memset(c, 0, sizeof(*c));
	c->fcgi = r;
}

void
conn_init_cgi(struct conn *c, char **envp)
{
	memset(c, 0, sizeof(*c));
	c->envp = envp;
}

const char *
conn_param(const struct conn *c, const char *name)
{
	size_t	 n;
	char	**e;

	if (c->fcgi != NULL)
		return FCGX_GetParam(name, c->fcgi->envp);
	n = strlen(name);
	for (e = c->envp; e != NULL && *e != NULL; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/*
 * A CGI program must read no more than CONTENT_LENGTH bytes (RFC 3875
 * §4.2): the server need not close stdin after the body. Return the
 * byte count left to read, or -1 when unknown (read to EOF).
 */
static long long
cgi_body_left(const struct conn *c)
{
	const char	*cl = conn_param(c, "CONTENT_LENGTH");
	char		*end;
	long long	 n;

	if (cl == NULL || *cl == '\0')
		return -1;
	n = strtoll(cl, &end, 10);
	return (*end != '\0' || n < 0) ? -1 : n;
}

static int
read_some(struct conn *c, char *buf, int n, long long *left)
{
	ssize_t r;

	if (c->fcgi != NULL)
		return FCGX_GetStr(buf, n, c->fcgi->in);
	if (*left == 0)
		return 0;
	if (*left > 0 && *left < n)
		n = (int)*left;
	do
		r = read(0, buf, (size_t)n);
	while (r == -1 && errno == EINTR);
	if (r > 0 && *left > 0)
		*left -= r;
	return (int)r;
}

long
conn_read_body(struct conn *c, size_t max, char **out)
{
	char		*buf;
	size_t		 len = 0, cap = max + 1;
	int		 n;
	char		 sink[4096];
	long long	 left = c->fcgi != NULL ? -1 : cgi_body_left(c);

	*out = NULL;
	if ((buf = malloc(cap + 1)) == NULL)
		return -1;
	for (;;) {
		if (len < cap)
			n = read_some(c, buf + len,
			    (int)(cap - len < 65536 ? cap - len : 65536), &left);
		else	/* drain, keep counting */
			n = read_some(c, sink, sizeof(sink), &left);
		if (n < 0) {
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		if (len < cap)
			len += (size_t)n;
		else
			len = cap;
	}
	c->in_eof = 1;
	if (len > max) {
		free(buf);
		return -2;
	}
	buf[len] = '\0';
	*out = buf;
	return (long)len;
}

static int
write_all_fd(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
conn_write(struct conn *c, const char *p, size_t n)
{
	if (c->failed)
		return -1;
	if (c->fcgi != NULL) {
		/*
		 * FCGX_FFlush returns 0 on a stream already closed by an
		 * earlier error, so ask FCGX_GetError after every flush.
		 */
		if ((n > 0 && FCGX_PutStr(p, (int)n, c->fcgi->out) != (int)n) ||
		    FCGX_FFlush(c->fcgi->out) == -1 ||
		    FCGX_GetError(c->fcgi->out) != 0)
			c->failed = 1;
	} else if (write_all_fd(1, p, n) == -1)
		c->failed = 1;
	if (!c->failed)
		c->written += n;
	return c->failed ? -1 : 0;
}

int
conn_hangup_fd(const struct conn *c)
{
	return (c->fcgi != NULL && c->in_eof) ? c->fcgi->ipcFd : -1;
}
