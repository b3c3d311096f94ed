/*
 * Real-time pacing of the silence stream (docs/unmute-protocol.md §2,
 * §5.1): Unmute's clock is the audio it receives, so audio goes out at
 * the pace of the wall clock, a little ahead of it, in whole appends, and
 * a stall is never made up for with a burst (which would run the
 * server's turn clock ahead of real time).
 */
#ifndef TANDEM_PACE_H
#define TANDEM_PACE_H

struct pace {
	long long	t0;	/* wall time (ms) of sent audio time 0 */
	long		sent_ms;/* audio sent so far */
};

/* (Re)start the clock at now, keeping what was sent. */
static inline void
pace_start(struct pace *p, long long now)
{
	p->t0 = now - p->sent_ms;
}

/* Return 1 when another append is due at now (lead_ms ahead at most). */
static inline int
pace_due(const struct pace *p, long long now, int lead_ms)
{
	return p->sent_ms < now - p->t0 + lead_ms;
}

static inline void
pace_sent(struct pace *p, int ms)
{
	p->sent_ms += ms;
}

/* After a stall, move the clock instead of catching up in a burst. */
static inline void
pace_no_burst(struct pace *p, long long now)
{
	if (p->sent_ms < now - p->t0)
		p->t0 = now - p->sent_ms;
}

#endif
