/*
 * A validated POST /api/agent/stream body (SPEC.md §3.1).
 */
#ifndef TANDEM_REQ_H
#define TANDEM_REQ_H

#include <stddef.h>

#include <json-c/json.h>

#include "err.h"

#define REQ_MESSAGE_MAX		8000	/* characters, after trimming */
#define REQ_HISTORY_MAX		50
#define REQ_MEMORY_MAX		100
#define REQ_SESSION_ID_MAX	64

enum route {
	ROUTE_NONE = -1,
	ROUTE_TEXT,
	ROUTE_PATIENT,
	ROUTE_WEB,
	ROUTE_MEDICAL,
	ROUTE_UI_CHANGE,
	ROUTE_ADD_TREATMENT,
	ROUTE__MAX
};

struct req {
	char			*message;	/* trimmed, valid UTF-8 */
	char			 session_id[REQ_SESSION_ID_MAX + 1];
	struct json_object	*history;	/* array or NULL */
	struct json_object	*memory;	/* object or NULL */
	struct json_object	*patient;	/* object or NULL */
	int			 voice;
	enum route		 route;		/* ROUTE_NONE unless forced */
	struct json_object	*root;		/* owns the above */
};

/*
 * Parse and validate a body. Return TERR_OK and fill req, or an error
 * with the offending field's name in field (may be empty).
 */
enum terr	 req_parse(struct req *, const char *body, size_t len,
		    char *field, size_t fieldsz);
void		 req_free(struct req *);
const char	*route_name(enum route);
enum route	 route_lookup(const char *);

#endif
