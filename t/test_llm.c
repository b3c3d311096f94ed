/*
 * llm: the client against a tiny HTTP server forked by the test on
 * 127.0.0.1:0. The first path segment of base_url picks what the
 * server does (a stream, an error status, a cut, a stall, …); "echo"
 * answers with the request it read, so the test can check the request.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "llm.h"
#include "tap.h"

static int	 port;
static pid_t	 server;

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" \
	"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
#define JSON_HEAD "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
	"Connection: close\r\n\r\n"
#define TOK(t) "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\"," \
	"\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" t "\"}," \
	"\"finish_reason\":null}]}\n\n"
#define ROLE "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":" \
	"\"assistant\"},\"finish_reason\":null}]}\n\n"
#define FINISH "data: {\"choices\":[{\"index\":0,\"delta\":{}," \
	"\"finish_reason\":\"stop\"}]}\n\n" \
	"data: {\"choices\":[],\"usage\":{\"total_tokens\":9}}\n\n"
#define DONE "data: [DONE]\n\n"

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
wr(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0 && (w = write(fd, s, n)) > 0) {
		s += w;
		n -= (size_t)w;
	}
}

/* Write s in pieces of `piece` bytes, pausing between them. */
static void
wr_pieces(int fd, const char *s, size_t piece, useconds_t pause)
{
	size_t n = strlen(s), k;

	while (n > 0) {
		k = n < piece ? n : piece;
		wr(fd, s, k);
		s += k;
		n -= k;
		if (pause)
			usleep(pause);
	}
}

/* Read one request (head and Content-Length body) into buf. */
static size_t
read_request(int fd, char *buf, size_t cap)
{
	size_t	 len = 0, need = 0;
	ssize_t	 r;
	char	*end, *cl;

	while (len < cap - 1 && (r = read(fd, buf + len, cap - 1 - len)) > 0) {
		len += (size_t)r;
		buf[len] = '\0';
		if (need == 0 && (end = strstr(buf, "\r\n\r\n")) != NULL) {
			need = (size_t)(end + 4 - buf);
			if ((cl = strcasestr(buf, "\r\nContent-Length:")) != NULL &&
			    cl < end)
				need += strtoul(cl + 17, NULL, 10);
		}
		if (need != 0 && len >= need)
			break;
	}
	buf[len] = '\0';
	return len;
}

/* Serve one connection, by the first path segment. */
static void
handle(int fd)
{
	static char	 req[65536];
	char		 scen[32] = "", *p, *resp;
	int		 i;

	read_request(fd, req, sizeof(req));
	if ((p = strchr(req, ' ')) != NULL)
		sscanf(p, " /%31[a-z0-9]", scen);

	if (strcmp(scen, "keep") == 0) {
		/* keep-alive: the content says which request of the connection */
		for (i = 1; i <= 10; i++) {
			char	 body[128], head[320];
			int	 n;

			if (i > 1 && (read_request(fd, req, sizeof(req)) == 0 ||
			    strstr(req, "/keep/") == NULL))
				break;
			if (strstr(req, "\"stream\":true") != NULL) {
				/* one chunk: a token, [DONE]; then the last chunk */
				n = snprintf(body, sizeof(body), "data: {\"choices\":"
				    "[{\"delta\":{\"content\":\"req %d\"}}]}\n\n"
				    "data: [DONE]\n\n", i);
				snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
				    "Content-Type: text/event-stream\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n%x\r\n", n);
				strncat(head, body, sizeof(head) - strlen(head) - 1);
				wr(fd, head, strlen(head));
				usleep(5000);
				wr(fd, "\r\n0\r\n\r\n", 7);
				continue;
			}
			if (strstr(req, "[[shape]]") != NULL)
				n = snprintf(body, sizeof(body), "{\"choices\":[]}");
			else
				n = snprintf(body, sizeof(body), "{\"choices\":"
				    "[{\"message\":{\"content\":\"req %d\"}}]}", i);
			snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: "
			    "application/json\r\nContent-Length: %d\r\n\r\n", n);
			wr(fd, head, strlen(head));
			wr(fd, body, (size_t)n);
		}
	} else if (strcmp(scen, "ok") == 0)
		/* small pieces: lines and UTF-8 characters split */
		wr_pieces(fd, SSE_HEAD ROLE TOK("Hel") TOK("lo ")
		    TOK("\xe6\x97\xa5\xe6\x9c\xac") TOK("\xf0\x9f\x98\x80")
		    FINISH DONE, 5, 300);
	else if (strcmp(scen, "chunked") == 0) {
		static const char body[] =
		    ": keep-alive\r\n\r\n"
		    "data:{\"choices\":[{\"delta\":{\"content\":\"caf\"}}]}\r\n\r\n"
		    "data: {\"choices\":[{\"delta\":{\"content\":\"\xc3\xa9\"}}]}\r\n\r\n"
		    "data: [DONE]\r\n\r\n";
		char	 chunk[64];
		size_t	 at = 0, n = sizeof(body) - 1, k;

		static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: "
		    "text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

		wr(fd, head, sizeof(head) - 1);
		while (at < n) {
			k = n - at < 7 ? n - at : 7;
			snprintf(chunk, sizeof(chunk), "%zx\r\n", k);
			wr(fd, chunk, strlen(chunk));
			wr(fd, body + at, k);
			wr(fd, "\r\n", 2);
			at += k;
			usleep(500);
		}
		wr(fd, "0\r\n\r\n", 5);
		sleep(3);	/* keep-alive: [DONE] must end the call */
	} else if (strcmp(scen, "json") == 0)
		wr_pieces(fd, JSON_HEAD "{\"id\":\"c2\",\"object\":\"chat.completion\","
		    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		    "\"content\":\"{\\\"tag\\\":\\\"medical\\\"}\"},\"finish_reason\":"
		    "\"stop\"}],\"usage\":{\"total_tokens\":3}}", 1000, 0);
	else if (strcmp(scen, "echo") == 0 || strcmp(scen, "echostream") == 0) {
		struct json_object *o = json_object_new_object(), *a, *c, *m;
		const char *js;

		a = json_object_new_array();
		c = json_object_new_object();
		m = json_object_new_object();
		json_object_object_add(m, "content", json_object_new_string(req));
		json_object_object_add(c, scen[4] ? "delta" : "message", m);
		json_object_array_add(a, c);
		json_object_object_add(o, "choices", a);
		js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		if (scen[4]) {
			wr(fd, SSE_HEAD "data: ", sizeof(SSE_HEAD) - 1 + 6);
			wr(fd, js, strlen(js));
			wr(fd, "\n\n" DONE, 2 + sizeof(DONE) - 1);
		} else {
			wr(fd, JSON_HEAD, sizeof(JSON_HEAD) - 1);
			wr(fd, js, strlen(js));
		}
		json_object_put(o);
	} else if (strcmp(scen, "v1") == 0) {
		/* a base_url with no path: the request line tells where it went */
		p = strstr(req, " HTTP/1.1\r\n");
		wr(fd, JSON_HEAD "{\"choices\":[{\"message\":{\"content\":\"",
		    strlen(JSON_HEAD "{\"choices\":[{\"message\":{\"content\":\""));
		if (p != NULL)
			wr(fd, req, (size_t)(p - req));
		wr(fd, "\"}}]}", 5);
	} else if (strcmp(scen, "rfmode") == 0) {
		/* an older llama.cpp: response_format is a 400 */
		if (strstr(req, "\"response_format\"") != NULL)
			wr_pieces(fd, "HTTP/1.1 400 Bad Request\r\nContent-Type: "
			    "application/json\r\nConnection: close\r\n\r\n"
			    "{\"error\":{\"code\":400,\"message\":\"Unsupported "
			    "response_format\",\"type\":\"invalid_request_error\"}}",
			    1000, 0);
		else
			wr_pieces(fd, JSON_HEAD "{\"choices\":[{\"message\":"
			    "{\"content\":\"{\\\"route\\\":\\\"web\\\"}\"}}]}",
			    1000, 0);
	} else if (strcmp(scen, "parts") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":[{\"message\":{\"role\":"
		    "\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
		    "\"{\\\"route\\\":\"},{\"type\":\"image_url\",\"image_url\":"
		    "{}},{\"type\":\"text\",\"text\":\"\\\"web\\\"}\"}]}}]}",
		    1000, 0);
	else if (strcmp(scen, "badutf8") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":[{\"message\":{\"content\":"
		    "\"caf\xc3 \\u0000ok\"}}]}", 1000, 0);
	else if (strcmp(scen, "plainstream") == 0)
		/* stream asked, one JSON answer with a non-JSON type */
		wr_pieces(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
		    "Connection: close\r\n\r\n \n{\"choices\":[{\"message\":"
		    "{\"content\":\"whole\"}}]}", 1000, 0);
	else if (strcmp(scen, "nodone") == 0)
		/* finish_reason, then a clean close without [DONE] */
		wr_pieces(fd, SSE_HEAD ROLE TOK("all") TOK(" here") FINISH, 1000, 0);
	else if (strcmp(scen, "e500") == 0)
		wr_pieces(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
		    "application/json\r\nConnection: close\r\n\r\n"
		    "{\"error\":{\"message\":\"internal boom\",\"type\":\"server_error\"}}",
		    1000, 0);
	else if (strcmp(scen, "e429") == 0)
		wr_pieces(fd, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: "
		    "application/json\r\nConnection: close\r\n\r\n"
		    "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}    \n",
		    1000, 0);
	else if (strcmp(scen, "e404") == 0)
		wr_pieces(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
		    "Connection: close\r\n\r\n<html><body>Not Found</body></html>",
		    1000, 0);
	else if (strcmp(scen, "cut") == 0)
		wr_pieces(fd, SSE_HEAD ROLE TOK("The answer") TOK(" is"), 1000, 0);
	else if (strcmp(scen, "cutmid") == 0)
		wr_pieces(fd, SSE_HEAD TOK("a") "data: {\"choi", 1000, 0);
	else if (strcmp(scen, "stall") == 0) {
		wr_pieces(fd, SSE_HEAD ROLE TOK("first"), 1000, 0);
		sleep(3);
	} else if (strcmp(scen, "silent") == 0) {
		wr(fd, SSE_HEAD, sizeof(SSE_HEAD) - 1);
		sleep(3);
	} else if (strcmp(scen, "mute") == 0)
		sleep(3);
	else if (strcmp(scen, "slow") == 0) {
		wr(fd, SSE_HEAD, sizeof(SSE_HEAD) - 1);
		for (i = 0; i < 100; i++) {
			wr(fd, TOK("tick "), sizeof(TOK("tick ")) - 1);
			usleep(50000);
		}
	} else if (strcmp(scen, "malformed") == 0)
		wr_pieces(fd, SSE_HEAD TOK("x") "data: {nope}\n\n" DONE, 1000, 0);
	else if (strcmp(scen, "streamerr") == 0)
		wr_pieces(fd, SSE_HEAD TOK("x") "data: {\"error\":{\"message\":"
		    "\"model overloaded\"}}\n\n", 1000, 0);
	else if (strcmp(scen, "shape") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":[]}", 1000, 0);
	else if (strcmp(scen, "nullcontent") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":[{\"message\":{\"content\":null,"
		    "\"tool_calls\":[]}}]}", 1000, 0);
	else if (strcmp(scen, "notjson") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":", 1000, 0);
	else if (strcmp(scen, "error200") == 0)
		wr_pieces(fd, JSON_HEAD "{\"error\":{\"message\":\"bad model\"}}",
		    1000, 0);
	else if (strcmp(scen, "plainjson") == 0)
		wr_pieces(fd, JSON_HEAD "{\"choices\":[{\"message\":{\"content\":"
		    "\"whole answer\"}}]}", 1000, 0);
	else if (strcmp(scen, "big") == 0 || strcmp(scen, "bigstream") == 0) {
		wr(fd, scen[3] ? SSE_HEAD : JSON_HEAD,
		    scen[3] ? sizeof(SSE_HEAD) - 1 : sizeof(JSON_HEAD) - 1);
		if (scen[3]) {
			for (i = 0; i < 200; i++)
				wr(fd, TOK("0123456789"), sizeof(TOK("0123456789")) - 1);
			wr(fd, DONE, sizeof(DONE) - 1);
		} else {
			resp = malloc(5000);
			memset(resp, 'z', 5000);
			wr(fd, "{\"choices\":[{\"message\":{\"content\":\"", 36);
			wr(fd, resp, 5000);
			wr(fd, "\"}}]}", 5);
			free(resp);
		}
	} else if (strcmp(scen, "close") == 0)
		;	/* read the request, answer nothing */
	else
		wr_pieces(fd, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
		    1000, 0);
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* Fork the server; the port comes back through a pipe. */
static void
start_server(void)
{
	struct sockaddr_in	 sin;
	socklen_t		 sl = sizeof(sin);
	int			 lfd, fd, one = 1, pfd[2];
	pid_t			 pid;

	if (pipe(pfd) == -1)
		exit(2);
	if ((server = fork()) == 0) {
		close(pfd[0]);
		/* own group, killed whole at the end; off the TAP pipe */
		setpgid(0, 0);
		if ((fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		signal(SIGCHLD, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
		    listen(lfd, 64) == -1 ||
		    getsockname(lfd, (struct sockaddr *)&sin, &sl) == -1)
			_exit(2);
		port = ntohs(sin.sin_port);
		wr(pfd[1], (char *)&port, sizeof(port));
		close(pfd[1]);
		alarm(120);	/* never outlive a hung test */
		for (;;) {
			if ((fd = accept(lfd, NULL, NULL)) == -1) {
				if (errno == EINTR)
					continue;
				_exit(0);
			}
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if ((pid = fork()) == 0) {
				close(lfd);
				alarm(10);
				handle(fd);
				_exit(0);
			}
			close(fd);
		}
	}
	close(pfd[1]);
	if (read(pfd[0], &port, sizeof(port)) != sizeof(port)) {
		printf("Bail out! test server did not start\n");
		exit(2);
	}
	close(pfd[0]);
}

static struct conf	 conf;
static const char	*user_text = "hello";
static char		 base[128];

/* The defaults of tandem.conf, short timers for the tests. */
static void
conf_reset(const char *scenario)
{
	int i;

	memset(&conf, 0, sizeof(conf));
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/%s/v1/", port,
	    scenario);
	conf.llm.base_url = base;
	conf.llm.model = "test-model";
	conf.llm.connect_timeout_ms = 2000;
	conf.llm.first_token_timeout_ms = 5000;
	conf.llm.stall_timeout_ms = 5000;
	conf.llm.timeout_ms = 20000;
	conf.llm.max_response = 256 * 1024;
	for (i = 0; i < LLM_NODE__MAX; i++) {
		conf.llm.node[i].temperature = -1;
		conf.llm.node[i].max_tokens = 0;
	}
}

struct tokens {
	char	 text[4096];
	size_t	 len;
	int	 n;
	int	 abort_at;
};

static int
on_token(void *arg, const char *text, size_t len)
{
	struct tokens *t = arg;

	if (t->len + len < sizeof(t->text)) {
		memcpy(t->text + t->len, text, len);
		t->len += len;
		t->text[t->len] = '\0';
	}
	t->n++;
	return t->abort_at && t->n >= t->abort_at;
}

/* Run one call on node n; streamed when t is not NULL. */
static enum terr
chat(enum llm_node n, int json_mode, struct tokens *t, atomic_int *stop,
    struct llm_result *res)
{
	struct llm_call	 call;
	enum terr	 e;

	memset(&call, 0, sizeof(call));
	call.conf = &conf;
	call.node = n;
	call.messages = llm_messages("be brief", NULL, user_text);
	call.json_mode = json_mode;
	if (t != NULL) {
		call.on_token = on_token;
		call.arg = t;
	}
	call.stop = stop;
	e = llm_chat(&call, res);
	json_object_put(call.messages);
	return e;
}

static void
test_stream(void)
{
	struct llm_result	 res;
	struct tokens		 t;

	memset(&t, 0, sizeof(t));
	conf_reset("ok");
	is_str(terr_code(chat(LLM_NODE_POSTPROCESS, 0, &t, NULL, &res)), "ok",
	    "stream: ok");
	is_str(res.text, "Hello \xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80",
	    "stream: whole text");
	is_str(t.text, res.text, "stream: tokens concatenated == text");
	is_int(t.n, 4, "stream: 4 tokens to on_token");
	is_int(res.ntokens, 4, "stream: ntokens");
	is_int(res.http_status, 200, "stream: http_status");
	is_int(res.cancelled, 0, "stream: not cancelled");
	llm_result_free(&res);
	ok(res.text == NULL, "llm_result_free clears text");

	memset(&t, 0, sizeof(t));
	conf_reset("chunked");
	{
		long long t0 = now_ms();

		is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)),
		    "ok", "chunked CRLF stream: ok");
		ok(now_ms() - t0 < 2000,
		    "chunked: [DONE] ends the call, not the server's close");
	}
	is_str(res.text, "caf\xc3\xa9", "chunked CRLF stream: text");
	is_int(t.n, 2, "chunked CRLF stream: 2 tokens");
	llm_result_free(&res);

	memset(&t, 0, sizeof(t));
	conf_reset("plainjson");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)), "ok",
	    "stream asked, JSON answered: ok");
	is_str(t.text, "whole answer", "  the whole content as one token");
	is_int(t.n, 1, "  one token");
	llm_result_free(&res);
}

static void
test_json(void)
{
	struct llm_result res;

	conf_reset("json");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "non-streaming: ok");
	is_str(res.text, "{\"tag\":\"medical\"}", "non-streaming: content");
	llm_result_free(&res);

	conf_reset("shape");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_malformed", "empty choices: upstream_malformed");
	is_str(res.message, "LLM answer has no choices[0].message.content",
	    "  message");
	ok(res.text != NULL && res.text[0] == '\0', "  text is empty, not NULL");
	llm_result_free(&res);

	conf_reset("nullcontent");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_malformed", "content null: upstream_malformed");
	llm_result_free(&res);

	conf_reset("notjson");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_malformed", "truncated JSON: upstream_malformed");
	llm_result_free(&res);

	conf_reset("error200");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_http_error", "error object in a 200: upstream_http_error");
	is_str(res.message, "LLM error: bad model", "  message");
	llm_result_free(&res);

	conf_reset("big");
	conf.llm.max_response = 1024;
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_malformed", "answer over max_response: upstream_malformed");
	is_str(res.message, "LLM answer exceeds max_response", "  message");
	llm_result_free(&res);

	conf_reset("bigstream");
	conf.llm.max_response = 1024;
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_malformed",
	    "stream over max_response: upstream_malformed");
	ok(strlen(res.text) <= 1024, "  text kept within max_response (%zu)",
	    strlen(res.text));
	llm_result_free(&res);
}

/* What real servers do differently from OpenAI. */
static void
test_compat(void)
{
	struct llm_result	 res;
	struct tokens		 t;

	conf_reset("rfmode");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "response_format refused with 400: retried without it");
	is_str(res.text, "{\"route\":\"web\"}", "  the retry's content");
	llm_result_free(&res);
	conf_reset("e404");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_http_error", "other statuses: no retry, the error");
	llm_result_free(&res);

	conf_reset("parts");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "content as a list of parts: ok");
	is_str(res.text, "{\"route\":\"web\"}", "  the text parts joined");
	llm_result_free(&res);

	conf_reset("badutf8");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "content with invalid UTF-8 and NUL: ok");
	is_str(res.text, "caf\xef\xbf\xbd ok", "  cleaned as stream tokens are");
	llm_result_free(&res);

	memset(&t, 0, sizeof(t));
	conf_reset("plainstream");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)), "ok",
	    "stream ignored, JSON sent as text/plain: ok");
	is_str(t.text, "whole", "  the content as one token");
	llm_result_free(&res);

	memset(&t, 0, sizeof(t));
	conf_reset("nodone");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)), "ok",
	    "finish_reason then a clean close, no [DONE]: ok");
	is_str(res.text, "all here", "  the whole text");
	llm_result_free(&res);

	conf_reset("v1");
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "base_url without a path: ok");
	is_str(res.text, "POST /v1/chat/completions", "  /v1 added");
	llm_result_free(&res);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/", port);
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "POST /v1/chat/completions", "  also after a '/'");
	llm_result_free(&res);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", port);
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "POST /v1/chat/completions", "  /v1 given: kept once");
	llm_result_free(&res);
}

/* The echo server returns the request: check body and headers. */
static void
test_request(void)
{
	struct llm_result	 res;
	struct json_object	*o, *v, *m;
	const char		*body;
	struct tokens		 t;

	conf_reset("echo");
	conf.llm.api_key = "sk-test-123";
	conf.llm.node[LLM_NODE_TAGGER].model = "tagger-model";
	conf.llm.node[LLM_NODE_TAGGER].temperature = 0.7;
	conf.llm.node[LLM_NODE_TAGGER].max_tokens = 50;
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "echo: ok");
	ok(strncmp(res.text, "POST /echo/v1/chat/completions HTTP/1.1\r\n", 41) == 0,
	    "echo: POST to base_url/chat/completions, trailing '/' dropped");
	ok(strstr(res.text, "\r\nContent-Type: application/json\r\n") != NULL,
	    "echo: Content-Type json");
	ok(strstr(res.text, "\r\nAccept: application/json\r\n") != NULL,
	    "echo: Accept json when not streaming");
	ok(strstr(res.text, "\r\nAuthorization: Bearer sk-test-123\r\n") != NULL,
	    "echo: Authorization bearer");
	ok(strcasestr(res.text, "\r\nExpect:") == NULL, "echo: no Expect header");
	body = strstr(res.text, "\r\n\r\n");
	o = body ? json_tokener_parse(body + 4) : NULL;
	ok(o != NULL, "echo: body is JSON");
	ok(body && strchr(body + 4, '\n') == NULL, "echo: body on one line");
	is_str(json_object_object_get_ex(o, "model", &v) ?
	    json_object_get_string(v) : NULL, "tagger-model",
	    "echo: node model wins");
	ok(json_object_object_get_ex(o, "stream", &v) &&
	    json_object_is_type(v, json_type_boolean) &&
	    !json_object_get_boolean(v), "echo: stream false");
	ok(json_object_object_get_ex(o, "temperature", &v) &&
	    json_object_get_double(v) == 0.7, "echo: temperature 0.7");
	ok(body && strstr(body, "\"temperature\":0.7,") != NULL,
	    "echo: temperature written as 0.7");
	ok(json_object_object_get_ex(o, "max_tokens", &v) &&
	    json_object_get_int(v) == 50, "echo: max_tokens 50");
	ok(json_object_object_get_ex(o, "response_format", &v) &&
	    json_object_object_get_ex(v, "type", &v) &&
	    strcmp(json_object_get_string(v), "json_object") == 0,
	    "echo: response_format json_object");
	ok(json_object_object_get_ex(o, "messages", &m) &&
	    json_object_array_length(m) == 2, "echo: 2 messages");
	is_str(json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(m, 0), "role")), "system",
	    "echo: system first");
	is_str(json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(m, 1), "content")), "hello",
	    "echo: user content");
	json_object_put(o);
	llm_result_free(&res);

	conf.llm.api_key = "sk-1\r\nX-Injected: 1";
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "internal",
	    "echo: a key with a line break is refused, not sent");
	llm_result_free(&res);

	/* streamed, no key, node defaults: omitted fields */
	conf_reset("echostream");
	memset(&t, 0, sizeof(t));
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)), "ok",
	    "echostream: ok");
	ok(strstr(res.text, "\r\nAccept: text/event-stream\r\n") != NULL,
	    "echostream: Accept text/event-stream");
	ok(strstr(res.text, "Authorization") == NULL,
	    "echostream: no Authorization without a key");
	body = strstr(res.text, "\r\n\r\n");
	o = body ? json_tokener_parse(body + 4) : NULL;
	is_str(json_object_object_get_ex(o, "model", &v) ?
	    json_object_get_string(v) : NULL, "test-model",
	    "echostream: [llm] model");
	ok(json_object_object_get_ex(o, "stream", &v) &&
	    json_object_get_boolean(v), "echostream: stream true");
	ok(!json_object_object_get_ex(o, "temperature", NULL),
	    "echostream: temperature < 0 omitted");
	ok(!json_object_object_get_ex(o, "max_tokens", NULL),
	    "echostream: max_tokens 0 omitted");
	ok(!json_object_object_get_ex(o, "response_format", NULL),
	    "echostream: no response_format");
	json_object_put(o);
	llm_result_free(&res);
}

static void
test_errors(void)
{
	struct llm_result	 res;
	struct tokens		 t;
	long long		 t0;
	struct sockaddr_in	 sin;
	socklen_t		 sl = sizeof(sin);
	int			 fd;

	conf_reset("e500");
	memset(&t, 0, sizeof(t));
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)),
	    "upstream_http_error", "500: upstream_http_error");
	is_int(res.http_status, 500, "500: http_status");
	is_str(res.message, "LLM answered HTTP 500: internal boom", "500: message");
	is_int(t.n, 0, "500: no token from an error body");
	llm_result_free(&res);

	conf_reset("e429");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_http_error", "429: upstream_http_error");
	is_str(res.message, "LLM answered HTTP 429: Rate limit reached",
	    "429: message");
	llm_result_free(&res);

	conf_reset("e404");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_http_error", "404 html: upstream_http_error");
	is_str(res.message, "LLM answered HTTP 404", "404 html: message");
	llm_result_free(&res);

	conf_reset("cut");
	memset(&t, 0, sizeof(t));
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)),
	    "upstream_malformed", "cut: upstream_malformed");
	is_str(res.message, "stream ended before [DONE]", "cut: message");
	is_str(res.text, "The answer is", "cut: text has what came");
	is_int(t.n, 2, "cut: tokens before the cut were passed on");
	llm_result_free(&res);

	conf_reset("cutmid");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_malformed", "cut mid event: upstream_malformed");
	llm_result_free(&res);

	conf_reset("malformed");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_malformed", "invalid JSON event: upstream_malformed");
	is_str(res.message, "LLM stream event is not valid JSON", "  message");
	llm_result_free(&res);

	conf_reset("streamerr");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_http_error", "error in stream: upstream_http_error");
	is_str(res.message, "LLM stream error: model overloaded", "  message");
	llm_result_free(&res);

	conf_reset("close");
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "llm_unavailable", "closed without answer: llm_unavailable");
	llm_result_free(&res);

	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	close(fd);
	conf_reset("ok");
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", ntohs(sin.sin_port));
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "llm_unavailable", "refused: llm_unavailable");
	ok(strncmp(res.message, "LLM unavailable: ", 17) == 0,
	    "refused: message (%s)", res.message);
	is_int(res.http_status, 0, "refused: no status");
	llm_result_free(&res);

	conf_reset("ok");
	snprintf(base, sizeof(base), "ftp://127.0.0.1:%d/v1", port);
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, NULL, NULL, &res)),
	    "llm_unavailable", "ftp URL: llm_unavailable");
	llm_result_free(&res);

	/* timers */
	conf_reset("stall");
	conf.llm.stall_timeout_ms = 300;
	memset(&t, 0, sizeof(t));
	t0 = now_ms();
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)),
	    "upstream_timeout", "stall: upstream_timeout");
	ok(now_ms() - t0 >= 250 && now_ms() - t0 < 1000,
	    "stall: after ~300 ms (%lld)", now_ms() - t0);
	is_str(res.message, "LLM stream stalled for 300 ms", "stall: message");
	is_str(res.text, "first", "stall: text has what came");
	llm_result_free(&res);

	conf_reset("silent");
	conf.llm.first_token_timeout_ms = 300;
	t0 = now_ms();
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_timeout", "headers, no body: upstream_timeout");
	ok(now_ms() - t0 >= 250 && now_ms() - t0 < 1000,
	    "headers, no body: after ~300 ms (%lld)", now_ms() - t0);
	is_str(res.message, "LLM sent nothing within 300 ms", "  message");
	llm_result_free(&res);

	conf_reset("mute");
	conf.llm.first_token_timeout_ms = 300;
	t0 = now_ms();
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_timeout", "no answer at all: upstream_timeout");
	ok(now_ms() - t0 >= 250 && now_ms() - t0 < 1000,
	    "no answer at all: after ~300 ms (%lld)", now_ms() - t0);
	llm_result_free(&res);

	conf_reset("slow");
	conf.llm.timeout_ms = 400;
	t0 = now_ms();
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "upstream_timeout", "hard ceiling: upstream_timeout");
	ok(now_ms() - t0 >= 350 && now_ms() - t0 < 1200,
	    "hard ceiling: after ~400 ms (%lld)", now_ms() - t0);
	llm_result_free(&res);
}

struct stopper {
	atomic_int	*flag;
	long long	 at;
};

static void *
stop_later(void *arg)
{
	struct stopper *s = arg;

	usleep(300 * 1000);
	s->at = now_ms();
	atomic_store(s->flag, 1);
	return NULL;
}

static void
test_cancel(void)
{
	struct llm_result	 res;
	struct tokens		 t;
	struct stopper		 s;
	pthread_t		 th;
	atomic_int		 stop = 0;
	long long		 end;

	conf_reset("slow");
	memset(&t, 0, sizeof(t));
	s.flag = &stop;
	s.at = 0;
	pthread_create(&th, NULL, stop_later, &s);
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, &stop, &res)),
	    "stream_timeout", "stop flag: stream_timeout");
	end = now_ms();
	pthread_join(th, NULL);
	ok(s.at != 0 && end - s.at < 300, "stop flag: returned %lld ms after it",
	    end - s.at);
	is_int(res.cancelled, LLM_CANCEL_STOP, "stop flag: cancelled by stop");
	ok(t.n >= 2 && t.n <= 10, "stop flag: tokens came first (%d)", t.n);
	is_str(res.message, "LLM call cancelled", "stop flag: message");
	llm_result_free(&res);

	/* already set: nothing is waited for */
	conf_reset("slow");
	stop = 1;
	end = now_ms();
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, &stop,
	    &res)), "stream_timeout", "stop set before: stream_timeout");
	ok(now_ms() - end < 300, "stop set before: at once");
	llm_result_free(&res);

	conf_reset("ok");
	memset(&t, 0, sizeof(t));
	t.abort_at = 2;
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &t, NULL, &res)),
	    "stream_timeout", "on_token non-zero: stream_timeout");
	is_int(res.cancelled, LLM_CANCEL_CALLER, "on_token non-zero: by caller");
	is_int(t.n, 2, "on_token non-zero: no token after it");
	is_str(res.text, "Hello ", "on_token non-zero: text so far");
	llm_result_free(&res);
}

static void *
keep_call(void *arg)
{
	struct llm_result	*res = arg;

	chat(LLM_NODE_TAGGER, 1, NULL, NULL, res);
	return NULL;
}

/* Calls on one thread reuse a connection, unless the last one failed. */
static void
test_reuse(void)
{
	struct llm_result	 res, tres;
	pthread_t		 th;

	conf_reset("keep");
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)), "ok",
	    "keep-alive: first call ok");
	is_str(res.text, "req 1", "keep-alive: first call, new connection");
	llm_result_free(&res);
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "req 2", "keep-alive: second call reuses it");
	llm_result_free(&res);
	is_str(terr_code(chat(LLM_NODE_MEDICAL, 0, &(struct tokens){ 0 }, NULL,
	    &res)), "ok", "keep-alive: a streamed call");
	is_str(res.text, "req 3", "keep-alive: streamed call reuses it");
	llm_result_free(&res);
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "req 4",
	    "keep-alive: kept after a stream (its end read after [DONE])");
	llm_result_free(&res);

	pthread_create(&th, NULL, keep_call, &tres);
	pthread_join(th, NULL);
	is_str(tres.text, "req 1", "keep-alive: another thread, its own connection");
	llm_result_free(&tres);

	/* a wrong shape on a healthy connection: not kept all the same */
	user_text = "[[shape]]";
	is_str(terr_code(chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res)),
	    "upstream_malformed", "keep-alive: a malformed answer");
	llm_result_free(&res);
	user_text = "hello";
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "req 1", "keep-alive: after a failed call, a new connection");
	llm_result_free(&res);
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "req 2", "keep-alive: then reused again");
	llm_result_free(&res);
	llm_thread_cleanup();
	chat(LLM_NODE_TAGGER, 1, NULL, NULL, &res);
	is_str(res.text, "req 1", "keep-alive: llm_thread_cleanup closes it");
	llm_result_free(&res);
}

static void
test_messages(void)
{
	struct json_object	*h, *m;
	const char		*js;

	h = json_tokener_parse("[{\"role\":\"user\",\"content\":\"hi\",\"ts\":1},"
	    "{\"role\":\"assistant\",\"content\":\"hello\",\"extra\":{}},"
	    "{\"role\":\"user\"},\"junk\",{\"role\":1,\"content\":\"x\"}]");
	m = llm_messages("sys", h, "now");
	js = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
	is_str(js, "[{\"role\":\"system\",\"content\":\"sys\"},"
	    "{\"role\":\"user\",\"content\":\"hi\"},"
	    "{\"role\":\"assistant\",\"content\":\"hello\"},"
	    "{\"role\":\"user\",\"content\":\"now\"}]",
	    "llm_messages: system, valid history (role+content only), user");
	json_object_put(m);
	json_object_put(h);

	m = llm_messages(NULL, NULL, "only");
	is_str(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN),
	    "[{\"role\":\"user\",\"content\":\"only\"}]",
	    "llm_messages: no system, no history");
	json_object_put(m);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	start_server();
	test_messages();
	test_stream();
	test_json();
	test_request();
	test_compat();
	test_errors();
	test_cancel();
	test_reuse();
	kill(-server, SIGTERM);
	waitpid(server, NULL, 0);
	curl_global_cleanup();
	return done();
}
