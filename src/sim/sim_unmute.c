/* Stub: replaced by the real Unmute stand-in shortly. */
#include "sim.h"

int
sim_unmute_start(struct sim_opts *o)
{
	(void)o;
	return -1;
}
