/*
 * Checking the LLM's JSON answers. Models wrap JSON in code fences or
 * prose, so the first balanced object that parses is taken; then each
 * shape is checked field by field and rebuilt, so that nothing the model
 * made up beyond the schema reaches the client.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonans.h"
#include "utf8.h"

#define JSONANS_TRIES_MAX	32	/* candidate '{' looked at */

/*
 * Return the length of the balanced {...} starting at s[0] == '{', with
 * strings and escapes skipped, or 0 when it does not close within len.
 */
static size_t
balanced_len(const char *s, size_t len)
{
	size_t	i;
	int	depth = 0, in_str = 0;

	for (i = 0; i < len; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = 0;
			continue;
		}
		if (s[i] == '"')
			in_str = 1;
		else if (s[i] == '{' || s[i] == '[') {
			if (++depth > JSONANS_DEPTH_MAX)
				return 0;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth == 0)
				return i + 1;
			if (depth < 0)
				return 0;
		}
	}
	return 0;
}

/* Parse exactly s[0..len) as one JSON value; return it or NULL. */
static struct json_object *
parse_exact(const char *s, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*o;

	if ((tok = json_tokener_new_ex(JSONANS_DEPTH_MAX)) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

struct json_object *
jsonans_parse(const char *text, size_t len)
{
	struct json_object	*o;
	size_t			 i, n;
	int			 tries = 0;

	if (text == NULL)
		return NULL;
	if (len > JSONANS_TEXT_MAX)
		len = JSONANS_TEXT_MAX;
	for (i = 0; i < len; i++) {
		if (text[i] != '{')
			continue;
		/* Each try may scan to the end: bound the work. */
		if (++tries > JSONANS_TRIES_MAX)
			break;
		if ((n = balanced_len(text + i, len - i)) == 0)
			continue;
		if ((o = parse_exact(text + i, n)) == NULL)
			continue;
		if (json_object_is_type(o, json_type_object))
			return o;
		json_object_put(o);
	}
	return NULL;
}

/* Return the member key of o if it has type t, else NULL. */
static struct json_object *
member(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object *v;

	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
		return NULL;
	return v;
}

/* Return 1 if v is a string of valid UTF-8 with 1..max bytes, no controls. */
static int
good_string(struct json_object *v, size_t max)
{
	const char	*s;
	size_t		 n, i;

	if (v == NULL || !json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0 || n > max || !utf8_valid(s, n))
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t')
			return 0;
	return 1;
}

/* Copy s without leading and trailing ASCII space into buf; return buf. */
static char *
trim(const char *s, char *buf, size_t sz)
{
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= sz)
		n = sz - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

/* Other names models give the routes, after normalise(). */
static const struct {
	const char	*name;
	enum route	 route;
} route_synonyms[] = {
	{ "chat",		ROUTE_TEXT },
	{ "general",		ROUTE_TEXT },
	{ "conversation",	ROUTE_TEXT },
	{ "small_talk",		ROUTE_TEXT },
	{ "smalltalk",		ROUTE_TEXT },
	{ "other",		ROUTE_TEXT },
	{ "patient_record",	ROUTE_PATIENT },
	{ "patient_info",	ROUTE_PATIENT },
	{ "record",		ROUTE_PATIENT },
	{ "search",		ROUTE_WEB },
	{ "web_search",		ROUTE_WEB },
	{ "websearch",		ROUTE_WEB },
	{ "health",		ROUTE_MEDICAL },
	{ "medicine",		ROUTE_MEDICAL },
	{ "ui",			ROUTE_UI_CHANGE },
	{ "uichange",		ROUTE_UI_CHANGE },
	{ "ui_action",		ROUTE_UI_CHANGE },
	{ "navigate",		ROUTE_UI_CHANGE },
	{ "navigation",		ROUTE_UI_CHANGE },
	{ "addtreatment",	ROUTE_ADD_TREATMENT },
	{ "add_medication",	ROUTE_ADD_TREATMENT },
};

/* Lower case, '-' and ' ' made '_', in place. */
static void
normalise(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '-' || *s == ' ')
			*s = '_';
		else
			*s = (char)tolower((unsigned char)*s);
	}
}

/* The route a (trimmed) name stands for, or ROUTE_NONE. */
static enum route
route_named(char *name)
{
	enum route	r;
	size_t		i;

	normalise(name);
	if ((r = route_lookup(name)) != ROUTE_NONE)
		return r;
	for (i = 0; i < sizeof(route_synonyms) / sizeof(route_synonyms[0]); i++)
		if (strcmp(name, route_synonyms[i].name) == 0)
			return route_synonyms[i].route;
	return ROUTE_NONE;
}

enum route
jsonans_route(struct json_object *ans)
{
	struct json_object	*v;
	char			 buf[32];

	if ((v = member(ans, "route", json_type_string)) == NULL ||
	    json_object_get_string_len(v) >= (int)sizeof(buf))
		return ROUTE_NONE;
	trim(json_object_get_string(v), buf, sizeof(buf));
	return route_named(buf);
}

enum route
jsonans_route_text(const char *text, size_t len)
{
	struct json_object	*o;
	enum route		 r;
	char			 buf[32];
	size_t			 a = 0, b = len;

	if (text == NULL)
		return ROUTE_NONE;
	if ((o = jsonans_parse(text, len)) != NULL) {
		r = jsonans_route(o);
		json_object_put(o);
		return r;
	}
	/* One word, perhaps in quotes or backticks, perhaps with a period. */
	while (a < b && strchr(" \t\r\n\"'`*", text[a]) != NULL)
		a++;
	while (b > a && strchr(" \t\r\n\"'`*.", text[b - 1]) != NULL)
		b--;
	if (b - a == 0 || b - a >= sizeof(buf) ||
	    memchr(text + a, ' ', b - a) != NULL)
		return ROUTE_NONE;
	memcpy(buf, text + a, b - a);
	buf[b - a] = '\0';
	return route_named(buf);
}

int
jsonans_precheck(struct json_object *ans, int *remember,
    struct json_object **relevant)
{
	struct json_object	*r, *rel, *e;
	size_t			 i, n;

	*relevant = NULL;
	if ((r = member(ans, "remember", json_type_boolean)) == NULL)
		return -1;
	if (json_object_object_get_ex(ans, "relevant", &rel) && rel != NULL) {
		if (!json_object_is_type(rel, json_type_array))
			return -1;
		*relevant = json_object_new_array();
		n = json_object_array_length(rel);
		for (i = 0; i < n && i < JSONANS_FACTS_MAX; i++) {
			e = json_object_array_get_idx(rel, i);
			if (good_string(e, JSONANS_KEY_MAX))
				json_object_array_add(*relevant,
				    json_object_get(e));
		}
	}
	*remember = json_object_get_boolean(r);
	return 0;
}

/* Return a new string for a fact value, or NULL when it is not one. */
static struct json_object *
fact_value(struct json_object *v)
{
	char buf[64];

	switch (json_object_get_type(v)) {
	case json_type_string:
		return good_string(v, JSONANS_VALUE_MAX) ?
		    json_object_get(v) : NULL;
	case json_type_int:
		snprintf(buf, sizeof(buf), "%lld",
		    (long long)json_object_get_int64(v));
		return json_object_new_string(buf);
	case json_type_double:
		snprintf(buf, sizeof(buf), "%g", json_object_get_double(v));
		return json_object_new_string(buf);
	case json_type_boolean:
		return json_object_new_string(json_object_get_boolean(v) ?
		    "true" : "false");
	default:
		return NULL;
	}
}

/* Return 1 if key is a usable memory key. */
static int
good_key(const char *k)
{
	size_t n = strlen(k);

	return n > 0 && n <= JSONANS_KEY_MAX && utf8_valid(k, n);
}

struct json_object *
jsonans_facts(struct json_object *ans)
{
	struct json_object	*facts, *out, *v;
	int			 n = 0;

	if ((facts = member(ans, "facts", json_type_object)) == NULL)
		return NULL;
	out = json_object_new_object();
	json_object_object_foreach(facts, k, val) {
		if (n >= JSONANS_FACTS_MAX)
			break;
		if (!good_key(k) || (v = fact_value(val)) == NULL)
			continue;
		json_object_object_add(out, k, v);
		n++;
	}
	return out;
}

/* Return 1 if s is a real calendar date YYYY-MM-DD. */
static int
good_date(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	int y, m, d, i, leap;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return 0;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return 0;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1900 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return 0;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && d == 29 && !leap);
}

/* Copy the required string field key of a into out; return 0 or -1. */
static int
copy_field(struct json_object *a, const char *key, struct json_object *out,
    char *why, size_t whysz)
{
	struct json_object	*v;
	char			 buf[JSONANS_FIELD_MAX + 1];

	if (!json_object_object_get_ex(a, key, &v) ||
	    !good_string(v, JSONANS_FIELD_MAX)) {
		snprintf(why, whysz, "action.%s: must be a non-empty string "
		    "of at most %d bytes", key, JSONANS_FIELD_MAX);
		return -1;
	}
	trim(json_object_get_string(v), buf, sizeof(buf));
	if (buf[0] == '\0') {
		snprintf(why, whysz, "action.%s: blank", key);
		return -1;
	}
	json_object_object_add(out, key, json_object_new_string(buf));
	return 0;
}

/* The variants of a UI action: type and required string fields. */
static const struct action_shape {
	const char	*type;
	const char	*fields[4];
} action_shapes[] = {
	{ "add_treatment",	{ "name", "dose", "frequency", NULL } },
	{ "navigate",		{ "target", NULL } },
	{ "show_panel",		{ "panel", NULL } },
};

struct json_object *
jsonans_action(struct json_object *ans, char *why, size_t whysz)
{
	const struct action_shape	*sh = NULL;
	struct json_object		*a, *t, *out, *sd;
	char				 type[32], date[11];
	size_t				 i;

	snprintf(why, whysz, "ok");
	/*
	 * {"action": {…}} as asked; else the action itself, its type under
	 * "type" or, as some models put it, under "action".
	 */
	if ((a = member(ans, "action", json_type_object)) != NULL)
		t = member(a, "type", json_type_string);
	else if ((t = member(ans, "type", json_type_string)) != NULL ||
	    (t = member(ans, "action", json_type_string)) != NULL)
		a = ans;
	else {
		snprintf(why, whysz, "no action object");
		return NULL;
	}
	if (t == NULL) {
		snprintf(why, whysz, "action.type: missing or not a string");
		return NULL;
	}
	if (json_object_get_string_len(t) < (int)sizeof(type)) {
		trim(json_object_get_string(t), type, sizeof(type));
		normalise(type);
		for (i = 0; i < sizeof(action_shapes) / sizeof(action_shapes[0]);
		    i++)
			if (strcmp(type, action_shapes[i].type) == 0)
				sh = &action_shapes[i];
	}
	if (sh == NULL) {
		snprintf(why, whysz, "action.type: unknown");
		return NULL;
	}
	out = json_object_new_object();
	json_object_object_add(out, "type", json_object_new_string(sh->type));
	for (i = 0; sh->fields[i] != NULL; i++)
		if (copy_field(a, sh->fields[i], out, why, whysz) == -1)
			goto bad;
	if (strcmp(sh->type, "add_treatment") == 0) {
		/* "" is "not said"; of a date-time, the date is meant. */
		sd = NULL;
		date[0] = '\0';
		if (!json_object_object_get_ex(a, "start_date", &sd))
			sd = NULL;
		if (json_object_is_type(sd, json_type_string))
			snprintf(date, sizeof(date), "%.10s",
			    json_object_get_string(sd));
		if (sd == NULL || (json_object_is_type(sd, json_type_string) &&
		    json_object_get_string_len(sd) == 0))
			json_object_object_add(out, "start_date", NULL);
		else if (good_date(date) &&
		    (json_object_get_string_len(sd) == 10 ||
		    json_object_get_string(sd)[10] == 'T'))
			json_object_object_add(out, "start_date",
			    json_object_new_string(date));
		else {
			snprintf(why, whysz, "action.start_date: must be "
			    "YYYY-MM-DD or null");
			goto bad;
		}
	}
	return out;
bad:
	json_object_put(out);
	return NULL;
}

struct json_object *
jsonans_merge(struct json_object *memory, struct json_object *facts)
{
	struct json_object	*out = json_object_new_object();
	struct json_object	*src[2] = { memory, facts };
	int			 i, n = 0;

	for (i = 0; i < 2; i++) {
		if (src[i] == NULL ||
		    !json_object_is_type(src[i], json_type_object))
			continue;
		json_object_object_foreach(src[i], k, v) {
			if (!json_object_is_type(v, json_type_string) ||
			    !good_key(k))
				continue;
			if (json_object_object_get_ex(out, k, NULL))
				json_object_object_add(out, k,
				    json_object_get(v));
			else if (n < JSONANS_FACTS_MAX) {
				json_object_object_add(out, k,
				    json_object_get(v));
				n++;
			}
		}
	}
	return out;
}
