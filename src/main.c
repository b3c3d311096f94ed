/*
 * tandem: the streaming voice-and-agent backend behind nginx.
 * Modes, decided in this order:
 *   - plain CGI: GATEWAY_INTERFACE is set and fd 0 is not a socket;
 *   - inherited socket on fd 0 (spawn-fcgi, mod_fcgid): one worker
 *     process, the spawner manages processes;
 *   - systemd socket activation (LISTEN_FDS) or our own socket from
 *     `listen`: master + worker pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "pm.h"
#include "privs.h"
#include "scoreboard.h"
#include "worker.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/tandem.conf"

extern char **environ;

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: tandem [-htv] [-c file]\n"
	    "  -c file  configuration file (default " DEFAULT_CONF " if it exists)\n"
	    "  -t       test the configuration, print it and exit\n"
	    "  -v       print the version and exit\n"
	    "  -h       this help\n"
	    "Every key may also be set as TANDEM_<SECTION>_<KEY> in the environment.\n");
}

static int
is_cgi(void)
{
	struct stat st;

	return getenv("GATEWAY_INTERFACE") != NULL &&
	    (fstat(0, &st) == -1 || !S_ISSOCK(st.st_mode));
}

static int
write_pid_file(const char *path)
{
	FILE *f;

	if (path == NULL)
		return 0;
	if ((f = fopen(path, "w")) == NULL) {
		log_err("pid_file %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	return 0;
}

/* Remove the Unix socket this process made (not an inherited one). */
static void
unlink_own_socket(int fd)
{
	struct sockaddr_un	 sun;
	socklen_t		 len = sizeof(sun);

	if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
	    sun.sun_family == AF_UNIX && sun.sun_path[0] != '\0')
		unlink(sun.sun_path);
}

static int
run_cgi(const struct conf *c)
{
	struct conn conn;

	conn_init_cgi(&conn, environ);
	http_serve(c, &conn);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct conf	 conf;
	const char	*path = NULL;
	char		 err[1024], where[256];
	int		 ch, test = 0, fd, rc, own = 0;

	/*
	 * As a CGI program, argv may come from the query string (a query
	 * without '=' becomes arguments, RFC 3875 §4.4): never obey it.
	 */
	if (is_cgi())
		argc = 1;
	while ((ch = getopt(argc, argv, "c:hvt")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			printf("tandem %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL && access(DEFAULT_CONF, R_OK) == 0)
		path = DEFAULT_CONF;
	if (conf_load(&conf, path, err, sizeof(err)) == -1) {
		fprintf(stderr, "tandem: %s\n", err);
		if (test)
			fprintf(stderr, "tandem: configuration %s test failed\n",
			    path ? path : "(defaults)");
		conf_free(&conf);
		return 1;
	}
	if (test) {
		conf_dump(&conf, stdout);
		fprintf(stderr, "tandem: configuration %s test is successful\n",
		    path ? path : "(defaults)");
		conf_free(&conf);
		return 0;
	}
	if (log_open(conf.log, conf.log_level, conf.log_format) == -1) {
		fprintf(stderr, "tandem: log %s: %s\n", conf.log, strerror(errno));
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sb_create() == -1) {
		log_err("cannot map the scoreboard");
		return 1;
	}
	if (is_cgi()) {
		rc = run_cgi(&conf);
		conf_free(&conf);
		curl_global_cleanup();
		return rc;
	}
	if (conf.listen == NULL && listen_fd_is_listener(0)) {
		/* spawn-fcgi / mod_fcgid: they manage the processes. */
		sb_slot = 0;
		atomic_store(&sb->rows[0].pid, (int)getpid());
		log_info("serving on the inherited socket (fd 0)");
		rc = privs_drop(&conf) == -1 ? 1 : worker_run(&conf, 0);
		conf_free(&conf);
		return rc;
	}
	if (conf.listen == NULL && (fd = listen_systemd_fd()) >= 0)
		log_info("serving on the systemd socket (fd %d)", fd);
	else if ((fd = listen_open(&conf, err, sizeof(err))) == -1) {
		log_err("%s", err);
		return 1;
	} else
		own = conf.listen == NULL || strncmp(conf.listen, "fd:", 3) != 0;
	listen_describe(fd, where, sizeof(where));
	log_notice("tandem %s listening on %s", PACKAGE_VERSION, where);
	/* The pid file goes where root may write (/run), before the drop. */
	/* The master keeps root; workers drop it after fork (pm.c). */
	if (write_pid_file(conf.pid_file) == -1 || privs_give_log(&conf) == -1)
		return 1;
	rc = pm_run(&conf, path, fd);
	if (conf.pid_file != NULL)
		unlink(conf.pid_file);
	if (own)
		unlink_own_socket(fd);
	conf_free(&conf);
	curl_global_cleanup();
	return rc;
}
