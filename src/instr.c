/*
 * Building the session.update instructions (see instr.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instr.h"
#include "utf8.h"

/*
 * Unmute opens with the bot's own first message (its LLM sees a "Hello!"
 * from the user) and has no way to inject user text (unmute-protocol.md
 * §6), so the instructions tell it to answer the user in that message.
 * The message itself stays the last paragraph.
 */
#define ANSWER_LEAD	"In your first message, answer the user's message " \
			"below directly and briefly; do not greet first."
#define FOLLOW_UP_HEAD	"Your first message must be exactly: "
#define FOLLOW_UP_TAIL	". Say nothing else."

char *
instr_flatten(const char *s, size_t max)
{
	const unsigned char	*p;
	char			*out;
	size_t			 n = 0, len;
	int			 space = 0;

	if (s == NULL)
		s = "";
	len = strlen(s);
	if ((out = malloc(len + 1)) == NULL)
		return NULL;
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		/* C0 controls, DEL and spaces fold into one space. */
		if (*p <= 0x20 || *p == 0x7f) {
			space = n > 0;
			continue;
		}
		if (space)
			out[n++] = ' ';
		space = 0;
		out[n++] = (char)*p;
	}
	out[n] = '\0';
	if (n > max) {
		n = utf8_cut(out, n, max);
		while (n > 0 && out[n - 1] == ' ')
			n--;
		out[n] = '\0';
	}
	return out;
}

char *
instr_text(const char *persona, const char *message)
{
	char	*msg, *text;
	size_t	 plen;

	if ((msg = instr_flatten(message, INSTR_MESSAGE_MAX)) == NULL)
		return NULL;
	if (persona == NULL)
		persona = "";
	/* Trailing blank lines of the persona must not split paragraphs. */
	plen = strlen(persona);
	while (plen > 0 && (persona[plen - 1] == '\n' ||
	    persona[plen - 1] == '\r' || persona[plen - 1] == ' ' ||
	    persona[plen - 1] == '\t'))
		plen--;
	if (asprintf(&text, "%.*s%s" ANSWER_LEAD "\n\n%s", (int)plen, persona,
	    plen > 0 ? "\n\n" : "", msg) == -1)
		text = NULL;
	free(msg);
	return text;
}

char *
instr_follow_up(const char *answer)
{
	char	*a, *text;

	/* Kept whole, final stop included: it is to be said verbatim. */
	if ((a = instr_flatten(answer, INSTR_ANSWER_MAX)) == NULL)
		return NULL;
	if (asprintf(&text, FOLLOW_UP_HEAD "%s" FOLLOW_UP_TAIL, a) == -1)
		text = NULL;
	free(a);
	return text;
}

struct json_object *
instr_session_update(const char *text, const char *voice,
    const char *language, int allow_recording)
{
	struct json_object	*ev, *sess, *ins;

	ins = json_object_new_object();
	json_object_object_add(ins, "type", json_object_new_string("constant"));
	json_object_object_add(ins, "text",
	    json_object_new_string(text != NULL ? text : ""));
	json_object_object_add(ins, "language",
	    language != NULL && *language != '\0' ?
	    json_object_new_string(language) : NULL);
	sess = json_object_new_object();
	json_object_object_add(sess, "instructions", ins);
	if (voice != NULL && *voice != '\0')
		json_object_object_add(sess, "voice",
		    json_object_new_string(voice));
	json_object_object_add(sess, "allow_recording",
	    json_object_new_boolean(allow_recording));
	ev = json_object_new_object();
	json_object_object_add(ev, "type",
	    json_object_new_string("session.update"));
	json_object_object_add(ev, "session", sess);
	return ev;
}

char *
instr_json(struct json_object *o)
{
	const char	*s;

	s = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return s != NULL ? strdup(s) : NULL;
}
