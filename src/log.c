#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_NOTICE] = "notice",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

static const int syslog_prio[] = {
	[LOG_LVL_ERROR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_NOTICE] = LOG_NOTICE,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

static struct {
	enum log_level	 level;
	int		 fd;		/* stderr or the file */
	int		 use_syslog;
	int		 json;
	char		 path[512];	/* file target, for reopen */
} lg = { LOG_LVL_INFO, 2, 0, 0, "" };

const char *
log_level_name(enum log_level l)
{
	return level_names[l];
}

int
log_level_lookup(const char *s, enum log_level *l)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(s, level_names[i]) == 0) {
			*l = (enum log_level)i;
			return 0;
		}
	if (strcasecmp(s, "warning") == 0) {
		*l = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

void
log_set_level(enum log_level l)
{
	lg.level = l;
}

int
log_enabled(enum log_level l)
{
	return l <= lg.level;
}

/*
 * Open a file target in append mode; O_APPEND keeps lines whole when
 * several worker processes share it. Return the fd or -1.
 */
static int
open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int
log_open(const char *target, enum log_level level, const char *format)
{
	int fd;

	lg.level = level;
	lg.json = format != NULL && strcmp(format, "json") == 0;
	if (target == NULL || strcmp(target, "stderr") == 0) {
		lg.use_syslog = 0;
		lg.fd = 2;
		lg.path[0] = '\0';
		return 0;
	}
	if (strcmp(target, "syslog") == 0) {
		openlog("tandem", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		lg.use_syslog = 1;
		return 0;
	}
	if ((fd = open_file(target)) == -1)
		return -1;
	if (lg.fd > 2)
		close(lg.fd);
	lg.fd = fd;
	lg.use_syslog = 0;
	snprintf(lg.path, sizeof(lg.path), "%s", target);
	return 0;
}

/* Hand a file target to the workers' user. Return 0 or -1. */
int
log_chown(uid_t uid, gid_t gid)
{
	if (lg.path[0] == '\0')
		return 0;
	return fchown(lg.fd, uid, gid);
}

/* Reopen a file target after rotation (SIGUSR1). Return 0 or -1. */
int
log_reopen(void)
{
	int fd;

	if (lg.path[0] == '\0')
		return 0;
	if ((fd = open_file(lg.path)) == -1)
		return -1;
	dup2(fd, lg.fd);
	close(fd);
	return 0;
}

static size_t
json_escape(char *out, size_t outsz, const char *in)
{
	size_t o = 0;

	for (; *in != '\0' && o + 7 < outsz; in++) {
		unsigned char c = (unsigned char)*in;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, outsz - o, "\\u%04x", c);
		} else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return o;
}

void
log_msg(enum log_level l, const char *fmt, ...)
{
	char		 msg[2048], line[4608], ts[40];
	va_list		 ap;
	struct timespec	 now;
	struct tm	 tm;
	int		 n;

	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lg.use_syslog) {
		syslog(syslog_prio[l], "%s", msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	if (lg.json) {
		char esc[4096];
		json_escape(esc, sizeof(esc), msg);
		n = snprintf(line, sizeof(line),
		    "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}\n",
		    ts, now.tv_nsec / 1000000, level_names[l], (int)getpid(), esc);
	} else
		n = snprintf(line, sizeof(line), "%s.%03ldZ [%s] tandem[%d]: %s\n",
		    ts, now.tv_nsec / 1000000, level_names[l], (int)getpid(), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* One write per line keeps lines whole across threads and processes. */
	(void)write(lg.fd, line, (size_t)n);
}
