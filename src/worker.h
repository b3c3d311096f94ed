/*
 * A worker process: acceptor threads on the shared listening socket,
 * each serving one request at a time (SPEC.md §5).
 */
#ifndef TANDEM_WORKER_H
#define TANDEM_WORKER_H

#include "conf.h"

/* Serve until told to drain, or until max_requests. Return exit status. */
int	 worker_run(const struct conf *, int listen_fd);

#endif
