/*
 * tandem-sim: local stand-ins for the LLM, search, FHIR (sim_http.c) and
 * Unmute (sim_unmute.c), SPEC.md §7. A development and test tool.
 */
#ifndef TANDEM_SIM_H
#define TANDEM_SIM_H

#include <stdatomic.h>

struct sim_opts {
	const char	*host;		/* listen address, default 127.0.0.1 */
	/*
	 * Ports: sim_main.c starts a half only when its --*-port option is
	 * given; 0 then means an ephemeral port, written back on start.
	 */
	int		 http_port;	/* LLM + search + FHIR */
	int		 unmute_port;	/* Unmute websocket + /v1/health, /v1/voices */
	int		 max_clients;	/* Unmute MAX_CLIENTS, default 4 */
	const char	*http_fault;	/* fault for every HTTP request, or NULL */
	const char	*unmute_fault;	/* fault for every Unmute session, or NULL */
	double		 speed;		/* Unmute wall-clock pacing factor, 1 = real time */
	int		 verbose;
};

/* Counters shared by both halves, served at GET /sim/stats by sim_http.c. */
struct sim_stats {
	atomic_int	 llm_open;	/* open /v1/chat/completions connections */
	atomic_long	 llm_requests;
	atomic_int	 http_open;	/* all open HTTP connections */
	atomic_int	 unmute_open;	/* open websocket sessions */
	atomic_int	 unmute_waiting;/* handshakes held for want of a slot */
	atomic_long	 unmute_sessions;
};

extern struct sim_stats sim_stats;

/*
 * Each binds (port 0: an ephemeral port, written back into opts), starts
 * its own thread(s) and returns 0, or -1 with a message on stderr.
 */
int	 sim_http_start(struct sim_opts *);
int	 sim_unmute_start(struct sim_opts *);

#endif
