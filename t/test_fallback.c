/*
 * The tagger's keyword fallback: a table of messages and their routes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fallback.h"
#include "tap.h"

static const struct {
	const char	*msg;
	enum route	 want;
} cases[] = {
	/* each route */
	{ "Show me my patient record", ROUTE_PATIENT },
	{ "what's in my record?", ROUTE_PATIENT },
	{ "Search the web for flu vaccine news", ROUTE_WEB },
	{ "latest guidance on statins", ROUTE_WEB },
	{ "can you look up ibuprofen interactions", ROUTE_WEB },
	{ "add metformin 500 mg twice daily", ROUTE_ADD_TREATMENT },
	{ "Add lisinopril 10mg once a day", ROUTE_ADD_TREATMENT },
	{ "please add a treatment for me", ROUTE_ADD_TREATMENT },
	{ "navigate to settings", ROUTE_UI_CHANGE },
	{ "go to the medications tab", ROUTE_UI_CHANGE },
	{ "show the vitals panel", ROUTE_UI_CHANGE },
	{ "I have a headache and a fever", ROUTE_MEDICAL },
	{ "What are the symptoms of diabetes?", ROUTE_MEDICAL },
	{ "chest pain when running", ROUTE_MEDICAL },
	{ "which medication helps with cough", ROUTE_MEDICAL },
	{ "hello, my name is Ada", ROUTE_TEXT },
	{ "thanks!", ROUTE_TEXT },
	/* case-insensitive */
	{ "HEADACHE", ROUTE_MEDICAL },
	{ "SeArCh for something", ROUTE_WEB },
	{ "ADD ASPIRIN 81 MG", ROUTE_ADD_TREATMENT },
	/* word starts, not substrings */
	{ "I love painting in Spain", ROUTE_TEXT },
	{ "the cobweb in the corner", ROUTE_TEXT },
	{ "addition is hard: 5 mg", ROUTE_TEXT },
	/* an add without a dose is not a treatment */
	{ "add me to the list", ROUTE_TEXT },
	/* priority: patient before medical */
	{ "patient has a fever", ROUTE_PATIENT },
	/* non-ASCII */
	{ "Ich habe Kopfschmerzen \xC3\xBC\xC3\xA4\xC3\xB6", ROUTE_TEXT },
	{ "\xE5\xA4\xB4\xE7\x97\x9B headache \xE2\x9C\x93", ROUTE_MEDICAL },
	{ "\xC3\x9C" "bersicht: pain", ROUTE_MEDICAL },
	{ "na\xC3\xAFve search", ROUTE_WEB },
	/* a non-ASCII byte before a keyword does not start a word */
	{ "\xC3\xA9" "pain", ROUTE_TEXT },
	/* empty */
	{ "", ROUTE_TEXT },
	{ "   ", ROUTE_TEXT },
};

int
main(void)
{
	size_t	i;
	char	*big;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum route got = fallback_route(cases[i].msg);

		if (!ok(got == cases[i].want, "'%s' -> %s", cases[i].msg,
		    route_name(cases[i].want)))
			printf("#   got %s\n", route_name(got));
	}
	is_int(fallback_route(NULL), ROUTE_TEXT, "NULL -> text");

	/* A long message: still answers, keyword found past the start. */
	big = malloc(40000);
	memset(big, 'a', 39990);
	memcpy(big + 39990, " fever\0", 7);
	big[20000] = ' ';
	is_int(fallback_route(big), ROUTE_MEDICAL, "keyword after 40 KB");
	free(big);
	return done();
}
