/*
 * JSON answers of the LLM (SPEC.md §2): the content of a json_mode call
 * is untrusted text that should hold one JSON object, perhaps inside a
 * code fence or prose. Each node's answer has one shape, checked here;
 * whatever passes is rebuilt from the checked values only.
 */
#ifndef TANDEM_JSONANS_H
#define TANDEM_JSONANS_H

#include <stddef.h>

#include <json-c/json.h>

#include "req.h"

#define JSONANS_TEXT_MAX	(256 * 1024)	/* bytes of content looked at */
#define JSONANS_DEPTH_MAX	16
#define JSONANS_KEY_MAX		128		/* bytes of a memory key */
#define JSONANS_VALUE_MAX	1024		/* bytes of a memory value */
#define JSONANS_FIELD_MAX	200		/* bytes of a ui_action field */
#define JSONANS_FACTS_MAX	100		/* entries, as REQ_MEMORY_MAX */

/*
 * Find the first balanced JSON object in text[0..len) that parses, and
 * return it (the caller puts it), or NULL.
 */
struct json_object	*jsonans_parse(const char *text, size_t len);

/*
 * {"route": "<route>"}: return the route, or ROUTE_NONE when invalid.
 * Case, '-' or ' ' for '_' and a few synonyms ("search", "navigation",
 * "general", …) are tolerated.
 */
enum route		 jsonans_route(struct json_object *);
/*
 * The tagger's whole answer text: a JSON route answer, or else one bare
 * route word (perhaps quoted, with a period), as servers without a JSON
 * mode give. Return the route or ROUTE_NONE.
 */
enum route		 jsonans_route_text(const char *text, size_t len);

/*
 * {"remember": bool, "relevant": ["key", …]} (relevant optional): return
 * 0 and set *remember and *relevant (a new array of strings, or NULL
 * when relevant is absent), or -1 when invalid.
 */
int			 jsonans_precheck(struct json_object *, int *remember,
			    struct json_object **relevant);

/*
 * {"facts": {"key": "value", …}}: return a new object of at most
 * JSONANS_FACTS_MAX string facts (numbers and booleans become strings;
 * other values and bad keys are dropped), or NULL when the shape is
 * wrong.
 */
struct json_object	*jsonans_facts(struct json_object *);

/*
 * {"action": {"type": …, …}}: return a new object holding only the
 * checked fields of one SPEC action (add_treatment {name, dose,
 * frequency, start_date|null}, navigate {target}, show_panel {panel}),
 * or NULL with a reason for logs in why. Also taken: the action object
 * unwrapped ({"type": …, …}), "action" naming the type ({"action":
 * "navigate", "target": …}), a type in another case or with '-', and a
 * start_date of "" (null) or a date-time (its date).
 */
struct json_object	*jsonans_action(struct json_object *, char *why,
			    size_t whysz);

/*
 * Merge facts into a copy of memory (new wins), strings only, at most
 * JSONANS_FACTS_MAX entries (memory's first). Either may be NULL.
 * Return a new object.
 */
struct json_object	*jsonans_merge(struct json_object *memory,
			    struct json_object *facts);

#endif
