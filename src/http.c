/*
 * Request routing and the checks of SPEC.md §3.1, in order: route,
 * method, origin, token, media type, length, body, fields, capacity.
 * Every refusal is a JSON error sent before any stream.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cors.h"
#include "health.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "req.h"
#include "scoreboard.h"
#include "sse.h"
#include "status.h"
#include "uuid.h"

#define PREFLIGHT_MAX_AGE	"600"

struct exchange {
	const struct conf	*conf;
	struct conn		*conn;
	char			 request_id[37];
	const char		*method;
	const char		*route;
	int			 status;
	const char		*outcome;
	long long		 started_ms;
	char			 cors[512];	/* CORS headers for the answer */
};

static void	route_stream(struct exchange *);
static void	route_health(struct exchange *);
static void	route_status(struct exchange *);

/* The routes; kept in sync with nginx/tandem-locations.conf. */
static const struct {
	const char	*path;
	const char	*allow;
	void		(*serve)(struct exchange *);
} routes[] = {
	{ "/api/agent/stream", "POST, OPTIONS", route_stream },
	{ "/api/agent/health", "GET, HEAD", route_health },
	{ "/api/agent/status", "GET, HEAD", route_status },
};

static const struct {
	int		 status;
	const char	*reason;
} reasons[] = {
	{ 200, "OK" }, { 204, "No Content" }, { 400, "Bad Request" },
	{ 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
	{ 405, "Method Not Allowed" }, { 411, "Length Required" },
	{ 413, "Payload Too Large" }, { 415, "Unsupported Media Type" },
	{ 500, "Internal Server Error" }, { 502, "Bad Gateway" },
	{ 503, "Service Unavailable" }, { 504, "Gateway Timeout" },
};

const char *
http_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

void
http_json(struct conn *c, int status, const char *body, const char *extra)
{
	char	head[2048];
	int	n;

	n = snprintf(head, sizeof(head),
	    "Status: %d %s\r\nContent-Type: application/json\r\n"
	    "Cache-Control: no-store\r\nContent-Length: %zu\r\n%s%s\r\n",
	    status, http_reason(status), strlen(body), extra ? extra : "",
	    c->extra_headers ? c->extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	if (conn_write(c, head, (size_t)n) == 0)
		conn_write(c, body, strlen(body));
}

void
http_error(struct conn *c, enum terr e, const char *message, const char *extra)
{
	struct json_object *root, *err;

	root = json_object_new_object();
	err = json_object_new_object();
	json_object_object_add(err, "code", json_object_new_string(terr_code(e)));
	json_object_object_add(err, "message",
	    json_object_new_string(message ? message : terr_message(e)));
	json_object_object_add(root, "error", err);
	http_json(c, terr_status(e), json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), extra);
	json_object_put(root);
}

/* Refuse with e; headers carry the request id and any CORS headers. */
static void
refuse(struct exchange *x, enum terr e, const char *message, const char *more)
{
	char extra[1024];

	/* http_json adds the CORS headers (conn extra_headers). */
	snprintf(extra, sizeof(extra), "X-Request-Id: %s\r\n%s",
	    x->request_id, more ? more : "");
	http_error(x->conn, e, message, extra);
	x->status = terr_status(e);
	x->outcome = terr_code(e);
	if (sb != NULL)
		atomic_fetch_add(&sb->errors, 1);
}

/* The request path, without the query string. */
static void
request_path(struct conn *c, char *out, size_t sz)
{
	const char *p;

	if ((p = conn_param(c, "DOCUMENT_URI")) == NULL &&
	    (p = conn_param(c, "REQUEST_URI")) == NULL &&
	    (p = conn_param(c, "PATH_INFO")) == NULL)
		p = conn_param(c, "SCRIPT_NAME");
	snprintf(out, sz, "%s", p ? p : "");
	out[strcspn(out, "?")] = '\0';
}

/* A route matches the path exactly or as its suffix (CGI PATH_INFO). */
static int
path_matches(const char *path, const char *route)
{
	size_t pl = strlen(path), rl = strlen(route);

	return pl >= rl && strcmp(path + pl - rl, route) == 0;
}

static void
set_cors_headers(struct exchange *x, const char *origin)
{
	snprintf(x->cors, sizeof(x->cors),
	    "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
	    "Access-Control-Expose-Headers: X-Request-Id\r\n", origin);
}

/*
 * An allowed origin gets the CORS headers on every answer, refusals
 * included, so that a browser lets the page read them. Return 1 when
 * the origin is allowed.
 */
static int
note_origin(struct exchange *x)
{
	const char *origin = conn_param(x->conn, "HTTP_ORIGIN");

	/* The origin was matched against the allowlist: safe to echo. */
	if (cors_check(x->conf->cors_origins, origin) != CORS_ALLOWED ||
	    strlen(origin) >= 256 || strpbrk(origin, "\r\n") != NULL)
		return 0;
	set_cors_headers(x, origin);
	x->conn->extra_headers = x->cors;
	return 1;
}

/* Return 0 when the origin may proceed, else refuse and return -1. */
static int
check_origin(struct exchange *x)
{
	const char *origin = conn_param(x->conn, "HTTP_ORIGIN");

	if (cors_check(x->conf->cors_origins, origin) == CORS_NONE ||
	    x->cors[0] != '\0')
		return 0;
	refuse(x, TERR_ORIGIN_NOT_ALLOWED, NULL, "Vary: Origin\r\n");
	return -1;
}

/* Constant-time comparison, so the token cannot be guessed by timing. */
static int
token_equal(const char *a, const char *b)
{
	size_t		 la = strlen(a), lb = strlen(b), i;
	unsigned char	 d = la != lb;

	for (i = 0; i < la; i++)
		d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return d == 0;
}

static int
check_token(struct exchange *x)
{
	const char *h;

	if (x->conf->auth_token == NULL)
		return 0;
	h = conn_param(x->conn, "HTTP_AUTHORIZATION");
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
		h += 7;
		while (*h == ' ')
			h++;
		if (token_equal(h, x->conf->auth_token))
			return 0;
	}
	refuse(x, TERR_UNAUTHORIZED, NULL, "WWW-Authenticate: Bearer\r\n");
	return -1;
}

/* application/json, any case, with or without parameters (charset). */
static int
is_json_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL)
		return 0;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, "application/json", n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static int
has_length(struct conn *c)
{
	const char *cl = conn_param(c, "CONTENT_LENGTH");
	const char *te = conn_param(c, "HTTP_TRANSFER_ENCODING");

	return (cl != NULL && *cl != '\0') ||
	    (te != NULL && strcasestr(te, "chunked") != NULL);
}

static int
declared_too_large(struct conn *c, size_t max)
{
	const char *cl = conn_param(c, "CONTENT_LENGTH");

	return cl != NULL && *cl != '\0' && strtoull(cl, NULL, 10) > max;
}

static void
refuse_field(struct exchange *x, enum terr e, const char *field)
{
	char msg[160];

	if (e == TERR_INVALID_FIELD && field[0] != '\0') {
		snprintf(msg, sizeof(msg), "field '%s' is invalid", field);
		refuse(x, e, msg, NULL);
	} else
		refuse(x, e, NULL, NULL);
}

/* Read and validate the body into r. Return 0, or refuse and return -1. */
static int
read_request(struct exchange *x, struct req *r)
{
	char		*body = NULL, field[64];
	long		 len;
	enum terr	 e;

	if (!is_json_type(conn_param(x->conn, "CONTENT_TYPE"))) {
		refuse(x, TERR_UNSUPPORTED_MEDIA, NULL, NULL);
		return -1;
	}
	if (!has_length(x->conn)) {
		refuse(x, TERR_LENGTH_REQUIRED, NULL, NULL);
		return -1;
	}
	if (declared_too_large(x->conn, x->conf->max_body) ||
	    (len = conn_read_body(x->conn, x->conf->max_body, &body)) == -2) {
		refuse(x, TERR_BODY_TOO_LARGE, NULL, NULL);
		return -1;
	}
	if (len < 0) {
		refuse(x, TERR_INVALID_JSON, "request body could not be read", NULL);
		return -1;
	}
	e = req_parse(r, body, (size_t)len, field, sizeof(field));
	free(body);
	if (e != TERR_OK) {
		refuse_field(x, e, field);
		req_free(r);
		return -1;
	}
	if (r->session_id[0] == '\0')
		uuid_v4(r->session_id);
	return 0;
}

static void
send_stream_headers(struct exchange *x)
{
	char	head[1024];
	int	n;

	n = snprintf(head, sizeof(head),
	    "Status: 200 OK\r\n"
	    "Content-Type: text/event-stream; charset=utf-8\r\n"
	    "Cache-Control: no-cache, no-transform\r\n"
	    "X-Accel-Buffering: no\r\n"
	    "X-Request-Id: %s\r\n%s\r\n", x->request_id, x->cors);
	conn_write(x->conn, head, (size_t)n);
}

static void
preflight(struct exchange *x)
{
	char head[1024];
	int n;

	if (x->cors[0] == '\0') {
		refuse(x, TERR_ORIGIN_NOT_ALLOWED, NULL, "Vary: Origin\r\n");
		return;
	}
	n = snprintf(head, sizeof(head),
	    "Status: 204 No Content\r\n%s"
	    "Access-Control-Allow-Methods: POST, OPTIONS\r\n"
	    "Access-Control-Allow-Headers: Content-Type, Authorization\r\n"
	    "Access-Control-Max-Age: " PREFLIGHT_MAX_AGE "\r\n\r\n", x->cors);
	conn_write(x->conn, head, (size_t)n);
	x->status = 204;
	x->outcome = "preflight";
}

/* A full pool warns once per episode (10 s), not once per refusal. */
static void
warn_overloaded(struct exchange *x)
{
	static atomic_llong	 last;
	long long		 now = mono_ms(), prev = atomic_load(&last);

	if (now - prev >= 10000 && atomic_compare_exchange_strong(&last, &prev, now))
		log_warn("%s: stream refused: max_streams (%d) reached, %lld refused "
		    "so far", x->request_id, x->conf->max_streams,
		    sb ? (long long)atomic_load(&sb->rejected) : 0LL);
}

static void
route_stream(struct exchange *x)
{
	struct req		 r;
	struct job_outcome	 out;
	char			 retry[64];

	if (strcmp(x->method, "OPTIONS") == 0) {
		preflight(x);
		return;
	}
	if (check_origin(x) == -1 || check_token(x) == -1 ||
	    read_request(x, &r) == -1)
		return;
	if (sb_stream_acquire(x->conf->max_streams) == -1) {
		snprintf(retry, sizeof(retry), "Retry-After: 1\r\n");
		refuse(x, TERR_OVERLOADED, NULL, retry);
		warn_overloaded(x);
		req_free(&r);
		return;
	}
	send_stream_headers(x);
	memset(&out, 0, sizeof(out));
	job_run(x->conf, x->conn, &r, x->request_id, &out);
	sb_stream_release();
	if (out.client_gone)
		atomic_fetch_add(&sb->disconnects, 1);
	if (out.elapsed_ms >= x->conf->slow_ms)
		atomic_fetch_add(&sb->slow, 1);
	x->status = 200;
	x->outcome = out.client_gone ? "client_gone" : out.status;
	req_free(&r);
}

static void
route_health(struct exchange *x)
{
	health_serve(x->conf, x->conn, conn_param(x->conn, "QUERY_STRING"));
	x->status = 200;
	x->outcome = "ok";
}

static void
route_status(struct exchange *x)
{
	status_serve(x->conf, x->conn, conn_param(x->conn, "QUERY_STRING"));
	x->status = 200;
	x->outcome = "ok";
}

static int
method_allowed(const char *method, const char *allow)
{
	size_t n = strlen(method);
	const char *p;

	for (p = allow; (p = strstr(p, method)) != NULL; p += n)
		if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

static void
access_log(struct exchange *x)
{
	log_info("%s %s %s %d %lldms %zuB %s", x->request_id, x->method,
	    x->route ? x->route : "-", x->status, mono_ms() - x->started_ms,
	    x->conn->written, x->outcome ? x->outcome : "-");
}

void
http_serve(const struct conf *conf, struct conn *c)
{
	struct exchange	 x;
	char		 path[512], allow[128];
	size_t		 i;

	memset(&x, 0, sizeof(x));
	x.conf = conf;
	x.conn = c;
	x.started_ms = mono_ms();
	uuid_v4(x.request_id);
	if ((x.method = conn_param(c, "REQUEST_METHOD")) == NULL)
		x.method = "GET";
	if (sb != NULL) {
		atomic_fetch_add(&sb->accepted, 1);
		atomic_fetch_add(&sb->rows[sb_slot < 0 ? 0 : sb_slot].requests, 1);
		atomic_store(&sb->rows[sb_slot < 0 ? 0 : sb_slot].last_request_ms,
		    mono_ms());
	}
	note_origin(&x);
	request_path(c, path, sizeof(path));
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (path_matches(path, routes[i].path))
			break;
	if (i == sizeof(routes) / sizeof(routes[0])) {
		refuse(&x, TERR_NOT_FOUND, NULL, NULL);
	} else {
		x.route = routes[i].path;
		if (!method_allowed(x.method, routes[i].allow)) {
			snprintf(allow, sizeof(allow), "Allow: %s\r\n", routes[i].allow);
			refuse(&x, TERR_METHOD_NOT_ALLOWED, NULL, allow);
		} else
			routes[i].serve(&x);
	}
	access_log(&x);
	c->extra_headers = NULL;	/* x.cors dies here */
}
