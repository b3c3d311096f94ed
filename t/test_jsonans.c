/*
 * JSON answers of the LLM: extraction from fences and prose, and the
 * shape of each node's answer, accepted or rejected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonans.h"
#include "tap.h"

static struct json_object *
P(const char *s)
{
	return jsonans_parse(s, strlen(s));
}

/* The route of an answer text, or ROUTE_NONE. */
static enum route
route_of(const char *s)
{
	struct json_object	*o = P(s);
	enum route		 r = jsonans_route(o);

	json_object_put(o);
	return r;
}

static const char *
str(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, k, &v) || v == NULL)
		return NULL;
	return json_object_get_string(v);
}

static void
test_parse(void)
{
	struct json_object	*o;
	char			*big;
	size_t			 i;

	is_int(route_of("{\"route\": \"web\"}"), ROUTE_WEB, "plain object");
	is_int(route_of("```json\n{\"route\":\"medical\"}\n```"), ROUTE_MEDICAL,
	    "code fence");
	is_int(route_of("```\n{\"route\":\"patient\"}\n```"), ROUTE_PATIENT,
	    "bare code fence");
	is_int(route_of("Sure! Here is the route: {\"route\": \"ui_change\"} "
	    "Hope that helps {"), ROUTE_UI_CHANGE, "prose around");
	is_int(route_of("{not json} then {\"route\":\"text\"}"), ROUTE_TEXT,
	    "first balanced object that parses");
	is_int(route_of("{\"note\": \"a } in a string\", \"route\": \"web\"}"),
	    ROUTE_WEB, "braces inside strings");
	is_int(route_of("{\"route\": \"Add_Treatment \"}"), ROUTE_ADD_TREATMENT,
	    "route case and spaces tolerated");
	is_int(route_of("{\"route\": \"UI-Change\"}"), ROUTE_UI_CHANGE,
	    "'-' for '_'");
	is_int(route_of("{\"route\": \"add treatment\"}"), ROUTE_ADD_TREATMENT,
	    "' ' for '_'");
	is_int(route_of("{\"route\": \"web_search\"}"), ROUTE_WEB, "synonym: web");
	is_int(route_of("{\"route\": \"navigation\"}"), ROUTE_UI_CHANGE,
	    "synonym: ui_change");
	is_int(route_of("{\"route\": \"general\"}"), ROUTE_TEXT, "synonym: text");
	is_int(jsonans_route_text("medical", 7), ROUTE_MEDICAL,
	    "a bare route word, no JSON");
	is_int(jsonans_route_text(" `Patient`.\n", 12), ROUTE_PATIENT,
	    "a bare word in quotes, with a period");
	is_int(jsonans_route_text("```json\n{\"route\": \"web\"}\n```", 29),
	    ROUTE_WEB, "route_text reads JSON first");
	is_int(jsonans_route_text("I think medical", 15), ROUTE_NONE,
	    "a sentence is not a route");
	is_int(route_of("{\"route\": \"surgery\"}"), ROUTE_NONE, "unknown route");
	is_int(route_of("{\"route\": 3}"), ROUTE_NONE, "route not a string");
	is_int(route_of("{\"route\": [\"web\"]}"), ROUTE_NONE, "route an array");
	is_int(route_of("{\"tag\": \"web\"}"), ROUTE_NONE, "route missing");
	is_int(route_of("{\"data\": {\"route\": \"web\"}}"), ROUTE_NONE,
	    "extra nesting is not the shape");
	is_int(route_of("[{\"route\": \"web\"}]"), ROUTE_WEB,
	    "object found inside an array");
	is_int(route_of("{\"route\": \"web\""), ROUTE_NONE, "unterminated");
	is_int(route_of(""), ROUTE_NONE, "empty");
	ok(jsonans_parse(NULL, 0) == NULL, "NULL text");
	ok((o = P("no json here")) == NULL, "prose only");
	json_object_put(o);

	/* Too deep: refused, not a crash. */
	big = malloc(10001);
	for (i = 0; i < 5000; i++) {
		big[i] = '{';
		big[5000 + i] = '}';
	}
	big[10000] = '\0';
	ok((o = P(big)) == NULL, "5000 levels deep refused");
	json_object_put(o);
	/* Many unterminated strings: bounded work, no object. */
	for (i = 0; i < 10000; i += 2) {
		big[i] = '{';
		big[i + 1] = '"';
	}
	ok((o = P(big)) == NULL, "pathological braces and quotes");
	json_object_put(o);
	free(big);
}

static void
test_precheck(void)
{
	struct json_object	*o, *rel;
	int			 rem = -1;

	o = P("{\"remember\": true, \"relevant\": [\"name\", 5, \"age\"]}");
	is_int(jsonans_precheck(o, &rem, &rel), 0, "precheck valid");
	is_int(rem, 1, "remember true");
	is_int(rel ? (long long)json_object_array_length(rel) : -1, 2,
	    "non-strings dropped from relevant");
	json_object_put(rel);
	json_object_put(o);

	o = P("{\"remember\": false}");
	is_int(jsonans_precheck(o, &rem, &rel), 0, "relevant optional");
	is_int(rem, 0, "remember false");
	ok(rel == NULL, "no relevant");
	json_object_put(o);

	o = P("{\"remember\": \"yes\"}");
	is_int(jsonans_precheck(o, &rem, &rel), -1, "remember not a bool");
	json_object_put(o);
	o = P("{\"remember\": true, \"relevant\": \"name\"}");
	is_int(jsonans_precheck(o, &rem, &rel), -1, "relevant not an array");
	json_object_put(o);
	is_int(jsonans_precheck(NULL, &rem, &rel), -1, "no object");
}

static void
test_facts(void)
{
	struct json_object	*o, *f, *m, *mem;
	char			 buf[4096];
	int			 i;

	o = P("```json\n{\"facts\": {\"name\": \"Ada\", \"age\": 42, "
	    "\"smoker\": false, \"bad\": {\"x\": 1}, \"list\": [1], "
	    "\"\": \"empty key\"}}\n```");
	f = jsonans_facts(o);
	ok(f != NULL, "facts valid");
	is_str(str(f, "name"), "Ada", "string fact");
	is_str(str(f, "age"), "42", "number becomes a string");
	is_str(str(f, "smoker"), "false", "bool becomes a string");
	ok(!json_object_object_get_ex(f, "bad", NULL), "object value dropped");
	ok(!json_object_object_get_ex(f, "list", NULL), "array value dropped");
	ok(!json_object_object_get_ex(f, "", NULL), "empty key dropped");
	json_object_put(f);
	json_object_put(o);

	o = P("{\"facts\": [\"name\"]}");
	ok(jsonans_facts(o) == NULL, "facts not an object");
	json_object_put(o);
	o = P("{\"fact\": {}}");
	ok(jsonans_facts(o) == NULL, "facts missing");
	json_object_put(o);

	/* An oversized value is dropped. */
	memset(buf, 'v', sizeof(buf));
	memcpy(buf, "{\"facts\":{\"k\":\"", 15);
	memcpy(buf + sizeof(buf) - 5, "\"}}", 4);
	o = P(buf);
	f = jsonans_facts(o);
	ok(f != NULL && json_object_object_length(f) == 0,
	    "value over the bound dropped");
	json_object_put(f);
	json_object_put(o);

	/* Merge: new wins, non-strings of memory dropped, bounded. */
	mem = json_tokener_parse("{\"name\":\"Bob\",\"city\":\"Oslo\",\"n\":1}");
	f = json_tokener_parse("{\"name\":\"Ada\",\"pet\":\"cat\"}");
	m = jsonans_merge(mem, f);
	is_str(str(m, "name"), "Ada", "merge: new wins");
	is_str(str(m, "city"), "Oslo", "merge: old kept");
	is_str(str(m, "pet"), "cat", "merge: new added");
	ok(!json_object_object_get_ex(m, "n", NULL), "merge: strings only");
	json_object_put(m);
	json_object_put(mem);
	mem = json_object_new_object();
	for (i = 0; i < 100; i++) {
		snprintf(buf, sizeof(buf), "k%d", i);
		json_object_object_add(mem, buf, json_object_new_string("v"));
	}
	m = jsonans_merge(mem, f);
	is_int(json_object_object_length(m), 100, "merge: at most 100");
	is_str(str(m, "name"), NULL, "merge: no room for a new key");
	json_object_put(m);
	json_object_object_add(mem, "k5", json_object_new_string("old"));
	json_object_put(f);
	f = json_tokener_parse("{\"k5\":\"new\"}");
	m = jsonans_merge(mem, f);
	is_str(str(m, "k5"), "new", "merge: update applies when full");
	json_object_put(m);
	json_object_put(f);
	json_object_put(mem);
	m = jsonans_merge(NULL, NULL);
	is_int(json_object_object_length(m), 0, "merge of nothing");
	json_object_put(m);
}

/* The action of text, or NULL; why gets the reason. */
static struct json_object *
action_of(const char *s, char *why, size_t sz)
{
	struct json_object *o = P(s), *a;

	a = jsonans_action(o, why, sz);
	json_object_put(o);
	return a;
}

static void
test_action(void)
{
	static const char *const bad[] = {
		"{\"action\": {\"type\": \"delete_patient\"}}",
		"{\"action\": {\"type\": 7}}",
		"{\"action\": {\"name\": \"x\"}}",
		"{\"action\": \"navigate\"}",
		"{\"type\": \"navigate\"}",
		"{\"type\": \"delete_patient\", \"target\": \"home\"}",
		"{\"action\": {\"type\": \"navigate\"}}",
		"{\"action\": {\"type\": \"navigate\", \"target\": \"\"}}",
		"{\"action\": {\"type\": \"navigate\", \"target\": \"   \"}}",
		"{\"action\": {\"type\": \"navigate\", \"target\": 5}}",
		"{\"action\": {\"type\": \"show_panel\", \"target\": \"x\"}}",
		"{\"action\": {\"type\": \"add_treatment\", \"name\": \"A\", "
		    "\"dose\": \"1 mg\"}}",
		"{\"action\": {\"type\": \"add_treatment\", \"name\": \"A\", "
		    "\"dose\": 5, \"frequency\": \"daily\"}}",
		"{\"action\": {\"type\": \"add_treatment\", \"name\": \"A\", "
		    "\"dose\": \"1 mg\", \"frequency\": \"daily\", "
		    "\"start_date\": \"tomorrow\"}}",
		"{\"action\": {\"type\": \"add_treatment\", \"name\": \"A\", "
		    "\"dose\": \"1 mg\", \"frequency\": \"daily\", "
		    "\"start_date\": \"2023-02-29\"}}",
		"{\"action\": {\"type\": \"add_treatment\", \"name\": \"A\", "
		    "\"dose\": \"1 mg\", \"frequency\": \"daily\", "
		    "\"start_date\": 20240101}}",
		"{\"action\": {\"type\": \"navigate\", \"target\": \"a\\u0001b\"}}",
	};
	struct json_object	*a;
	char			 why[160], buf[600];
	size_t			 i;

	a = action_of("```json\n{\"action\": {\"type\": \"add_treatment\", "
	    "\"name\": \" Metformin \", \"dose\": \"500 mg\", \"frequency\": "
	    "\"twice daily\", \"start_date\": \"2024-02-29\", \"evil\": "
	    "\"<script>\"}}\n```", why, sizeof(why));
	ok(a != NULL, "add_treatment valid");
	is_str(str(a, "type"), "add_treatment", "type");
	is_str(str(a, "name"), "Metformin", "name trimmed");
	is_str(str(a, "dose"), "500 mg", "dose");
	is_str(str(a, "frequency"), "twice daily", "frequency");
	is_str(str(a, "start_date"), "2024-02-29", "start_date (leap day)");
	ok(a && !json_object_object_get_ex(a, "evil", NULL),
	    "unknown fields not passed on");
	json_object_put(a);

	a = action_of("{\"action\": {\"type\": \"add_treatment\", \"name\": "
	    "\"A\", \"dose\": \"1\", \"frequency\": \"daily\"}}", why,
	    sizeof(why));
	ok(a != NULL && json_object_object_get_ex(a, "start_date", NULL) &&
	    str(a, "start_date") == NULL, "start_date absent -> null");
	json_object_put(a);
	a = action_of("{\"action\": {\"type\": \"add_treatment\", \"name\": "
	    "\"A\", \"dose\": \"1\", \"frequency\": \"daily\", \"start_date\": "
	    "null}}", why, sizeof(why));
	ok(a != NULL && str(a, "start_date") == NULL, "start_date null");
	json_object_put(a);

	a = action_of("{\"action\": {\"type\": \"navigate\", \"target\": "
	    "\"medications\"}}", why, sizeof(why));
	is_str(str(a, "target"), "medications", "navigate");
	is_int(a ? json_object_object_length(a) : 0, 2, "navigate: 2 fields");
	json_object_put(a);
	a = action_of("Here you go: {\"action\": {\"type\": \"show_panel\", "
	    "\"panel\": \"vitals\"}}", why, sizeof(why));
	is_str(str(a, "panel"), "vitals", "show_panel");
	json_object_put(a);

	/* What models answer instead of the schema's exact form. */
	a = action_of("{\"type\": \"navigate\", \"target\": \"home\"}", why,
	    sizeof(why));
	is_str(str(a, "target"), "home", "unwrapped action accepted");
	json_object_put(a);
	a = action_of("{\"action\": \"show_panel\", \"panel\": \"vitals\"}",
	    why, sizeof(why));
	is_str(str(a, "panel"), "vitals", "action as the type's name");
	is_str(str(a, "type"), "show_panel", "  its type");
	json_object_put(a);
	a = action_of("{\"action\": {\"type\": \"Add-Treatment\", \"name\": "
	    "\"A\", \"dose\": \"1 mg\", \"frequency\": \"daily\", "
	    "\"start_date\": \"\"}}", why, sizeof(why));
	is_str(str(a, "type"), "add_treatment", "type's case and '-' tolerated");
	ok(a != NULL && json_object_object_get_ex(a, "start_date", NULL) &&
	    str(a, "start_date") == NULL, "start_date \"\" -> null");
	json_object_put(a);
	a = action_of("{\"action\": {\"type\": \"add_treatment\", \"name\": "
	    "\"A\", \"dose\": \"1 mg\", \"frequency\": \"daily\", "
	    "\"start_date\": \"2024-03-01T08:00:00Z\"}}", why, sizeof(why));
	is_str(str(a, "start_date"), "2024-03-01", "start_date from a date-time");
	json_object_put(a);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a = action_of(bad[i], why, sizeof(why));
		ok(a == NULL, "rejected: %s (%s)", bad[i], why);
		json_object_put(a);
	}
	/* Oversized field. */
	memset(buf, 'x', sizeof(buf));
	snprintf(buf, sizeof(buf), "{\"action\":{\"type\":\"navigate\","
	    "\"target\":\"");
	i = strlen(buf);
	memset(buf + i, 'x', 300);
	strcpy(buf + i + 300, "\"}}");
	a = action_of(buf, why, sizeof(why));
	ok(a == NULL && strstr(why, "target") != NULL,
	    "target over %d bytes rejected (%s)", JSONANS_FIELD_MAX, why);
	json_object_put(a);
	ok(jsonans_action(NULL, why, sizeof(why)) == NULL, "no object");
}

int
main(void)
{
	test_parse();
	test_precheck();
	test_facts();
	test_action();
	return done();
}
