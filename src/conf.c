/*
 * tandem.conf loader (SPEC.md §6). Each key is one row of conf_rows[]:
 * section, key, type, offset into struct conf, default. The environment
 * names (TANDEM_<SECTION>_<KEY>) derive from the rows. Setters return
 * NULL or a short reason; the caller adds file, line and key.
 * Keep the rows in the order of tandem.conf(5) and fcgi-conf/tandem.conf.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"

extern char **environ;

enum conf_type {
	CT_STR,
	CT_SECRET_FILE,	/* a path; the file's content is loaded later */
	CT_INT,
	CT_BOOL,
	CT_MSEC,
	CT_SIZE,
	CT_MODE,
	CT_DOUBLE,
	CT_PM,
	CT_LEVEL
};

struct conf_row {
	const char	*section;	/* "" for top level */
	const char	*key;
	enum conf_type	 type;
	size_t		 off;
	const char	*def;		/* NULL: unset */
	long		 min, max;	/* for numbers; 0,0: no bounds */
};

#define G(k, t, f, d, lo, hi)	{ "", k, t, offsetof(struct conf, f), d, lo, hi }
#define U(k, t, f, d, lo, hi)	{ "unmute", k, t, offsetof(struct conf, unmute.f), d, lo, hi }
#define L(k, t, f, d, lo, hi)	{ "llm", k, t, offsetof(struct conf, llm.f), d, lo, hi }
#define NODE(sec, i, timeout) \
	{ sec, "model", CT_STR, offsetof(struct conf, llm.node[i].model), NULL, 0, 0 }, \
	{ sec, "timeout", CT_MSEC, offsetof(struct conf, llm.node[i].timeout_ms), timeout, 0, 86400000 }, \
	{ sec, "prompt", CT_STR, offsetof(struct conf, llm.node[i].prompt), NULL, 0, 0 }, \
	{ sec, "temperature", CT_DOUBLE, offsetof(struct conf, llm.node[i].temperature), "-1", 0, 0 }, \
	{ sec, "max_tokens", CT_INT, offsetof(struct conf, llm.node[i].max_tokens), "0", 0, 1000000 }

static const struct conf_row conf_rows[] = {
	G("listen", CT_STR, listen, NULL, 0, 0),
	G("listen_mode", CT_MODE, listen_mode, "0660", 0, 07777),
	G("listen_owner", CT_STR, listen_owner, NULL, 0, 0),
	G("listen_group", CT_STR, listen_group, NULL, 0, 0),
	G("listen_backlog", CT_INT, listen_backlog, "511", 1, 65535),
	G("user", CT_STR, user, NULL, 0, 0),
	G("group", CT_STR, group, NULL, 0, 0),
	G("pid_file", CT_STR, pid_file, NULL, 0, 0),
	G("pm", CT_PM, pm, "static", 0, 0),
	G("processes", CT_INT, processes, "2", 1, 256),
	G("start_processes", CT_INT, start_processes, "1", 1, 256),
	G("min_spare_processes", CT_INT, min_spare_processes, "1", 0, 256),
	G("max_spare_processes", CT_INT, max_spare_processes, "2", 1, 256),
	G("process_idle_timeout", CT_MSEC, process_idle_timeout_ms, "10s", 100, 86400000),
	G("threads", CT_INT, threads, "32", 1, 4096),
	G("max_requests", CT_INT, max_requests, "0", 0, INT_MAX),
	G("max_streams", CT_INT, max_streams, "64", 1, 1000000),
	G("request_timeout", CT_MSEC, request_timeout_ms, "300s", 100, 86400000),
	G("heartbeat_interval", CT_MSEC, heartbeat_ms, "15s", 50, 3600000),
	G("drain_timeout", CT_MSEC, drain_timeout_ms, "30s", 0, 3600000),
	G("slow_threshold", CT_MSEC, slow_ms, "60s", 1, 86400000),
	G("max_body", CT_SIZE, max_body, "64k", 64, 64 * 1024 * 1024),
	G("cors_origins", CT_STR, cors_origins, NULL, 0, 0),
	G("auth_token_file", CT_SECRET_FILE, auth_token_file, NULL, 0, 0),
	G("log", CT_STR, log, "stderr", 0, 0),
	G("log_level", CT_LEVEL, log_level, "info", 0, 0),
	G("log_format", CT_STR, log_format, "text", 0, 0),

	U("url", CT_STR, url, "ws://127.0.0.1:8000/v1/realtime", 0, 0),
	U("voice", CT_STR, voice, "unmute-prod-website/developer-1.mp3", 0, 0),
	U("instructions", CT_STR, instructions,
	    "You are a helpful, careful health assistant. Answer briefly and "
	    "clearly, in plain spoken language. You do not diagnose; suggest "
	    "seeing a clinician when it matters.", 0, 0),
	U("language", CT_STR, language, "en", 0, 0),
	U("allow_recording", CT_BOOL, allow_recording, "false", 0, 0),
	U("response_create", CT_BOOL, response_create, "true", 0, 0),
	U("follow_up", CT_STR, follow_up, "session", 0, 0),
	U("connect_timeout", CT_MSEC, connect_timeout_ms, "5s", 50, 600000),
	U("turn_timeout", CT_MSEC, turn_timeout_ms, "60s", 100, 3600000),
	U("stall_timeout", CT_MSEC, stall_timeout_ms, "10s", 100, 3600000),
	U("busy_wait", CT_MSEC, busy_wait_ms, "0", 0, 600000),
	U("max_sessions", CT_INT, max_sessions, "4", 1, 100000),
	U("max_message", CT_SIZE, max_message, "1m", 1024, 16 * 1024 * 1024),
	U("early_start", CT_BOOL, early_start, "true", 0, 0),
	U("tls_insecure", CT_BOOL, tls_insecure, "false", 0, 0),

	L("base_url", CT_STR, base_url, "http://127.0.0.1:8001/v1", 0, 0),
	L("model", CT_STR, model, "default", 0, 0),
	L("api_key_file", CT_SECRET_FILE, api_key_file, NULL, 0, 0),
	L("connect_timeout", CT_MSEC, connect_timeout_ms, "5s", 50, 600000),
	L("first_token_timeout", CT_MSEC, first_token_timeout_ms, "30s", 50, 3600000),
	L("stall_timeout", CT_MSEC, stall_timeout_ms, "30s", 50, 3600000),
	L("timeout", CT_MSEC, timeout_ms, "120s", 100, 86400000),
	L("max_response", CT_SIZE, max_response, "256k", 1024, 64 * 1024 * 1024),

	/* The tagger has a short ceiling: past it, the keyword classifier. */
	NODE("node.llm_tagger", LLM_NODE_TAGGER, "10s"),
	NODE("node.semantic_precheck", LLM_NODE_PRECHECK, "15s"),
	NODE("node.postprocess", LLM_NODE_POSTPROCESS, "0"),
	NODE("node.semantic_update", LLM_NODE_UPDATE, "15s"),
	NODE("node.medical", LLM_NODE_MEDICAL, "0"),
	NODE("node.ui_change", LLM_NODE_UI_CHANGE, "0"),

	{ "search", "url", CT_STR, offsetof(struct conf, search.url), NULL, 0, 0 },
	{ "search", "timeout", CT_MSEC, offsetof(struct conf, search.timeout_ms), "10s", 50, 600000 },
	{ "search", "max_results", CT_INT, offsetof(struct conf, search.max_results), "5", 1, 50 },
	{ "fhir", "base_url", CT_STR, offsetof(struct conf, fhir.base_url), NULL, 0, 0 },
	{ "fhir", "timeout", CT_MSEC, offsetof(struct conf, fhir.timeout_ms), "10s", 50, 600000 },
};

#define NROWS (sizeof(conf_rows) / sizeof(conf_rows[0]))

static const char *const node_names[LLM_NODE__MAX] = {
	[LLM_NODE_TAGGER] = "llm_tagger",
	[LLM_NODE_PRECHECK] = "semantic_precheck",
	[LLM_NODE_POSTPROCESS] = "postprocess",
	[LLM_NODE_UPDATE] = "semantic_update",
	[LLM_NODE_MEDICAL] = "medical",
	[LLM_NODE_UI_CHANGE] = "ui_change",
};

const char *
conf_node_name(enum llm_node n)
{
	return n < LLM_NODE__MAX ? node_names[n] : "?";
}

static void *
field(struct conf *c, const struct conf_row *r)
{
	return (char *)c + r->off;
}

static const char *
set_long(long *out, const char *v, long mult_default, const struct conf_row *r)
{
	char	*end;
	double	 d;
	long	 mult = mult_default;

	errno = 0;
	d = strtod(v, &end);
	if (end == v || errno != 0 || d < 0 || isnan(d))
		return "not a non-negative number";
	while (isspace((unsigned char)*end))
		end++;
	if (r->type == CT_MSEC) {
		if (*end == '\0' || strcmp(end, "s") == 0)
			mult = 1000;
		else if (strcmp(end, "ms") == 0)
			mult = 1;
		else if (strcmp(end, "m") == 0)
			mult = 60000;
		else if (strcmp(end, "h") == 0)
			mult = 3600000;
		else
			return "bad duration unit (use ms, s, m or h)";
	} else if (r->type == CT_SIZE) {
		if (*end == '\0')
			mult = 1;
		else if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0)
			mult = 1024;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0)
			mult = 1024 * 1024;
		else
			return "bad size unit (use k or m)";
	} else if (*end != '\0')
		return "not an integer";
	d *= (double)mult;
	if (d > (double)LONG_MAX / 2)
		return "value too large";
	if (r->type == CT_INT && d != floor(d))
		return "not an integer";
	*out = (long)d;
	if ((r->min != 0 || r->max != 0) && (*out < r->min || *out > r->max))
		return "value out of range";
	return NULL;
}

static const char *
set_bool(int *out, const char *v)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return NULL;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return NULL;
		}
	}
	return "not a boolean (yes/no, true/false, on/off, 1/0)";
}

/* Store v into the row's field. Return NULL or a reason. */
static const char *
conf_set(struct conf *c, const struct conf_row *r, const char *v)
{
	void		*f = field(c, r);
	const char	*why;
	long		 n;
	char		*end;

	switch (r->type) {
	case CT_STR:
	case CT_SECRET_FILE:
		free(*(char **)f);
		*(char **)f = (*v == '\0') ? NULL : strdup(v);
		return NULL;
	case CT_INT:
		if ((why = set_long(&n, v, 1, r)) != NULL)
			return why;
		if (n > INT_MAX)
			return "value out of range";
		*(int *)f = (int)n;
		return NULL;
	case CT_MSEC:
		if ((why = set_long(&n, v, 1000, r)) != NULL)
			return why;
		*(long *)f = n;
		return NULL;
	case CT_SIZE:
		if ((why = set_long(&n, v, 1, r)) != NULL)
			return why;
		*(size_t *)f = (size_t)n;
		return NULL;
	case CT_BOOL:
		return set_bool((int *)f, v);
	case CT_MODE:
		errno = 0;
		n = strtol(v, &end, 8);
		if (*v == '\0' || *end != '\0' || errno != 0 || n < r->min || n > r->max)
			return "not an octal file mode";
		*(int *)f = (int)n;
		return NULL;
	case CT_DOUBLE:
		errno = 0;
		*(double *)f = strtod(v, &end);
		if (*v == '\0' || *end != '\0' || errno != 0)
			return "not a number";
		return NULL;
	case CT_PM:
		if (strcmp(v, "static") == 0)
			*(enum pm_style *)f = PM_STATIC;
		else if (strcmp(v, "dynamic") == 0)
			*(enum pm_style *)f = PM_DYNAMIC;
		else if (strcmp(v, "ondemand") == 0)
			*(enum pm_style *)f = PM_ONDEMAND;
		else
			return "must be static, dynamic or ondemand";
		return NULL;
	case CT_LEVEL:
		if (log_level_lookup(v, (enum log_level *)f) == -1)
			return "must be error, warn, notice, info or debug";
		return NULL;
	}
	return "unknown type";
}

static const struct conf_row *
conf_find(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < NROWS; i++)
		if (strcmp(conf_rows[i].section, section) == 0 &&
		    strcmp(conf_rows[i].key, key) == 0)
			return &conf_rows[i];
	return NULL;
}

static int
section_known(const char *section)
{
	size_t i;

	for (i = 0; i < NROWS; i++)
		if (strcmp(conf_rows[i].section, section) == 0)
			return 1;
	return 0;
}

/* "TANDEM_" + SECTION + "_" + KEY, upper case, '.' and '-' as '_'. */
static void
env_name(const struct conf_row *r, char *out, size_t sz)
{
	size_t	 i;
	char	*p;

	if (r->section[0] == '\0')
		snprintf(out, sz, "TANDEM_%s", r->key);
	else
		snprintf(out, sz, "TANDEM_%s_%s", r->section, r->key);
	for (p = out, i = 0; *p != '\0'; p++, i++) {
		if (*p == '.' || *p == '-')
			*p = '_';
		*p = (char)toupper((unsigned char)*p);
	}
}

static const char *
env_lookup(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static void
conf_defaults(struct conf *c)
{
	size_t i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NROWS; i++)
		if (conf_rows[i].def != NULL)
			(void)conf_set(c, &conf_rows[i], conf_rows[i].def);
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * Unquote a "..." value in place (\n, \t, \", \\ escapes). Return NULL
 * or a reason.
 */
static const char *
unquote(char *v)
{
	char	*o = v, *p;

	if (v[0] != '"')
		return NULL;
	for (p = v + 1; *p != '\0' && *p != '"'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			p++;
			*o++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
		} else
			*o++ = *p;
	}
	if (*p != '"')
		return "unterminated quoted value";
	if (p[1] != '\0')
		return "text after the closing quote";
	*o = '\0';
	return NULL;
}

static int
fail(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return -1;
}

/* Parse INI text. Return 0 or -1 with "name:line: reason" in err. */
static int
conf_parse(struct conf *c, const char *text, const char *name, char *err,
    size_t errsz)
{
	char			 section[64] = "";
	const char		*p = text, *nl, *why;
	char			*line, *k, *v, *eq;
	size_t			 len;
	int			 lineno = 0;
	const struct conf_row	*r;

	while (*p != '\0') {
		lineno++;
		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		if ((line = strndup(p, len)) == NULL)
			return fail(err, errsz, "%s:%d: out of memory", name, lineno);
		p += len + (nl ? 1 : 0);
		k = trim(line);
		if (*k == '\0' || *k == ';' || *k == '#') {
			free(line);
			continue;
		}
		if (*k == '[') {
			v = strchr(k, ']');
			if (v == NULL || v[1] != '\0' || v - k - 1 >= (long)sizeof(section)) {
				free(line);
				return fail(err, errsz, "%s:%d: bad section header", name, lineno);
			}
			*v = '\0';
			snprintf(section, sizeof(section), "%s", trim(k + 1));
			if (strcmp(section, "global") == 0 || strcmp(section, "tandem") == 0)
				section[0] = '\0';
			if (section[0] != '\0' && !section_known(section)) {
				free(line);
				return fail(err, errsz, "%s:%d: unknown section [%s]", name,
				    lineno, section);
			}
			free(line);
			continue;
		}
		if ((eq = strchr(k, '=')) == NULL) {
			free(line);
			return fail(err, errsz, "%s:%d: expected key = value", name, lineno);
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if ((r = conf_find(section, k)) == NULL) {
			fail(err, errsz, "%s:%d: unknown key '%s'%s%s", name, lineno, k,
			    section[0] ? " in section " : "", section);
			free(line);
			return -1;
		}
		if ((why = unquote(v)) == NULL)
			why = conf_set(c, r, v);
		if (why != NULL) {
			fail(err, errsz, "%s:%d: %s: %s", name, lineno, k, why);
			free(line);
			return -1;
		}
		free(line);
	}
	return 0;
}

static int
conf_env(struct conf *c, char **envp, char *err, size_t errsz)
{
	char		 name[128];
	const char	*v, *why;
	size_t		 i;

	for (i = 0; i < NROWS; i++) {
		env_name(&conf_rows[i], name, sizeof(name));
		if ((v = env_lookup(envp, name)) == NULL)
			continue;
		if ((why = conf_set(c, &conf_rows[i], v)) != NULL)
			return fail(err, errsz, "environment %s: %s", name, why);
	}
	return 0;
}

/* Read a secret: the file's first line, without its newline. */
static int
read_secret(const char *path, char **out, char *err, size_t errsz)
{
	FILE	*f;
	char	 buf[4096];
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL)
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0')
		return fail(err, errsz, "%s: empty secret file", path);
	free(*out);
	*out = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static int
valid_ws_url(const char *u)
{
	return strncmp(u, "ws://", 5) == 0 || strncmp(u, "wss://", 6) == 0;
}

static int
valid_http_url(const char *u)
{
	return u == NULL || strncmp(u, "http://", 7) == 0 ||
	    strncmp(u, "https://", 8) == 0;
}

/* Split [unmute] url into urls[]. Return 0 or -1. */
static int
split_unmute_urls(struct conf *c, char *err, size_t errsz)
{
	char *copy, *tok, *save = NULL;

	c->unmute.nurls = 0;
	if (c->unmute.url == NULL)
		return fail(err, errsz, "[unmute] url: must be set");
	copy = strdup(c->unmute.url);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL;
	    tok = strtok_r(NULL, ", ", &save)) {
		if (!valid_ws_url(tok)) {
			fail(err, errsz, "[unmute] url: '%s' is not a ws:// or wss:// URL", tok);
			free(copy);
			return -1;
		}
		if (c->unmute.nurls == CONF_MAX_UNMUTE_URLS) {
			free(copy);
			return fail(err, errsz, "[unmute] url: at most %d URLs",
			    CONF_MAX_UNMUTE_URLS);
		}
		c->unmute.urls[c->unmute.nurls++] = strdup(tok);
	}
	free(copy);
	if (c->unmute.nurls == 0)
		return fail(err, errsz, "[unmute] url: must be set");
	return 0;
}

/* Relations between keys, checked after everything is loaded. */
static int
conf_check(struct conf *c, char *err, size_t errsz)
{
	if (split_unmute_urls(c, err, errsz) == -1)
		return -1;
	if (!valid_http_url(c->llm.base_url) || c->llm.base_url == NULL)
		return fail(err, errsz, "[llm] base_url: must be an http:// or https:// URL");
	if (!valid_http_url(c->search.url))
		return fail(err, errsz, "[search] url: must be an http:// or https:// URL");
	if (!valid_http_url(c->fhir.base_url))
		return fail(err, errsz, "[fhir] base_url: must be an http:// or https:// URL");
	if (strcmp(c->unmute.follow_up, "session") != 0 &&
	    strcmp(c->unmute.follow_up, "update") != 0)
		return fail(err, errsz, "[unmute] follow_up: must be session or update");
	if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0)
		return fail(err, errsz, "log_format: must be text or json");
	if (c->pm != PM_STATIC && c->start_processes > c->processes)
		return fail(err, errsz, "start_processes (%d) exceeds processes (%d)",
		    c->start_processes, c->processes);
	if (c->pm == PM_DYNAMIC && c->min_spare_processes > c->max_spare_processes)
		return fail(err, errsz, "min_spare_processes exceeds max_spare_processes");
	if (c->unmute.connect_timeout_ms >= c->request_timeout_ms)
		return fail(err, errsz, "[unmute] connect_timeout must be below request_timeout");
	if (c->heartbeat_ms >= c->request_timeout_ms)
		return fail(err, errsz, "heartbeat_interval must be below request_timeout");
	if (c->auth_token_file != NULL &&
	    read_secret(c->auth_token_file, &c->auth_token, err, errsz) == -1)
		return -1;
	if (c->llm.api_key_file != NULL &&
	    read_secret(c->llm.api_key_file, &c->llm.api_key, err, errsz) == -1)
		return -1;
	return 0;
}

int
conf_load_string(struct conf *c, const char *text, const char *name,
    char **envp, char *err, size_t errsz)
{
	conf_defaults(c);
	if (text != NULL && conf_parse(c, text, name, err, errsz) == -1)
		return -1;
	if (conf_env(c, envp, err, errsz) == -1)
		return -1;
	return conf_check(c, err, errsz);
}

/* Read a whole file, bounded (1 MiB). Return malloc'd text or NULL. */
static char *
slurp(const char *path, char *err, size_t errsz)
{
	FILE	*f;
	char	*buf;
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL) {
		fail(err, errsz, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(1024 * 1024 + 1);
	n = buf ? fread(buf, 1, 1024 * 1024 + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n > 1024 * 1024) {
		fail(err, errsz, "%s: file too large", path);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		fail(err, errsz, "%s: contains a NUL byte", path);
		free(buf);
		return NULL;
	}
	return buf;
}

int
conf_load(struct conf *c, const char *file, char *err, size_t errsz)
{
	char	*text = NULL;
	int	 rc;

	if (file != NULL && (text = slurp(file, err, errsz)) == NULL) {
		conf_defaults(c);
		return -1;
	}
	rc = conf_load_string(c, text, file, environ, err, errsz);
	free(text);
	return rc;
}

void
conf_free(struct conf *c)
{
	size_t i;

	for (i = 0; i < NROWS; i++)
		if (conf_rows[i].type == CT_STR || conf_rows[i].type == CT_SECRET_FILE) {
			free(*(char **)field(c, &conf_rows[i]));
			*(char **)field(c, &conf_rows[i]) = NULL;
		}
	for (i = 0; i < (size_t)c->unmute.nurls; i++)
		free(c->unmute.urls[i]);
	c->unmute.nurls = 0;
	if (c->auth_token != NULL) {
		explicit_bzero(c->auth_token, strlen(c->auth_token));
		free(c->auth_token);
	}
	if (c->llm.api_key != NULL) {
		explicit_bzero(c->llm.api_key, strlen(c->llm.api_key));
		free(c->llm.api_key);
	}
	c->auth_token = c->llm.api_key = NULL;
}

/*
 * Print a value that may hold URLs (one or a comma-separated list)
 * without what may be a secret in them: the userinfo becomes "***@" and
 * a query string "?***".
 */
static void
dump_redacted(const char *v, FILE *out)
{
	const char	*p = v, *auth, *end, *at;
	size_t		 n;

	while (*p != '\0') {
		if (strncmp(p, "://", 3) == 0) {
			auth = p + 3;
			end = auth + strcspn(auth, "/?#, ");
			at = memchr(auth, '@', (size_t)(end - auth));
			fputs("://", out);
			if (at != NULL) {
				fputs("***@", out);
				auth = at + 1;
			}
			fwrite(auth, 1, (size_t)(end - auth), out);
			p = end;
		} else if (*p == '?') {
			fputs("?***", out);
			n = strcspn(p, ", ");
			p += n;
		} else
			fputc(*p++, out);
	}
}

/* Return 1 when v starts with a URL scheme ("ws://", "https://"). */
static int
has_scheme(const char *v)
{
	size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyz");

	return n > 0 && strncmp(v + n, "://", 3) == 0;
}

/* A string value: long texts by their length, URLs without credentials. */
static void
dump_string(const char *v, FILE *out)
{
	if (v == NULL)
		return;
	if (strchr(v, '\n') != NULL || *v == ' ')
		fprintf(out, "\"(%zu characters)\"", strlen(v));
	else if (has_scheme(v))
		dump_redacted(v, out);	/* a URL (list) */
	else
		fprintf(out, "%s", v);
}

static void
dump_value(const struct conf *cc, const struct conf_row *r, FILE *out)
{
	struct conf	*c = (struct conf *)cc;
	void		*f = field(c, r);
	static const char *const pm[] = { "static", "dynamic", "ondemand" };

	switch (r->type) {
	case CT_STR:
	case CT_SECRET_FILE:
		dump_string(*(char **)f, out);
		break;
	case CT_INT:
	case CT_BOOL:
		fprintf(out, r->type == CT_BOOL ? (*(int *)f ? "yes" : "no") : "%d", *(int *)f);
		break;
	case CT_MSEC:
		fprintf(out, "%ldms", *(long *)f);
		break;
	case CT_SIZE:
		fprintf(out, "%zu", *(size_t *)f);
		break;
	case CT_MODE:
		fprintf(out, "%04o", *(int *)f);
		break;
	case CT_DOUBLE:
		fprintf(out, "%g", *(double *)f);
		break;
	case CT_PM:
		fprintf(out, "%s", pm[*(enum pm_style *)f]);
		break;
	case CT_LEVEL:
		fprintf(out, "%s", log_level_name(*(enum log_level *)f));
		break;
	}
}

void
conf_dump(const struct conf *c, FILE *out)
{
	const char	*cur = NULL;
	size_t		 i;

	for (i = 0; i < NROWS; i++) {
		const struct conf_row *r = &conf_rows[i];
		if (cur == NULL || strcmp(cur, r->section) != 0) {
			if (r->section[0] != '\0')
				fprintf(out, "\n[%s]\n", r->section);
			cur = r->section;
		}
		fprintf(out, "%s = ", r->key);
		dump_value(c, r, out);
		fputc('\n', out);
	}
}
