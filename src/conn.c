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

static int
read_some(struct conn *c, char *buf, int n)
{
	ssize_t r;

	if (c->fcgi != NULL)
		return FCGX_GetStr(buf, n, c->fcgi->in);
	do
		r = read(0, buf, (size_t)n);
	while (r == -1 && errno == EINTR);
	return (int)r;
}

long
conn_read_body(struct conn *c, size_t max, char **out)
{
	char	*buf;
	size_t	 len = 0, cap = max + 1;
	int	 n;
	char	 sink[4096];

	*out = NULL;
	if ((buf = malloc(cap + 1)) == NULL)
		return -1;
	for (;;) {
		if (len < cap)
			n = read_some(c, buf + len, (int)(cap - len < 65536 ? cap - len : 65536));
		else
			n = read_some(c, sink, sizeof(sink)); /* drain, keep counting */
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
