/*
 * The session.update instructions: escaping, the user's message in the
 * last paragraph, cuts on UTF-8 boundaries, the follow-up form, and the
 * event's JSON shape (docs/unmute-protocol.md §3.1).
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "instr.h"
#include "tap.h"
#include "unmute.h"
#include "utf8.h"

static const char *
get_str(struct json_object *o, const char *path)
{
	char			 buf[128], *tok, *save;
	struct json_object	*v = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok != NULL;
	    tok = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(v, tok, &v))
			return NULL;
	return json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

static void
test_flatten(void)
{
	char	*s, big[3 * INSTR_MESSAGE_MAX];
	size_t	 i, n;

	s = instr_flatten("  line one\n\nline\ttwo\r\n  three\x01\x7f end  ",
	    100);
	is_str(s, "line one line two three end", "newlines, tabs, controls fold to one space");
	free(s);
	s = instr_flatten("", 100);
	is_str(s, "", "empty stays empty");
	free(s);
	s = instr_flatten(NULL, 100);
	is_str(s, "", "NULL is empty");
	free(s);
	s = instr_flatten("héllo wörld \"quoted\" \\ back", 100);
	is_str(s, "héllo wörld \"quoted\" \\ back", "non-ASCII and quotes kept as they are");
	free(s);

	/* 2-byte characters: a cut at an odd byte must step back. */
	for (i = 0; i + 1 < sizeof(big) - 1; i += 2)
		memcpy(big + i, "\xc3\xa9", 2);
	big[i] = '\0';
	s = instr_flatten(big, 101);
	n = strlen(s);
	is_int(n, 100, "cut at 101 bytes steps back to the boundary at 100");
	ok(utf8_valid(s, n), "cut text is valid UTF-8");
	free(s);
	s = instr_flatten("abc def", 4);
	is_str(s, "abc", "a cut leaves no trailing space");
	free(s);
}

static void
test_text(void)
{
	char	*t, *last, *msg;
	size_t	 i;

	t = instr_text("You are kind.\n\nBe brief.\n\n", "my knee\n\nhurts");
	is_str(t, "You are kind.\n\nBe brief.\n\nIn your first message, answer "
	    "the user's message below directly and briefly; do not greet "
	    "first.\n\nmy knee hurts",
	    "persona, the lead-in, message as one last paragraph");
	last = strrchr(t, '\n');
	is_str(last + 1, "my knee hurts", "message is after the last blank line");
	free(t);
	t = instr_text("", "only the message");
	ok(strncmp(t, "In your first message", 21) == 0 &&
	    strcmp(strrchr(t, '\n') + 1, "only the message") == 0,
	    "empty persona: the lead-in and the message");
	free(t);
	t = instr_text(NULL, "x");
	ok(strcmp(strrchr(t, '\n') + 1, "x") == 0, "NULL persona: the message last");
	free(t);

	msg = malloc(10000);
	for (i = 0; i < 9998; i += 3)
		memcpy(msg + i, "\xe2\x82\xac", 3);	/* € */
	msg[9999 - 9999 % 3] = '\0';
	t = instr_text("P", msg);
	ok(strlen(strrchr(t, '\n') + 1) <= INSTR_MESSAGE_MAX, "long message is bounded");
	ok(strlen(strrchr(t, '\n') + 1) > INSTR_MESSAGE_MAX - 4, "and cut near the bound");
	ok(utf8_valid(t, strlen(t)), "long message cut on a UTF-8 boundary");
	free(t);
	free(msg);
}

static void
test_follow_up(void)
{
	char *t;

	t = instr_follow_up("Rest the knee.\nIce it twice a day.");
	is_str(t, "Your first message must be exactly: Rest the knee. Ice it "
	    "twice a day.. Say nothing else.", "follow-up form, answer verbatim");
	free(t);
	t = instr_follow_up("Drink water");
	is_str(t, "Your first message must be exactly: Drink water. Say "
	    "nothing else.", "follow-up form without a final stop");
	free(t);
}

static void
test_session_update(void)
{
	struct json_object	*ev, *o, *v, *ins;
	char			*s;
	const char		*msg = "He said \"stop\"\n\tthen\x02 left \\ é";

	ev = instr_session_update(msg, "unmute-prod-website/developer-1.mp3",
	    "en", 0);
	s = instr_json(ev);
	json_object_put(ev);
	ok(s != NULL && strchr(s, '\n') == NULL, "wire form is one line");
	o = json_tokener_parse(s);
	ok(o != NULL, "wire form parses back");
	is_str(get_str(o, "type"), "session.update", "type");
	ok(json_object_object_get_ex(o, "session", &v) &&
	    json_object_object_get_ex(v, "instructions", &ins) &&
	    json_object_is_type(ins, json_type_object),
	    "instructions is an object, not a string");
	is_str(get_str(o, "session.instructions.type"), "constant", "instructions.type");
	is_str(get_str(o, "session.instructions.text"), msg,
	    "text round-trips with quotes, newlines, controls, backslash, UTF-8");
	is_str(get_str(o, "session.instructions.language"), "en", "language");
	is_str(get_str(o, "session.voice"), "unmute-prod-website/developer-1.mp3",
	    "voice, slashes unescaped");
	ok(strstr(s, "developer-1.mp3") != NULL && strstr(s, "\\/") == NULL,
	    "no escaped slashes on the wire");
	ok(json_object_object_get_ex(v, "allow_recording", &ins) &&
	    json_object_is_type(ins, json_type_boolean) &&
	    !json_object_get_boolean(ins), "allow_recording present and false");
	json_object_put(o);
	free(s);

	ev = instr_session_update("t", "", "", 1);
	s = instr_json(ev);
	json_object_put(ev);
	o = json_tokener_parse(s);
	json_object_object_get_ex(o, "session", &v);
	ok(!json_object_object_get_ex(v, "voice", NULL), "empty voice omitted");
	ok(json_object_object_get_ex(v, "instructions", &ins) &&
	    json_object_object_get_ex(ins, "language", &ins) && ins == NULL,
	    "empty language is null");
	ok(json_object_object_get_ex(v, "allow_recording", &ins) &&
	    json_object_get_boolean(ins), "allow_recording true");
	json_object_put(o);
	free(s);
}

static void
test_url(void)
{
	struct um_url u;

	ok(um_url_parse("ws://127.0.0.1:8000/v1/realtime", &u) == 0 &&
	    !u.tls && u.port == 8000 && strcmp(u.host, "127.0.0.1") == 0 &&
	    strcmp(u.path, "/v1/realtime") == 0 &&
	    strcmp(u.hosthdr, "127.0.0.1:8000") == 0, "ws URL with port");
	ok(um_url_parse("wss://user:secret@unmute.example/api/v1/realtime?sim_fault=eof#x",
	    &u) == 0 && u.tls && u.port == 443 &&
	    strcmp(u.host, "unmute.example") == 0 &&
	    strcmp(u.hosthdr, "unmute.example") == 0 &&
	    strcmp(u.path, "/api/v1/realtime?sim_fault=eof") == 0,
	    "wss URL: default port, query sent, fragment not");
	is_str(u.shown, "wss://unmute.example/api/v1/realtime",
	    "shown URL has no credentials and no query");
	ok(um_url_parse("ws://[::1]:9000", &u) == 0 &&
	    strcmp(u.host, "::1") == 0 && u.port == 9000 &&
	    strcmp(u.path, "/") == 0 && strcmp(u.hosthdr, "[::1]:9000") == 0,
	    "IPv6 literal, empty path");
	ok(um_url_parse("http://x/v1", &u) == -1, "http:// refused");
	ok(um_url_parse("ws://:80/", &u) == -1, "empty host refused");
	ok(um_url_parse("ws://h:99999/", &u) == -1, "bad port refused");
	ok(um_url_parse("ws://h:/", &u) == -1, "empty port refused");
}

int
main(void)
{
	test_flatten();
	test_text();
	test_follow_up();
	test_session_update();
	test_url();
	return done();
}
