/*
 * The silence stream's timing (src/pace.h), driven by a simulated clock
 * with the voice thread's tick (20 ms), append (40 ms) and lead (40 ms).
 */
#include "pace.h"
#include "tap.h"

#define TICK	20
#define APPEND	40
#define LEAD	40

/* One tick: send every due append unless the socket is stalled. */
static int
tick(struct pace *p, long long now, int stalled)
{
	int n = 0;

	while (!stalled && pace_due(p, now, LEAD)) {
		pace_sent(p, APPEND);
		n++;
	}
	pace_no_burst(p, now);
	return n;
}

int
main(void)
{
	struct pace	p = { 0, 0 };
	long long	now = 1000000, start = now;
	long		max_ahead = 0, min_ahead = 1 << 30, ahead;
	int		max_burst = 0, n, i;

	pace_start(&p, now);
	for (i = 0; i < 500; i++, now += TICK) {	/* 10 s */
		n = tick(&p, now, 0);
		if (n > max_burst)
			max_burst = n;
		ahead = p.sent_ms - (long)(now - start);
		if (ahead > max_ahead)
			max_ahead = ahead;
		if (i > 0 && ahead < min_ahead)
			min_ahead = ahead;
	}
	ok(p.sent_ms >= 10000 && p.sent_ms <= 10000 + LEAD + APPEND,
	    "10 s of wall time sends 10 s of audio plus the lead (%ld ms)",
	    p.sent_ms);
	ok(max_ahead <= LEAD + APPEND, "never more than lead + one append "
	    "ahead of real time (%ld ms)", max_ahead);
	ok(min_ahead >= 0, "never behind real time (%ld ms)", min_ahead);
	ok(max_burst <= 2, "at most two appends in one tick (%d)", max_burst);

	/* A 500 ms stall of the socket: no burst afterwards. */
	for (i = 0; i < 25; i++, now += TICK)
		tick(&p, now, 1);
	n = tick(&p, now, 0);
	ok(n <= 2, "after a 500 ms stall, no catch-up burst (%d appends)", n);
	ahead = p.sent_ms - (long)(now - p.t0);
	ok(ahead >= 0 && ahead <= LEAD + APPEND, "the clock moved on: %ld ms "
	    "ahead of the new real time", ahead);

	/* Over a long session the audio clock does not drift. */
	pace_start(&p, now);
	start = now - p.sent_ms;
	for (i = 0; i < 30000; i++, now += TICK)	/* 10 minutes */
		tick(&p, now, 0);
	ahead = p.sent_ms - (long)(now - start);
	ok(ahead >= 0 && ahead <= LEAD + APPEND, "no drift after 10 minutes "
	    "(%ld ms ahead)", ahead);

	/* A coarse tick (the thread was late): appends stay 40 ms each. */
	now += 300;
	n = tick(&p, now, 0);
	ok(n >= 7 && n <= 9, "a 300 ms late tick sends the 300 ms due (%d "
	    "appends of %d ms)", n, APPEND);
	return done();
}
