/*
 * Recorded Unmute server frames (docs/unmute-protocol.md §4) through the
 * event table: the exact voice events and fields, in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "oggopus.h"
#include "tap.h"
#include "uevents.h"

#define MAXEV	256

static struct {
	char			*type;
	struct json_object	*data;
} evs[MAXEV];
static int nev, seen;

/* Every emitted Ogg byte, to check the client's single stream. */
static unsigned char	*stream;
static size_t		 streamlen;

static void
collect(void *arg, const char *type, struct json_object *d)
{
	struct json_object *a;
	unsigned char *raw;
	size_t n;

	(void)arg;
	if (strcmp(type, "audio_chunk") == 0 &&
	    json_object_object_get_ex(d, "audio", &a)) {
		raw = b64_decode(json_object_get_string(a),
		    (size_t)json_object_get_string_len(a), &n);
		stream = realloc(stream, streamlen + n);
		memcpy(stream + streamlen, raw, n);
		streamlen += n;
		free(raw);
	}
	if (nev < MAXEV) {
		evs[nev].type = strdup(type);
		evs[nev].data = d;
		nev++;
	} else
		json_object_put(d);
}

/* The events since the last call, as "type {json}" lines. */
static char *
fresh(void)
{
	static char	 buf[65536];
	size_t		 off = 0;

	buf[0] = '\0';
	for (; seen < nev && off < sizeof(buf) - 1; seen++) {
		const char *j = json_object_to_json_string_ext(evs[seen].data,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s %s",
		    off ? "\n" : "", evs[seen].type,
		    strstr(evs[seen].type, "audio_chunk") ? "" : j);
	}
	return buf;
}

static const char *
last_str(const char *key)
{
	struct json_object *v;

	if (nev == 0 || !json_object_object_get_ex(evs[nev - 1].data, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static enum uev_status
feed(struct uev *u, const char *s)
{
	return uev_feed(u, s, strlen(s));
}

/* An audio.delta frame carrying ogg[0..n). */
static enum uev_status
feed_audio(struct uev *u, const unsigned char *ogg, size_t n)
{
	char		*b, *msg;
	enum uev_status	 st;

	b = b64_encode(ogg, n, NULL);
	if (asprintf(&msg, "{\"type\":\"response.audio.delta\","
	    "\"event_id\":\"event_abc\",\"delta\":\"%s\"}", b) == -1)
		abort();
	st = feed(u, msg);
	free(b);
	free(msg);
	return st;
}

/* Unmute's encoder: serial 42, 40 ms packets, one per page. */
static struct oo_enc *
unmute_enc(uint32_t serial)
{
	struct oo_enc *e = oo_enc_new(40);

	oo_enc_set_header(e, serial, 3840, 48000, "KyutaiMoshi");
	return e;
}

static void
test_turns(void)
{
	struct uev	 u;
	struct oo_enc	*e = unmute_enc(42), *e2 = unmute_enc(7);
	unsigned char	*ogg = NULL, *ogg2 = NULL;
	size_t		 n = 0, n2 = 0, split;
	char		*first_b64;
	struct oo_reader rd;
	struct oo_page	 pg;
	struct oo_dec	*dec;
	int		 pages = 0, bad = 0, bos = 0;
	uint32_t	 seq = 0;

	uev_init(&u, collect, NULL);
	is_int(feed(&u, "{\"type\":\"session.updated\",\"event_id\":\"event_1\","
	    "\"session\":{\"instructions\":{\"type\":\"constant\",\"text\":\"x\","
	    "\"language\":null},\"voice\":\"v\",\"allow_recording\":false}}"),
	    UEV_CONTINUE, "session.updated: continue");
	is_str(fresh(), "", "session.updated: no event");
	is_int(feed(&u, "{\"type\":\"error\",\"event_id\":\"e\",\"error\":{\"type\":"
	    "\"invalid_request_error\",\"code\":null,\"message\":\"Invalid message\","
	    "\"param\":null,\"details\":[{\"type\":\"union_tag_invalid\"}]}}"),
	    UEV_CONTINUE, "invalid_request_error (response.create) is harmless");
	is_int(feed(&u, "{\"type\":\"response.created\",\"event_id\":\"e\",\"response\":"
	    "{\"object\":\"realtime.response\",\"status\":\"in_progress\","
	    "\"voice\":\"v\",\"chat_history\":[]}}"), UEV_TURN_STARTED,
	    "response.created starts a turn");
	is_str(fresh(), "unmute_streaming_started {\"turn\":1}", "unmute_streaming_started turn 1");
	feed(&u, "{\"type\":\"unmute.response.text.delta.ready\",\"delta\":\"Hello\"}");
	is_str(fresh(), "", "text.delta.ready ignored");

	/* First delta: OpusHead, OpusTags and two 40 ms pages. */
	oo_enc_silence(e, 80, &ogg, &n);
	first_b64 = b64_encode(ogg, n, NULL);
	feed_audio(&u, ogg, n);
	is_str(fresh(), "audio_chunk ", "first audio delta: one audio_chunk");
	is_str(last_str("audio"), first_b64, "audio passed through unchanged (headers included)");
	is_str(last_str("format"), "ogg/opus", "format");
	is_str(last_str("sample_rate"), "24000", "sample_rate");
	is_str(last_str("source"), "unmute", "source");
	is_str(last_str("turn"), "1", "turn");
	free(first_b64);

	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"Hello\"}");
	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\" there \"}");
	is_str(fresh(), "text_chunk {\"text\":\"Hello\",\"source\":\"unmute\",\"turn\":1}\n"
	    "text_chunk {\"text\":\"there\",\"source\":\"unmute\",\"turn\":1}",
	    "text deltas: text_chunk each, trimmed");
	feed(&u, "{\"type\":\"response.text.done\",\"text\":\"Hello there friend.\"}");
	is_str(fresh(), "", "response.text.done: nothing yet");

	/* A page split across two deltas is sent once whole. */
	free(ogg);
	ogg = NULL;
	n = 0;
	oo_enc_silence(e, 80, &ogg, &n);
	split = n / 3;
	feed_audio(&u, ogg, split);
	is_str(fresh(), "", "half a page: no audio_chunk yet");
	feed_audio(&u, ogg + split, n - split);
	is_str(fresh(), "audio_chunk ", "rest of the pages: one audio_chunk");
	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"friend.\"}");
	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"\"}");
	feed(&u, "{\"type\":\"unmute.additional_outputs\",\"args\":{\"chat_history\":[]}}");
	feed(&u, "{\"type\":\"conversation.item.input_audio_transcription.delta\",\"delta\":\"\",\"start_time\":0.1}");
	feed(&u, "{\"type\":\"error\",\"error\":{\"type\":\"warning\",\"message\":"
	    "\"Looking for the resources, expect some latency.\"}}");
	is_str(fresh(), "text_chunk {\"text\":\"friend.\",\"source\":\"unmute\",\"turn\":1}",
	    "words after text.done still relayed; empty, debug, transcription, warning ignored");
	is_int(feed(&u, "{\"type\":\"response.audio.done\"}"), UEV_TURN_DONE,
	    "response.audio.done ends the turn");
	{
		char want[256];
		long long bytes = (long long)streamlen;

		snprintf(want, sizeof(want), "text_complete {\"text\":\"Hello there friend.\","
		    "\"source\":\"unmute\",\"turn\":1}\naudio_complete {\"turn\":1,"
		    "\"chunks\":2,\"bytes\":%lld,\"duration_ms\":160}", bytes);
		is_str(fresh(), want, "turn end: text_complete (single spaces), audio_complete 4 packets x 40 ms");
	}

	/* Turn 2 ends by interruption; a late audio.done ends nothing. */
	feed(&u, "{\"type\":\"response.created\",\"response\":{}}");
	free(ogg);
	ogg = NULL;
	n = 0;
	oo_enc_silence(e, 120, &ogg, &n);
	feed_audio(&u, ogg, n);
	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"Bye\"}");
	is_int(feed(&u, "{\"type\":\"unmute.interrupted_by_vad\"}"), UEV_TURN_DONE,
	    "interrupted_by_vad ends the turn");
	is_int(feed(&u, "{\"type\":\"response.audio.done\"}"), UEV_CONTINUE,
	    "audio.done after an interruption is no second end");
	free(ogg);
	ogg = NULL;
	n = 0;
	oo_enc_silence(e, 40, &ogg, &n);
	feed_audio(&u, ogg, n);
	{
		const char *got = fresh();

		ok(strstr(got, "unmute_streaming_started {\"turn\":2}\naudio_chunk \n"
		    "text_chunk {\"text\":\"Bye\",\"source\":\"unmute\",\"turn\":2}\n"
		    "text_complete {\"text\":\"Bye\",\"source\":\"unmute\",\"turn\":2}\n"
		    "audio_complete {\"turn\":2,\"chunks\":1,") == got &&
		    strstr(got, "\"duration_ms\":120}") != NULL &&
		    strchr(strstr(got, "duration_ms"), '\n') == NULL,
		    "turn 2: events in order, 3 packets, audio after the interruption dropped");
	}
	is_int(u.turns_done, 2, "two turns done");

	/* A fresh session (follow-up): headers dropped, one stream kept. */
	uev_new_source(&u);
	feed(&u, "{\"type\":\"session.updated\",\"session\":{}}");
	feed(&u, "{\"type\":\"response.created\",\"response\":{}}");
	oo_enc_silence(e2, 80, &ogg2, &n2);
	feed_audio(&u, ogg2, n2);
	feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"Rest\"}");
	feed(&u, "{\"type\":\"response.audio.done\"}");
	{
		const char *got = fresh();

		ok(strncmp(got, "unmute_streaming_started {\"turn\":3}\naudio_chunk \n", 49) == 0 &&
		    strstr(got, "audio_complete {\"turn\":3,\"chunks\":1,") != NULL &&
		    strstr(got, "\"duration_ms\":80}") != NULL,
		    "follow-up session: turn numbering goes on, 2 packets");
	}
	/* The whole stream: one serial, seqno 0.., one BOS, headers once. */
	oo_reader_init(&rd, 1 << 22);
	oo_reader_feed(&rd, stream, streamlen);
	while (oo_reader_next(&rd, &pg) == 1) {
		if (pg.serial != 42 || pg.seqno != seq++)
			bad++;
		if (pg.header_type & 0x02)
			bos++;
		pages++;
	}
	is_int(bad, 0, "every page in serial 42 with consecutive seqnos");
	is_int(bos, 1, "one BOS page");
	is_int(pages, 2 + 4 + 3 + 2, "headers once + 4 + 3 + 2 audio pages (late page dropped)");
	oo_reader_free(&rd);
	dec = oo_dec_new(24000, 1 << 22);
	ok(oo_dec_feed(dec, stream, streamlen, NULL, 24000 * 10) >= 0,
	    "the spliced stream decodes with one decoder");
	is_int(oo_dec_packets(dec), 9, "9 audio packets decoded");
	oo_dec_free(dec);

	free(ogg);
	free(ogg2);
	oo_enc_free(e);
	oo_enc_free(e2);
	uev_free(&u);
}

static void
expect_fail(const char *frame, const char *code, const char *name)
{
	struct uev u;

	uev_init(&u, collect, NULL);
	feed(&u, "{\"type\":\"response.created\"}");
	if (!ok(feed(&u, frame) == UEV_FAIL && u.err_code != NULL &&
	    strcmp(u.err_code, code) == 0, "%s", name))
		printf("#   got %s\n", u.err_code ? u.err_code : "(none)");
	uev_free(&u);
	fresh();
}

static void
test_failures(void)
{
	struct uev u;

	expect_fail("{\"type\":\"error\",\"error\":{\"type\":\"fatal\",\"code\":null,"
	    "\"message\":\"Too many people are connected to service 'stt'. Please try "
	    "again later.\",\"param\":null,\"details\":null}}", "unmute_busy",
	    "fatal 'Too many people' -> unmute_busy");
	expect_fail("{\"type\":\"error\",\"error\":{\"type\":\"fatal\",\"message\":"
	    "\"Service 'tts' timed out. Please try again later.\"}}", "unmute_busy",
	    "fatal 'try again later' -> unmute_busy");
	expect_fail("{\"type\":\"error\",\"error\":{\"type\":\"fatal\",\"message\":"
	    "\"Internal server error :( Complain to Kyutai\"}}", "unmute_unavailable",
	    "other fatal -> unmute_unavailable");
	expect_fail("this is not JSON {", "unmute_protocol", "non-JSON -> unmute_protocol");
	expect_fail("{\"type\":\"x\"} trailing", "unmute_protocol", "trailing garbage -> unmute_protocol");
	expect_fail("[1,2]", "unmute_protocol", "JSON array -> unmute_protocol");
	expect_fail("{\"delta\":\"x\"}", "unmute_protocol", "no type -> unmute_protocol");
	expect_fail("{\"type\":\"response.audio.delta\",\"delta\":\"dGhpcyBpcyBub3QgYW4gT2dnIHBhZ2U=\"}",
	    "unmute_protocol", "non-Ogg audio -> unmute_protocol");
	expect_fail("{\"type\":\"response.audio.delta\",\"delta\":\"T2dn!!\"}",
	    "unmute_protocol", "bad base64 -> unmute_protocol");
	expect_fail("{\"type\":\"response.audio.delta\"}",
	    "unmute_protocol", "audio delta without audio -> unmute_protocol");

	uev_init(&u, collect, NULL);
	is_int(feed(&u, "{\"type\":\"some.future.event\",\"x\":1}"), UEV_CONTINUE,
	    "unknown types are ignored");
	is_int(feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"early\"}"),
	    UEV_CONTINUE, "text outside a turn: ignored");
	is_int(feed(&u, "{\"type\":\"response.audio.done\"}"), UEV_CONTINUE,
	    "audio.done outside a turn: no turn end");
	is_str(fresh(), "", "nothing emitted outside a turn");
	uev_free(&u);
}

/* Frames a broken or hostile server might send: no crash, the right code. */
static void
test_hostile(void)
{
	struct uev	 u;
	char		*big;
	size_t		 i, n;
	int		 okay;

	expect_fail("{\"type\":\"response.text.delta\",\"delta\":\"a\xff" "b\"}",
	    "unmute_protocol", "text delta with invalid UTF-8 -> unmute_protocol");
	expect_fail("{\"type\":\"response.text.delta\",\"delta\":\"\xc3\"}",
	    "unmute_protocol", "text delta with a cut UTF-8 sequence -> unmute_protocol");
	expect_fail("{\"type\":\"x\",\"v\":\"\xed\xa0\x80\"}",
	    "unmute_protocol", "a UTF-8-encoded surrogate anywhere -> unmute_protocol");
	expect_fail("{\"type\":5}", "unmute_protocol", "type not a string -> unmute_protocol");
	expect_fail("{\"type\":null}", "unmute_protocol", "type null -> unmute_protocol");
	expect_fail("{\"type\":\"response.text.delta\",\"delta\":5}", "unmute_protocol",
	    "text delta a number -> unmute_protocol");
	expect_fail("{\"type\":\"response.text.delta\",\"delta\":null}", "unmute_protocol",
	    "text delta null -> unmute_protocol");
	expect_fail("{\"type\":\"response.audio.delta\",\"delta\":[\"T2dn\"]}", "unmute_protocol",
	    "audio delta an array -> unmute_protocol");
	expect_fail("{\"type\":\"error\",\"error\":{\"type\":\"fatal\",\"message\":5}}",
	    "unmute_unavailable", "fatal without a string message -> unmute_unavailable");
	expect_fail("\"response.created\"", "unmute_protocol", "a JSON string -> unmute_protocol");
	expect_fail("", "unmute_protocol", "an empty frame -> unmute_protocol");
	{
		static const char frame[] = "{\"type\":\"response.created\"}\0junk";

		uev_init(&u, collect, NULL);
		ok(uev_feed(&u, frame, sizeof(frame) - 1) == UEV_FAIL &&
		    strcmp(u.err_code, "unmute_protocol") == 0,
		    "an event followed by a NUL and junk -> unmute_protocol");
		uev_free(&u);
		fresh();
	}

	/* 100000 levels of nesting: the parser's depth limit, no stack. */
	n = 100000;
	big = malloc(2 * n + 64);
	strcpy(big, "{\"type\":\"response.created\",\"response\":");
	i = strlen(big);
	memset(big + i, '[', n);
	memset(big + i + n, ']', n);
	strcpy(big + i + 2 * n, "}");
	expect_fail(big, "unmute_protocol", "deeply nested JSON -> unmute_protocol");
	free(big);

	/* 6 MiB of base64 zeros: decoded, not Ogg, refused. */
	n = 6 << 20;
	big = malloc(n + 64);
	i = (size_t)sprintf(big, "{\"type\":\"response.audio.delta\",\"delta\":\"");
	memset(big + i, 'A', n);
	strcpy(big + i + n, "\"}");
	expect_fail(big, "unmute_protocol", "6 MiB of base64 that is not Ogg -> unmute_protocol");
	free(big);

	/* Wrong types where nothing is read: tolerated, turn logic intact. */
	uev_init(&u, collect, NULL);
	okay = feed(&u, "{\"type\":\"response.created\",\"response\":5}") == UEV_TURN_STARTED;
	okay &= feed(&u, "{\"type\":\"error\",\"error\":\"fatal\"}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"error\",\"error\":{\"type\":[\"fatal\"]}}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"error\"}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"unmute.additional_outputs\",\"args\":7}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"session.updated\",\"session\":null}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"response.text.done\",\"text\":[1]}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"response.text.delta\",\"delta\":\"\\u00e9t\\u00e9\"}") == UEV_CONTINUE;
	okay &= feed(&u, "{\"type\":\"response.audio.done\",\"extra\":{}}") == UEV_TURN_DONE;
	ok(okay && u.err_code == NULL, "fields of the wrong type that are not read are ignored");
	ok(strstr(fresh(), "text_complete {\"text\":\"\xc3\xa9t\xc3\xa9\"") != NULL,
	    "escaped UTF-8 words pass");
	uev_free(&u);
}

static void
test_b64(void)
{
	const char	*in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	const char	*out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
	    "Zm9vYmFy" };
	unsigned char	*d;
	char		*e;
	size_t		 i, n;
	int		 good = 1;

	for (i = 0; i < 7; i++) {
		e = b64_encode((const unsigned char *)in[i], strlen(in[i]), &n);
		d = b64_decode(out[i], strlen(out[i]), &n);
		if (strcmp(e, out[i]) != 0 || d == NULL || n != strlen(in[i]) ||
		    memcmp(d, in[i], n) != 0)
			good = 0;
		free(e);
		free(d);
	}
	ok(good, "base64 RFC 4648 vectors both ways");
	ok(b64_decode("Zm9v\n", 5, &n) == NULL, "base64 with a newline refused");
	ok(b64_decode("Z", 1, &n) == NULL, "base64 of impossible length refused");
}

int
main(void)
{
	test_turns();
	test_failures();
	test_hostile();
	test_b64();
	free(stream);
	while (nev > 0) {
		nev--;
		free(evs[nev].type);
		json_object_put(evs[nev].data);
	}
	return done();
}
