#include <assert.h>
#include <stddef.h>

#include "err.h"

static const struct {
	const char	*code;
	int		 status;
	const char	*message;
} terrs[TERR__MAX] = {
#define X(name, code, status, msg) [TERR_##name] = { code, status, msg },
	TANDEM_ERRORS(X)
#undef X
};

const char *
terr_code(enum terr e)
{
	assert(e < TERR__MAX);
	return terrs[e].code;
}

int
terr_status(enum terr e)
{
	assert(e < TERR__MAX);
	return terrs[e].status;
}

const char *
terr_message(enum terr e)
{
	assert(e < TERR__MAX);
	return terrs[e].message;
}
