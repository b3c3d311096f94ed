#include <string.h>
#include <strings.h>

#include "cors.h"

/*
 * Origins compare exactly (scheme, host and port), except that the
 * scheme and host are case-insensitive (RFC 6454 §4 serialises them in
 * lower case; browsers send them so).
 */
static int
origin_equal(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

enum cors
cors_check(const char *allowlist, const char *origin)
{
	const char	*p, *end;
	size_t		 n;

	if (origin == NULL || *origin == '\0')
		return CORS_NONE;
	if (allowlist == NULL)
		return CORS_DENIED;
	/* "null" (sandboxed or file origins) is never trusted by "*". */
	for (p = allowlist; *p != '\0'; p = end) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		end = p + strcspn(p, ", \t");
		n = (size_t)(end - p);
		if (n == 0)
			continue;
		if (n == 1 && *p == '*' && strcmp(origin, "null") != 0)
			return CORS_ALLOWED;
		/* Allowlist entries may carry a trailing slash by mistake. */
		if (n > 1 && p[n - 1] == '/')
			n--;
		if (origin_equal(p, n, origin))
			return CORS_ALLOWED;
	}
	return CORS_DENIED;
}
