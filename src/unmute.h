/*
 * A websocket client for Unmute on libwebsockets 4.1.6
 * (docs/unmute-protocol.md §1, docs/fastcgi-sse-lws.md §3): one lws
 * context per voice thread, serviced on that thread only, holding a
 * session and its follow-up attempts (at most 8 connections). Text
 * frames only, reassembled up to a cap.
 * Every function here must be called on the thread that runs the
 * context (from um_ctx_run's tick or from the handlers).
 */
#ifndef TANDEM_UNMUTE_H
#define TANDEM_UNMUTE_H

#include <stddef.h>

#define UM_URL_MAX	1024

/* Why a connection ended. */
enum um_end {
	UM_END_NONE,		/* still going */
	UM_END_LOCAL,		/* we closed it */
	UM_END_REFUSED,		/* no connection: refused, DNS, TLS */
	UM_END_HTTP,		/* the server answered, but not 101 */
	UM_END_HANDSHAKE_EOF,	/* EOF or reset before the 101 */
	UM_END_TIMEOUT,		/* no 101 within the connect timeout */
	UM_END_PEER_CLOSE,	/* a close frame; see um_close_code() */
	UM_END_DROPPED,		/* gone without a close frame (1006) */
	UM_END_BINARY,		/* the server sent a binary frame */
	UM_END_TOO_BIG,		/* a message over max_message */
	UM_END_NOMEM
};

struct um_url {
	int	 tls;
	char	 host[256];	/* without brackets */
	int	 port;
	char	 hosthdr[280];	/* Host header: host[:port] */
	char	 path[UM_URL_MAX];	/* path and query */
	char	 shown[UM_URL_MAX];	/* no credentials, no query */
};

struct um_ctx;
struct um_conn;

struct um_ops {
	void	(*open)(void *arg, struct um_conn *);
	/* One whole text message. Return -1 to close the connection. */
	int	(*message)(void *arg, struct um_conn *, const char *, size_t);
	/* The connection ended; um_end_reason() says why. */
	void	(*end)(void *arg, struct um_conn *);
};

/* Parse ws[s]://[user@]host[:port][/path][?query]. Return 0 or -1. */
int	 um_url_parse(const char *, struct um_url *);

/*
 * tls: some URL is wss://; insecure: skip certificate checks (tests).
 * Return NULL on failure.
 */
struct um_ctx	*um_ctx_new(int tls, int insecure, long connect_timeout_ms);
/* Close everything and free the context and all its connections. */
void		 um_ctx_free(struct um_ctx *);
/*
 * Service the context, calling tick(arg) every tick_ms, until tick
 * returns non-zero.
 */
void		 um_ctx_run(struct um_ctx *, long tick_ms, int (*tick)(void *),
		    void *arg);

/*
 * Start connecting (offers subprotocol "realtime"); the handlers get
 * arg. The connection belongs to the context. Return NULL when the
 * connection cannot even start (the end handler is not called then).
 */
struct um_conn	*um_open(struct um_ctx *, const struct um_url *,
		    size_t max_message, const struct um_ops *, void *arg);
/* Queue one text frame (copied). Return 0 or -1. */
int		 um_send(struct um_conn *, const char *, size_t);
int		 um_queued(const struct um_conn *);	/* frames not yet written */
/* Close with 1000 after what is queued; cancel a pending connect. */
void		 um_close(struct um_conn *);
/* End now with the given reason (e.g. UM_END_TIMEOUT). */
void		 um_abort(struct um_conn *, enum um_end);
int		 um_is_open(const struct um_conn *);
int		 um_is_ended(const struct um_conn *);
enum um_end	 um_end_reason(const struct um_conn *);
int		 um_close_code(const struct um_conn *);	/* 0: none */
long long	 um_started_ms(const struct um_conn *);	/* monotonic */
long long	 um_opened_ms(const struct um_conn *);	/* 0: not yet */

#endif
