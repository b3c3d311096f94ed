/*
 * Unit tests of the listening socket (src/listen.c): TCP on loopback
 * (v4, v6 when the host has it), unix sockets with their mode, stale
 * and live socket files, fd:N, systemd activation, bad specs.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "conf.h"
#include "listen.h"
#include "tap.h"

static char	 err[512];
static char	 dir[] = "/tmp/tandem-test-listen.XXXXXX";

/* listen_open() with a config made of text. */
static int
open_conf(const char *text)
{
	struct conf	 c;
	char		 cerr[256];
	int		 fd;

	if (conf_load_string(&c, text, "t", NULL, cerr, sizeof(cerr)) == -1) {
		printf("# conf: %s\n", cerr);
		conf_free(&c);
		return -2;
	}
	fd = listen_open(&c, err, sizeof(err));
	conf_free(&c);
	return fd;
}

static int
open_spec(const char *spec)
{
	char text[512];

	snprintf(text, sizeof(text), "listen = \"%s\"\n", spec);
	return open_conf(text);
}

static int
can_connect_unix(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		return 0;
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return rc == 0;
}

static int
can_connect_tcp(int lfd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);
	int			 fd, rc;

	if (getsockname(lfd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if ((fd = socket(ss.ss_family, SOCK_STREAM, 0)) == -1)
		return 0;
	rc = connect(fd, (struct sockaddr *)&ss, len);
	close(fd);
	return rc == 0;
}

static int
port_of(int fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

static void
test_tcp(void)
{
	char	 desc[128], spec[64], want[64];
	int	 fd, fd2, port, s6;

	fd = open_spec("127.0.0.1:0");
	ok(fd >= 0, "tcp 127.0.0.1:0 opens");
	if (fd < 0) {
		printf("#   err '%s'\n", err);
		return;
	}
	is_int(listen_fd_is_listener(fd), 1, "it is a listener");
	ok((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec");
	port = port_of(fd);
	ok(port > 0, "bound to an ephemeral port");
	listen_describe(fd, desc, sizeof(desc));
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	is_str(desc, want, "listen_describe tcp");
	ok(can_connect_tcp(fd), "accepts connections on loopback");

	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	fd2 = open_spec(spec);
	is_int(fd2, -1, "same port twice fails");
	ok(strstr(err, "bind") != NULL, "error says bind: %s", err);
	close(fd);

	s6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (s6 == -1) {
		ok(1, "# SKIP no IPv6");
		ok(1, "# SKIP no IPv6");
		return;
	}
	close(s6);
	fd = open_spec("[::1]:0");
	if (fd < 0 && strstr(err, "Cannot assign") != NULL) {
		ok(1, "# SKIP no ::1 (%s)", err);
		ok(1, "# SKIP no ::1");
		return;
	}
	ok(fd >= 0, "tcp [::1]:0 opens");
	listen_describe(fd, desc, sizeof(desc));
	snprintf(want, sizeof(want), "[::1]:%d", port_of(fd));
	is_str(desc, want, "listen_describe v6");
	if (fd >= 0)
		close(fd);
}

static void
test_bad_specs(void)
{
	static const char *const bad[] = {
		"nonsense", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:12x",
		"[::1]", "[::1", "[::1]0", "host:with:colons:x",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = open_spec(bad[i]);
		ok(fd == -1 && strstr(err, "listen") != NULL,
		    "'%s' refused: %s", bad[i], err);
		if (fd >= 0)
			close(fd);
	}
	/*
	 * Regression (was a bug): listen.c split_hostport() checks that the port is digits
	 * only; getaddrinfo() then wraps it modulo 65536, so 65536 binds an
	 * ephemeral port and 99999 binds 34463, silently.
	 */
	for (i = 0; i < 2; i++) {
		const char *spec = i ? "127.0.0.1:99999" : "127.0.0.1:65536";
		int fd = open_spec(spec);
		ok(fd == -1, "regression: port out of range '%s' refused", spec);
		if (fd >= 0) {
			char desc[64];
			listen_describe(fd, desc, sizeof(desc));
			printf("#   bound %s\n", desc);
			close(fd);
		}
	}
}

static void
test_unix(void)
{
	char		 path[96], spec[300], desc[300], text[400], longp[200];
	struct stat	 st;
	int		 fd, fd2, s, fdc;
	struct sockaddr_un sun;

	snprintf(path, sizeof(path), "%s/a.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	fd = open_spec(spec);
	ok(fd >= 0, "unix:%s opens", path);
	is_int(listen_fd_is_listener(fd), 1, "unix listener");
	ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode), "socket file exists");
	is_int(st.st_mode & 07777, 0660, "default mode 0660");
	listen_describe(fd, desc, sizeof(desc));
	is_str(desc, spec, "listen_describe unix");
	ok(can_connect_unix(path), "accepts connections");

	/* A live socket is neither removed nor taken over. */
	fd2 = open_spec(spec);
	is_int(fd2, -1, "a path another listener holds fails");
	ok(stat(path, &st) == 0 && can_connect_unix(path),
	    "the live socket is left alone");
	close(fd);

	/* The listener is gone: the file is stale and is replaced. */
	ok(stat(path, &st) == 0, "stale socket file left behind");
	fd = open_spec(spec);
	ok(fd >= 0, "stale socket file replaced: %s", fd < 0 ? err : "ok");
	ok(can_connect_unix(path), "new listener accepts");
	if (fd >= 0)
		close(fd);
	unlink(path);

	/* A bound socket that never listened is stale too. */
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ok(bind(s, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bound, not listening");
	fd = open_spec(spec);
	ok(fd >= 0, "bound-only socket file replaced");
	if (fd >= 0)
		close(fd);
	close(s);
	unlink(path);

	/* A regular file at the path is never removed. */
	fdc = open(path, O_CREAT | O_WRONLY, 0600);
	close(fdc);
	fd = open_spec(spec);
	is_int(fd, -1, "regular file at the path: fails");
	ok(stat(path, &st) == 0 && S_ISREG(st.st_mode), "regular file kept");
	unlink(path);

	/* A bare absolute path and an explicit mode. */
	snprintf(text, sizeof(text), "listen = %s\nlisten_mode = 0600\n", path);
	fd = open_conf(text);
	ok(fd >= 0, "bare path opens a unix socket");
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "mode 0600 applied");
	if (fd >= 0)
		close(fd);
	unlink(path);

	snprintf(text, sizeof(text), "listen = %s\nlisten_owner = no-such-user-xyz\n",
	    path);
	fd = open_conf(text);
	ok(fd == -1 && strstr(err, "no-such-user-xyz") != NULL,
	    "unknown listen_owner: %s", err);
	ok(stat(path, &st) == -1 && errno == ENOENT, "socket removed on failure");
	snprintf(text, sizeof(text), "listen = %s\nlisten_group = no-such-group-xyz\n",
	    path);
	fd = open_conf(text);
	ok(fd == -1 && strstr(err, "no-such-group-xyz") != NULL,
	    "unknown listen_group: %s", err);
	unlink(path);

	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	snprintf(spec, sizeof(spec), "unix:/tmp/%s", longp);
	fd = open_spec(spec);
	ok(fd == -1 && strstr(err, "too long") != NULL, "path too long: %s", err);

	snprintf(spec, sizeof(spec), "unix:%s/no/such/dir/s.sock", dir);
	is_int(open_spec(spec), -1, "missing directory fails");
}

static void
test_fd(void)
{
	char	 spec[32], desc[64];
	int	 fd, p[2];

	fd = open_spec("127.0.0.1:0");
	snprintf(spec, sizeof(spec), "fd:%d", fd);
	is_int(open_spec(spec), fd, "fd:N returns the inherited listener");
	close(fd);
	if (pipe(p) == 0) {
		snprintf(spec, sizeof(spec), "fd:%d", p[0]);
		ok(open_spec(spec) == -1 && strstr(err, "not a listening socket"),
		    "fd:N that is a pipe refused: %s", err);
		is_int(listen_fd_is_listener(p[0]), 0, "a pipe is no listener");
		close(p[0]);
		close(p[1]);
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	is_int(listen_fd_is_listener(fd), 0, "an unbound socket is no listener");
	close(fd);
	is_int(listen_fd_is_listener(-1), 0, "fd -1 is no listener");
	is_int(open_spec("fd:999"), -1, "fd:999 (closed) refused");
	listen_describe(999, desc, sizeof(desc));
	is_str(desc, "fd 999", "listen_describe of a closed fd");
}

static void
test_systemd(void)
{
	char	 pid[32];
	int	 lfd, saved3;

	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	is_int(listen_systemd_fd(), -1, "no systemd environment");

	lfd = open_spec("127.0.0.1:0");
	saved3 = fcntl(3, F_DUPFD_CLOEXEC, 100);	/* whatever fd 3 was */
	dup2(lfd, 3);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	is_int(listen_systemd_fd(), 3, "LISTEN_PID/LISTEN_FDS: fd 3");
	setenv("LISTEN_FDS", "0", 1);
	is_int(listen_systemd_fd(), -1, "LISTEN_FDS=0");
	setenv("LISTEN_FDS", "1", 1);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("LISTEN_PID", pid, 1);
	is_int(listen_systemd_fd(), -1, "LISTEN_PID of another process");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	close(3);
	if (saved3 != -1) {
		dup2(saved3, 3);
		close(saved3);
	}
	close(lfd);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return done();
	}
	test_tcp();
	test_bad_specs();
	test_unix();
	test_fd();
	test_systemd();
	rmdir(dir);
	return done();
}
