/*
 * Error codes of SPEC.md §3.1 and §3.2, written once as an X-macro:
 * name, wire code, HTTP status (0 when it never is an HTTP answer),
 * default message for humans (no secrets, no patient data).
 */
#ifndef TANDEM_ERR_H
#define TANDEM_ERR_H

#define TANDEM_ERRORS(X) \
	X(OK,                 "ok",                     200, "ok") \
	X(INVALID_JSON,       "invalid_json",           400, "request body is not valid JSON") \
	X(INVALID_FIELD,      "invalid_field",          400, "a field has an invalid value") \
	X(MISSING_MESSAGE,    "missing_message",        400, "field 'message' is required") \
	X(UNAUTHORIZED,       "unauthorized",           401, "a valid bearer token is required") \
	X(ORIGIN_NOT_ALLOWED, "origin_not_allowed",     403, "origin not allowed") \
	X(NOT_FOUND,          "not_found",              404, "no such route") \
	X(METHOD_NOT_ALLOWED, "method_not_allowed",     405, "method not allowed") \
	X(LENGTH_REQUIRED,    "length_required",        411, "Content-Length or a chunked body is required") \
	X(BODY_TOO_LARGE,     "body_too_large",         413, "request body too large") \
	X(UNSUPPORTED_MEDIA,  "unsupported_media_type", 415, "Content-Type must be application/json") \
	X(OVERLOADED,         "overloaded",             503, "too many streams, retry later") \
	X(UPSTREAM_TIMEOUT,   "upstream_timeout",       504, "an upstream service timed out") \
	X(UPSTREAM_HTTP,      "upstream_http_error",    502, "an upstream service answered with an error") \
	X(UPSTREAM_MALFORMED, "upstream_malformed",     502, "an upstream service sent a malformed answer") \
	X(LLM_UNAVAILABLE,    "llm_unavailable",        502, "the language model is unavailable") \
	X(UNMUTE_UNAVAILABLE, "unmute_unavailable",     502, "the voice service is unavailable") \
	X(UNMUTE_BUSY,        "unmute_busy",            503, "the voice service is busy") \
	X(UNMUTE_PROTOCOL,    "unmute_protocol",        502, "the voice service broke the protocol") \
	X(UNMUTE_CLOSED,      "unmute_closed",          502, "the voice service closed the session") \
	X(STREAM_TIMEOUT,     "stream_timeout",         504, "the stream ran out of time") \
	X(INTERNAL,           "internal",               500, "internal error")

enum terr {
#define X(name, code, status, msg) TERR_##name,
	TANDEM_ERRORS(X)
#undef X
	TERR__MAX
};

const char	*terr_code(enum terr);
int		 terr_status(enum terr);
const char	*terr_message(enum terr);

#endif
