/*
 * The pool status page (SPEC.md §3.3), after php-fpm's: a snapshot of
 * the scoreboard rendered as JSON (default) or Prometheus text.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "scoreboard.h"
#include "sse.h"
#include "status.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

static const char *const pm_names[] = { "static", "dynamic", "ondemand" };

struct snapshot {
	long long	 start_time, accepted, streams, rejected, errors, slow;
	long long	 disconnects, unmute_busy;
	int		 active, peak, procs, idle_procs, respawns;
	int		 unmute[CONF_MAX_UNMUTE_URLS];
};

static void
take_snapshot(const struct conf *c, struct snapshot *s)
{
	int i;

	memset(s, 0, sizeof(*s));
	if (sb == NULL)
		return;
	s->start_time = sb->start_time;
	s->accepted = atomic_load(&sb->accepted);
	s->streams = atomic_load(&sb->streams);
	s->rejected = atomic_load(&sb->rejected);
	s->errors = atomic_load(&sb->errors);
	s->slow = atomic_load(&sb->slow);
	s->disconnects = atomic_load(&sb->disconnects);
	s->unmute_busy = atomic_load(&sb->unmute_busy);
	s->peak = atomic_load(&sb->peak_active);
	s->respawns = atomic_load(&sb->respawns);
	for (i = 0; i < SB_MAX_WORKERS; i++) {
		struct sb_row *r = &sb->rows[i];
		if (atomic_load(&r->pid) == 0)
			continue;
		s->procs++;
		s->active += atomic_load(&r->active);
		if (atomic_load(&r->busy) == 0)
			s->idle_procs++;
	}
	for (i = 0; i < c->unmute.nurls; i++)
		s->unmute[i] = sb_total_unmute(i);
}

static int
has_flag(const char *query, const char *flag)
{
	size_t	 n = strlen(flag);
	const char *p;

	for (p = query; p != NULL && (p = strstr(p, flag)) != NULL; p += n)
		if ((p == query || p[-1] == '&') && (p[n] == '\0' || p[n] == '&' ||
		    p[n] == '='))
			return 1;
	return 0;
}

static struct json_object *
rows_json(void)
{
	struct json_object	*a = json_object_new_array(), *o;
	int			 i;
	long long		 now = mono_ms();

	for (i = 0; sb != NULL && i < SB_MAX_WORKERS; i++) {
		struct sb_row *r = &sb->rows[i];
		if (atomic_load(&r->pid) == 0)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(atomic_load(&r->pid)));
		json_object_object_add(o, "start_since",
		    json_object_new_int64((now - atomic_load(&r->started_ms)) / 1000));
		json_object_object_add(o, "requests",
		    json_object_new_int64(atomic_load(&r->requests)));
		json_object_object_add(o, "active_streams",
		    json_object_new_int(atomic_load(&r->active)));
		json_object_object_add(o, "busy_threads",
		    json_object_new_int(atomic_load(&r->busy)));
		json_object_array_add(a, o);
	}
	return a;
}

#define ADD_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64(v))

static char *
render_json(const struct conf *c, const struct snapshot *s, int full)
{
	struct json_object	*o = json_object_new_object(), *u;
	char			*out;
	int			 i;

	json_object_object_add(o, "pool", json_object_new_string("tandem"));
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "process_manager", json_object_new_string(pm_names[c->pm]));
	ADD_INT(o, "start_time", s->start_time);
	ADD_INT(o, "start_since", (long long)time(NULL) - s->start_time);
	ADD_INT(o, "accepted_requests", s->accepted);
	ADD_INT(o, "streams", s->streams);
	ADD_INT(o, "active_streams", s->active);
	ADD_INT(o, "max_active_streams", s->peak);
	ADD_INT(o, "max_streams", c->max_streams);
	ADD_INT(o, "rejected_streams", s->rejected);
	ADD_INT(o, "error_answers", s->errors);
	ADD_INT(o, "slow_streams", s->slow);
	ADD_INT(o, "client_disconnects", s->disconnects);
	ADD_INT(o, "processes", s->procs);
	ADD_INT(o, "idle_processes", s->idle_procs);
	ADD_INT(o, "respawned_processes", s->respawns);
	ADD_INT(o, "threads_per_process", c->threads);
	ADD_INT(o, "unmute_busy", s->unmute_busy);
	u = json_object_new_array();
	for (i = 0; i < c->unmute.nurls; i++)
		json_object_array_add(u, json_object_new_int(s->unmute[i]));
	json_object_object_add(o, "unmute_sessions", u);
	ADD_INT(o, "unmute_max_sessions", c->unmute.max_sessions);
	if (full)
		json_object_object_add(o, "processes_detail", rows_json());
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

static char *
render_prometheus(const struct conf *c, const struct snapshot *s)
{
	static const char *const fmt =
	    "# HELP tandem_up Whether the pool answers.\n"
	    "# TYPE tandem_up gauge\ntandem_up 1\n"
	    "# TYPE tandem_start_time_seconds gauge\ntandem_start_time_seconds %lld\n"
	    "# TYPE tandem_accepted_requests_total counter\ntandem_accepted_requests_total %lld\n"
	    "# TYPE tandem_streams_total counter\ntandem_streams_total %lld\n"
	    "# TYPE tandem_active_streams gauge\ntandem_active_streams %d\n"
	    "# TYPE tandem_max_active_streams gauge\ntandem_max_active_streams %d\n"
	    "# TYPE tandem_max_streams gauge\ntandem_max_streams %d\n"
	    "# TYPE tandem_rejected_streams_total counter\ntandem_rejected_streams_total %lld\n"
	    "# TYPE tandem_error_answers_total counter\ntandem_error_answers_total %lld\n"
	    "# TYPE tandem_slow_streams_total counter\ntandem_slow_streams_total %lld\n"
	    "# TYPE tandem_client_disconnects_total counter\ntandem_client_disconnects_total %lld\n"
	    "# TYPE tandem_processes gauge\ntandem_processes %d\n"
	    "# TYPE tandem_respawned_processes_total counter\ntandem_respawned_processes_total %d\n"
	    "# TYPE tandem_unmute_busy_total counter\ntandem_unmute_busy_total %lld\n";
	char	*out;
	size_t	 len;
	int	 i;

	if (asprintf(&out, fmt, s->start_time, s->accepted, s->streams, s->active,
	    s->peak, c->max_streams, s->rejected, s->errors, s->slow,
	    s->disconnects, s->procs, s->respawns, s->unmute_busy) == -1)
		return NULL;
	len = strlen(out);
	out = realloc(out, len + 64 + (size_t)c->unmute.nurls * 64);
	len += (size_t)sprintf(out + len, "# TYPE tandem_unmute_sessions gauge\n");
	for (i = 0; i < c->unmute.nurls; i++)
		len += (size_t)sprintf(out + len,
		    "tandem_unmute_sessions{upstream=\"%d\"} %d\n", i, s->unmute[i]);
	return out;
}

void
status_serve(const struct conf *c, struct conn *conn, const char *query)
{
	struct snapshot	 s;
	char		*body, head[1024];
	int		 n;

	take_snapshot(c, &s);
	if (has_flag(query, "prometheus") || (query && strstr(query, "format=prometheus"))) {
		if ((body = render_prometheus(c, &s)) == NULL)
			return;
		n = snprintf(head, sizeof(head), "Status: 200 OK\r\n"
		    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		    "Cache-Control: no-store\r\nContent-Length: %zu\r\n%s\r\n",
		    strlen(body), conn->extra_headers ? conn->extra_headers : "");
		if (conn_write(conn, head, (size_t)n) == 0)
			conn_write(conn, body, strlen(body));
	} else {
		if ((body = render_json(c, &s, has_flag(query, "full"))) == NULL)
			return;
		http_json(conn, 200, body, NULL);
	}
	free(body);
}
