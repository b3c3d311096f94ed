/*
 * CORS decisions (SPEC.md §3.1, §3.3) against the comma-separated
 * cors_origins allowlist ("*" allows any origin).
 */
#ifndef TANDEM_CORS_H
#define TANDEM_CORS_H

enum cors {
	CORS_NONE,	/* no Origin header: not a cross-origin request */
	CORS_ALLOWED,
	CORS_DENIED
};

enum cors	 cors_check(const char *allowlist, const char *origin);

#endif
