/*
 * Validation of POST /api/agent/stream bodies (SPEC.md §3.1). The body
 * is untrusted: size is bounded by the caller, json-c parses with a
 * depth limit, every field is type-checked, strings must be valid UTF-8.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "req.h"
#include "utf8.h"

#define JSON_DEPTH_MAX	32

static const char *const route_names[ROUTE__MAX] = {
	[ROUTE_TEXT] = "text",
	[ROUTE_PATIENT] = "patient",
	[ROUTE_WEB] = "web",
	[ROUTE_MEDICAL] = "medical",
	[ROUTE_UI_CHANGE] = "ui_change",
	[ROUTE_ADD_TREATMENT] = "add_treatment",
};

const char *
route_name(enum route r)
{
	return (r >= 0 && r < ROUTE__MAX) ? route_names[r] : NULL;
}

enum route
route_lookup(const char *s)
{
	int i;

	for (i = 0; i < ROUTE__MAX; i++)
		if (strcmp(s, route_names[i]) == 0)
			return (enum route)i;
	return ROUTE_NONE;
}

static enum terr
bad(char *field, size_t sz, const char *name, enum terr e)
{
	snprintf(field, sz, "%s", name);
	return e;
}

/* Return 1 with *v when root has the member and it is not null. */
static int
member(struct json_object *root, const char *name, struct json_object **v)
{
	return json_object_object_get_ex(root, name, v) &&
	    !json_object_is_type(*v, json_type_null);
}

static int
valid_string(struct json_object *o)
{
	return json_object_is_type(o, json_type_string) &&
	    utf8_valid(json_object_get_string(o),
	    (size_t)json_object_get_string_len(o));
}

/* Trim ASCII and Unicode-agnostic whitespace at both ends; malloc'd copy. */
static char *
trimmed_copy(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	return strndup(s, len);
}

static enum terr
check_message(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object	*m;
	size_t			 n;

	if (!member(root, "message", &m))
		return bad(f, fsz, "message", TERR_MISSING_MESSAGE);
	if (!valid_string(m))
		return bad(f, fsz, "message", TERR_INVALID_FIELD);
	r->message = trimmed_copy(json_object_get_string(m),
	    (size_t)json_object_get_string_len(m));
	if (r->message == NULL)
		return bad(f, fsz, "message", TERR_INTERNAL);
	n = utf8_count(r->message, strlen(r->message));
	if (n == 0)
		return bad(f, fsz, "message", TERR_MISSING_MESSAGE);
	if (n > REQ_MESSAGE_MAX)
		return bad(f, fsz, "message", TERR_INVALID_FIELD);
	return TERR_OK;
}

static enum terr
check_session_id(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object	*s;
	const char		*p;
	size_t			 n, i;

	if (!member(root, "session_id", &s))
		return TERR_OK;
	if (!json_object_is_type(s, json_type_string))
		return bad(f, fsz, "session_id", TERR_INVALID_FIELD);
	p = json_object_get_string(s);
	n = (size_t)json_object_get_string_len(s);
	if (n == 0 || n > REQ_SESSION_ID_MAX)
		return bad(f, fsz, "session_id", TERR_INVALID_FIELD);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '-')
			return bad(f, fsz, "session_id", TERR_INVALID_FIELD);
	memcpy(r->session_id, p, n);
	r->session_id[n] = '\0';
	return TERR_OK;
}

static enum terr
check_history(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object	*h, *item, *role, *content;
	size_t			 i, n;
	const char		*rs;

	if (!member(root, "history", &h))
		return TERR_OK;
	if (!json_object_is_type(h, json_type_array))
		return bad(f, fsz, "history", TERR_INVALID_FIELD);
	n = json_object_array_length(h);
	if (n > REQ_HISTORY_MAX)
		return bad(f, fsz, "history", TERR_INVALID_FIELD);
	for (i = 0; i < n; i++) {
		item = json_object_array_get_idx(h, i);
		if (!json_object_is_type(item, json_type_object) ||
		    !json_object_object_get_ex(item, "role", &role) ||
		    !json_object_object_get_ex(item, "content", &content) ||
		    !json_object_is_type(role, json_type_string) ||
		    !valid_string(content))
			return bad(f, fsz, "history", TERR_INVALID_FIELD);
		rs = json_object_get_string(role);
		/* The length too: json-c strings may hold a NUL. */
		if ((strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0) ||
		    strlen(rs) != (size_t)json_object_get_string_len(role))
			return bad(f, fsz, "history", TERR_INVALID_FIELD);
	}
	r->history = h;
	return TERR_OK;
}

static enum terr
check_memory(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object	*m;
	int			 n = 0;

	if (!member(root, "memory", &m))
		return TERR_OK;
	if (!json_object_is_type(m, json_type_object))
		return bad(f, fsz, "memory", TERR_INVALID_FIELD);
	json_object_object_foreach(m, key, val) {
		if (++n > REQ_MEMORY_MAX || !valid_string(val) ||
		    !utf8_valid(key, strlen(key)))
			return bad(f, fsz, "memory", TERR_INVALID_FIELD);
	}
	r->memory = m;
	return TERR_OK;
}

/* Every member the patient object may carry, and its JSON type. */
static const struct {
	const char	*name;
	json_type	 type;
} patient_fields[] = {
	{ "id", json_type_string },
	{ "name", json_type_string },
	{ "birth_date", json_type_string },
	{ "sex", json_type_string },
	{ "conditions", json_type_array },
	{ "medications", json_type_array },
	{ "allergies", json_type_array },
};

static int
valid_string_array(struct json_object *a)
{
	size_t i, n = json_object_array_length(a);

	if (n > 100)
		return 0;
	for (i = 0; i < n; i++)
		if (!valid_string(json_object_array_get_idx(a, i)))
			return 0;
	return 1;
}

static enum terr
check_patient(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object	*p, *v;
	size_t			 i;

	if (!member(root, "patient", &p))
		return TERR_OK;
	if (!json_object_is_type(p, json_type_object))
		return bad(f, fsz, "patient", TERR_INVALID_FIELD);
	for (i = 0; i < sizeof(patient_fields) / sizeof(patient_fields[0]); i++) {
		if (!json_object_object_get_ex(p, patient_fields[i].name, &v) ||
		    json_object_is_type(v, json_type_null))
			continue;
		if (!json_object_is_type(v, patient_fields[i].type))
			return bad(f, fsz, "patient", TERR_INVALID_FIELD);
		if (patient_fields[i].type == json_type_string ? !valid_string(v) :
		    !valid_string_array(v))
			return bad(f, fsz, "patient", TERR_INVALID_FIELD);
	}
	r->patient = p;
	return TERR_OK;
}

static enum terr
check_flags(struct req *r, struct json_object *root, char *f, size_t fsz)
{
	struct json_object *v;

	r->voice = 1;
	if (member(root, "voice", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return bad(f, fsz, "voice", TERR_INVALID_FIELD);
		r->voice = json_object_get_boolean(v);
	}
	r->route = ROUTE_NONE;
	if (member(root, "route", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    (r->route = route_lookup(json_object_get_string(v))) == ROUTE_NONE)
			return bad(f, fsz, "route", TERR_INVALID_FIELD);
	}
	return TERR_OK;
}

/*
 * RFC 8259 §7: no raw control characters inside strings. json-c lets
 * them through even in strict mode. Return 1 when there are none.
 */
static int
strings_clean(const char *body, size_t len)
{
	size_t	i;
	int	in_string = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];
		if (!in_string) {
			in_string = c == '"';
			continue;
		}
		if (c < 0x20)
			return 0;
		if (c == '\\')
			i++;
		else if (c == '"')
			in_string = 0;
	}
	return 1;
}

/* RFC 8259 has no NaN or Infinity, which json-c accepts. */
static int
numbers_finite(struct json_object *o, int depth)
{
	size_t i, n;

	if (depth > JSON_DEPTH_MAX)
		return 0;
	switch (json_object_get_type(o)) {
	case json_type_double:
		return isfinite(json_object_get_double(o));
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			if (!numbers_finite(json_object_array_get_idx(o, i), depth + 1))
				return 0;
		return 1;
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			(void)k;
			if (!numbers_finite(v, depth + 1))
				return 0;
		}
		return 1;
	}
	default:
		return 1;
	}
}

static struct json_object *
parse_json(const char *body, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*root;

	if (len == 0 || memchr(body, '\0', len) != NULL ||
	    !utf8_valid(body, len) || !strings_clean(body, len))
		return NULL;
	if ((tok = json_tokener_new_ex(JSON_DEPTH_MAX)) == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		/* Allow trailing whitespace only. */
		size_t end = json_tokener_get_parse_end(tok);
		while (root != NULL && end < len && isspace((unsigned char)body[end]))
			end++;
		if (json_tokener_get_error(tok) != json_tokener_success || end != len) {
			json_object_put(root);
			root = NULL;
		}
	}
	json_tokener_free(tok);
	if (root != NULL && !numbers_finite(root, 0)) {
		json_object_put(root);
		root = NULL;
	}
	return root;
}

enum terr
req_parse(struct req *r, const char *body, size_t len, char *field,
    size_t fieldsz)
{
	enum terr e;

	memset(r, 0, sizeof(*r));
	r->route = ROUTE_NONE;
	r->voice = 1;
	field[0] = '\0';
	if ((r->root = parse_json(body, len)) == NULL)
		return TERR_INVALID_JSON;
	if (!json_object_is_type(r->root, json_type_object))
		return TERR_INVALID_JSON;
	if ((e = check_message(r, r->root, field, fieldsz)) != TERR_OK ||
	    (e = check_session_id(r, r->root, field, fieldsz)) != TERR_OK ||
	    (e = check_history(r, r->root, field, fieldsz)) != TERR_OK ||
	    (e = check_memory(r, r->root, field, fieldsz)) != TERR_OK ||
	    (e = check_patient(r, r->root, field, fieldsz)) != TERR_OK ||
	    (e = check_flags(r, r->root, field, fieldsz)) != TERR_OK)
		return e;
	return TERR_OK;
}

void
req_free(struct req *r)
{
	free(r->message);
	json_object_put(r->root);
	memset(r, 0, sizeof(*r));
}
