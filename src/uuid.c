#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "uuid.h"

void
uuid_v4(char out[37])
{
	uint8_t	b[16];
	size_t	i;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* Entropy pool unavailable: ids only need to be unique. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		for (i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)((ts.tv_nsec >> (i % 8)) ^ getpid() ^ (i * 131));
	}
	b[6] = (b[6] & 0x0F) | 0x40;
	b[8] = (b[8] & 0x3F) | 0x80;
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
	    b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
