/*
 * Unit tests of the CORS decision (src/cors.c, SPEC.md §3.1, §3.3):
 * exact origin match against the cors_origins allowlist.
 */
#include <stdio.h>

#include "cors.h"
#include "tap.h"

static const struct {
	const char	*allow;
	const char	*origin;
	enum cors	 want;
	const char	*name;
} cases[] = {
	/* No Origin header: not a cross-origin request. */
	{ "http://localhost:3000", NULL, CORS_NONE, "no origin" },
	{ "http://localhost:3000", "", CORS_NONE, "empty origin" },
	{ NULL, NULL, CORS_NONE, "no origin, no allowlist" },

	{ "http://localhost:3000", "http://localhost:3000", CORS_ALLOWED,
	    "exact match" },
	{ "http://localhost:3000", "HTTP://LOCALHOST:3000", CORS_ALLOWED,
	    "scheme and host case-insensitive" },
	{ "HTTPS://App.Example.COM", "https://app.example.com", CORS_ALLOWED,
	    "allowlist in upper case" },
	{ "http://localhost:3000", "http://localhost:3001", CORS_DENIED,
	    "port mismatch" },
	{ "http://localhost:3000", "http://localhost", CORS_DENIED,
	    "missing port" },
	{ "http://localhost", "http://localhost:80", CORS_DENIED,
	    "explicit default port is another origin string" },
	{ "http://localhost:3000", "https://localhost:3000", CORS_DENIED,
	    "scheme mismatch" },
	{ "https://localhost:3000", "http://localhost:3000", CORS_DENIED,
	    "https allowlist, http origin" },
	{ "http://localhost:3000/", "http://localhost:3000", CORS_ALLOWED,
	    "trailing slash in the allowlist" },
	{ "http://localhost:3000", "http://localhost:3000/", CORS_DENIED,
	    "trailing slash in the origin" },
	{ "http://127.0.0.1:3000", "http://localhost:3000", CORS_DENIED,
	    "IP versus name" },

	/* Several entries, comma and/or space separated. */
	{ "http://a.example,https://b.example", "https://b.example", CORS_ALLOWED,
	    "second of two, comma" },
	{ "http://a.example, https://b.example", "https://b.example", CORS_ALLOWED,
	    "second of two, comma and space" },
	{ "http://a.example https://b.example", "https://b.example", CORS_ALLOWED,
	    "second of two, space" },
	{ "http://a.example\thttps://b.example", "https://b.example", CORS_ALLOWED,
	    "second of two, tab" },
	{ " ,, http://a.example ,, ", "http://a.example", CORS_ALLOWED,
	    "empty entries skipped" },
	{ "http://a.example, https://b.example/, http://c.example:8080",
	    "http://c.example:8080", CORS_ALLOWED, "third of three" },
	{ "http://a.example, https://b.example/, http://c.example:8080",
	    "https://b.example", CORS_ALLOWED, "slash-terminated middle entry" },
	{ "http://a.example, https://b.example", "http://b.example", CORS_DENIED,
	    "none of two" },

	/* "*" allows anything but the opaque origin "null". */
	{ "*", "http://evil.example", CORS_ALLOWED, "star allows any origin" },
	{ "*", "https://x.example:8443", CORS_ALLOWED, "star allows https with port" },
	{ "http://a.example, *", "http://z.example", CORS_ALLOWED,
	    "star among entries" },
	{ "*", "null", CORS_DENIED, "star does not allow null" },
	{ "http://a.example, *", "null", CORS_DENIED, "star among entries, null" },
	{ "http://localhost:3000", "null", CORS_DENIED, "null origin not listed" },
	{ "**", "http://a.example", CORS_DENIED, "'**' is not a wildcard" },
	{ "*.example.com", "http://a.example.com", CORS_DENIED,
	    "no wildcard subdomains" },

	/* Prefix and suffix tricks. */
	{ "http://localhost:3000", "http://localhost:3000.evil.com", CORS_DENIED,
	    "allowed origin as a prefix of a host" },
	{ "http://localhost:3000", "http://localhost:30000", CORS_DENIED,
	    "port with an extra digit" },
	{ "http://localhost:3000", "http://localhost:300", CORS_DENIED,
	    "port one digit short" },
	{ "http://localhost:3000", "http://localhost:3000@evil.com", CORS_DENIED,
	    "userinfo trick" },
	{ "http://localhost:3000", "http://evil.com/http://localhost:3000",
	    CORS_DENIED, "allowed origin as a suffix" },
	{ "http://localhost:3000", "xhttp://localhost:3000", CORS_DENIED,
	    "allowed origin inside" },
	{ "http://localhost:3000", "http://localhost:3000 ", CORS_DENIED,
	    "trailing space in the origin" },
	{ "http://localhost:3000", "http://localhost:3000,http://evil.com",
	    CORS_DENIED, "origin that is a list" },
	{ "https://example.com", "https://evilexample.com", CORS_DENIED,
	    "allowed host as a suffix of another" },
	{ "http://localhost:3000", "http://localhost:3000\r\nX: y", CORS_DENIED,
	    "header injection in the origin" },

	/* Empty or missing allowlist: every cross-origin request is denied. */
	{ NULL, "http://localhost:3000", CORS_DENIED, "NULL allowlist" },
	{ "", "http://localhost:3000", CORS_DENIED, "empty allowlist" },
	{ " , ", "http://localhost:3000", CORS_DENIED, "separators only" },
	{ "http://a.example/", "http://a.example/", CORS_DENIED,
	    "slash stripped from the entry only" },
};

int
main(void)
{
	size_t		 i;
	enum cors	 got;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		got = cors_check(cases[i].allow, cases[i].origin);
		if (!ok(got == cases[i].want, "%s", cases[i].name))
			printf("#   allow '%s' origin '%s': got %d, want %d\n",
			    cases[i].allow ? cases[i].allow : "(null)",
			    cases[i].origin ? cases[i].origin : "(null)",
			    (int)got, (int)cases[i].want);
	}
	return done();
}
