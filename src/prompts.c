/*
 * The default prompts. Each JSON prompt ends with its schema line, whose
 * opening ({"route", {"remember", {"facts", {"action") is also the
 * marker the simulator answers to; prompt_build() keeps that true for
 * configured prompts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prompts.h"

static const char *const schemas[LLM_NODE__MAX] = {
	[LLM_NODE_TAGGER] = "{\"route\": \"<one of: text, patient, web, "
	    "medical, ui_change, add_treatment>\"}",
	[LLM_NODE_PRECHECK] = "{\"remember\": true|false, \"relevant\": "
	    "[\"<memory key>\", ...]}",
	[LLM_NODE_UPDATE] = "{\"facts\": {\"<key>\": \"<value>\"}}",
	[LLM_NODE_UI_CHANGE] = "{\"action\": {\"type\": \"add_treatment\"|"
	    "\"navigate\"|\"show_panel\", ...}}",
};

#define JSON_ONLY "Answer with one JSON object and nothing else, in this " \
	"form:\n"

static const char *const defaults[LLM_NODE__MAX] = {
	[LLM_NODE_TAGGER] =
	    "You route messages sent to a health assistant app. Choose "
	    "exactly one route for the user's message:\n"
	    "- patient: the user asks for their own patient record, chart "
	    "or profile\n"
	    "- web: the user asks to search the web, look something up "
	    "online, or for the latest news\n"
	    "- add_treatment: the user asks to add a medication or "
	    "treatment (usually with a dose) to their plan\n"
	    "- ui_change: the user asks to navigate the app, open a page or "
	    "show a panel\n"
	    "- medical: a question about symptoms, conditions, medications, "
	    "tests or health\n"
	    "- text: anything else: conversation, greetings, statements "
	    "about themselves\n"
	    JSON_ONLY
	    "{\"route\": \"<one of: text, patient, web, medical, ui_change, "
	    "add_treatment>\"}",
	[LLM_NODE_PRECHECK] =
	    "You look at the user's message to a health assistant before it "
	    "is answered. Decide whether it states facts about the user "
	    "worth remembering in later conversations (name, age, "
	    "conditions, allergies, medications, preferences, goals), and "
	    "which keys of the stored memory listed below are relevant to "
	    "answering it.\n"
	    JSON_ONLY
	    "{\"remember\": true|false, \"relevant\": [\"<memory key>\", "
	    "...]}",
	[LLM_NODE_POSTPROCESS] =
	    "You are a helpful, friendly health assistant. Answer the "
	    "user's message clearly and briefly in plain text, in the "
	    "user's language. Use what is known about the user when it "
	    "helps. When web search results are given below, base the "
	    "answer on them and cite them by number as [1], [2]; never "
	    "invent sources. Do not diagnose.",
	[LLM_NODE_UPDATE] =
	    "You keep the memory of a health assistant about its user. "
	    "Extract the facts the user states about themselves in their "
	    "message (name, age, conditions, allergies, medications, "
	    "preferences, goals) as short snake_case keys with short string "
	    "values. Use an existing key when it is the same fact. Give "
	    "{} when there are no such facts.\n"
	    JSON_ONLY
	    "{\"facts\": {\"<key>\": \"<value>\"}}",
	[LLM_NODE_MEDICAL] =
	    "You are a careful medical information assistant. Answer the "
	    "user's health question in plain language and briefly, using "
	    "what is known about the user and their patient record when "
	    "given below (conditions, medications, allergies). Give general "
	    "information, not a diagnosis, and mind interactions with the "
	    "user's medications and allergies. End with one short safety "
	    "note: when to see a doctor, and to call emergency services for "
	    "severe or sudden symptoms.",
	[LLM_NODE_UI_CHANGE] =
	    "You turn the user's request into one action for the user "
	    "interface of a health app. The actions are:\n"
	    "- add_treatment: add a medication or treatment; fields name, "
	    "dose, frequency (non-empty strings) and start_date (YYYY-MM-DD, "
	    "or null when not said)\n"
	    "- navigate: go to a page; field target (for example home, "
	    "medications, appointments, settings)\n"
	    "- show_panel: open a panel; field panel (for example vitals, "
	    "medications, allergies)\n"
	    JSON_ONLY
	    "{\"action\": {\"type\": \"add_treatment\"|\"navigate\"|"
	    "\"show_panel\", ...}}",
};

const char *
prompt_default(enum llm_node n)
{
	return n < LLM_NODE__MAX ? defaults[n] : "";
}

const char *
prompt_schema(enum llm_node n)
{
	return n < LLM_NODE__MAX ? schemas[n] : NULL;
}

/* Return the marker of a schema: its text up to the first ':'. */
static size_t
marker_len(const char *schema)
{
	const char *c = strchr(schema, ':');

	return c != NULL ? (size_t)(c - schema) : strlen(schema);
}

char *
prompt_build(const struct conf *conf, enum llm_node n, const char *context)
{
	const char	*base = NULL, *schema = prompt_schema(n);
	char		*out, marker[32];
	int		 add_schema = 0, add_json, len;

	if (conf != NULL && n < LLM_NODE__MAX)
		base = conf->llm.node[n].prompt;
	if (base == NULL || *base == '\0')
		base = prompt_default(n);
	else if (schema != NULL) {
		snprintf(marker, sizeof(marker), "%.*s",
		    (int)marker_len(schema), schema);
		add_schema = strstr(base, marker) == NULL;
	}
	/*
	 * OpenAI refuses response_format json_object (400) unless a
	 * message says "JSON": a configured prompt with its schema marker
	 * but not the word gets a line that says it.
	 */
	add_json = schema != NULL && !add_schema && strcasestr(base, "json") ==
	    NULL;
	len = asprintf(&out, "%s%s%s%s%s%s", base,
	    add_schema ? "\n" JSON_ONLY : "", add_schema ? schema : "",
	    add_json ? "\nAnswer in JSON." : "",
	    context != NULL ? "\n\n# Context\n" : "",
	    context != NULL ? context : "");
	return len == -1 ? NULL : out;
}
