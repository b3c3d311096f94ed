/*
 * tandem-sim: local stand-ins for tandem's upstreams (SPEC.md §7).
 * Starts the HTTP half (LLM, search, FHIR: sim_http.c) and the Unmute
 * half (sim_unmute.c), prints one ready line and runs until SIGINT or
 * SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct sim_stats sim_stats;

static const struct option sim_longopts[] = {
	{ "host",		required_argument,	NULL, 'H' },
	{ "http-port",		required_argument,	NULL, 'P' },
	{ "unmute-port",	required_argument,	NULL, 'U' },
	{ "max-clients",	required_argument,	NULL, 'm' },
	{ "http-fault",		required_argument,	NULL, 'f' },
	{ "unmute-fault",	required_argument,	NULL, 'F' },
	{ "speed",		required_argument,	NULL, 's' },
	{ "verbose",		no_argument,		NULL, 'v' },
	{ "help",		no_argument,		NULL, 'h' },
	{ NULL,			0,			NULL, 0 }
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tandem-sim [--host addr] [--http-port n] [--unmute-port n]\n"
	    "                  [--max-clients n] [--http-fault name]\n"
	    "                  [--unmute-fault name] [--speed x] [-v] [-h]\n"
	    "\n"
	    "Local stand-ins for tandem's upstreams (a development and test tool):\n"
	    "  --http-port n     OpenAI-compatible LLM (/v1/chat/completions,\n"
	    "                    /v1/models), SearxNG search (/search), FHIR R4\n"
	    "                    (/fhir/Patient/{id}) and /sim/stats; 0: any free port\n"
	    "  --unmute-port n   Unmute realtime websocket; 0: any free port\n"
	    "  A half whose port option is absent is not started.\n"
	    "  --host addr       listen address (default 127.0.0.1)\n"
	    "  --max-clients n   Unmute session limit (default 4)\n"
	    "  --http-fault f    fault for every HTTP request: 500, 429, slow,\n"
	    "                    slow=MS, stall, cut, malformed, shape, crlf,\n"
	    "                    optionally @route|@remember|@facts|@action|@prose|\n"
	    "                    @search|@fhir; a comma separates several\n"
	    "  --unmute-fault f  fault for every Unmute session\n"
	    "  --speed x         Unmute pacing factor (default 1, real time)\n"
	    "  -v                log requests on stderr\n"
	    "Prints \"tandem-sim ready http=ADDR:PORT unmute=ADDR:PORT\" ('-' for a\n"
	    "half that is off) once listening; exits 0 on SIGINT or SIGTERM.\n");
}

/* Parse a port number 0..65535 into *port; return 0 or -1. */
static int
parse_port(const char *s, int *port)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 0 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

int
main(int argc, char *argv[])
{
	struct sim_opts	 o;
	sigset_t	 set;
	char		*end;
	long		 n;
	int		 ch, sig, want_http = 0, want_unmute = 0;

	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.max_clients = 4;
	o.speed = 1.0;

	while ((ch = getopt_long(argc, argv, "vh", sim_longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			o.host = optarg;
			break;
		case 'P':
			if (parse_port(optarg, &o.http_port) == -1) {
				fprintf(stderr, "tandem-sim: bad --http-port: %s\n",
				    optarg);
				return 2;
			}
			want_http = 1;
			break;
		case 'U':
			if (parse_port(optarg, &o.unmute_port) == -1) {
				fprintf(stderr, "tandem-sim: bad --unmute-port: %s\n",
				    optarg);
				return 2;
			}
			want_unmute = 1;
			break;
		case 'm':
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end != '\0' || n < 1 || n > 1024) {
				fprintf(stderr, "tandem-sim: bad --max-clients: %s\n",
				    optarg);
				return 2;
			}
			o.max_clients = (int)n;
			break;
		case 'f':
			o.http_fault = optarg;
			break;
		case 'F':
			o.unmute_fault = optarg;
			break;
		case 's':
			errno = 0;
			o.speed = strtod(optarg, &end);
			if (errno || *end != '\0' || !(o.speed > 0 && o.speed < 1000)) {
				fprintf(stderr, "tandem-sim: bad --speed: %s\n", optarg);
				return 2;
			}
			break;
		case 'v':
			o.verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	/*
	 * A client that goes away must cost an EPIPE, not the process; and
	 * every thread started below inherits the blocked INT/TERM so that
	 * only sigwait() here sees them.
	 */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (want_http && sim_http_start(&o) == -1)
		return 1;
	if (want_unmute && sim_unmute_start(&o) == -1)
		return 1;

	printf("tandem-sim ready http=");
	if (want_http)
		printf("%s:%d", o.host, o.http_port);
	else
		printf("-");
	printf(" unmute=");
	if (want_unmute)
		printf("%s:%d", o.host, o.unmute_port);
	else
		printf("-");
	printf("\n");
	fflush(stdout);

	for (;;) {
		if (sigwait(&set, &sig) == 0 &&
		    (sig == SIGINT || sig == SIGTERM))
			break;
	}
	if (o.verbose)
		fprintf(stderr, "tandem-sim: signal %d, exiting\n", sig);
	return 0;
}
