/*
 * Unit tests of POST /api/agent/stream body validation (src/request.c,
 * SPEC.md §3.1): fields read back, every error code with the field it
 * names, UTF-8 and size limits counted in characters, hostile JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "req.h"
#include "tap.h"

static struct req	 r;
static char		 fld[64];

static enum terr
parse_n(const char *body, size_t len)
{
	req_free(&r);
	return req_parse(&r, body, len, fld, sizeof(fld));
}

static enum terr
parse(const char *body)
{
	return parse_n(body, strlen(body));
}

/* body must fail with code e naming field want ("" for none). */
static void
rejects(const char *body, size_t len, enum terr e, const char *want,
    const char *name)
{
	enum terr got = parse_n(body, len);

	if (!ok(got == e && strcmp(fld, want) == 0, "%s", name))
		printf("#   got %s '%s', want %s '%s'\n", terr_code(got), fld,
		    terr_code(e), want);
}

#define REJECTS(body, e, want, name) rejects(body, strlen(body), e, want, name)

/* A malloc'd string of n copies of unit. */
static char *
repeat(const char *unit, size_t n)
{
	size_t	 ul = strlen(unit), i;
	char	*s = malloc(ul * n + 1);

	if (s == NULL)
		abort();
	for (i = 0; i < n; i++)
		memcpy(s + i * ul, unit, ul);
	s[ul * n] = '\0';
	return s;
}

/* {"message": "<prefix><unit x n><suffix>"} as a malloc'd body. */
static char *
message_body(const char *prefix, const char *unit, size_t n, const char *suffix)
{
	char	*mid = repeat(unit, n), *b;
	size_t	 sz = strlen(mid) + strlen(prefix) + strlen(suffix) + 32;

	if ((b = malloc(sz)) == NULL)
		abort();
	snprintf(b, sz, "{\"message\":\"%s%s%s\"}", prefix, mid, suffix);
	free(mid);
	return b;
}

static void
test_valid(void)
{
	static const char full[] =
	    "{\"message\":\"  \\t Hello, \\u00e9t\\u00e9 \\n \","
	    "\"session_id\":\"Abc_123-xyz\","
	    "\"history\":[{\"role\":\"user\",\"content\":\"hi\"},"
	    "{\"role\":\"assistant\",\"content\":\"hello\"}],"
	    "\"memory\":{\"name\":\"Ann\",\"city\":\"Lyon\"},"
	    "\"patient\":{\"id\":\"p1\",\"name\":\"Ann\",\"birth_date\":\"1980-01-02\","
	    "\"sex\":\"female\",\"conditions\":[\"asthma\"],\"medications\":[],"
	    "\"allergies\":[\"peanuts\",\"latex\"]},"
	    "\"voice\":false,\"route\":\"medical\",\"unknown_field\":{\"x\":[1,2]}}";

	is_int(parse("{\"message\":\"hi\"}"), TERR_OK, "minimal body");
	is_str(r.message, "hi", "message read back");
	is_str(r.session_id, "", "no session_id: empty (caller generates)");
	ok(r.history == NULL && r.memory == NULL && r.patient == NULL,
	    "optional objects absent");
	is_int(r.voice, 1, "voice defaults to true");
	is_int(r.route, ROUTE_NONE, "route not forced");
	is_str(fld, "", "no field named on success");

	is_int(parse(full), TERR_OK, "full body");
	is_str(r.message, "Hello, \xc3\xa9t\xc3\xa9", "message trimmed, escapes decoded");
	is_str(r.session_id, "Abc_123-xyz", "session_id");
	ok(r.history != NULL && json_object_array_length(r.history) == 2,
	    "history array of 2");
	ok(r.history != NULL && strcmp(json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(r.history, 1), "content")), "hello") == 0,
	    "history[1].content");
	ok(r.memory != NULL && json_object_object_length(r.memory) == 2, "memory of 2");
	ok(r.memory != NULL && strcmp(json_object_get_string(
	    json_object_object_get(r.memory, "city")), "Lyon") == 0, "memory.city");
	ok(r.patient != NULL && strcmp(json_object_get_string(
	    json_object_object_get(r.patient, "birth_date")), "1980-01-02") == 0,
	    "patient.birth_date");
	is_int(r.voice, 0, "voice false");
	is_int(r.route, ROUTE_MEDICAL, "route forced to medical");

	is_int(parse("{\"message\":\"x\",\"voice\":true,\"route\":null,"
	    "\"session_id\":null,\"history\":null,\"memory\":null,\"patient\":null}"),
	    TERR_OK, "nulls for optional fields");
	is_int(r.voice, 1, "voice true");
	is_int(r.route, ROUTE_NONE, "route null: not forced");
	is_int(parse("{\"message\":\"x\",\"voice\":null}"), TERR_OK, "voice null");
	is_int(r.voice, 1, "voice null keeps the default");
	is_int(parse(" \n\t{\"message\" : \"x\"}\r\n "), TERR_OK,
	    "whitespace around the body");
	is_int(parse("{\"message\":\"x\",\"history\":[],\"memory\":{},\"patient\":{}}"),
	    TERR_OK, "empty history, memory, patient");
	is_int(parse("{\"message\":\"a\\ud83d\\ude00b\"}"), TERR_OK,
	    "surrogate pair escape");
	is_str(r.message, "a\xf0\x9f\x98\x80" "b", "surrogate pair decoded to UTF-8");
	is_int(parse("{\"message\":\"\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}"),
	    TERR_OK, "raw UTF-8 message");
	is_str(r.message, "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "raw UTF-8 kept");
	is_int(parse("{\"message\":\"x\",\"patient\":{\"id\":\"p1\"}}"), TERR_OK,
	    "id-only patient");
}

static void
test_routes(void)
{
	static const struct {
		const char	*name;
		enum route	 r;
	} routes[] = {
		{ "text", ROUTE_TEXT }, { "patient", ROUTE_PATIENT },
		{ "web", ROUTE_WEB }, { "medical", ROUTE_MEDICAL },
		{ "ui_change", ROUTE_UI_CHANGE }, { "add_treatment", ROUTE_ADD_TREATMENT },
	};
	char	 body[128], name[64];
	size_t	 i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		snprintf(body, sizeof(body), "{\"message\":\"x\",\"route\":\"%s\"}",
		    routes[i].name);
		snprintf(name, sizeof(name), "route %s", routes[i].name);
		parse(body);
		is_int(r.route, routes[i].r, name);
		is_str(route_name(routes[i].r), routes[i].name, "route_name");
		ok(route_lookup(routes[i].name) == routes[i].r, "route_lookup %s",
		    routes[i].name);
	}
	ok(route_name(ROUTE_NONE) == NULL, "route_name(ROUTE_NONE) is NULL");
	ok(route_name(ROUTE__MAX) == NULL, "route_name(ROUTE__MAX) is NULL");
	ok(route_lookup("TEXT") == ROUTE_NONE, "route_lookup is exact");
	REJECTS("{\"message\":\"x\",\"route\":\"nope\"}", TERR_INVALID_FIELD, "route",
	    "unknown route");
	REJECTS("{\"message\":\"x\",\"route\":\"Text\"}", TERR_INVALID_FIELD, "route",
	    "route is case-sensitive");
	REJECTS("{\"message\":\"x\",\"route\":1}", TERR_INVALID_FIELD, "route",
	    "route not a string");
}

static void
test_invalid_json(void)
{
	static const char nul_body[] = "{\"message\":\"a\0b\"}";
	char	*deep, *b;
	size_t	 i;
	int	 depth;

	REJECTS("", TERR_INVALID_JSON, "", "empty body");
	REJECTS("   \n", TERR_INVALID_JSON, "", "whitespace body");
	REJECTS("{", TERR_INVALID_JSON, "", "truncated object");
	REJECTS("{\"message\":\"hi\"", TERR_INVALID_JSON, "", "missing brace");
	REJECTS("{\"message\":\"hi}", TERR_INVALID_JSON, "", "unterminated string");
	REJECTS("{\"message\":\"hi\",}", TERR_INVALID_JSON, "", "trailing comma");
	REJECTS("{'message':'hi'}", TERR_INVALID_JSON, "", "single quotes");
	REJECTS("{message:\"hi\"}", TERR_INVALID_JSON, "", "bare key");
	REJECTS("{\"message\":\"hi\"} x", TERR_INVALID_JSON, "", "trailing garbage");
	REJECTS("{\"message\":\"hi\"}{}", TERR_INVALID_JSON, "", "two objects");
	REJECTS("[{\"message\":\"hi\"}]", TERR_INVALID_JSON, "", "top-level array");
	REJECTS("\"hi\"", TERR_INVALID_JSON, "", "top-level string");
	REJECTS("42", TERR_INVALID_JSON, "", "top-level number");
	REJECTS("null", TERR_INVALID_JSON, "", "top-level null");
	REJECTS("{\"message\":\"a\\qb\"}", TERR_INVALID_JSON, "", "bad escape");
	REJECTS("{\"message\":\"a\\u12\"}", TERR_INVALID_JSON, "", "short \\u escape");
	/*
	 * Regression (was a bug): request.c parse_json() relies on json-c's STRICT mode, which
	 * still takes raw control characters inside strings and the
	 * NaN/Infinity literals; RFC 8259 forbids both (§7, §6).
	 */
	REJECTS("{\"message\":\"a\x01" "b\"}", TERR_INVALID_JSON, "",
	    "regression: raw control character U+0001 in a string");
	REJECTS("{\"message\":\"a\nb\"}", TERR_INVALID_JSON, "",
	    "regression: raw newline in a string");
	REJECTS("{\"message\":\"hi\",\"x\":NaN}", TERR_INVALID_JSON, "",
	    "regression: NaN literal");
	REJECTS("{\"message\":\"hi\",\"x\":-Infinity}", TERR_INVALID_JSON, "",
	    "regression: -Infinity literal");
	REJECTS("{\"message\":\"hi\",\"x\":01}", TERR_INVALID_JSON, "",
	    "leading zero");
	REJECTS("{\"message\":\"hi\",\"x\":TRUE}", TERR_INVALID_JSON, "",
	    "upper-case TRUE");
	REJECTS("{\"message\":\"hi\" /* c */}", TERR_INVALID_JSON, "",
	    "comment");
	rejects(nul_body, sizeof(nul_body) - 1, TERR_INVALID_JSON, "",
	    "NUL byte inside the body");
	rejects("{\"message\":\"hi\"}\0", 17, TERR_INVALID_JSON, "",
	    "NUL byte after the body");
	REJECTS("{\"message\":\"a\xff" "b\"}", TERR_INVALID_JSON, "", "byte 0xFF");
	REJECTS("{\"message\":\"a\x80" "b\"}", TERR_INVALID_JSON, "",
	    "lone continuation byte");
	REJECTS("{\"message\":\"a\xc3\"}", TERR_INVALID_JSON, "",
	    "truncated 2-byte sequence");
	REJECTS("{\"message\":\"a\xe6\x97\"}", TERR_INVALID_JSON, "",
	    "truncated 3-byte sequence");
	REJECTS("{\"message\":\"\xc0\xaf\"}", TERR_INVALID_JSON, "",
	    "overlong 2-byte '/'");
	REJECTS("{\"message\":\"\xe0\x80\xaf\"}", TERR_INVALID_JSON, "",
	    "overlong 3-byte '/'");
	REJECTS("{\"message\":\"\xf0\x80\x80\xaf\"}", TERR_INVALID_JSON, "",
	    "overlong 4-byte '/'");
	REJECTS("{\"message\":\"\xc1\xbf\"}", TERR_INVALID_JSON, "", "overlong C1");
	REJECTS("{\"message\":\"\xed\xa0\x80\"}", TERR_INVALID_JSON, "",
	    "UTF-8 encoded high surrogate U+D800");
	REJECTS("{\"message\":\"\xed\xbf\xbf\"}", TERR_INVALID_JSON, "",
	    "UTF-8 encoded low surrogate U+DFFF");
	REJECTS("{\"message\":\"\xf4\x90\x80\x80\"}", TERR_INVALID_JSON, "",
	    "code point above U+10FFFF");
	REJECTS("{\"message\":\"\xf5\x80\x80\x80\"}", TERR_INVALID_JSON, "",
	    "lead byte F5");
	REJECTS("{\"x\":\"\xff\",\"message\":\"hi\"}", TERR_INVALID_JSON, "",
	    "invalid UTF-8 in an unknown field");

	/* Depth: well below the limit parses, far beyond is refused. */
	for (depth = 10; depth <= 100000; depth *= 10) {
		deep = malloc((size_t)depth * 2 + 64);
		i = (size_t)sprintf(deep, "{\"message\":\"hi\",\"x\":");
		memset(deep + i, '[', (size_t)depth);
		memset(deep + i + depth, ']', (size_t)depth);
		strcpy(deep + i + 2 * (size_t)depth, "}");
		if (depth == 10)
			is_int(parse(deep), TERR_OK, "arrays nested 10 deep");
		else {
			char name[64];
			snprintf(name, sizeof(name), "arrays nested %d deep", depth);
			REJECTS(deep, TERR_INVALID_JSON, "", name);
		}
		free(deep);
	}
	deep = repeat("{\"a\":", 5000);
	b = malloc(strlen(deep) + 5000 + 8);
	strcpy(b, deep);
	memset(b + strlen(deep), '}', 5000);
	b[strlen(deep) + 5000] = '\0';
	REJECTS(b, TERR_INVALID_JSON, "", "objects nested 5000 deep");
	free(deep);
	free(b);
}

static void
test_message(void)
{
	char *b;

	REJECTS("{}", TERR_MISSING_MESSAGE, "message", "message absent");
	REJECTS("{\"text\":\"hi\"}", TERR_MISSING_MESSAGE, "message",
	    "only other fields");
	REJECTS("{\"message\":null}", TERR_MISSING_MESSAGE, "message", "message null");
	REJECTS("{\"message\":\"\"}", TERR_MISSING_MESSAGE, "message", "message empty");
	REJECTS("{\"message\":\"  \\t\\n\\r  \"}", TERR_MISSING_MESSAGE, "message",
	    "message whitespace only");
	REJECTS("{\"message\":42}", TERR_INVALID_FIELD, "message", "message number");
	REJECTS("{\"message\":true}", TERR_INVALID_FIELD, "message", "message bool");
	REJECTS("{\"message\":[\"hi\"]}", TERR_INVALID_FIELD, "message", "message array");
	REJECTS("{\"message\":{\"t\":\"hi\"}}", TERR_INVALID_FIELD, "message",
	    "message object");
	REJECTS("{\"message\":\"hi\",\"message\":5}", TERR_INVALID_FIELD, "message",
	    "duplicate key: the last one counts");

	/* NUL in a message would cut C strings short: refused. */
	REJECTS("{\"message\":\"a\\u0000b\"}", TERR_INVALID_FIELD, "message",
	    "\\u0000 inside message refused");
	REJECTS("{\"message\":\"\\u0000\"}", TERR_INVALID_FIELD, "message",
	    "message of \\u0000 only refused");
	/* json-c turns a lone surrogate escape into U+FFFD: still valid UTF-8. */
	if (parse("{\"message\":\"a\\ud800b\"}") == TERR_OK)
		is_str(r.message, "a\xef\xbf\xbd" "b", "lone \\ud800 becomes U+FFFD");
	else
		is_str(fld, "message", "lone \\ud800 refused as message");

	b = message_body("", "a", 8000, "");
	is_int(parse(b), TERR_OK, "8000 ASCII characters");
	is_int(strlen(r.message), 8000, "8000 bytes kept");
	free(b);
	b = message_body("", "a", 8001, "");
	REJECTS(b, TERR_INVALID_FIELD, "message", "8001 ASCII characters");
	free(b);
	b = message_body("   ", "a", 8000, "\\n\\t ");
	is_int(parse(b), TERR_OK, "8000 characters plus whitespace: trimmed first");
	free(b);
	b = message_body("", "\xc3\xa9", 8000, "");
	is_int(parse(b), TERR_OK, "8000 two-byte characters (16000 bytes)");
	is_int(strlen(r.message), 16000, "16000 bytes kept");
	free(b);
	b = message_body("", "\xc3\xa9", 8001, "");
	REJECTS(b, TERR_INVALID_FIELD, "message", "8001 two-byte characters");
	free(b);
	b = message_body("", "\xe6\x97\xa5", 8000, "");
	is_int(parse(b), TERR_OK, "8000 three-byte characters");
	free(b);
	b = message_body("", "\xf0\x9f\x98\x80", 8000, "");
	is_int(parse(b), TERR_OK, "8000 four-byte characters (32000 bytes)");
	free(b);
	b = message_body("", "\xf0\x9f\x98\x80", 8001, "");
	REJECTS(b, TERR_INVALID_FIELD, "message", "8001 four-byte characters");
	free(b);
	b = message_body("", "\\u00e9", 8000, "");
	is_int(parse(b), TERR_OK, "8000 escaped \\u00e9 characters");
	free(b);
	b = message_body("", "\\ud83d\\ude00", 8001, "");
	REJECTS(b, TERR_INVALID_FIELD, "message", "8001 escaped surrogate pairs");
	free(b);
}

static void
test_session_id(void)
{
	char	 body[256], *id;

	id = repeat("a", 64);
	snprintf(body, sizeof(body), "{\"message\":\"x\",\"session_id\":\"%s\"}", id);
	is_int(parse(body), TERR_OK, "session_id of 64");
	is_str(r.session_id, id, "64-character session_id kept");
	free(id);
	id = repeat("a", 65);
	snprintf(body, sizeof(body), "{\"message\":\"x\",\"session_id\":\"%s\"}", id);
	REJECTS(body, TERR_INVALID_FIELD, "session_id", "session_id of 65");
	free(id);
	is_int(parse("{\"message\":\"x\",\"session_id\":\"Z\"}"), TERR_OK,
	    "session_id of 1");
	REJECTS("{\"message\":\"x\",\"session_id\":\"\"}", TERR_INVALID_FIELD,
	    "session_id", "empty session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"a b\"}", TERR_INVALID_FIELD,
	    "session_id", "space in session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"a.b\"}", TERR_INVALID_FIELD,
	    "session_id", "dot in session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"../etc\"}", TERR_INVALID_FIELD,
	    "session_id", "path in session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"a\\nb\"}", TERR_INVALID_FIELD,
	    "session_id", "newline in session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"\xc3\xa9t\xc3\xa9\"}",
	    TERR_INVALID_FIELD, "session_id", "non-ASCII session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":\"ab\\u0000c\"}", TERR_INVALID_FIELD,
	    "session_id", "NUL in session_id");
	REJECTS("{\"message\":\"x\",\"session_id\":12}", TERR_INVALID_FIELD,
	    "session_id", "numeric session_id");
}

/* {"message":"x","history":[item x n]} */
static char *
history_body(const char *item, size_t n)
{
	char	*items = repeat(item, n), *b;
	size_t	 sz = strlen(items) + 64;

	b = malloc(sz);
	items[strlen(items) - (n ? 1 : 0)] = '\0';	/* the last comma */
	snprintf(b, sz, "{\"message\":\"x\",\"history\":[%s]}", items);
	free(items);
	return b;
}

static void
test_history(void)
{
	char *b;

	b = history_body("{\"role\":\"user\",\"content\":\"q\"},", 50);
	is_int(parse(b), TERR_OK, "history of 50");
	free(b);
	b = history_body("{\"role\":\"assistant\",\"content\":\"a\"},", 51);
	REJECTS(b, TERR_INVALID_FIELD, "history", "history of 51");
	free(b);
	REJECTS("{\"message\":\"x\",\"history\":{}}", TERR_INVALID_FIELD, "history",
	    "history not an array");
	REJECTS("{\"message\":\"x\",\"history\":\"hi\"}", TERR_INVALID_FIELD, "history",
	    "history a string");
	REJECTS("{\"message\":\"x\",\"history\":[\"hi\"]}", TERR_INVALID_FIELD,
	    "history", "history item not an object");
	REJECTS("{\"message\":\"x\",\"history\":[{\"content\":\"hi\"}]}",
	    TERR_INVALID_FIELD, "history", "history item without role");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\"}]}",
	    TERR_INVALID_FIELD, "history", "history item without content");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"system\",\"content\":\"c\"}]}",
	    TERR_INVALID_FIELD, "history", "role system refused");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"User\",\"content\":\"c\"}]}",
	    TERR_INVALID_FIELD, "history", "role is case-sensitive");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":1,\"content\":\"c\"}]}",
	    TERR_INVALID_FIELD, "history", "role not a string");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\",\"content\":5}]}",
	    TERR_INVALID_FIELD, "history", "content not a string");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\",\"content\":null}]}",
	    TERR_INVALID_FIELD, "history", "content null");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\",\"content\":\"a\\u0000\"}]}",
	    TERR_INVALID_FIELD, "history", "NUL in history content");
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\",\"content\":\"c\"},null]}",
	    TERR_INVALID_FIELD, "history", "null history item");
	/*
	 * Regression (was a bug): request.c check_history() compares the role with strcmp, so
	 * "user\u0000x" (a 6-byte string with a NUL) passes as "user" and
	 * goes on to the LLM with its NUL.
	 */
	REJECTS("{\"message\":\"x\",\"history\":[{\"role\":\"user\\u0000x\",\"content\":\"c\"}]}",
	    TERR_INVALID_FIELD, "history", "regression: NUL inside role refused");
}

static void
test_memory(void)
{
	char	*b, *facts;
	size_t	 i, n;

	for (n = 100; n <= 101; n++) {
		facts = malloc(n * 32 + 64);
		facts[0] = '\0';
		for (i = 0; i < n; i++)
			sprintf(facts + strlen(facts), "%s\"k%zu\":\"v%zu\"",
			    i ? "," : "", i, i);
		b = malloc(strlen(facts) + 64);
		sprintf(b, "{\"message\":\"x\",\"memory\":{%s}}", facts);
		if (n == 100) {
			is_int(parse(b), TERR_OK, "memory of 100 facts");
			ok(r.memory != NULL && json_object_object_length(r.memory) == 100,
			    "100 facts kept");
		} else
			REJECTS(b, TERR_INVALID_FIELD, "memory", "memory of 101 facts");
		free(facts);
		free(b);
	}
	REJECTS("{\"message\":\"x\",\"memory\":[]}", TERR_INVALID_FIELD, "memory",
	    "memory an array");
	REJECTS("{\"message\":\"x\",\"memory\":\"a=b\"}", TERR_INVALID_FIELD, "memory",
	    "memory a string");
	REJECTS("{\"message\":\"x\",\"memory\":{\"age\":42}}", TERR_INVALID_FIELD,
	    "memory", "numeric fact");
	REJECTS("{\"message\":\"x\",\"memory\":{\"a\":\"b\",\"c\":{}}}",
	    TERR_INVALID_FIELD, "memory", "object fact");
	REJECTS("{\"message\":\"x\",\"memory\":{\"a\":null}}", TERR_INVALID_FIELD,
	    "memory", "null fact");
	REJECTS("{\"message\":\"x\",\"memory\":{\"a\":\"b\\u0000c\"}}",
	    TERR_INVALID_FIELD, "memory", "NUL in a fact");
}

static void
test_patient(void)
{
	REJECTS("{\"message\":\"x\",\"patient\":\"p1\"}", TERR_INVALID_FIELD,
	    "patient", "patient a string");
	REJECTS("{\"message\":\"x\",\"patient\":[]}", TERR_INVALID_FIELD, "patient",
	    "patient an array");
	REJECTS("{\"message\":\"x\",\"patient\":{\"id\":7}}", TERR_INVALID_FIELD,
	    "patient", "patient.id number");
	REJECTS("{\"message\":\"x\",\"patient\":{\"name\":[\"A\"]}}", TERR_INVALID_FIELD,
	    "patient", "patient.name array");
	REJECTS("{\"message\":\"x\",\"patient\":{\"birth_date\":19800102}}",
	    TERR_INVALID_FIELD, "patient", "patient.birth_date number");
	REJECTS("{\"message\":\"x\",\"patient\":{\"sex\":true}}", TERR_INVALID_FIELD,
	    "patient", "patient.sex bool");
	REJECTS("{\"message\":\"x\",\"patient\":{\"conditions\":\"asthma\"}}",
	    TERR_INVALID_FIELD, "patient", "patient.conditions string");
	REJECTS("{\"message\":\"x\",\"patient\":{\"medications\":[1]}}",
	    TERR_INVALID_FIELD, "patient", "patient.medications of numbers");
	REJECTS("{\"message\":\"x\",\"patient\":{\"allergies\":[\"a\",{}]}}",
	    TERR_INVALID_FIELD, "patient", "patient.allergies with an object");
	REJECTS("{\"message\":\"x\",\"patient\":{\"name\":\"a\\u0000\"}}",
	    TERR_INVALID_FIELD, "patient", "NUL in patient.name");
	{
		char *items = repeat("\"c\",", 101), *b = malloc(strlen(items) + 64);

		items[strlen(items) - 1] = '\0';
		sprintf(b, "{\"message\":\"x\",\"patient\":{\"conditions\":[%s]}}", items);
		REJECTS(b, TERR_INVALID_FIELD, "patient", "101 conditions refused");
		sprintf(b, "{\"message\":\"x\",\"patient\":{\"allergies\":[%s]}}",
		    items + 4);
		is_int(parse(b), TERR_OK, "100 allergies accepted");
		free(items);
		free(b);
	}
	is_int(parse("{\"message\":\"x\",\"patient\":{\"id\":\"p\",\"name\":null,"
	    "\"extra\":5}}"), TERR_OK, "null and unknown patient members ignored");
}

static void
test_voice(void)
{
	REJECTS("{\"message\":\"x\",\"voice\":\"yes\"}", TERR_INVALID_FIELD, "voice",
	    "voice a string");
	REJECTS("{\"message\":\"x\",\"voice\":0}", TERR_INVALID_FIELD, "voice",
	    "voice a number");
	REJECTS("{\"message\":\"x\",\"voice\":\"false\"}", TERR_INVALID_FIELD, "voice",
	    "voice \"false\"");
}

static void
test_huge(void)
{
	size_t	 n = 1024 * 1024;
	char	*b;
	int	 i;

	/* 1 MiB of valid JSON with the bulk in an ignored field. */
	b = malloc(n + 64);
	i = sprintf(b, "{\"message\":\"hi\",\"pad\":\"");
	memset(b + i, 'x', n - (size_t)i - 2);
	strcpy(b + n - 2, "\"}");
	is_int(parse_n(b, n), TERR_OK, "1 MiB body with a padding field");
	is_str(r.message, "hi", "message of the huge body");
	/* 1 MiB message: too long, refused by field. */
	i = sprintf(b, "{\"message\":\"");
	memset(b + i, 'y', n - (size_t)i - 2);
	strcpy(b + n - 2, "\"}");
	rejects(b, n, TERR_INVALID_FIELD, "message", "1 MiB message refused");
	/* 1 MiB of an array of small strings. */
	i = sprintf(b, "{\"message\":\"hi\",\"a\":[");
	while ((size_t)i < n - 16)
		i += sprintf(b + i, "\"z\",");
	strcpy(b + i, "\"z\"]}");
	is_int(parse(b), TERR_OK, "1 MiB array of small strings");
	/* 1 MiB truncated in the middle. */
	rejects(b, n / 2, TERR_INVALID_JSON, "", "1 MiB body cut in half");
	free(b);
}

int
main(void)
{
	test_valid();
	test_routes();
	test_invalid_json();
	test_message();
	test_session_id();
	test_history();
	test_memory();
	test_patient();
	test_voice();
	test_huge();
	req_free(&r);
	return done();
}
