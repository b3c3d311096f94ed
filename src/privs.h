/*
 * Privileges, as php-fpm: the master keeps root (to re-read root-only
 * secrets on SIGHUP and reopen logs on SIGUSR1); each worker drops to
 * `user`/`group` right after fork, before it reads a request.
 */
#ifndef TANDEM_PRIVS_H
#define TANDEM_PRIVS_H

#include <sys/types.h>

#include "conf.h"

/*
 * The ids of the configured user and group. Return 1 with them, 0 when
 * there is nothing to drop (no user, or not root), -1 on an unknown name.
 */
int	 privs_ids(const struct conf *, uid_t *, gid_t *);
/*
 * Give a log file to the configured user, so that workers can reopen it
 * after rotation. Return 0 or -1.
 */
int	 privs_give_log(const struct conf *);
/* Become the configured user. Return 0, or -1 (logged). */
int	 privs_drop(const struct conf *);

#endif
