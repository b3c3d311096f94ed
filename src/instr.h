/*
 * The instructions the voice path gives Unmute (docs/unmute-protocol.md
 * §3.1, §6): Unmute has no way to inject user text, so the user's
 * message (or the agent's answer to speak) travels inside the constant
 * system prompt of a session.update.
 */
#ifndef TANDEM_INSTR_H
#define TANDEM_INSTR_H

#include <stddef.h>

#include <json-c/json.h>

#define INSTR_MESSAGE_MAX	2000	/* bytes of the user's message kept */
#define INSTR_ANSWER_MAX	4000	/* bytes of an answer to speak */

/*
 * One paragraph of at most max bytes: control characters and line
 * breaks become single spaces, space runs shrink to one, the ends are
 * trimmed, and the cut falls on a UTF-8 boundary. Return a malloc'd
 * string, or NULL on allocation failure.
 */
char	*instr_flatten(const char *s, size_t max);
/*
 * The first session's text: the persona, a blank line, then the user's
 * message flattened into the last paragraph (the sim echoes it). A NULL
 * or empty persona leaves the message alone. Return a malloc'd string.
 */
char	*instr_text(const char *persona, const char *message);
/*
 * The follow-up session's text, which makes Unmute greet with the
 * answer: "Your first message must be exactly: ANSWER. Say nothing
 * else." Return a malloc'd string.
 */
char	*instr_follow_up(const char *answer);
/*
 * The session.update event: instructions {type constant, text,
 * language (null when empty)}, voice (omitted when empty) and
 * allow_recording, always present. The caller owns the result.
 */
struct json_object *instr_session_update(const char *text, const char *voice,
	    const char *language, int allow_recording);
/* Serialize an event for the wire: a malloc'd string, or NULL. */
char	*instr_json(struct json_object *);

#endif
