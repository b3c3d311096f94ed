/*
 * Logging to stderr, syslog or a file, with levels (SPEC.md §6). Lines
 * never carry the user's message text at the default level; request
 * lines (log_access) are one per request, like an access log.
 */
#ifndef TANDEM_LOG_H
#define TANDEM_LOG_H

#include <sys/types.h>

#include "conf.h"

/* target: "stderr", "syslog" or a file path. Return 0 or -1. */
int	 log_open(const char *target, enum log_level, const char *format);
int	 log_reopen(void);	/* SIGUSR1 */
int	 log_chown(uid_t, gid_t);	/* a file target, for the workers */
void	 log_set_level(enum log_level);
int	 log_enabled(enum log_level);
void	 log_msg(enum log_level, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
#define log_err(...)	log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...)	log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
const char *log_level_name(enum log_level);
int	 log_level_lookup(const char *, enum log_level *);

#endif
