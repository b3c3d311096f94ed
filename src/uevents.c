/*
 * Unmute server events to voice events (see uevents.h). A turn runs
 * from response.created to response.audio.done or
 * unmute.interrupted_by_vad; text_complete waits for the turn's end
 * because response.text.done comes before the last words are spoken
 * (docs/unmute-protocol.md §4).
 */

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uevents.h"
#include "utf8.h"

typedef enum uev_status uev_handler(struct uev *, struct json_object *);

static uev_handler on_created, on_text_delta, on_audio_delta, on_turn_end,
    on_error;

/* Server event types; a NULL handler is known and not relayed. */
static const struct {
	const char	*type;
	uev_handler	*fn;
} handlers[] = {
	{ "response.created",			on_created },
	{ "response.text.delta",		on_text_delta },
	{ "response.audio.delta",		on_audio_delta },
	{ "response.audio.done",		on_turn_end },
	{ "unmute.interrupted_by_vad",		on_turn_end },
	{ "error",				on_error },
	{ "session.updated",			NULL },
	{ "response.text.done",			NULL },
	{ "unmute.response.text.delta.ready",	NULL },
	{ "unmute.response.audio.delta.ready",	NULL },
	{ "unmute.additional_outputs",		NULL },
	{ "conversation.item.input_audio_transcription.delta", NULL },
	{ "input_audio_buffer.speech_started",	NULL },
	{ "input_audio_buffer.speech_stopped",	NULL },
};

void
uev_init(struct uev *u, uev_emit_fn *emit, void *arg)
{
	memset(u, 0, sizeof(*u));
	u->emit = emit;
	u->arg = arg;
	oo_reader_init(&u->rd, UEV_OGG_MAX);
	oo_splice_init(&u->sp);
}

void
uev_free(struct uev *u)
{
	oo_reader_free(&u->rd);
	free(u->text);
	free(u->held);
	u->text = NULL;
	u->held = NULL;
	u->heldlen = u->heldcap = 0;
}

void
uev_new_source(struct uev *u)
{
	/* Bytes left from the last session belong to no page we can use. */
	oo_reader_free(&u->rd);
	oo_reader_init(&u->rd, UEV_OGG_MAX);
	oo_splice_new_source(&u->sp);
	u->in_turn = 0;
	u->err_code = NULL;
	u->err_msg[0] = '\0';
}

enum uev_status
uev_fail(struct uev *u, const char *code, const char *msg)
{
	if (u->err_code == NULL) {
		u->err_code = code;
		snprintf(u->err_msg, sizeof(u->err_msg), "%s", msg);
	}
	return UEV_FAIL;
}

static struct json_object *
turn_data(const struct uev *u)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "turn", json_object_new_int(u->turn));
	return d;
}

static void
finish_turn(struct uev *u)
{
	struct json_object *d;

	d = json_object_new_object();
	json_object_object_add(d, "text",
	    json_object_new_string_len(u->tlen ? u->text : "", (int)u->tlen));
	json_object_object_add(d, "source", json_object_new_string("unmute"));
	json_object_object_add(d, "turn", json_object_new_int(u->turn));
	u->emit(u->arg, "text_complete", d);

	d = turn_data(u);
	json_object_object_add(d, "chunks", json_object_new_int(u->chunks));
	json_object_object_add(d, "bytes", json_object_new_int64(u->bytes));
	json_object_object_add(d, "duration_ms",
	    json_object_new_int64((int64_t)u->packets * UEV_AUDIO_MS));
	u->emit(u->arg, "audio_complete", d);
	u->in_turn = 0;
	u->turns_done++;
}

static enum uev_status
on_created(struct uev *u, struct json_object *ev)
{
	(void)ev;
	if (u->in_turn)
		finish_turn(u);
	u->turn++;
	u->in_turn = 1;
	u->tlen = 0;
	u->chunks = 0;
	u->bytes = 0;
	u->packets = 0;
	u->emit(u->arg, "unmute_streaming_started", turn_data(u));
	return UEV_TURN_STARTED;
}

static enum uev_status
on_turn_end(struct uev *u, struct json_object *ev)
{
	(void)ev;
	/* audio.done may follow interrupted_by_vad: one end per turn. */
	if (!u->in_turn)
		return UEV_CONTINUE;
	finish_turn(u);
	return UEV_TURN_DONE;
}

/* Append a word to the turn's text, one space between words. */
static void
add_word(struct uev *u, const char *w, size_t n)
{
	size_t	 need = n + (u->tlen > 0) + 1;
	char	*nt;

	if (u->tlen + need > UEV_TEXT_MAX)
		return;
	if (u->tlen + need > u->tcap) {
		size_t cap = u->tcap ? u->tcap : 256;

		while (cap < u->tlen + need)
			cap *= 2;
		if ((nt = realloc(u->text, cap)) == NULL)
			return;
		u->text = nt;
		u->tcap = cap;
	}
	if (u->tlen > 0)
		u->text[u->tlen++] = ' ';
	memcpy(u->text + u->tlen, w, n);
	u->tlen += n;
	u->text[u->tlen] = '\0';
}

static enum uev_status
on_text_delta(struct uev *u, struct json_object *ev)
{
	struct json_object	*v, *d;
	const char		*w;
	size_t			 n;

	if (!json_object_object_get_ex(ev, "delta", &v) ||
	    !json_object_is_type(v, json_type_string))
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent a text delta without text");
	if (!u->in_turn)
		return UEV_CONTINUE;
	w = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	while (n > 0 && isspace((unsigned char)*w)) {
		w++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)w[n - 1]))
		n--;
	if (n == 0)
		return UEV_CONTINUE;
	add_word(u, w, n);
	d = json_object_new_object();
	json_object_object_add(d, "text", json_object_new_string_len(w, (int)n));
	json_object_object_add(d, "source", json_object_new_string("unmute"));
	json_object_object_add(d, "turn", json_object_new_int(u->turn));
	u->emit(u->arg, "text_chunk", d);
	return UEV_CONTINUE;
}

static int
append(unsigned char **buf, size_t *len, size_t *cap, size_t n)
{
	unsigned char	*nb;
	size_t		 ncap;

	if (*len + n <= *cap)
		return 0;
	ncap = *cap ? *cap : 8192;
	while (ncap < *len + n)
		ncap *= 2;
	if ((nb = realloc(*buf, ncap)) == NULL)
		return -1;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void
emit_audio(struct uev *u, const unsigned char *ogg, size_t len)
{
	struct json_object	*d;
	char			*b64;
	size_t			 blen;

	if ((b64 = b64_encode(ogg, len, &blen)) == NULL)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "audio",
	    json_object_new_string_len(b64, (int)blen));
	json_object_object_add(d, "format", json_object_new_string("ogg/opus"));
	json_object_object_add(d, "sample_rate", json_object_new_int(24000));
	json_object_object_add(d, "source", json_object_new_string("unmute"));
	json_object_object_add(d, "turn", json_object_new_int(u->turn));
	free(b64);
	u->emit(u->arg, "audio_chunk", d);
	u->chunks++;
	u->bytes += (long long)len;
}

/*
 * Split the delta into Ogg pages and pass each through the splicer:
 * unchanged in the first session, rewritten into the first stream in a
 * later one. Header pages seen outside a turn wait for the next chunk;
 * other audio outside a turn (after an interruption) is dropped.
 */
static enum uev_status
on_audio_delta(struct uev *u, struct json_object *ev)
{
	struct json_object	*v;
	struct oo_page		 pg;
	unsigned char		*raw, *out = NULL;
	size_t			 rawlen, len = 0, cap = 0, n;
	int			 rc;

	if (!json_object_object_get_ex(ev, "delta", &v) ||
	    !json_object_is_type(v, json_type_string))
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent an audio delta without audio");
	raw = b64_decode(json_object_get_string(v),
	    (size_t)json_object_get_string_len(v), &rawlen);
	if (raw == NULL)
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent audio that is not base64");
	rc = oo_reader_feed(&u->rd, raw, rawlen);
	free(raw);
	if (rc == -1)
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent audio that is not Ogg");
	if (u->heldlen > 0 && u->in_turn) {
		if (append(&out, &len, &cap, u->heldlen) == -1)
			return uev_fail(u, "internal", "out of memory");
		memcpy(out, u->held, u->heldlen);
		len = u->heldlen;
		u->heldlen = 0;
	}
	while ((rc = oo_reader_next(&u->rd, &pg)) == 1) {
		if (!u->in_turn && !pg.is_header)
			continue;
		if (!u->in_turn) {
			if (append(&u->held, &u->heldlen, &u->heldcap,
			    pg.len) == -1)
				break;
			u->heldlen += oo_splice_page(&u->sp, &pg,
			    u->held + u->heldlen);
			continue;
		}
		if (append(&out, &len, &cap, pg.len) == -1)
			break;
		n = oo_splice_page(&u->sp, &pg, out + len);
		len += n;
		if (n > 0 && !pg.is_header)
			u->packets += pg.npackets;
	}
	if (rc == -1) {
		free(out);
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent audio that is not valid Ogg");
	}
	if (len > 0)
		emit_audio(u, out, len);
	free(out);
	return UEV_CONTINUE;
}

static enum uev_status
on_error(struct uev *u, struct json_object *ev)
{
	struct json_object	*e, *v;
	const char		*type = "", *msg = "";

	if (json_object_object_get_ex(ev, "error", &e) &&
	    json_object_is_type(e, json_type_object)) {
		if (json_object_object_get_ex(e, "type", &v) &&
		    json_object_is_type(v, json_type_string))
			type = json_object_get_string(v);
		if (json_object_object_get_ex(e, "message", &v) &&
		    json_object_is_type(v, json_type_string))
			msg = json_object_get_string(v);
	}
	/*
	 * invalid_request_error answers our response.create (harmless);
	 * warnings announce latency. Only fatal ends the session.
	 */
	if (strcmp(type, "fatal") != 0)
		return UEV_CONTINUE;
	if (strcasestr(msg, "too many people") != NULL ||
	    strcasestr(msg, "try again later") != NULL)
		return uev_fail(u, "unmute_busy",
		    "The voice service is at capacity; try again later");
	return uev_fail(u, "unmute_unavailable",
	    "The voice service ended the session with an error");
}

enum uev_status
uev_feed(struct uev *u, const char *msg, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*ev, *v;
	const char		*type;
	enum uev_status		 st = UEV_CONTINUE;
	size_t			 i;

	/* Words go into our UTF-8 stream: invalid UTF-8 is not JSON. */
	if (!utf8_valid(msg, len))
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent a frame that is not UTF-8 text");
	if (len > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return uev_fail(u, "internal", "cannot parse an Unmute event");
	ev = json_tokener_parse_ex(tok, msg, (int)len);
	if (ev != NULL && json_tokener_get_parse_end(tok) != len) {
		/* Only whitespace may follow the object. */
		for (i = json_tokener_get_parse_end(tok); i < len; i++)
			if (!isspace((unsigned char)msg[i])) {
				json_object_put(ev);
				ev = NULL;
				break;
			}
	}
	json_tokener_free(tok);
	if (ev == NULL || !json_object_is_type(ev, json_type_object) ||
	    !json_object_object_get_ex(ev, "type", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		json_object_put(ev);
		return uev_fail(u, "unmute_protocol",
		    "Unmute sent a frame that is not a JSON event");
	}
	type = json_object_get_string(v);
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (strcmp(handlers[i].type, type) == 0) {
			if (handlers[i].fn != NULL)
				st = handlers[i].fn(u, ev);
			break;
		}
	json_object_put(ev);
	return st;
}

/* --- base64 --- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
b64_encode(const unsigned char *p, size_t n, size_t *outlen)
{
	char	*out, *o;
	size_t	 i;
	unsigned v;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	if ((out = malloc((n + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	o = out;
	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = b64chars[v & 63];
	}
	if (i < n) {
		v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	if (outlen != NULL)
		*outlen = (size_t)(o - out);
	return out;
}

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

unsigned char *
b64_decode(const char *s, size_t n, size_t *outlen)
{
	unsigned char	*out;
	size_t		 i, o = 0, nbits = 0;
	unsigned	 acc = 0;
	int		 v;

	while (n > 0 && s[n - 1] == '=')
		n--;
	if (n % 4 == 1 || (out = malloc(n / 4 * 3 + 3)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if ((v = b64val((unsigned char)s[i])) == -1) {
			free(out);
			return NULL;
		}
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			out[o++] = (unsigned char)(acc >> nbits);
		}
	}
	*outlen = o;
	return out;
}
