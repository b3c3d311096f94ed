/*
 * The chat completions stream parser. See llmsse.h for the framing
 * rules and outcomes; the SSE part follows the WHATWG "event stream
 * interpretation" except that a last event with no blank line after it
 * is still dispatched by llmsse_finish (servers that close right after
 * "data: [DONE]" exist).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "llmsse.h"
#include "utf8.h"

/* Upstream error messages longer than this are not shown at all. */
#define ERRMSG_MAX	100

static const char *const status_names[] = {
	[LLMSSE_OK] = "ok",
	[LLMSSE_DONE] = "done",
	[LLMSSE_TOOBIG] = "too_big",
	[LLMSSE_MALFORMED] = "malformed",
	[LLMSSE_UPSTREAM_ERROR] = "upstream_error",
	[LLMSSE_CUT] = "cut",
	[LLMSSE_ABORTED] = "aborted",
	[LLMSSE_NOMEM] = "nomem",
};

static enum llmsse_status fail(struct llmsse *, enum llmsse_status,
		    const char *);
static int	 append(char **, size_t *, size_t *, const char *, size_t,
		    size_t);
static enum llmsse_status line_end(struct llmsse *);
static enum llmsse_status dispatch(struct llmsse *);
static enum llmsse_status event(struct llmsse *, const char *, size_t);
static enum llmsse_status chunk(struct llmsse *, struct json_object *);
static enum llmsse_status emit(struct llmsse *, const char *, size_t);
static enum llmsse_status give(struct llmsse *, const char *, size_t);
static enum llmsse_status flush_pending(struct llmsse *);

static const char replacement[] = "\xef\xbf\xbd";	/* U+FFFD */

const char *
llmsse_status_name(enum llmsse_status s)
{
	if ((size_t)s < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[s];
	return "?";
}

void
llmsse_init(struct llmsse *p, int (*on_token)(void *, const char *, size_t),
    void *arg)
{
	memset(p, 0, sizeof(*p));
	p->max_line = LLMSSE_MAX_LINE;
	p->max_event = LLMSSE_MAX_EVENT;
	p->on_token = on_token;
	p->arg = arg;
	p->first_line = 1;
}

void
llmsse_free(struct llmsse *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->linelen = p->linecap = p->datalen = p->datacap = 0;
}

/* Record the first error (it sticks) and return it. */
static enum llmsse_status
fail(struct llmsse *p, enum llmsse_status s, const char *msg)
{
	if (p->status == LLMSSE_OK) {
		p->status = s;
		snprintf(p->message, sizeof(p->message), "%s", msg);
	}
	return p->status;
}

/*
 * Append n bytes to a growing buffer holding at most max bytes plus a
 * NUL. Return 0, -1 when over max, -2 when out of memory.
 */
static int
append(char **buf, size_t *len, size_t *cap, const char *s, size_t n,
    size_t max)
{
	size_t	 want;
	char	*nb;

	if (n > max || *len > max - n)
		return -1;
	want = *len + n + 1;
	if (want > *cap) {
		size_t ncap = *cap ? *cap : 256;

		while (ncap < want)
			ncap *= 2;
		if ((nb = realloc(*buf, ncap)) == NULL)
			return -2;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/*
 * Feed the bytes between line ends into the line buffer; act on each
 * line end. A CR followed by LF is one line end even when the LF opens
 * the next piece (after_cr carries that across calls).
 */
enum llmsse_status
llmsse_feed(struct llmsse *p, const char *buf, size_t len)
{
	size_t	 i = 0, j;
	int	 rc;

	while (i < len && p->status == LLMSSE_OK) {
		for (j = i; j < len && buf[j] != '\n' && buf[j] != '\r'; j++)
			continue;
		if (j > i) {
			p->after_cr = 0;
			rc = append(&p->line, &p->linelen, &p->linecap,
			    buf + i, j - i, p->max_line);
			if (rc == -1)
				return fail(p, LLMSSE_TOOBIG,
				    "LLM stream line too long");
			if (rc == -2)
				return fail(p, LLMSSE_NOMEM, "out of memory");
		}
		if (j == len)
			break;
		if (buf[j] == '\n' && p->after_cr)
			p->after_cr = 0;
		else {
			p->after_cr = buf[j] == '\r';
			line_end(p);
		}
		i = j + 1;
	}
	return p->status;
}

/* One whole line is in p->line: a field, a comment or a blank line. */
static enum llmsse_status
line_end(struct llmsse *p)
{
	const char *s = p->line ? p->line : "", *colon, *val;
	size_t	 n = p->linelen, vlen;
	int	 rc;

	p->linelen = 0;
	if (p->first_line) {
		p->first_line = 0;
		if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
			s += 3;
			n -= 3;
		}
	}
	if (n == 0)
		return dispatch(p);
	if (s[0] == ':')
		return p->status;
	if ((colon = memchr(s, ':', n)) != NULL) {
		val = colon + 1;
		vlen = n - (size_t)(val - s);
		if (vlen > 0 && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		colon = s + n;
		val = s + n;
		vlen = 0;
	}
	if ((size_t)(colon - s) != 4 || memcmp(s, "data", 4) != 0)
		return p->status;	/* event, id, retry, unknown: ignored */
	if (p->has_data)
		rc = append(&p->data, &p->datalen, &p->datacap, "\n", 1,
		    p->max_event);
	else
		rc = 0;
	if (rc == 0)
		rc = append(&p->data, &p->datalen, &p->datacap, val, vlen,
		    p->max_event);
	if (rc == -1)
		return fail(p, LLMSSE_TOOBIG, "LLM stream event too large");
	if (rc == -2)
		return fail(p, LLMSSE_NOMEM, "out of memory");
	p->has_data = 1;
	return p->status;
}

/* A blank line: hand the joined data of the event over, if any. */
static enum llmsse_status
dispatch(struct llmsse *p)
{
	size_t	 n = p->datalen;

	if (!p->has_data)
		return p->status;
	p->has_data = 0;
	p->datalen = 0;
	p->nevents++;
	return event(p, p->data ? p->data : "", n);
}

/*
 * One event's data: "[DONE]", or a JSON chunk. Data that is only
 * white space is ignored (a keep-alive "data:" line).
 */
static enum llmsse_status
event(struct llmsse *p, const char *s, size_t n)
{
	struct json_tokener	*tok;
	struct json_object	*obj;
	enum json_tokener_error	 jerr;
	size_t			 end;

	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
	    s[n - 1] == '\n'))
		n--;
	if (n == 0)
		return p->status;
	if (n == 6 && memcmp(s, "[DONE]", 6) == 0) {
		if (flush_pending(p) == LLMSSE_OK)
			p->status = LLMSSE_DONE;
		return p->status;
	}
	if ((tok = json_tokener_new()) == NULL)
		return fail(p, LLMSSE_NOMEM, "out of memory");
	obj = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (obj == NULL || jerr != json_tokener_success || end != n) {
		json_object_put(obj);
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream event is not valid JSON");
	}
	chunk(p, obj);
	json_object_put(obj);
	return p->status;
}

/*
 * A chat.completion.chunk: emit choices[0].delta.content when it is a
 * non-empty string. A role-only delta, content null, empty choices (a
 * usage chunk) or a finish_reason carry no token.
 */
static enum llmsse_status
chunk(struct llmsse *p, struct json_object *obj)
{
	struct json_object	*choices, *c0, *delta, *content, *fr;
	char			 emsg[ERRMSG_MAX + 1];
	char			 msg[sizeof(p->message)];
	const char		*text;
	size_t			 len;

	if (!json_object_is_type(obj, json_type_object))
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream event is not a JSON object");
	if (llmsse_error_object(obj, emsg, sizeof(emsg))) {
		if (emsg[0] != '\0')
			snprintf(msg, sizeof(msg), "LLM stream error: %s",
			    emsg);
		else
			snprintf(msg, sizeof(msg), "LLM stream error");
		return fail(p, LLMSSE_UPSTREAM_ERROR, msg);
	}
	if (!json_object_object_get_ex(obj, "choices", &choices) ||
	    !json_object_is_type(choices, json_type_array))
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream chunk has no choices array");
	if (json_object_array_length(choices) == 0)
		return p->status;
	c0 = json_object_array_get_idx(choices, 0);
	if (!json_object_is_type(c0, json_type_object))
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream choice is not an object");
	if (json_object_object_get_ex(c0, "finish_reason", &fr) &&
	    json_object_is_type(fr, json_type_string))
		p->finished = 1;
	if (!json_object_object_get_ex(c0, "delta", &delta) ||
	    json_object_is_type(delta, json_type_null))
		return p->status;
	if (!json_object_is_type(delta, json_type_object))
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream delta is not an object");
	if (!json_object_object_get_ex(delta, "content", &content) ||
	    json_object_is_type(content, json_type_null))
		return p->status;
	if (!json_object_is_type(content, json_type_string))
		return fail(p, LLMSSE_MALFORMED,
		    "LLM stream content is not a string");
	text = json_object_get_string(content);
	len = (size_t)json_object_get_string_len(content);
	if (len == 0)
		return p->status;
	return emit(p, text, len);
}

/* Hand a token of valid UTF-8 to on_token; nothing when it is empty. */
static enum llmsse_status
give(struct llmsse *p, const char *text, size_t len)
{
	if (len == 0)
		return p->status;
	p->ntokens++;
	if (p->on_token != NULL && p->on_token(p->arg, text, len) != 0)
		return fail(p, LLMSSE_ABORTED, "aborted by the caller");
	return p->status;
}

/*
 * A delta's content: cleaned to valid UTF-8, with the held-back start
 * of a split character before it and a new one held back after it.
 */
static enum llmsse_status
emit(struct llmsse *p, const char *text, size_t len)
{
	char	*in, *out;
	size_t	 n, tail, outlen;

	if (p->npend == 0 && utf8_valid(text, len))
		return give(p, text, len);
	n = p->npend + len;
	if ((in = malloc(n)) == NULL || (out = malloc(3 * n)) == NULL) {
		free(in);
		return fail(p, LLMSSE_NOMEM, "out of memory");
	}
	memcpy(in, p->pend, p->npend);
	memcpy(in + p->npend, text, len);
	outlen = llmsse_utf8_clean(in, n, out, &tail);
	memcpy(p->pend, in + n - tail, tail);
	p->npend = tail;
	free(in);
	give(p, out, outlen);
	free(out);
	return p->status;
}

/* The stream ends: a character still incomplete becomes U+FFFD. */
static enum llmsse_status
flush_pending(struct llmsse *p)
{
	if (p->npend == 0)
		return p->status;
	p->npend = 0;
	return give(p, replacement, sizeof(replacement) - 1);
}

size_t
llmsse_utf8_clean(const char *s, size_t n, char *out, size_t *tail)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i = 0, o = 0, need, k;
	unsigned char		 lo, hi, c;

	if (tail != NULL)
		*tail = 0;
	while (i < n) {
		if (u[i] == 0) {
			i++;
			continue;
		}
		if (u[i] < 0x80) {
			out[o++] = s[i++];
			continue;
		}
		/* The second byte's range rules out overlongs and surrogates. */
		lo = 0x80;
		hi = 0xbf;
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			need = 1;
		else if (u[i] >= 0xe0 && u[i] <= 0xef) {
			need = 2;
			if (u[i] == 0xe0)
				lo = 0xa0;
			else if (u[i] == 0xed)
				hi = 0x9f;
		} else if (u[i] >= 0xf0 && u[i] <= 0xf4) {
			need = 3;
			if (u[i] == 0xf0)
				lo = 0x90;
			else if (u[i] == 0xf4)
				hi = 0x8f;
		} else
			need = 0;
		for (k = 1; need > 0 && k <= need && i + k < n; k++) {
			c = u[i + k];
			if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf))
				break;
		}
		if (need > 0 && k > need) {
			memcpy(out + o, s + i, need + 1);
			o += need + 1;
			i += need + 1;
			continue;
		}
		if (need > 0 && i + k == n && tail != NULL) {
			*tail = n - i;
			break;
		}
		/* The lead and its valid continuation bytes: one U+FFFD. */
		memcpy(out + o, replacement, sizeof(replacement) - 1);
		o += sizeof(replacement) - 1;
		i += need > 0 ? k : 1;
	}
	return o;
}

enum llmsse_status
llmsse_finish(struct llmsse *p)
{
	if (p->status != LLMSSE_OK)
		return p->status;
	if (p->linelen > 0)
		line_end(p);
	if (p->status == LLMSSE_OK)
		dispatch(p);
	if (p->status == LLMSSE_OK)
		flush_pending(p);
	if (p->status == LLMSSE_OK)
		fail(p, LLMSSE_CUT, "stream ended before [DONE]");
	return p->status;
}

/* Copy s to out only when short and plain printable ASCII. */
static void
safe_message(const char *s, size_t n, char *out, size_t outsz)
{
	size_t	 i;

	if (outsz == 0)
		return;
	out[0] = '\0';
	if (s == NULL || n == 0 || n > ERRMSG_MAX || n >= outsz)
		return;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return;
	memcpy(out, s, n);
	out[n] = '\0';
}

int
llmsse_error_object(struct json_object *obj, char *out, size_t outsz)
{
	struct json_object	*e, *m = NULL, *o;

	if (outsz > 0)
		out[0] = '\0';
	if (!json_object_is_type(obj, json_type_object))
		return 0;
	if (json_object_object_get_ex(obj, "error", &e) &&
	    !json_object_is_type(e, json_type_null)) {
		if (json_object_is_type(e, json_type_object))
			json_object_object_get_ex(e, "message", &m);
		else if (json_object_is_type(e, json_type_string))
			m = e;
	} else if (json_object_object_get_ex(obj, "object", &o) &&
	    json_object_is_type(o, json_type_string) &&
	    strcmp(json_object_get_string(o), "error") == 0)
		json_object_object_get_ex(obj, "message", &m);
	else
		return 0;
	if (json_object_is_type(m, json_type_string))
		safe_message(json_object_get_string(m),
		    (size_t)json_object_get_string_len(m), out, outsz);
	return 1;
}
