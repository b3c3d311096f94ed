#ifndef TANDEM_UTF8_H
#define TANDEM_UTF8_H

#include <stddef.h>

/* Return 1 if s[0..len) is valid UTF-8 (no overlongs, no surrogates) with no NUL. */
int	 utf8_valid(const char *s, size_t len);
/* Number of code points in valid UTF-8. */
size_t	 utf8_count(const char *s, size_t len);
/* Largest prefix length <= max that ends on a character boundary. */
size_t	 utf8_cut(const char *s, size_t len, size_t max);

#endif
