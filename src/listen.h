/*
 * The FastCGI listening socket: made by tandem itself (libfcgi's
 * FCGX_OpenSocket is IPv4-only and exits on failure), inherited on fd 0
 * (spawn-fcgi, mod_fcgid) or from systemd socket activation.
 */
#ifndef TANDEM_LISTEN_H
#define TANDEM_LISTEN_H

#include <stddef.h>

#include "conf.h"

/* Return 1 when fd is a listening socket. */
int	 listen_fd_is_listener(int fd);
/* systemd: LISTEN_PID/LISTEN_FDS; return the first fd (3) or -1. */
int	 listen_systemd_fd(void);
/*
 * Open the socket that conf->listen names. Return the fd, or -1 with a
 * reason in err. Binds before any privilege drop.
 */
int	 listen_open(const struct conf *, char *err, size_t errsz);
/* Human-readable address of a listening fd, for logs. */
void	 listen_describe(int fd, char *out, size_t sz);

#endif
