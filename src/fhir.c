/*
 * Patient records. Both sources are untrusted: every field is checked
 * and bounded, and the result has the same shape whichever source it
 * came from.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "fhir.h"
#include "nodes.h"
#include "utf8.h"

#define FHIR_DEPTH_MAX	32

static const char *const list_fields[] = {
	"conditions", "medications", "allergies", NULL
};

int
fhir_valid_id(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++)
		if (i >= FHIR_ID_MAX || !(isalnum((unsigned char)id[i]) ||
		    id[i] == '-' || id[i] == '.'))
			return 0;
	return i > 0;
}

/* A bounded string from v, or NULL when v is no usable text. */
static struct json_object *
text_of(struct json_object *v)
{
	const char	*s;
	size_t		 n;

	if (v == NULL)
		return NULL;
	if (json_object_is_type(v, json_type_int))
		return json_object_new_string(json_object_get_string(v));
	if (!json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0 || !utf8_valid(s, n))
		return NULL;
	return json_object_new_string_len(s,
	    (int)utf8_cut(s, n, PATIENT_FIELD_MAX));
}

/* The member key of o as bounded text, or NULL. */
static struct json_object *
text_member(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return text_of(v);
}

/*
 * A list of strings from v: strings as they are, objects by their
 * "name", "text" or "display". Always a new array.
 */
static struct json_object *
list_of(struct json_object *v)
{
	struct json_object	*out = json_object_new_array(), *e, *t;
	static const char *const keys[] = { "name", "text", "display", NULL };
	size_t			 i, n;
	int			 k;

	if (v == NULL || !json_object_is_type(v, json_type_array))
		return out;
	n = json_object_array_length(v);
	for (i = 0; i < n && json_object_array_length(out) < PATIENT_LIST_MAX;
	    i++) {
		e = json_object_array_get_idx(v, i);
		t = NULL;
		if (json_object_is_type(e, json_type_object)) {
			for (k = 0; keys[k] != NULL && t == NULL; k++)
				t = text_member(e, keys[k]);
		} else
			t = text_of(e);
		if (t != NULL)
			json_object_array_add(out, t);
	}
	return out;
}

int
patient_has_details(struct json_object *p)
{
	if (p == NULL || !json_object_is_type(p, json_type_object))
		return 0;
	json_object_object_foreach(p, k, v) {
		if (strcmp(k, "id") != 0 && v != NULL)
			return 1;
	}
	return 0;
}

struct json_object *
patient_normalise(struct json_object *p)
{
	static const char *const scalars[] = {
		"id", "name", "birth_date", "sex", NULL
	};
	struct json_object	*out = json_object_new_object(), *v;
	int			 i;

	for (i = 0; scalars[i] != NULL; i++)
		json_object_object_add(out, scalars[i],
		    text_member(p, scalars[i]));
	for (i = 0; list_fields[i] != NULL; i++) {
		v = NULL;
		json_object_object_get_ex(p, list_fields[i], &v);
		json_object_object_add(out, list_fields[i], list_of(v));
	}
	return out;
}

/* "given… family" of a HumanName, or its text; NULL when neither. */
static struct json_object *
human_name(struct json_object *name)
{
	struct json_object	*given, *family, *t;
	/* Room past the bound, so that utf8_cut() has a whole text to cut. */
	char			 buf[4 * PATIENT_FIELD_MAX + 1];
	size_t			 i, n, len = 0;

	buf[0] = '\0';
	if (json_object_object_get_ex(name, "given", &given) &&
	    json_object_is_type(given, json_type_array)) {
		n = json_object_array_length(given);
		for (i = 0; i < n; i++)
			if ((t = text_of(json_object_array_get_idx(given,
			    i))) != NULL) {
				len += snprintf(buf + len, sizeof(buf) - len,
				    "%s%s", len ? " " : "",
				    json_object_get_string(t));
				json_object_put(t);
				if (len >= sizeof(buf))
					len = sizeof(buf) - 1;
			}
	}
	if ((family = text_member(name, "family")) != NULL) {
		snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? " " : "",
		    json_object_get_string(family));
		json_object_put(family);
	}
	if (buf[0] == '\0')
		return text_member(name, "text");
	n = strlen(buf);
	return json_object_new_string_len(buf,
	    (int)utf8_cut(buf, n, PATIENT_FIELD_MAX));
}

/*
 * The HumanName to show of a Patient's name list: the first official,
 * else the first usual, else the first one not marked old, nickname,
 * anonymous or maiden, else the first. NULL when the list is empty.
 */
static struct json_object *
pick_name(struct json_object *names)
{
	static const char *const prefer[] = { "official", "usual" };
	static const char *const avoid[] = {
		"old", "nickname", "anonymous", "maiden"
	};
	struct json_object	*nm, *use;
	size_t			 i, k, n = json_object_array_length(names);
	const char		*u;
	int			 pass;

	for (pass = 0; pass < 3; pass++)
		for (i = 0; i < n; i++) {
			nm = json_object_array_get_idx(names, i);
			u = json_object_object_get_ex(nm, "use", &use) &&
			    json_object_is_type(use, json_type_string) ?
			    json_object_get_string(use) : "";
			if (pass < 2 && strcmp(u, prefer[pass]) == 0)
				return nm;
			if (pass == 2) {
				for (k = 0; k < 4 && strcmp(u, avoid[k]) != 0;
				    k++)
					continue;
				if (k == 4)
					return nm;
			}
		}
	return n > 0 ? json_object_array_get_idx(names, 0) : NULL;
}

struct json_object *
fhir_map_patient(struct json_object *res)
{
	struct json_object	*out, *names, *rt;
	int			 i;

	if (res == NULL || !json_object_is_type(res, json_type_object) ||
	    !json_object_object_get_ex(res, "resourceType", &rt) ||
	    !json_object_is_type(rt, json_type_string) ||
	    strcmp(json_object_get_string(rt), "Patient") != 0)
		return NULL;
	out = json_object_new_object();
	json_object_object_add(out, "id", text_member(res, "id"));
	if (json_object_object_get_ex(res, "name", &names) &&
	    json_object_is_type(names, json_type_array) &&
	    json_object_array_length(names) > 0)
		json_object_object_add(out, "name",
		    human_name(pick_name(names)));
	else
		json_object_object_add(out, "name", NULL);
	json_object_object_add(out, "birth_date", text_member(res, "birthDate"));
	json_object_object_add(out, "sex", text_member(res, "gender"));
	/* A Patient resource holds none of these; other resources do. */
	for (i = 0; list_fields[i] != NULL; i++)
		json_object_object_add(out, list_fields[i],
		    json_object_new_array());
	return out;
}

enum terr
fhir_patient(const struct conf *conf, const char *id, const atomic_int *stop,
    struct json_object **patient, char *msg, size_t msgsz)
{
	struct upstream_reply	 r;
	struct json_tokener	*tok;
	struct json_object	*res = NULL;
	enum terr		 err;
	char			*url;
	size_t			 blen;

	*patient = NULL;
	blen = strlen(conf->fhir.base_url);
	while (blen > 0 && conf->fhir.base_url[blen - 1] == '/')
		blen--;
	if ((url = upstream_url(conf->fhir.base_url, blen, "/Patient/", id,
	    "")) == NULL) {
		snprintf(msg, msgsz, "patient service: out of memory");
		return TERR_INTERNAL;
	}
	err = upstream_get(url, "application/fhir+json", conf->fhir.timeout_ms,
	    FHIR_BODY_MAX, stop, &r, "patient service", msg, msgsz);
	free(url);
	if (err != TERR_OK)
		return err;
	if (r.status == 404 || r.status == 410)
		goto out;
	if (r.status < 200 || r.status > 299) {
		err = TERR_UPSTREAM_HTTP;
		goto out;
	}
	if ((tok = json_tokener_new_ex(FHIR_DEPTH_MAX)) != NULL) {
		res = json_tokener_parse_ex(tok, r.body ? r.body : "",
		    (int)r.len);
		json_tokener_free(tok);
	}
	if ((*patient = fhir_map_patient(res)) == NULL) {
		err = TERR_UPSTREAM_MALFORMED;
		snprintf(msg, msgsz, "patient service: not a Patient resource");
	} else if (json_object_object_get(*patient, "id") == NULL)
		/* A resource without its id is still the one asked for. */
		json_object_object_add(*patient, "id",
		    json_object_new_string(id));
	json_object_put(res);
out:
	upstream_reply_free(&r);
	return err;
}
