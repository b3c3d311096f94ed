/*
 * The master process (SPEC.md §5), after php-fpm: keeps the pool of
 * worker processes (static, dynamic or ondemand), respawns the dead,
 * recycles, drains on SIGTERM/SIGQUIT, reloads on SIGHUP, reopens logs
 * on SIGUSR1.
 */
#ifndef TANDEM_PM_H
#define TANDEM_PM_H

#include "conf.h"

/*
 * Run the pool on listen_fd until stopped. conf_path (may be NULL) is
 * re-read on SIGHUP; *conf is replaced then. Return the exit status.
 */
int	 pm_run(struct conf *conf, const char *conf_path, int listen_fd);

#endif
