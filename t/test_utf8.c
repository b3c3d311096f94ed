/*
 * Unit tests of the UTF-8 helpers (src/utf8.c): validation per Unicode
 * table 3-7 (no overlongs, no surrogates, nothing past U+10FFFF, no
 * NUL), code point counting, and cutting on a character boundary.
 */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "utf8.h"

static const struct {
	const char	*s;
	int		 valid;
	const char	*name;
} seqs[] = {
	{ "", 1, "empty" },
	{ "hello", 1, "ASCII" },
	{ "\x7f", 1, "U+007F" },
	{ "\xc2\x80", 1, "U+0080" },
	{ "\xdf\xbf", 1, "U+07FF" },
	{ "\xe0\xa0\x80", 1, "U+0800" },
	{ "\xed\x9f\xbf", 1, "U+D7FF" },
	{ "\xee\x80\x80", 1, "U+E000" },
	{ "\xef\xbf\xbd", 1, "U+FFFD" },
	{ "\xef\xbf\xbf", 1, "U+FFFF" },
	{ "\xf0\x90\x80\x80", 1, "U+10000" },
	{ "\xf4\x8f\xbf\xbf", 1, "U+10FFFF" },
	{ "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 1, "mixed" },

	{ "\x80", 0, "lone continuation byte" },
	{ "\xbf", 0, "lone continuation byte BF" },
	{ "\xc0\x80", 0, "overlong NUL (C0 80)" },
	{ "\xc1\xbf", 0, "overlong C1 BF" },
	{ "\xe0\x80\xaf", 0, "overlong 3-byte" },
	{ "\xe0\x9f\xbf", 0, "overlong 3-byte, top" },
	{ "\xf0\x80\x80\xaf", 0, "overlong 4-byte" },
	{ "\xf0\x8f\xbf\xbf", 0, "overlong 4-byte, top" },
	{ "\xed\xa0\x80", 0, "surrogate U+D800" },
	{ "\xed\xbf\xbf", 0, "surrogate U+DFFF" },
	{ "\xed\xa0\xbd\xed\xb8\x80", 0, "CESU-8 surrogate pair" },
	{ "\xf4\x90\x80\x80", 0, "U+110000" },
	{ "\xf5\x80\x80\x80", 0, "lead byte F5" },
	{ "\xf8\x88\x80\x80\x80", 0, "5-byte sequence" },
	{ "\xfe", 0, "byte FE" },
	{ "\xff", 0, "byte FF" },
	{ "\xc3", 0, "truncated 2-byte" },
	{ "\xe6\x97", 0, "truncated 3-byte" },
	{ "\xf0\x9f\x98", 0, "truncated 4-byte" },
	{ "\xc3\x41", 0, "2-byte with ASCII second byte" },
	{ "\xe6\x97\x41", 0, "3-byte with ASCII third byte" },
	{ "\xf0\x9f\x98\x41", 0, "4-byte with ASCII fourth byte" },
	{ "\xe6\xc3\xa9", 0, "lead byte as second byte" },
	{ "ok\xc3\xa9\xa9", 0, "extra continuation byte" },
};

static void
test_valid(void)
{
	size_t i;

	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++)
		is_int(utf8_valid(seqs[i].s, strlen(seqs[i].s)), seqs[i].valid,
		    seqs[i].name);
	is_int(utf8_valid("a\0b", 3), 0, "NUL refused");
	is_int(utf8_valid("\0", 1), 0, "lone NUL refused");
	is_int(utf8_valid("ab\xff", 2), 1, "only len bytes are looked at");
	is_int(utf8_valid("\xc3\xa9", 1), 0, "sequence cut by len");
	is_int(utf8_valid(NULL, 0), 1, "NULL with length 0");
}

static void
test_count(void)
{
	is_int(utf8_count("", 0), 0, "count of empty");
	is_int(utf8_count("hello", 5), 5, "count ASCII");
	is_int(utf8_count("caf\xc3\xa9", 5), 4, "count with a 2-byte char");
	is_int(utf8_count("\xe6\x97\xa5\xe6\x9c\xac", 6), 2, "count 3-byte chars");
	is_int(utf8_count("\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8), 2,
	    "count 4-byte chars");
	is_int(utf8_count("a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80z", 11), 5,
	    "count mixed");
	is_int(utf8_count("caf\xc3\xa9", 4), 4, "count of a cut prefix");
}

static void
test_cut(void)
{
	static const char s[] = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80z";	/* 11 bytes */
	static const size_t want[12] = {
		/* max: 0  1  2  3  4  5  6  7  8  9  10 11 */
		0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11
	};
	char	name[64];
	size_t	max;

	for (max = 0; max <= 11; max++) {
		snprintf(name, sizeof(name), "cut at %zu -> %zu", max, want[max]);
		is_int(utf8_cut(s, 11, max), want[max], name);
	}
	is_int(utf8_cut(s, 11, 100), 11, "max beyond len");
	is_int(utf8_cut("abc", 3, 2), 2, "ASCII cut");
	for (max = 0; max <= 11; max++)
		if (!utf8_valid(s, utf8_cut(s, 11, max)))
			break;
	ok(max == 12, "every cut prefix is valid UTF-8");
}

int
main(void)
{
	test_valid();
	test_count();
	test_cut();
	return done();
}
