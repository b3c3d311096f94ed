/*
 * tandem.conf: an INI file in the manner of php-fpm (SPEC.md §6).
 * Every key is a row of the table in conf.c; every key may also come
 * from the environment as TANDEM_<SECTION>_<KEY> (upper case, '.' and
 * '-' become '_'), which wins over the file.
 */
#ifndef TANDEM_CONF_H
#define TANDEM_CONF_H

#include <stddef.h>
#include <stdio.h>

#define CONF_MAX_UNMUTE_URLS	8
#define CONF_STR_MAX		256

enum pm_style {
	PM_STATIC,
	PM_DYNAMIC,
	PM_ONDEMAND
};

enum log_level {
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_NOTICE,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG
};

/* Nodes that call the LLM, each with its own settings ([node.NAME]). */
enum llm_node {
	LLM_NODE_TAGGER,
	LLM_NODE_PRECHECK,
	LLM_NODE_POSTPROCESS,
	LLM_NODE_UPDATE,
	LLM_NODE_MEDICAL,
	LLM_NODE_UI_CHANGE,
	LLM_NODE__MAX
};

struct conf_node {
	char	*model;		/* NULL: [llm] model */
	char	*prompt;	/* system prompt; NULL: built-in default */
	double	 temperature;
	int	 max_tokens;
	long	 timeout_ms;	/* ceiling of this node's call; 0: [llm] timeout */
};

struct conf {
	/* top level */
	char		*listen;	/* host:port, [v6]:port, unix:/path, /path, fd:N; NULL: fd 0 or default */
	int		 listen_mode;	/* unix socket mode */
	char		*listen_owner;
	char		*listen_group;
	int		 listen_backlog;
	char		*user;		/* drop privileges to this user when root */
	char		*group;
	char		*pid_file;
	enum pm_style	 pm;
	int		 processes;	/* static: count; dynamic/ondemand: maximum */
	int		 start_processes;
	int		 min_spare_processes;
	int		 max_spare_processes;
	long		 process_idle_timeout_ms;
	int		 threads;	/* acceptor threads per process */
	int		 max_requests;	/* 0: never recycle */
	int		 max_streams;	/* across the pool */
	long		 request_timeout_ms;
	long		 heartbeat_ms;
	long		 drain_timeout_ms;
	long		 slow_ms;	/* a stream longer than this counts as slow */
	size_t		 max_body;
	char		*cors_origins;	/* comma-separated, "*" allowed */
	char		*auth_token_file;
	char		*auth_token;	/* read from auth_token_file, never logged */
	enum log_level	 log_level;
	char		*log;		/* stderr, syslog or a file path */
	char		*log_format;	/* text or json */

	struct {
		char	*url;		/* comma-separated list */
		char	*urls[CONF_MAX_UNMUTE_URLS];
		int	 nurls;
		char	*voice;
		char	*instructions;	/* persona */
		char	*language;
		int	 allow_recording;
		int	 response_create;
		char	*follow_up;	/* "session" (fresh session) or "update" */
		long	 connect_timeout_ms;
		long	 turn_timeout_ms;
		long	 stall_timeout_ms;
		long	 busy_wait_ms;
		int	 max_sessions;	/* per URL, across the pool */
		size_t	 max_message;
		int	 early_start;
		int	 tls_insecure;	/* tests only */
	} unmute;

	struct {
		char	*base_url;
		char	*model;
		char	*api_key_file;
		char	*api_key;	/* read from api_key_file, never logged */
		long	 connect_timeout_ms;
		long	 first_token_timeout_ms;
		long	 stall_timeout_ms;
		long	 timeout_ms;	/* hard ceiling of one call */
		size_t	 max_response;
		struct conf_node node[LLM_NODE__MAX];
	} llm;

	struct {
		char	*url;
		long	 timeout_ms;
		int	 max_results;
	} search;

	struct {
		char	*base_url;
		long	 timeout_ms;
	} fhir;
};

/*
 * Load defaults, then the file (NULL: none), then the environment.
 * Return 0, or -1 with a message "file:line: key: reason" in err.
 */
int	 conf_load(struct conf *, const char *file, char *err, size_t errsz);
/* Parse from a string instead of a file (tests). */
int	 conf_load_string(struct conf *, const char *text, const char *name,
	    char **envp, char *err, size_t errsz);
void	 conf_free(struct conf *);
/* Print the effective configuration, secrets masked (tandem -t). */
void	 conf_dump(const struct conf *, FILE *);
const char *conf_node_name(enum llm_node);

#endif
