#ifndef TANDEM_STATUS_H
#define TANDEM_STATUS_H

#include "conf.h"
#include "conn.h"

/* GET /api/agent/status: pool statistics as JSON or Prometheus text. */
void	 status_serve(const struct conf *, struct conn *, const char *query);

#endif
