#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "listen.h"

#define DEFAULT_LISTEN	"127.0.0.1:9000"

int
listen_fd_is_listener(int fd)
{
	int		 v = 0;
	socklen_t	 len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == -1)
		return 0;
	return v != 0;
}

int
listen_systemd_fd(void)
{
	const char	*pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

	if (pid == NULL || fds == NULL || atol(pid) != (long)getpid() ||
	    atoi(fds) < 1)
		return -1;
	return listen_fd_is_listener(3) ? 3 : -1;
}

/* Remove a stale socket file: only a socket nobody accepts on. */
static void
unlink_stale(const struct sockaddr_un *sun)
{
	struct stat	 st;
	int		 fd;

	if (stat(sun->sun_path, &st) == -1 || !S_ISSOCK(st.st_mode))
		return;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == -1 &&
	    errno == ECONNREFUSED)
		unlink(sun->sun_path);
	close(fd);
}

static int
set_owner(const char *path, const struct conf *c, char *err, size_t errsz)
{
	uid_t		 uid = (uid_t)-1;
	gid_t		 gid = (gid_t)-1;
	struct passwd	*pw;
	struct group	*gr;
	const char	*owner;

	/* As php-fpm: the socket belongs to the user workers run as. */
	owner = c->listen_owner;
	if (owner == NULL && c->user != NULL && geteuid() == 0)
		owner = c->user;
	if (owner != NULL) {
		if ((pw = getpwnam(owner)) == NULL) {
			snprintf(err, errsz, "listen_owner: no user '%s'", owner);
			return -1;
		}
		uid = pw->pw_uid;
	}
	if (c->listen_group != NULL) {
		if ((gr = getgrnam(c->listen_group)) == NULL) {
			snprintf(err, errsz, "listen_group: no group '%s'", c->listen_group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) == -1) {
		snprintf(err, errsz, "chown %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
open_unix(const char *path, const struct conf *c, char *err, size_t errsz)
{
	struct sockaddr_un	 sun;
	int			 fd;
	mode_t			 old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errsz, "listen: socket path too long");
		return -1;
	}
	strcpy(sun.sun_path, path);
	unlink_stale(&sun);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errsz, "socket: %s", strerror(errno));
		return -1;
	}
	/* Create it with no access, then set the mode: no window for others. */
	old = umask(0777);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		snprintf(err, errsz, "bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(path, (mode_t)c->listen_mode) == -1 ||
	    set_owner(path, c, err, errsz) == -1 ||
	    listen(fd, c->listen_backlog) == -1) {
		if (err[0] == '\0')
			snprintf(err, errsz, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

/* getaddrinfo() would wrap 65536 to 0: check the range ourselves. */
static int
valid_port(const char *p)
{
	size_t n = strlen(p);

	return n > 0 && n <= 5 && strspn(p, "0123456789") == n &&
	    strtol(p, NULL, 10) <= 65535;
}

/* Split "host:port", "[v6]:port" or ":port". Return 0 or -1. */
static int
split_hostport(const char *s, char *host, size_t hsz, char *port, size_t psz)
{
	const char *colon;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= hsz)
			return -1;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		colon = rb + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL) {
			/* A bare port number. */
			host[0] = '\0';
			snprintf(port, psz, "%s", s);
			return valid_port(port) ? 0 : -1;
		}
		if ((size_t)(colon - s) >= hsz)
			return -1;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
	}
	snprintf(port, psz, "%s", colon + 1);
	return valid_port(port) ? 0 : -1;
}

static int
open_tcp(const char *spec, const struct conf *c, char *err, size_t errsz)
{
	char		 host[256], port[16];
	struct addrinfo	 hints, *res, *ai;
	int		 fd = -1, one = 1, rc;

	if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) == -1) {
		snprintf(err, errsz, "listen: cannot parse '%s' (host:port, [v6]:port, "
		    "unix:/path or fd:N)", spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		snprintf(err, errsz, "listen %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Linux hands TCP_NODELAY down to accepted sockets. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, c->listen_backlog) == 0)
			break;
		snprintf(err, errsz, "bind %s: %s", spec, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
listen_open(const struct conf *c, char *err, size_t errsz)
{
	const char	*spec = c->listen ? c->listen : DEFAULT_LISTEN;
	int		 fd;

	err[0] = '\0';
	if (strncmp(spec, "fd:", 3) == 0) {
		fd = atoi(spec + 3);
		if (!listen_fd_is_listener(fd)) {
			snprintf(err, errsz, "listen: fd %d is not a listening socket", fd);
			return -1;
		}
		return fd;
	}
	if (strncmp(spec, "unix:", 5) == 0)
		return open_unix(spec + 5, c, err, errsz);
	if (spec[0] == '/')
		return open_unix(spec, c, err, errsz);
	return open_tcp(spec, c, err, errsz);
}

void
listen_describe(int fd, char *out, size_t sz)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);
	char			 host[INET6_ADDRSTRLEN];

	snprintf(out, sz, "fd %d", fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return;
	if (ss.ss_family == AF_UNIX)
		snprintf(out, sz, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
	else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, sz, "%s:%d", host, ntohs(s4->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, sz, "[%s]:%d", host, ntohs(s6->sin6_port));
	}
}
