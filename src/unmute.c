/*
 * Unmute websocket client on libwebsockets (see unmute.h). lws is
 * single-threaded: everything here runs on the voice thread that calls
 * um_ctx_run; the tick timer (lws_sul) paces the caller's work, so no
 * other thread ever touches the context.
 */

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "log.h"
#include "sse.h"
#include "unmute.h"

#define UM_MAX_CONNS	8	/* per context: a session, follow-up attempts */

struct frame {
	struct frame	*next;
	size_t		 len;
	unsigned char	 buf[];	/* LWS_PRE bytes, then the payload */
};

struct um_conn {
	struct um_ctx		*ctx;
	struct lws		*wsi;
	const struct um_ops	*ops;
	void			*arg;
	long long		 started_ms, opened_ms;
	int			 sent_request;	/* TCP (and TLS) were up */
	int			 closing;
	int			 peer_closed;
	int			 close_code;
	enum um_end		 end;
	int			 notified;	/* end handler called */
	struct frame		*qhead, *qtail;
	int			 nq;
	char			*rx;
	size_t			 rxlen, rxcap, rxmax;
};

struct um_ctx {
	struct lws_context	*lws;
	lws_sorted_usec_list_t	 sul;
	long			 connect_timeout_ms;
	int			 insecure;
	int			 destroying;
	int			 quit;
	long			 tick_ms;
	int			 (*tick)(void *);
	void			*tick_arg;
	struct um_conn		*conns[UM_MAX_CONNS];
	int			 nconns;
};

static int	 um_callback(struct lws *, enum lws_callback_reasons, void *,
		    void *, size_t);

static const struct lws_protocols protocols[] = {
	{ "realtime", um_callback, 0, 16384, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void
lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	/* lws lines end with a newline of their own. */
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		log_warn("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

static void
set_lws_log(void)
{
	/* Process-wide, hence once; lws warnings are mostly noise to us. */
	lws_set_log_level(LLL_ERR, lws_log);
}

int
um_url_parse(const char *url, struct um_url *u)
{
	const char	*p, *auth_end, *host, *hend, *at;
	size_t		 n;
	long		 port;
	char		*end;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, "ws://", 5) == 0) {
		p = url + 5;
		u->port = 80;
	} else if (strncasecmp(url, "wss://", 6) == 0) {
		p = url + 6;
		u->tls = 1;
		u->port = 443;
	} else
		return -1;
	auth_end = p + strcspn(p, "/?#");
	/* Credentials are never shown, nor sent. */
	at = memrchr(p, '@', (size_t)(auth_end - p));
	host = at != NULL ? at + 1 : p;
	if (*host == '[') {
		if ((hend = memchr(host, ']', (size_t)(auth_end - host))) == NULL)
			return -1;
		n = (size_t)(hend - host - 1);
		if (n == 0 || n >= sizeof(u->host))
			return -1;
		memcpy(u->host, host + 1, n);
		hend++;
	} else {
		hend = host + strcspn(host, ":/?#");
		if (hend > auth_end)
			hend = auth_end;
		n = (size_t)(hend - host);
		if (n == 0 || n >= sizeof(u->host))
			return -1;
		memcpy(u->host, host, n);
	}
	if (hend < auth_end) {
		if (*hend != ':' || hend + 1 == auth_end)
			return -1;
		port = strtol(hend + 1, &end, 10);
		if (end != auth_end || port < 1 || port > 65535)
			return -1;
		u->port = (int)port;
	}
	/* The host part goes in Host (and SNI); IPv6 keeps its brackets. */
	n = (size_t)(hend - host);
	if ((u->tls && u->port == 443) || (!u->tls && u->port == 80))
		snprintf(u->hosthdr, sizeof(u->hosthdr), "%.*s", (int)n, host);
	else
		snprintf(u->hosthdr, sizeof(u->hosthdr), "%.*s:%d", (int)n,
		    host, u->port);
	/* Path and query go on the wire; the fragment does not. */
	n = strcspn(auth_end, "#");
	if (*auth_end != '/')
		snprintf(u->path, sizeof(u->path), "/%.*s", (int)n, auth_end);
	else if (n >= sizeof(u->path))
		return -1;
	else
		snprintf(u->path, sizeof(u->path), "%.*s", (int)n, auth_end);
	snprintf(u->shown, sizeof(u->shown), "%s://%s%.*s",
	    u->tls ? "wss" : "ws", u->hosthdr, (int)strcspn(u->path, "?"),
	    u->path);
	return 0;
}

static void
tick_cb(lws_sorted_usec_list_t *sul)
{
	struct um_ctx	*ctx = lws_container_of(sul, struct um_ctx, sul);
	struct um_conn	*c;
	long long	 now = mono_ms();
	int		 i;

	for (i = 0; i < ctx->nconns; i++) {
		c = ctx->conns[i];
		if (c->end == UM_END_NONE && c->opened_ms == 0 &&
		    now - c->started_ms >= ctx->connect_timeout_ms)
			um_abort(c, UM_END_TIMEOUT);
		/* Ends are told here, never from inside lws calls. */
		if (c->end != UM_END_NONE && !c->notified) {
			c->notified = 1;
			if (c->ops->end != NULL)
				c->ops->end(c->arg, c);
		}
	}
	if (ctx->tick(ctx->tick_arg) != 0) {
		ctx->quit = 1;
		lws_cancel_service(ctx->lws);
		return;
	}
	lws_sul_schedule(ctx->lws, 0, &ctx->sul, tick_cb,
	    ctx->tick_ms * LWS_US_PER_MS);
}

struct um_ctx *
um_ctx_new(int tls, int insecure, long connect_timeout_ms)
{
	struct lws_context_creation_info	 info;
	struct um_ctx				*ctx;
	int					 secs;

	pthread_once(&log_once, set_lws_log);
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return NULL;
	ctx->connect_timeout_ms = connect_timeout_ms;
	ctx->insecure = insecure;
	/* lws's own timers stay behind ours, so our reasons win. */
	secs = (int)(connect_timeout_ms / 1000) + 5;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.fd_limit_per_thread = 1 + 1 + UM_MAX_CONNS;
	info.timeout_secs = (unsigned int)secs;
	info.connect_timeout_secs = (unsigned int)secs;
	info.user = ctx;
	if (tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if ((ctx->lws = lws_create_context(&info)) == NULL) {
		free(ctx);
		return NULL;
	}
	return ctx;
}

static void
free_queue(struct um_conn *c)
{
	struct frame *f;

	while ((f = c->qhead) != NULL) {
		c->qhead = f->next;
		free(f);
	}
	c->qtail = NULL;
	c->nq = 0;
}

void
um_ctx_free(struct um_ctx *ctx)
{
	int i;

	if (ctx == NULL)
		return;
	ctx->destroying = 1;
	lws_context_destroy(ctx->lws);
	for (i = 0; i < ctx->nconns; i++) {
		free_queue(ctx->conns[i]);
		free(ctx->conns[i]->rx);
		free(ctx->conns[i]);
	}
	free(ctx);
}

void
um_ctx_run(struct um_ctx *ctx, long tick_ms, int (*tick)(void *), void *arg)
{
	ctx->tick_ms = tick_ms;
	ctx->tick = tick;
	ctx->tick_arg = arg;
	ctx->quit = 0;
	lws_sul_schedule(ctx->lws, 0, &ctx->sul, tick_cb, 0);
	while (!ctx->quit)
		if (lws_service(ctx->lws, 0) < 0)
			break;
	lws_sul_cancel(&ctx->sul);
}

struct um_conn *
um_open(struct um_ctx *ctx, const struct um_url *u, size_t max_message,
    const struct um_ops *ops, void *arg)
{
	struct lws_client_connect_info	 i;
	struct um_conn			*c;

	if (ctx->nconns == UM_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	ctx->conns[ctx->nconns++] = c;
	c->ctx = ctx;
	c->ops = ops;
	c->arg = arg;
	c->rxmax = max_message;
	c->started_ms = mono_ms();

	memset(&i, 0, sizeof(i));
	i.context = ctx->lws;
	i.address = u->host;
	i.port = u->port;
	i.path = u->path;
	i.host = u->hosthdr;
	if (u->tls) {
		i.ssl_connection = LCCSCF_USE_SSL;
		if (ctx->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
			    LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
			    LCCSCF_ALLOW_EXPIRED;
	}
	/* lws 4.1.6 rejects a subprotocol it did not offer; Unmute echoes it. */
	i.protocol = "realtime";
	i.local_protocol_name = "realtime";
	i.alpn = "http/1.1";
	i.ietf_version_or_minus_one = -1;
	i.pwsi = &c->wsi;	/* set early: an error may come before return */
	i.opaque_user_data = c;
	if (lws_client_connect_via_info(&i) == NULL && c->end == UM_END_NONE)
		c->end = UM_END_REFUSED;
	return c;
}

int
um_send(struct um_conn *c, const char *s, size_t len)
{
	struct frame *f;

	if (c->end != UM_END_NONE || c->closing)
		return -1;
	if ((f = malloc(sizeof(*f) + LWS_PRE + len)) == NULL)
		return -1;
	f->next = NULL;
	f->len = len;
	memcpy(f->buf + LWS_PRE, s, len);
	if (c->qtail != NULL)
		c->qtail->next = f;
	else
		c->qhead = f;
	c->qtail = f;
	c->nq++;
	if (c->opened_ms != 0 && c->wsi != NULL)
		lws_callback_on_writable(c->wsi);
	return 0;
}

int
um_queued(const struct um_conn *c)
{
	return c->nq;
}

void
um_abort(struct um_conn *c, enum um_end why)
{
	if (c->end == UM_END_NONE)
		c->end = why;
	if (c->wsi != NULL)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
}

void
um_close(struct um_conn *c)
{
	if (c->end != UM_END_NONE || c->closing)
		return;
	if (c->opened_ms == 0 || c->wsi == NULL) {
		um_abort(c, UM_END_LOCAL);
		return;
	}
	c->closing = 1;
	lws_callback_on_writable(c->wsi);
}

int
um_is_open(const struct um_conn *c)
{
	return c->opened_ms != 0 && c->end == UM_END_NONE;
}

int
um_is_ended(const struct um_conn *c)
{
	return c->end != UM_END_NONE;
}

enum um_end
um_end_reason(const struct um_conn *c)
{
	return c->end;
}

int
um_close_code(const struct um_conn *c)
{
	return c->close_code;
}

long long
um_started_ms(const struct um_conn *c)
{
	return c->started_ms;
}

long long
um_opened_ms(const struct um_conn *c)
{
	return c->opened_ms;
}

/* The wsi is going away: forget it, and it forgets us. */
static void
detach(struct um_conn *c, struct lws *wsi)
{
	lws_set_opaque_user_data(wsi, NULL);
	c->wsi = NULL;
}

/*
 * Why a connection failed before the 101: no 101 is an HTTP answer
 * (unavailable); an EOF after our request went out is Unmute holding
 * and dropping a client it has no room for (busy, protocol doc §8).
 */
static enum um_end
connect_failure(struct um_conn *c, struct lws *wsi, const char *why)
{
	unsigned int status = lws_http_client_http_response(wsi);

	if ((status != 0 && status != 101) ||
	    (why != NULL && strncmp(why, "HS:", 3) == 0))
		return UM_END_HTTP;
	return c->sent_request ? UM_END_HANDSHAKE_EOF : UM_END_REFUSED;
}

static int
receive(struct um_conn *c, struct lws *wsi, const char *in, size_t len)
{
	char	*nb;
	size_t	 cap;

	if (lws_frame_is_binary(wsi)) {
		c->end = UM_END_BINARY;
		return -1;
	}
	if (len > c->rxmax || c->rxlen > c->rxmax - len) {
		c->end = UM_END_TOO_BIG;
		return -1;
	}
	if (c->rxlen + len + 1 > c->rxcap) {
		cap = c->rxcap ? c->rxcap : 16384;
		while (cap < c->rxlen + len + 1)
			cap *= 2;
		if ((nb = realloc(c->rx, cap)) == NULL) {
			c->end = UM_END_NOMEM;
			return -1;
		}
		c->rx = nb;
		c->rxcap = cap;
	}
	memcpy(c->rx + c->rxlen, in, len);
	c->rxlen += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	c->rx[c->rxlen] = '\0';
	len = c->rxlen;
	c->rxlen = 0;
	if (c->closing || c->end != UM_END_NONE)
		return 0;	/* we are leaving: late events mean nothing */
	if (c->ops->message(c->arg, c, c->rx, len) == -1)
		um_close(c);
	return 0;
}

static int
writeable(struct um_conn *c, struct lws *wsi)
{
	struct frame	*f;
	int		 n;

	if (c->closing || c->end != UM_END_NONE) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	if ((f = c->qhead) == NULL)
		return 0;
	c->qhead = f->next;
	if (c->qhead == NULL)
		c->qtail = NULL;
	c->nq--;
	/* One lws_write per WRITEABLE; lws buffers a partial send. */
	n = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
	free(f);
	if (n < 0) {
		c->end = UM_END_DROPPED;
		return -1;
	}
	if (c->qhead != NULL)
		lws_callback_on_writable(wsi);
	return 0;
}

static void
set_nodelay(struct lws *wsi)
{
	int fd = lws_get_socket_fd(wsi), on = 1;

	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static int
um_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct um_conn	*c = wsi != NULL ? lws_get_opaque_user_data(wsi) : NULL;
	const unsigned char *p = in;

	(void)user;
	if (c == NULL)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		c->sent_request = 1;
		set_nodelay(wsi);
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c->end == UM_END_NONE)
			c->end = connect_failure(c, wsi, in);
		log_debug("unmute: connection failed: %s",
		    in != NULL ? (const char *)in : "(no reason)");
		detach(c, wsi);
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		c->opened_ms = mono_ms();
		if (c->end != UM_END_NONE || c->ctx->destroying)
			return -1;
		c->ops->open(c->arg, c);
		if (c->qhead != NULL || c->closing)
			lws_callback_on_writable(wsi);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return receive(c, wsi, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return writeable(c, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		c->peer_closed = 1;
		c->close_code = len >= 2 ? (p[0] << 8 | p[1]) : 1005;
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (c->end == UM_END_NONE)
			c->end = c->peer_closed ? UM_END_PEER_CLOSE :
			    c->closing ? UM_END_LOCAL : UM_END_DROPPED;
		detach(c, wsi);
		break;
	case LWS_CALLBACK_WSI_DESTROY:
		detach(c, wsi);
		break;
	default:
		break;
	}
	return 0;
}
