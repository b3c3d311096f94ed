/*
 * Keyword routing, the tagger's fallback. The rules are data: the first
 * rule with a matching keyword wins, in the order the prototype's tagger
 * prompt listed its routes (patient, web, add_treatment, ui_change,
 * medical; text otherwise). A keyword matches at the start of a word;
 * one ending in '*' may be followed by more letters ("symptom*" matches
 * "symptoms"), others must end at a word boundary.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fallback.h"

#define FALLBACK_SCAN_MAX	(64 * 1024)	/* bytes of message looked at */

static const char *const kw_patient[] = {
	"patient*", "my record*", "my chart", "my file", "medical record*",
	"health record*", "my profile", NULL
};
static const char *const kw_web[] = {
	"search*", "web", "website*", "latest", "news", "look up", "lookup", "google*",
	"online", "internet", NULL
};
static const char *const kw_ui[] = {
	"navigate*", "go to", "open the", "switch to", "take me to", "panel*",
	"tab", "dashboard", NULL
};
static const char *const kw_medical[] = {
	"symptom*", "pain", "pains", "painful", "fever*", "headache*", "medication*", "medicine*",
	"diabet*", "dose", "dosage", "blood pressure", "cough*", "nause*",
	"dizz*", "rash*", "infection*", "allerg*", "insulin", "asthma",
	"vomit*", "diarrh*", "ache*", "sick", "ill", "hurt*", "injur*",
	"side effect*", "treatment*", "diagnos*", "prescri*", "cholesterol",
	"migraine*", "flu", "covid*", NULL
};
static const char *const kw_add[] = { "add", "prescribe", "start", NULL };
static const char *const kw_units[] = {
	"mg", "mcg", "g", "ml", "iu", "unit*", "tablet*", "pill*", "capsule*",
	"puff*", "drop*", NULL
};

static int
is_word(unsigned char c)
{
	return isalnum(c) || c >= 0x80;
}

/*
 * Return 1 when kw matches s at position i (s is lower-cased); word_start:
 * the match must also begin a word.
 */
static int
match_at(const char *s, size_t i, const char *kw, int word_start)
{
	size_t	n = strlen(kw);
	int	prefix = n > 0 && kw[n - 1] == '*';

	if (prefix)
		n--;
	if (word_start && i > 0 && is_word((unsigned char)s[i - 1]))
		return 0;
	if (strncmp(s + i, kw, n) != 0)
		return 0;
	return prefix || !is_word((unsigned char)s[i + n]);
}

/* Return the offset just past the first match of any keyword, or 0. */
static size_t
find_any(const char *s, size_t from, const char *const *kws)
{
	size_t	i;
	int	k;

	for (i = from; s[i] != '\0'; i++)
		for (k = 0; kws[k] != NULL; k++)
			if (match_at(s, i, kws[k], 1))
				return i + 1;
	return 0;
}

/*
 * "add metformin 500 mg", "prescribe 2 tablets of ...": a verb of adding
 * followed by a number and a unit of dose.
 */
static int
is_add_treatment(const char *s)
{
	size_t	i, at;
	int	k;

	if (find_any(s, 0, (const char *const []){ "add treatment*",
	    "add medication*", "add a treatment*", "add a medication*",
	    NULL }))
		return 1;
	if ((at = find_any(s, 0, kw_add)) == 0)
		return 0;
	for (i = at; s[i] != '\0'; i++) {
		if (!isdigit((unsigned char)s[i]) ||
		    (i > 0 && is_word((unsigned char)s[i - 1])))
			continue;
		while (isdigit((unsigned char)s[i]) || s[i] == '.' ||
		    s[i] == ',')
			i++;
		while (s[i] == ' ')
			i++;
		/* The unit may stick to the number: "500mg". */
		for (k = 0; kw_units[k] != NULL; k++)
			if (match_at(s, i, kw_units[k], 0))
				return 1;
		if (s[i] == '\0')
			break;
	}
	return 0;
}

enum route
fallback_route(const char *message)
{
	char		*s;
	size_t		 i, n;
	enum route	 r = ROUTE_TEXT;

	if (message == NULL || *message == '\0')
		return ROUTE_TEXT;
	n = strnlen(message, FALLBACK_SCAN_MAX);
	if ((s = malloc(n + 1)) == NULL)
		return ROUTE_TEXT;
	for (i = 0; i < n; i++)
		s[i] = (char)((unsigned char)message[i] < 0x80 ?
		    tolower((unsigned char)message[i]) : message[i]);
	s[n] = '\0';

	if (find_any(s, 0, kw_patient))
		r = ROUTE_PATIENT;
	else if (find_any(s, 0, kw_web))
		r = ROUTE_WEB;
	else if (is_add_treatment(s))
		r = ROUTE_ADD_TREATMENT;
	else if (find_any(s, 0, kw_ui) || (find_any(s, 0,
	    (const char *const []){ "show", NULL }) &&
	    find_any(s, 0, (const char *const []){ "panel*", "page", NULL })))
		r = ROUTE_UI_CHANGE;
	else if (find_any(s, 0, kw_medical))
		r = ROUTE_MEDICAL;
	free(s);
	return r;
}
