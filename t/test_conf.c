/*
 * Unit tests of the tandem.conf loader (src/conf.c, SPEC.md §6): every
 * key of the table, value syntax, environment override, errors with
 * their line numbers, relations between keys, secret files, conf_dump.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

static struct conf	 c;
static char		 err[512];

/* Load text with envp into the global conf; return conf_load_string's rc. */
static int
load(const char *text, char **envp)
{
	err[0] = '\0';
	return conf_load_string(&c, text, "test.conf", envp, err, sizeof(err));
}

/* Loading must fail with an error that starts with want. */
static void
load_fails(const char *text, char **envp, const char *want, const char *name)
{
	int rc = load(text, envp);

	if (!ok(rc == -1 && strncmp(err, want, strlen(want)) == 0, "%s", name))
		printf("#   rc %d, err '%s', want prefix '%s'\n", rc, err, want);
	conf_free(&c);
}

/* err must contain want as well (the reason, after "file:line:"). */
static void
load_fails_with(const char *text, const char *prefix, const char *reason,
    const char *name)
{
	int rc = load(text, NULL);

	if (!ok(rc == -1 && strncmp(err, prefix, strlen(prefix)) == 0 &&
	    strstr(err, reason) != NULL, "%s", name))
		printf("#   rc %d, err '%s', want '%s' ... '%s'\n", rc, err,
		    prefix, reason);
	conf_free(&c);
}

/* Write s to a fresh temporary file; return its malloc'd path. */
static char *
temp_file(const char *s)
{
	char	 tmpl[] = "/tmp/tandem-test-conf.XXXXXX";
	int	 fd;

	if ((fd = mkstemp(tmpl)) == -1)
		return NULL;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) {
		close(fd);
		return NULL;
	}
	close(fd);
	return strdup(tmpl);
}

static void
test_defaults(void)
{
	is_int(load(NULL, NULL), 0, "defaults load");
	is_str(c.listen, NULL, "default listen unset");
	is_int(c.listen_mode, 0660, "default listen_mode 0660");
	is_int(c.listen_backlog, 511, "default listen_backlog");
	is_int(c.pm, PM_STATIC, "default pm static");
	is_int(c.processes, 2, "default processes");
	is_int(c.threads, 32, "default threads");
	is_int(c.max_streams, 64, "default max_streams");
	is_int(c.request_timeout_ms, 300000, "default request_timeout 300s");
	is_int(c.heartbeat_ms, 15000, "default heartbeat 15s");
	is_int(c.max_body, 65536, "default max_body 64k");
	is_int(c.log_level, LOG_LVL_INFO, "default log_level info");
	is_str(c.log, "stderr", "default log stderr");
	is_str(c.log_format, "text", "default log_format text");
	is_int(c.unmute.nurls, 1, "default one unmute url");
	is_str(c.unmute.urls[0], "ws://127.0.0.1:8000/v1/realtime",
	    "default unmute url");
	is_int(c.unmute.allow_recording, 0, "default allow_recording off");
	is_int(c.unmute.response_create, 1, "default response_create on");
	is_int(c.unmute.early_start, 1, "default early_start on");
	is_str(c.llm.base_url, "http://127.0.0.1:8001/v1", "default llm base_url");
	is_str(c.search.url, NULL, "default search url unset");
	is_str(c.fhir.base_url, NULL, "default fhir unset");
	is_int(c.llm.node[LLM_NODE_TAGGER].max_tokens, 0, "default node max_tokens");
	is_int(c.llm.node[LLM_NODE_TAGGER].timeout_ms, 10000, "default tagger timeout");
	is_int(c.llm.node[LLM_NODE_MEDICAL].timeout_ms, 0, "default medical timeout");
	ok(c.llm.node[LLM_NODE_TAGGER].temperature == -1, "default node temperature -1");
	is_str(c.auth_token, NULL, "no auth token by default");
	conf_free(&c);
}

/* Every key of conf_rows[], set to a value that is not its default. */
static const char every_key[] =
	"; tandem.conf with every key set\n"
	"# a hash comment too\n"
	"[global]\n"
	"listen = unix:/run/tandem/tandem.sock\n"
	"listen_mode = 0600\n"
	"listen_owner = www-data\n"
	"listen_group = www-data\n"
	"listen_backlog = 128\n"
	"user = nobody\n"
	"group = nogroup\n"
	"pid_file = /run/tandem.pid\n"
	"pm = dynamic\n"
	"processes = 8\n"
	"start_processes = 3\n"
	"min_spare_processes = 2\n"
	"max_spare_processes = 4\n"
	"process_idle_timeout = 45s\n"
	"threads = 16\n"
	"max_requests = 1000\n"
	"max_streams = 99\n"
	"request_timeout = 10m\n"
	"heartbeat_interval = 5s\n"
	"drain_timeout = 7s\n"
	"slow_threshold = 90s\n"
	"max_body = 128k\n"
	"cors_origins = http://localhost:3000, https://app.example\n"
	"log = /var/log/tandem.log\n"
	"log_level = debug\n"
	"log_format = json\n"
	"\n"
	"[unmute]\n"
	"url = wss://unmute.example/v1/realtime\n"
	"voice = voices/other.wav\n"
	"instructions = \"Be \\\"kind\\\".\\nTwo lines\\tand a tab, a \\\\ backslash\"\n"
	"language = fr\n"
	"allow_recording = yes\n"
	"response_create = off\n"
	"follow_up = update\n"
	"connect_timeout = 1500ms\n"
	"turn_timeout = 2m\n"
	"stall_timeout = 20s\n"
	"busy_wait = 3s\n"
	"max_sessions = 12\n"
	"max_message = 2m\n"
	"early_start = false\n"
	"tls_insecure = 1\n"
	"\n"
	"[llm]\n"
	"base_url = https://api.example/v1\n"
	"model = gpt-x\n"
	"connect_timeout = 2s\n"
	"first_token_timeout = 40s\n"
	"stall_timeout = 50s\n"
	"timeout = 1h\n"
	"max_response = 512k\n"
	"\n"
	"[node.llm_tagger]\n"
	"model = tagger-model\n"
	"prompt = \"Tag it.\"\n"
	"temperature = 0.25\n"
	"max_tokens = 64\n"
	"timeout = 2500ms\n"
	"[node.semantic_precheck]\n"
	"model = pre\n"
	"max_tokens = 65\n"
	"[node.postprocess]\n"
	"model = post\n"
	"temperature = 0.5\n"
	"[node.semantic_update]\n"
	"prompt = upd\n"
	"max_tokens = 66\n"
	"[node.medical]\n"
	"model = med\n"
	"temperature = 0\n"
	"[node.ui_change]\n"
	"model = ui\n"
	"max_tokens = 67\n"
	"\n"
	"[search]\n"
	"url = http://127.0.0.1:8888/search\n"
	"timeout = 3s\n"
	"max_results = 9\n"
	"\n"
	"[fhir]\n"
	"base_url = https://fhir.example/r4\n"
	"timeout = 4s\n";

static void
test_every_key(void)
{
	int rc = load(every_key, NULL);

	if (!ok(rc == 0, "every key parses"))
		printf("#   err '%s'\n", err);
	is_str(c.listen, "unix:/run/tandem/tandem.sock", "listen");
	is_int(c.listen_mode, 0600, "listen_mode octal");
	is_str(c.listen_owner, "www-data", "listen_owner");
	is_str(c.listen_group, "www-data", "listen_group");
	is_int(c.listen_backlog, 128, "listen_backlog");
	is_str(c.user, "nobody", "user");
	is_str(c.group, "nogroup", "group");
	is_str(c.pid_file, "/run/tandem.pid", "pid_file");
	is_int(c.pm, PM_DYNAMIC, "pm dynamic");
	is_int(c.processes, 8, "processes");
	is_int(c.start_processes, 3, "start_processes");
	is_int(c.min_spare_processes, 2, "min_spare_processes");
	is_int(c.max_spare_processes, 4, "max_spare_processes");
	is_int(c.process_idle_timeout_ms, 45000, "process_idle_timeout 45s");
	is_int(c.threads, 16, "threads");
	is_int(c.max_requests, 1000, "max_requests");
	is_int(c.max_streams, 99, "max_streams");
	is_int(c.request_timeout_ms, 600000, "request_timeout 10m");
	is_int(c.heartbeat_ms, 5000, "heartbeat_interval 5s");
	is_int(c.drain_timeout_ms, 7000, "drain_timeout 7s");
	is_int(c.slow_ms, 90000, "slow_threshold 90s");
	is_int(c.max_body, 128 * 1024, "max_body 128k");
	is_str(c.cors_origins, "http://localhost:3000, https://app.example",
	    "cors_origins kept whole");
	is_str(c.log, "/var/log/tandem.log", "log");
	is_int(c.log_level, LOG_LVL_DEBUG, "log_level debug");
	is_str(c.log_format, "json", "log_format json");

	is_str(c.unmute.url, "wss://unmute.example/v1/realtime", "unmute url");
	is_int(c.unmute.nurls, 1, "one unmute url");
	is_str(c.unmute.urls[0], "wss://unmute.example/v1/realtime", "urls[0]");
	is_str(c.unmute.voice, "voices/other.wav", "unmute voice");
	is_str(c.unmute.instructions,
	    "Be \"kind\".\nTwo lines\tand a tab, a \\ backslash",
	    "quoted instructions with escapes");
	is_str(c.unmute.language, "fr", "unmute language");
	is_int(c.unmute.allow_recording, 1, "allow_recording yes");
	is_int(c.unmute.response_create, 0, "response_create off");
	is_str(c.unmute.follow_up, "update", "follow_up");
	is_int(c.unmute.connect_timeout_ms, 1500, "unmute connect_timeout 1500ms");
	is_int(c.unmute.turn_timeout_ms, 120000, "turn_timeout 2m");
	is_int(c.unmute.stall_timeout_ms, 20000, "unmute stall_timeout");
	is_int(c.unmute.busy_wait_ms, 3000, "busy_wait");
	is_int(c.unmute.max_sessions, 12, "max_sessions");
	is_int(c.unmute.max_message, 2 * 1024 * 1024, "max_message 2m");
	is_int(c.unmute.early_start, 0, "early_start false");
	is_int(c.unmute.tls_insecure, 1, "tls_insecure 1");

	is_str(c.llm.base_url, "https://api.example/v1", "llm base_url");
	is_str(c.llm.model, "gpt-x", "llm model");
	is_int(c.llm.connect_timeout_ms, 2000, "llm connect_timeout");
	is_int(c.llm.first_token_timeout_ms, 40000, "llm first_token_timeout");
	is_int(c.llm.stall_timeout_ms, 50000, "llm stall_timeout");
	is_int(c.llm.timeout_ms, 3600000, "llm timeout 1h");
	is_int(c.llm.max_response, 512 * 1024, "llm max_response");

	is_str(c.llm.node[LLM_NODE_TAGGER].model, "tagger-model", "tagger model");
	is_str(c.llm.node[LLM_NODE_TAGGER].prompt, "Tag it.", "tagger prompt quoted");
	ok(c.llm.node[LLM_NODE_TAGGER].temperature == 0.25, "tagger temperature");
	is_int(c.llm.node[LLM_NODE_TAGGER].max_tokens, 64, "tagger max_tokens");
	is_int(c.llm.node[LLM_NODE_TAGGER].timeout_ms, 2500, "tagger timeout");
	is_str(c.llm.node[LLM_NODE_PRECHECK].model, "pre", "precheck model");
	is_int(c.llm.node[LLM_NODE_PRECHECK].max_tokens, 65, "precheck max_tokens");
	is_str(c.llm.node[LLM_NODE_POSTPROCESS].model, "post", "postprocess model");
	ok(c.llm.node[LLM_NODE_POSTPROCESS].temperature == 0.5, "postprocess temperature");
	is_str(c.llm.node[LLM_NODE_UPDATE].prompt, "upd", "update prompt");
	is_int(c.llm.node[LLM_NODE_UPDATE].max_tokens, 66, "update max_tokens");
	is_str(c.llm.node[LLM_NODE_MEDICAL].model, "med", "medical model");
	ok(c.llm.node[LLM_NODE_MEDICAL].temperature == 0, "medical temperature 0");
	is_str(c.llm.node[LLM_NODE_UI_CHANGE].model, "ui", "ui_change model");
	is_int(c.llm.node[LLM_NODE_UI_CHANGE].max_tokens, 67, "ui_change max_tokens");
	is_str(c.llm.node[LLM_NODE_MEDICAL].prompt, NULL, "unset prompt stays NULL");

	is_str(c.search.url, "http://127.0.0.1:8888/search", "search url");
	is_int(c.search.timeout_ms, 3000, "search timeout");
	is_int(c.search.max_results, 9, "search max_results");
	is_str(c.fhir.base_url, "https://fhir.example/r4", "fhir base_url");
	is_int(c.fhir.timeout_ms, 4000, "fhir timeout");
	conf_free(&c);

	is_str(conf_node_name(LLM_NODE_TAGGER), "llm_tagger", "conf_node_name tagger");
	is_str(conf_node_name(LLM_NODE_UI_CHANGE), "ui_change", "conf_node_name ui_change");
	is_str(conf_node_name(LLM_NODE__MAX), "?", "conf_node_name out of range");
}

static void
test_sections(void)
{
	is_int(load("[tandem]\nthreads = 3\n", NULL), 0, "[tandem] alias loads");
	is_int(c.threads, 3, "[tandem] is the top level");
	conf_free(&c);
	is_int(load("threads = 4\n[global]\nmax_streams = 5\n", NULL), 0,
	    "keys before any section and in [global]");
	is_int(c.threads, 4, "top level before a section");
	is_int(c.max_streams, 5, "[global] is the top level");
	conf_free(&c);
	is_int(load("[unmute]\nlanguage = de\n[global]\nthreads = 6\n", NULL), 0,
	    "back to [global] after a section");
	is_int(c.threads, 6, "threads after [global] again");
	is_str(c.unmute.language, "de", "language in [unmute]");
	conf_free(&c);
	is_int(load("  [ unmute ]  \n   language   =   it   \n", NULL), 0,
	    "spaces around headers, keys and values");
	is_str(c.unmute.language, "it", "value trimmed");
	conf_free(&c);
	is_int(load("\r\n[unmute]\r\nlanguage = es\r\n", NULL), 0, "CRLF line ends");
	is_str(c.unmute.language, "es", "CR not part of the value");
	conf_free(&c);
	is_int(load("threads = 7", NULL), 0, "last line without newline");
	is_int(c.threads, 7, "last line without newline is read");
	conf_free(&c);
	is_int(load("; only\n# comments\n\n   ; indented comment\n", NULL), 0,
	    "comments only");
	conf_free(&c);
	is_int(load("threads = 2\nthreads = 9\n", NULL), 0, "repeated key");
	is_int(c.threads, 9, "the last of a repeated key wins");
	conf_free(&c);
	is_int(load("[unmute]\nlanguage = \"\"\nvoice = \"a = b ; c # d\"\n", NULL), 0,
	    "quoted values");
	is_str(c.unmute.language, NULL, "empty quoted string unsets");
	is_str(c.unmute.voice, "a = b ; c # d", "quoted value keeps = ; #");
	conf_free(&c);
	is_int(load("[unmute]\nvoice = \"ends in a backslash \\\\\"\n", NULL), 0,
	    "escaped backslash before the closing quote");
	is_str(c.unmute.voice, "ends in a backslash \\", "value ends in one backslash");
	conf_free(&c);
	is_int(load("[unmute]\nvoice = x\"y\n", NULL), 0, "quote inside a bare value");
	is_str(c.unmute.voice, "x\"y", "bare value kept as is");
	conf_free(&c);
	is_int(load("log = \"/var/log/with space.log\"\n", NULL), 0, "quoted path");
	is_str(c.log, "/var/log/with space.log", "quoted path with a space");
	conf_free(&c);
}

static void
test_durations_sizes(void)
{
	static const struct {
		const char	*v;
		long		 ms;
	} dur[] = {
		{ "500ms", 500 }, { "15s", 15000 }, { "2m", 120000 },
		{ "1h", 3600000 }, { "20", 20000 }, { "1.5s", 1500 },
		{ "250 ms", 250 }, { "0.5", 500 }, { "100ms", 100 },
	};
	static const struct {
		const char	*v;
		size_t		 n;
	} sz[] = {
		{ "64k", 65536 }, { "1m", 1048576 }, { "4096", 4096 },
		{ "2K", 2048 }, { "3M", 3145728 }, { "8kb", 8192 },
	};
	char	 text[128], name[128];
	size_t	 i;

	for (i = 0; i < sizeof(dur) / sizeof(dur[0]); i++) {
		snprintf(text, sizeof(text), "[unmute]\nturn_timeout = %s\n", dur[i].v);
		snprintf(name, sizeof(name), "duration '%s' = %ld ms", dur[i].v, dur[i].ms);
		if (load(text, NULL) != 0)
			printf("#   err '%s'\n", err);
		is_int(c.unmute.turn_timeout_ms, dur[i].ms, name);
		conf_free(&c);
	}
	for (i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
		snprintf(text, sizeof(text), "max_body = %s\n", sz[i].v);
		snprintf(name, sizeof(name), "size '%s' = %zu bytes", sz[i].v, sz[i].n);
		if (load(text, NULL) != 0)
			printf("#   err '%s'\n", err);
		is_int(c.max_body, sz[i].n, name);
		conf_free(&c);
	}
}

static void
test_bools_modes_enums(void)
{
	static const struct {
		const char	*v;
		int		 b;
	} bools[] = {
		{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
		{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 },
		{ "YES", 1 }, { "Off", 0 },
	};
	static const struct {
		const char	*v;
		int		 pm;
	} pms[] = {
		{ "static", PM_STATIC }, { "dynamic", PM_DYNAMIC },
		{ "ondemand", PM_ONDEMAND },
	};
	static const struct {
		const char	*v;
		int		 lvl;
	} lvls[] = {
		{ "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },
		{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};
	char	 text[128], name[128];
	size_t	 i;

	for (i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		/* allow_recording defaults to false, early_start to true. */
		snprintf(text, sizeof(text),
		    "[unmute]\nallow_recording = %s\nearly_start = %s\n",
		    bools[i].v, bools[i].v);
		snprintf(name, sizeof(name), "boolean '%s'", bools[i].v);
		if (load(text, NULL) != 0)
			printf("#   err '%s'\n", err);
		ok(c.unmute.allow_recording == bools[i].b &&
		    c.unmute.early_start == bools[i].b, "%s", name);
		conf_free(&c);
	}
	is_int(load("listen_mode = 0777\n", NULL), 0, "mode 0777");
	is_int(c.listen_mode, 0777, "mode read as octal");
	conf_free(&c);
	is_int(load("listen_mode = 660\n", NULL), 0, "mode without leading 0");
	is_int(c.listen_mode, 0660, "mode 660 is octal too");
	conf_free(&c);
	for (i = 0; i < sizeof(pms) / sizeof(pms[0]); i++) {
		snprintf(text, sizeof(text), "pm = %s\nprocesses = 4\n", pms[i].v);
		snprintf(name, sizeof(name), "pm '%s'", pms[i].v);
		if (load(text, NULL) != 0)
			printf("#   err '%s'\n", err);
		is_int(c.pm, pms[i].pm, name);
		conf_free(&c);
	}
	for (i = 0; i < sizeof(lvls) / sizeof(lvls[0]); i++) {
		snprintf(text, sizeof(text), "log_level = %s\n", lvls[i].v);
		snprintf(name, sizeof(name), "log_level '%s'", lvls[i].v);
		if (load(text, NULL) != 0)
			printf("#   err '%s'\n", err);
		is_int(c.log_level, lvls[i].lvl, name);
		conf_free(&c);
	}
}

static void
test_env(void)
{
	char *envp[] = {
		"TANDEM_LISTEN=127.0.0.1:9999",
		"TANDEM_UNMUTE_URL=ws://10.0.0.1:8000/v1/realtime,ws://10.0.0.2:8000/v1/realtime",
		"TANDEM_LLM_BASE_URL=https://env-llm.example/v1",
		"TANDEM_SEARCH_URL=http://env-search.example/",
		"TANDEM_FHIR_BASE_URL=http://env-fhir.example/r4",
		"TANDEM_NODE_LLM_TAGGER_MODEL=env-tagger",
		"TANDEM_THREADS=5",
		"TANDEM_UNMUTE_ALLOW_RECORDING=on",
		"UNRELATED=1",
		"TANDEM_LISTENX=not-this-one",
		NULL
	};
	const char *file =
	    "listen = 127.0.0.1:1111\n"
	    "threads = 50\n"
	    "[unmute]\nurl = ws://file.example/v1/realtime\n"
	    "[llm]\nbase_url = http://file-llm.example/v1\n"
	    "[node.llm_tagger]\nmodel = file-tagger\n"
	    "[search]\nurl = http://file-search.example/\n"
	    "[fhir]\nbase_url = http://file-fhir.example/\n";
	int rc;

	rc = load(file, envp);
	if (!ok(rc == 0, "file + environment load"))
		printf("#   err '%s'\n", err);
	is_str(c.listen, "127.0.0.1:9999", "TANDEM_LISTEN wins over the file");
	is_str(c.unmute.url,
	    "ws://10.0.0.1:8000/v1/realtime,ws://10.0.0.2:8000/v1/realtime",
	    "TANDEM_UNMUTE_URL wins");
	is_int(c.unmute.nurls, 2, "environment url list split");
	is_str(c.unmute.urls[0], "ws://10.0.0.1:8000/v1/realtime", "env urls[0]");
	is_str(c.unmute.urls[1], "ws://10.0.0.2:8000/v1/realtime", "env urls[1]");
	is_str(c.llm.base_url, "https://env-llm.example/v1", "TANDEM_LLM_BASE_URL wins");
	is_str(c.search.url, "http://env-search.example/", "TANDEM_SEARCH_URL wins");
	is_str(c.fhir.base_url, "http://env-fhir.example/r4", "TANDEM_FHIR_BASE_URL wins");
	is_str(c.llm.node[LLM_NODE_TAGGER].model, "env-tagger",
	    "TANDEM_NODE_LLM_TAGGER_MODEL wins");
	is_int(c.threads, 5, "TANDEM_THREADS wins");
	is_int(c.unmute.allow_recording, 1, "TANDEM_UNMUTE_ALLOW_RECORDING");
	conf_free(&c);

	{
		char *bad[] = { "TANDEM_THREADS=lots", NULL };
		load_fails(NULL, bad, "environment TANDEM_THREADS:",
		    "bad environment value names the variable");
	}
	{
		char *bad[] = { "TANDEM_LLM_BASE_URL=ftp://x/", NULL };
		load_fails("", bad, "[llm] base_url",
		    "environment value is checked like the file's");
	}
}

static void
test_errors(void)
{
	load_fails_with("threads = 4\n\nbogus = 1\n", "test.conf:3:", "bogus",
	    "unknown key, line 3");
	load_fails_with("[unmute]\nthreads = 4\n", "test.conf:2:", "threads",
	    "top-level key in a section is unknown");
	load_fails_with("; c\n\n[nosuch]\nx = 1\n", "test.conf:3:", "nosuch",
	    "unknown section, line 3");
	load_fails_with("; c\n\nthreads = many\n", "test.conf:3:", "threads",
	    "bad number, line 3");
	load_fails_with("; c\n\nthreads = 4x\n", "test.conf:3:", "threads",
	    "number with junk, line 3");
	load_fails_with("; c\n\nthreads = 2.5\n", "test.conf:3:", "threads",
	    "fraction for an integer, line 3");
	load_fails_with("; c\n\nthreads = -1\n", "test.conf:3:", "threads",
	    "negative number, line 3");
	load_fails_with("; c\n\nthreads = 0\n", "test.conf:3:", "out of range",
	    "below the minimum, line 3");
	load_fails_with("; c\n\nprocesses = 257\n", "test.conf:3:", "out of range",
	    "above the maximum, line 3");
	load_fails_with("; c\n\nmax_requests = 99999999999\n", "test.conf:3:",
	    "range", "int overflow, line 3");
	load_fails_with("; c\n\nheartbeat_interval = 10d\n", "test.conf:3:",
	    "unit", "bad duration unit, line 3");
	load_fails_with("; c\n\nheartbeat_interval = 10 sec\n", "test.conf:3:",
	    "unit", "duration unit 'sec', line 3");
	load_fails_with("; c\n\nheartbeat_interval = 10ms\n", "test.conf:3:",
	    "range", "duration below minimum, line 3");
	load_fails_with("; c\n\nmax_body = 10g\n", "test.conf:3:", "unit",
	    "bad size unit, line 3");
	load_fails_with("; c\n\nmax_body = 1\n", "test.conf:3:", "range",
	    "size below minimum, line 3");
	load_fails_with("[unmute]\n\nallow_recording = maybe\n", "test.conf:3:",
	    "boolean", "bad boolean, line 3");
	load_fails_with("[unmute]\n\nallow_recording =\n", "test.conf:3:",
	    "boolean", "empty boolean, line 3");
	load_fails_with("[unmute]\n\nvoice = \"open\n", "test.conf:3:",
	    "unterminated", "unterminated quote, line 3");
	/*
	 * Regressions of a bug found by these tests (fixed in 75e9669):
	 * unquote() only looked at the first and last characters, so a
	 * lone '"', an escaped final quote or text after the closing
	 * quote were taken as values.
	 */
	load_fails_with("[unmute]\n\nvoice = \"\n", "test.conf:3:",
	    "unterminated", "a lone quote is unterminated, line 3");
	load_fails_with("[unmute]\n\nvoice = \"abc\\\"\n", "test.conf:3:",
	    "unterminated", "an escaped final quote does not close, line 3");
	load_fails_with("[unmute]\n\nvoice = \"a\" junk \"b\"\n", "test.conf:3:",
	    "voice", "junk after the closing quote, line 3");
	load_fails_with("; c\n\nthreads 4\n", "test.conf:3:", "=",
	    "missing '=', line 3");
	load_fails_with("; c\n\n[unmute\n", "test.conf:3:", "section",
	    "bad section header, line 3");
	load_fails_with("; c\n\n[unmute] x\n", "test.conf:3:", "section",
	    "junk after section header, line 3");
	load_fails_with("; c\n\nlisten_mode = 0999\n", "test.conf:3:", "octal",
	    "bad octal mode, line 3");
	load_fails_with("; c\n\nlisten_mode = 010000\n", "test.conf:3:", "octal",
	    "mode out of range, line 3");
	load_fails_with("; c\n\npm = sometimes\n", "test.conf:3:", "pm",
	    "bad pm, line 3");
	load_fails_with("; c\n\nlog_level = loud\n", "test.conf:3:", "log_level",
	    "bad log level, line 3");
	load_fails_with("[node.medical]\n\ntemperature = warm\n", "test.conf:3:",
	    "temperature", "bad double, line 3");
	load_fails_with("; c\n\n= 4\n", "test.conf:3:", "unknown key",
	    "empty key, line 3");
	load_fails_with("[node.nosuch]\nmodel = x\n", "test.conf:1:", "node.nosuch",
	    "unknown node section, line 1");
}

static void
test_relations(void)
{
	load_fails("pm = dynamic\nprocesses = 2\nstart_processes = 3\n", NULL,
	    "start_processes", "dynamic: start_processes > processes");
	load_fails("pm = ondemand\nprocesses = 2\nstart_processes = 3\n", NULL,
	    "start_processes", "ondemand: start_processes > processes");
	is_int(load("pm = static\nprocesses = 2\nstart_processes = 3\n", NULL), 0,
	    "static ignores start_processes");
	conf_free(&c);
	is_int(load("pm = dynamic\nprocesses = 3\nstart_processes = 3\n", NULL), 0,
	    "dynamic: start_processes == processes is fine");
	conf_free(&c);
	load_fails("pm = dynamic\nprocesses = 8\nmin_spare_processes = 5\n"
	    "max_spare_processes = 4\n", NULL, "min_spare",
	    "dynamic: min_spare > max_spare");
	load_fails("request_timeout = 5s\n[unmute]\nconnect_timeout = 5s\n", NULL,
	    "[unmute] connect_timeout", "connect_timeout == request_timeout");
	load_fails("request_timeout = 5s\n[unmute]\nconnect_timeout = 6s\n", NULL,
	    "[unmute] connect_timeout", "connect_timeout > request_timeout");
	is_int(load("request_timeout = 5s\n[unmute]\nconnect_timeout = 4999ms\n"
	    "heartbeat_interval = 1s\n", NULL), -1,
	    "heartbeat_interval in [unmute] is unknown");
	conf_free(&c);
	is_int(load("request_timeout = 5s\nheartbeat_interval = 1s\n"
	    "[unmute]\nconnect_timeout = 4999ms\n", NULL), 0,
	    "connect_timeout just below request_timeout");
	conf_free(&c);
	load_fails("request_timeout = 10s\nheartbeat_interval = 10s\n", NULL,
	    "heartbeat_interval", "heartbeat_interval == request_timeout");
	load_fails("[unmute]\nurl = http://127.0.0.1:8000/v1/realtime\n", NULL,
	    "[unmute] url", "http unmute url refused");
	load_fails("[unmute]\nurl = ws://a/x, https://b/x\n", NULL,
	    "[unmute] url", "one bad url in the list refused");
	load_fails("[unmute]\nurl =\n", NULL, "[unmute] url", "empty unmute url");
	load_fails("[unmute]\nurl = \" , \"\n", NULL, "[unmute] url",
	    "unmute url of separators only");
	load_fails("[llm]\nbase_url = ws://127.0.0.1:8001/v1\n", NULL,
	    "[llm] base_url", "ws llm url refused");
	load_fails("[llm]\nbase_url =\n", NULL, "[llm] base_url",
	    "empty llm url refused");
	load_fails("[search]\nurl = 127.0.0.1:9/x\n", NULL, "[search] url",
	    "search url without scheme refused");
	load_fails("[fhir]\nbase_url = file:///etc/passwd\n", NULL,
	    "[fhir] base_url", "file fhir url refused");
	load_fails("[unmute]\nfollow_up = never\n", NULL, "[unmute] follow_up",
	    "bad follow_up");
	load_fails("log_format = xml\n", NULL, "log_format", "bad log_format");
}

static void
test_url_list(void)
{
	char	 text[1024];
	int	 i, rc;
	size_t	 n;

	rc = load("[unmute]\nurl = ws://a:1/v1/realtime, wss://b:2/v1/realtime,"
	    "ws://c:3/v1/realtime  ws://d:4/v1/realtime\n", NULL);
	if (!ok(rc == 0, "url list loads"))
		printf("#   err '%s'\n", err);
	is_int(c.unmute.nurls, 4, "four urls");
	is_str(c.unmute.urls[0], "ws://a:1/v1/realtime", "urls[0]");
	is_str(c.unmute.urls[1], "wss://b:2/v1/realtime", "urls[1]");
	is_str(c.unmute.urls[2], "ws://c:3/v1/realtime", "urls[2]");
	is_str(c.unmute.urls[3], "ws://d:4/v1/realtime", "urls[3] (space separated)");
	conf_free(&c);
	is_int(c.unmute.nurls, 0, "conf_free clears nurls");

	n = (size_t)snprintf(text, sizeof(text), "[unmute]\nurl = ");
	for (i = 0; i < CONF_MAX_UNMUTE_URLS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "ws://h%d/x,", i);
	snprintf(text + n, sizeof(text) - n, "\n");
	is_int(load(text, NULL), 0, "CONF_MAX_UNMUTE_URLS urls accepted");
	is_int(c.unmute.nurls, CONF_MAX_UNMUTE_URLS, "all of them kept");
	conf_free(&c);
	text[n - 1] = '\0';
	strncat(text, ",ws://one-too-many/x\n", sizeof(text) - strlen(text) - 1);
	load_fails(text, NULL, "[unmute] url", "one url too many refused");
}

static void
test_secrets(void)
{
	char	*tok, *key, *empty, text[512];
	char	 dump[16384];
	FILE	*f;
	size_t	 n;
	int	 rc;

	tok = temp_file("s3cret-T0KEN-value\nsecond line is not the token\n");
	key = temp_file("sk-APIKEY-abcdef");
	empty = temp_file("\n");
	if (tok == NULL || key == NULL || empty == NULL) {
		ok(0, "temporary files");
		return;
	}
	snprintf(text, sizeof(text), "auth_token_file = %s\n[llm]\napi_key_file = %s\n",
	    tok, key);
	rc = load(text, NULL);
	if (!ok(rc == 0, "secret files load"))
		printf("#   err '%s'\n", err);
	is_str(c.auth_token, "s3cret-T0KEN-value", "token: first line, no newline");
	is_str(c.llm.api_key, "sk-APIKEY-abcdef", "api key without trailing newline");
	is_str(c.auth_token_file, tok, "auth_token_file path kept");

	memset(dump, 0, sizeof(dump));
	f = fmemopen(dump, sizeof(dump) - 1, "w");
	conf_dump(&c, f);
	fclose(f);
	n = strlen(dump);
	ok(n > 200, "conf_dump prints something (%zu bytes)", n);
	ok(strstr(dump, "s3cret-T0KEN-value") == NULL, "conf_dump hides the token");
	ok(strstr(dump, "sk-APIKEY") == NULL, "conf_dump hides the API key");
	ok(strstr(dump, "\n[unmute]\n") != NULL, "conf_dump has [unmute]");
	ok(strstr(dump, "threads = 32\n") != NULL, "conf_dump shows threads");
	ok(strstr(dump, "heartbeat_interval = 15000ms\n") != NULL,
	    "conf_dump shows durations in ms");
	conf_free(&c);
	is_str(c.auth_token, NULL, "conf_free clears the token");

	/* Credentials in URLs are not printed either. */
	ok(load("[unmute]\nurl = wss://bob:Pa55w0rd@u1.example/v1/realtime?"
	    "token=T0KEN1, ws://u2.example:8000/v1/realtime\n"
	    "[llm]\nbase_url = https://key:SEKRIT@llm.example/v1\n"
	    "[search]\nurl = http://s.example/search?apikey=QKEY\n", NULL) == 0,
	    "URLs with credentials load (%s)", err);
	memset(dump, 0, sizeof(dump));
	f = fmemopen(dump, sizeof(dump) - 1, "w");
	conf_dump(&c, f);
	fclose(f);
	ok(strstr(dump, "Pa55w0rd") == NULL && strstr(dump, "bob") == NULL,
	    "conf_dump hides a URL's userinfo");
	ok(strstr(dump, "T0KEN1") == NULL && strstr(dump, "QKEY") == NULL,
	    "conf_dump hides a URL's query");
	ok(strstr(dump, "SEKRIT") == NULL, "conf_dump hides [llm] base_url's userinfo");
	ok(strstr(dump, "url = wss://***@u1.example/v1/realtime?***, "
	    "ws://u2.example:8000/v1/realtime\n") != NULL,
	    "conf_dump keeps the rest of each URL");
	ok(strstr(dump, "base_url = https://***@llm.example/v1\n") != NULL,
	    "conf_dump keeps the LLM host");
	conf_free(&c);
	is_str(c.llm.api_key, NULL, "conf_free clears the api key");

	unlink(key);
	snprintf(text, sizeof(text), "[llm]\napi_key_file = %s\n", key);
	load_fails(text, NULL, key, "missing api_key_file is an error naming it");
	snprintf(text, sizeof(text), "auth_token_file = /nonexistent/tandem-token\n");
	load_fails(text, NULL, "/nonexistent/tandem-token",
	    "missing auth_token_file is an error");
	snprintf(text, sizeof(text), "auth_token_file = %s\n", empty);
	load_fails(text, NULL, empty, "empty secret file is an error");

	unlink(tok);
	unlink(empty);
	free(tok);
	free(key);
	free(empty);
}

/* conf_load() from a real file: name in errors, NUL bytes, size bound. */
static void
test_file(void)
{
	char	*path, *big, want[300];
	FILE	*f;
	size_t	 i;
	int	 rc;

	path = temp_file("; file\nthreads = 7\n[unmute]\nlanguage = nl\n");
	rc = conf_load(&c, path, err, sizeof(err));
	if (!ok(rc == 0, "conf_load of a file"))
		printf("#   err '%s'\n", err);
	is_int(c.threads, 7, "file threads");
	is_str(c.unmute.language, "nl", "file [unmute] language");
	conf_free(&c);

	f = fopen(path, "w");
	fputs("threads = 7\nbogus = 1\n", f);
	fclose(f);
	snprintf(want, sizeof(want), "%s:2:", path);
	rc = conf_load(&c, path, err, sizeof(err));
	ok(rc == -1 && strncmp(err, want, strlen(want)) == 0,
	    "error names the file and line: %s", err);
	conf_free(&c);

	f = fopen(path, "w");
	fwrite("threads = 7\n\0\nthreads = 8\n", 1, 26, f);
	fclose(f);
	rc = conf_load(&c, path, err, sizeof(err));
	ok(rc == -1 && strstr(err, "NUL") != NULL, "NUL byte refused: %s", err);
	conf_free(&c);

	f = fopen(path, "w");
	big = malloc(1024 * 1024 + 2);
	for (i = 0; i < 1024 * 1024 + 1; i++)
		big[i] = (i % 64 == 63) ? '\n' : ';';
	fwrite(big, 1, 1024 * 1024 + 1, f);
	fclose(f);
	free(big);
	rc = conf_load(&c, path, err, sizeof(err));
	ok(rc == -1 && strstr(err, "too large") != NULL, "file over 1 MiB refused: %s",
	    err);
	conf_free(&c);

	unlink(path);
	rc = conf_load(&c, path, err, sizeof(err));
	ok(rc == -1 && strstr(err, path) != NULL, "missing file: %s", err);
	conf_free(&c);
	free(path);
}

/* The same struct loaded and freed many times: ASan/LSan finds leaks. */
static void
test_reload(void)
{
	int i, fails = 0;

	for (i = 0; i < 50; i++) {
		if (load(every_key, NULL) != 0)
			fails++;
		conf_free(&c);
		if (load("bogus = 1\n", NULL) != -1)
			fails++;
		conf_free(&c);
	}
	is_int(fails, 0, "load/free cycles");
	conf_free(&c);
	ok(1, "conf_free twice is harmless");
}

int
main(void)
{
	test_defaults();
	test_every_key();
	test_sections();
	test_durations_sizes();
	test_bools_modes_enums();
	test_env();
	test_errors();
	test_relations();
	test_url_list();
	test_secrets();
	test_file();
	test_reload();
	return done();
}
