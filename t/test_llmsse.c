/*
 * llmsse: a corpus of chat completions streams in the styles of OpenAI,
 * vLLM, Ollama and llama.cpp server, plus framing oddities and faults.
 * Each is fed whole, byte by byte, cut in two at every position, and in
 * random pieces (fixed seed): the tokens (concatenated), their count,
 * the outcome and the message must be the same every time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "llmsse.h"
#include "tap.h"
#include "utf8.h"

struct sink {
	char	 text[8192];
	size_t	 len;
	int	 n;
	int	 abort_after;	/* 0: never */
	int	 bad;		/* tokens that are not valid UTF-8 */
};

struct outcome {
	enum llmsse_status status;
	char	 text[8192];
	int	 n;
	char	 message[160];
};

struct stream {
	const char	*name;
	const char	*bytes;
	enum llmsse_status want;
	const char	*tokens;
	int		 ntokens;
	const char	*message;	/* NULL: not checked */
	int		 abort_after;
};

#define OA_HEAD	"{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\"," \
	"\"created\":1718000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\","
#define OA_TOK(t) "data: " OA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" \
	t "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
#define LC_TOK(t) "data: {\"choices\":[{\"finish_reason\":null,\"index\":0," \
	"\"delta\":{\"content\":\"" t "\"}}],\"created\":1718000000,\"id\":" \
	"\"chatcmpl-abc\",\"model\":\"qwen\",\"object\":\"chat.completion.chunk\"}\n\n"
#define TOK(t)	"data: {\"choices\":[{\"delta\":{\"content\":\"" t "\"}}]}\n\n"

static const struct stream corpus[] = {
	{ "openai", 
	    "data: " OA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":"
	    "\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
	    "\"finish_reason\":null}],\"usage\":null}\n\n"
	    OA_TOK("Hello")
	    OA_TOK(" world")
	    OA_TOK("!")
	    "data: " OA_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":"
	    "null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
	    "data: " OA_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
	    "\"completion_tokens\":3,\"total_tokens\":12}}\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "Hello world!", 3, NULL, 0 },
	{ "vllm",
	    "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	    "\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[{\"index\":0,"
	    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
	    "\"finish_reason\":null}]}\n\n"
	    "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\"},"
	    "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	    "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xc3\xa9 "
	    "au lait\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	    "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
	    "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "caf\xc3\xa9 au lait", 2, NULL, 0 },
	{ "ollama",
	    "data: {\"id\":\"chatcmpl-42\",\"object\":\"chat.completion.chunk\","
	    "\"created\":1,\"model\":\"llama3.2\",\"system_fingerprint\":\"fp_ollama\","
	    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
	    "\"\xe6\x97\xa5\xe6\x9c\xac\"},\"finish_reason\":null}]}\n\n"
	    "data: {\"id\":\"chatcmpl-42\",\"object\":\"chat.completion.chunk\","
	    "\"created\":1,\"model\":\"llama3.2\",\"system_fingerprint\":\"fp_ollama\","
	    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
	    "\"\\u8a9e\"},\"finish_reason\":null}]}\n\n"
	    "data: {\"id\":\"chatcmpl-42\",\"object\":\"chat.completion.chunk\","
	    "\"created\":1,\"model\":\"llama3.2\",\"system_fingerprint\":\"fp_ollama\","
	    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
	    "\"\"},\"finish_reason\":\"stop\"}]}\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 2, NULL, 0 },
	{ "llamacpp",
	    "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":"
	    "{\"role\":\"assistant\",\"content\":null}}],\"created\":1,\"id\":"
	    "\"chatcmpl-abc\",\"model\":\"qwen\",\"object\":\"chat.completion.chunk\"}\n\n"
	    LC_TOK("Hi ")
	    LC_TOK("\xf0\x9f\x91\x8b")
	    LC_TOK("\\ud83d\\ude00")
	    "data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],"
	    "\"created\":1,\"id\":\"chatcmpl-abc\",\"model\":\"qwen\",\"object\":"
	    "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":3},"
	    "\"timings\":{\"predicted_ms\":12.5}}\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "Hi \xf0\x9f\x91\x8b\xf0\x9f\x98\x80", 3, NULL, 0 },
	{ "crlf",
	    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"one\"}}]}\r\n\r\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\" two\"}}]}\r\n\r\n"
	    "data: [DONE]\r\n\r\n",
	    LLMSSE_DONE, "one two", 2, NULL, 0 },
	{ "crlf inside a multi-line event",
	    "event: chunk\r\n"
	    "data: {\"choices\":[{\"delta\":\r\n"
	    "data: {\"content\":\"crlf\"}}]}\r\n"
	    "\r\n"
	    "data: [DONE]\r\n\r\n",
	    LLMSSE_DONE, "crlf", 1, NULL, 0 },
	{ "cr only",
	    "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\r"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\r\r"
	    "data: [DONE]\r\r",
	    LLMSSE_DONE, "ab", 2, NULL, 0 },
	{ "mixed line ends",
	    "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\r"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"z\"}}]}\r\r\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "xyz", 3, NULL, 0 },
	{ "comments and other fields",
	    ": OPENROUTER PROCESSING\n\n"
	    ":ping\n"
	    "event: message\n"
	    "id: 17\n"
	    "retry: 3000\n"
	    TOK("al")
	    ": keep-alive\r\n\r\n"
	    "id\n"
	    "event: completion\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"pha\"}}]}\n"
	    ": a comment inside an event\n"
	    "\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "alpha", 2, NULL, 0 },
	{ "data without space",
	    "data:{\"choices\":[{\"delta\":{\"content\":\"tight\"}}]}\n\n"
	    "data:  {\"choices\":[{\"delta\":{\"content\":\" two spaces\"}}]}\n\n"
	    "data:[DONE]\n\n",
	    LLMSSE_DONE, "tight two spaces", 2, NULL, 0 },
	{ "multi-line data",
	    "data: {\"choices\":[{\"delta\":\n"
	    "data: {\"content\":\"joined\"}}]\n"
	    "data: }\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "joined", 1, NULL, 0 },
	{ "content null and missing delta",
	    "data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n"
	    "data: {\"choices\":[{\"delta\":null}]}\n\n"
	    TOK("ok")
	    "data: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "ok", 1, NULL, 0 },
	{ "escapes",
	    TOK("line\\none\\t\\\"q\\\" \\\\ \\/ \\u00e9")
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "line\none\t\"q\" \\ / \xc3\xa9", 1, NULL, 0 },
	{ "keep-alive empty data",
	    "data:\n\n"
	    "data: \n\n"
	    "data\n\n"
	    TOK("k")
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "k", 1, NULL, 0 },
	{ "field name with a space is not data",
	    "data : {\"choices\":[{\"delta\":{\"content\":\"no\"}}]}\n\n"
	    "DATA: {\"choices\":[{\"delta\":{\"content\":\"no\"}}]}\n\n"
	    TOK("yes")
	    "data: [DONE]\n\n",
	    LLMSSE_DONE, "yes", 1, NULL, 0 },
	{ "bom",
	    "\xef\xbb\xbf" TOK("b") "data: [DONE]\n\n",
	    LLMSSE_DONE, "b", 1, NULL, 0 },
	{ "done without blank line",
	    TOK("end") "data: [DONE]",
	    LLMSSE_DONE, "end", 1, NULL, 0 },
	{ "done with one newline",
	    TOK("end") "data: [DONE]\n",
	    LLMSSE_DONE, "end", 1, NULL, 0 },
	{ "last token without blank line",
	    TOK("a") "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}",
	    LLMSSE_CUT, "ab", 2, "stream ended before [DONE]", 0 },
	{ "bytes after done ignored",
	    TOK("kept") "data: [DONE]\n\n" TOK("dropped") "garbage{\n\n",
	    LLMSSE_DONE, "kept", 1, NULL, 0 },
	{ "error object",
	    TOK("partial")
	    "data: {\"error\":{\"message\":\"model overloaded\",\"type\":"
	    "\"server_error\",\"code\":null}}\n\n"
	    TOK("never")
	    "data: [DONE]\n\n",
	    LLMSSE_UPSTREAM_ERROR, "partial", 1,
	    "LLM stream error: model overloaded", 0 },
	{ "vllm error object",
	    "data: {\"object\":\"error\",\"message\":\"This model's maximum context "
	    "length is 8192 tokens\",\"type\":\"BadRequestError\",\"param\":null,"
	    "\"code\":400}\n\n",
	    LLMSSE_UPSTREAM_ERROR, "", 0,
	    "LLM stream error: This model's maximum context length is 8192 tokens", 0 },
	{ "error string",
	    "data: {\"error\":\"quota\"}\n\n",
	    LLMSSE_UPSTREAM_ERROR, "", 0, "LLM stream error: quota", 0 },
	{ "error message too long or odd is not shown",
	    "data: {\"error\":{\"message\":\"line one\\nline two\"}}\n\n",
	    LLMSSE_UPSTREAM_ERROR, "", 0, "LLM stream error", 0 },
	{ "invalid json",
	    TOK("before")
	    "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]\n\n"
	    "data: [DONE]\n\n",
	    LLMSSE_MALFORMED, "before", 1, "LLM stream event is not valid JSON", 0 },
	{ "trailing garbage after json",
	    "data: {\"choices\":[]} x\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream event is not valid JSON", 0 },
	{ "two json values",
	    "data: {\"choices\":[]}{\"choices\":[]}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream event is not valid JSON", 0 },
	{ "not an object",
	    "data: [1,2,3]\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream event is not a JSON object", 0 },
	{ "a bare string",
	    "data: \"hello\"\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream event is not a JSON object", 0 },
	{ "choices not an array",
	    "data: {\"choices\":{\"delta\":{\"content\":\"x\"}}}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream chunk has no choices array", 0 },
	{ "no choices",
	    "data: {\"id\":\"x\"}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream chunk has no choices array", 0 },
	{ "choice not an object",
	    "data: {\"choices\":[\"x\"]}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream choice is not an object", 0 },
	{ "delta not an object",
	    "data: {\"choices\":[{\"delta\":\"x\"}]}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream delta is not an object", 0 },
	{ "content a number",
	    "data: {\"choices\":[{\"delta\":{\"content\":5}}]}\n\n",
	    LLMSSE_MALFORMED, "", 0, "LLM stream content is not a string", 0 },
	/*
	 * Content is made valid UTF-8 (tokens become JSON strings of
	 * events): a NUL is dropped, an invalid byte becomes U+FFFD, and a
	 * character a server split across deltas is put back together.
	 */
	{ "content with NUL",
	    TOK("a\\u0000b") "data: [DONE]\n\n",
	    LLMSSE_DONE, "ab", 1, NULL, 0 },
	{ "content with invalid UTF-8",
	    TOK("bad \xff byte") TOK("\xc0\xaf") "data: [DONE]\n\n",
	    LLMSSE_DONE, "bad \xef\xbf\xbd byte\xef\xbf\xbd\xef\xbf\xbd", 2,
	    NULL, 0 },
	{ "a character split across two deltas",
	    TOK("caf\xc3") TOK("\xa9 au lait") "data: [DONE]\n\n",
	    LLMSSE_DONE, "caf\xc3\xa9 au lait", 2, NULL, 0 },
	{ "an emoji split across three deltas",
	    TOK("\xf0\x9f") TOK("\x98") TOK("\x80!") "data: [DONE]\n\n",
	    LLMSSE_DONE, "\xf0\x9f\x98\x80!", 1, NULL, 0 },
	{ "a split character never completed",
	    TOK("end\xe6\x97") TOK("x") "data: [DONE]\n\n",
	    LLMSSE_DONE, "end\xef\xbf\xbdx", 2, NULL, 0 },
	{ "a split character left at [DONE]",
	    TOK("end\xe6\x97") "data: [DONE]\n\n",
	    LLMSSE_DONE, "end\xef\xbf\xbd", 2, NULL, 0 },
	{ "cut after tokens",
	    OA_TOK("The answer") OA_TOK(" is"),
	    LLMSSE_CUT, "The answer is", 2, "stream ended before [DONE]", 0 },
	{ "cut mid event",
	    TOK("a") "data: {\"choices\":[{\"del",
	    LLMSSE_MALFORMED, "a", 1, "LLM stream event is not valid JSON", 0 },
	{ "cut mid done",
	    TOK("a") "data: [DO",
	    LLMSSE_MALFORMED, "a", 1, "LLM stream event is not valid JSON", 0 },
	{ "empty stream",
	    "",
	    LLMSSE_CUT, "", 0, "stream ended before [DONE]", 0 },
	{ "comments only",
	    ": ping\n\n: ping\n\n",
	    LLMSSE_CUT, "", 0, "stream ended before [DONE]", 0 },
	{ "caller aborts",
	    TOK("one") TOK("two") TOK("three") "data: [DONE]\n\n",
	    LLMSSE_ABORTED, "onetwo", 2, "aborted by the caller", 2 },
};

/* Deterministic across libcs: xorshift32. */
static uint32_t rng = 2463534242u;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static int
collect(void *arg, const char *text, size_t len)
{
	struct sink *s = arg;

	if (s->len + len < sizeof(s->text)) {
		memcpy(s->text + s->len, text, len);
		s->len += len;
		s->text[s->len] = '\0';
	}
	s->n++;
	if (len == 0 || !utf8_valid(text, len))
		s->bad++;
	return s->abort_after && s->n >= s->abort_after;
}

/*
 * Feed bytes in pieces whose ends are listed in cuts (ascending,
 * the last one == len), then finish.
 */
static void
run(const struct stream *st, const size_t *cuts, size_t ncuts,
    struct outcome *o)
{
	struct llmsse	 p;
	struct sink	 s;
	size_t		 i, at = 0, len = strlen(st->bytes);

	memset(&s, 0, sizeof(s));
	s.abort_after = st->abort_after;
	llmsse_init(&p, collect, &s);
	for (i = 0; i < ncuts; i++) {
		llmsse_feed(&p, st->bytes + at, cuts[i] - at);
		at = cuts[i];
	}
	if (at < len)
		llmsse_feed(&p, st->bytes + at, len - at);
	o->status = llmsse_finish(&p);
	/* every token must be non-empty, valid UTF-8 */
	if (s.bad)
		o->status = (enum llmsse_status)-1;
	memcpy(o->text, s.text, s.len + 1);
	o->n = s.n;
	snprintf(o->message, sizeof(o->message), "%s", p.message);
	/* the outcome sticks */
	if (llmsse_finish(&p) != o->status || llmsse_feed(&p, "\n\n", 2) !=
	    o->status)
		o->status = (enum llmsse_status)-1;
	llmsse_free(&p);
}

static int
same(const struct outcome *a, const struct outcome *b)
{
	return a->status == b->status && a->n == b->n &&
	    strcmp(a->text, b->text) == 0 && strcmp(a->message, b->message) == 0;
}

static void
test_stream(const struct stream *st)
{
	struct outcome	 whole, o;
	size_t		 len = strlen(st->bytes), i, k, ncuts;
	size_t		*cuts;
	int		 all_same;
	char		 name[200];

	cuts = calloc(len + 1, sizeof(*cuts));
	run(st, NULL, 0, &whole);
	snprintf(name, sizeof(name), "%s: whole: outcome %s", st->name,
	    llmsse_status_name(st->want));
	is_str(llmsse_status_name(whole.status), llmsse_status_name(st->want),
	    name);
	snprintf(name, sizeof(name), "%s: whole: tokens", st->name);
	is_str(whole.text, st->tokens, name);
	snprintf(name, sizeof(name), "%s: whole: token count", st->name);
	is_int(whole.n, st->ntokens, name);
	if (st->message != NULL) {
		snprintf(name, sizeof(name), "%s: message", st->name);
		is_str(whole.message, st->message, name);
	}

	/* byte by byte */
	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(st, cuts, len, &o);
	snprintf(name, sizeof(name), "%s: byte by byte: same outcome",
	    st->name);
	ok(same(&o, &whole), "%s", name);
	if (!same(&o, &whole))
		printf("#   got %s '%s' %d '%s'\n", llmsse_status_name(o.status),
		    o.text, o.n, o.message);

	/* cut in two at every position */
	all_same = 1;
	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		run(st, cuts, 1, &o);
		if (!same(&o, &whole)) {
			printf("#   split at %zu differs\n", i);
			all_same = 0;
		}
	}
	snprintf(name, sizeof(name), "%s: every two-piece split: same outcome",
	    st->name);
	ok(all_same, "%s", name);

	/* random pieces, small and large */
	all_same = 1;
	for (k = 0; k < 200; k++) {
		size_t at = 0, maxpiece = k % 2 ? 7 : 97;

		ncuts = 0;
		while (at < len) {
			at += 1 + rnd() % maxpiece;
			if (at > len)
				at = len;
			cuts[ncuts++] = at;
		}
		run(st, cuts, ncuts, &o);
		if (!same(&o, &whole)) {
			printf("#   random split %zu differs\n", k);
			all_same = 0;
		}
	}
	snprintf(name, sizeof(name), "%s: 200 random splits: same outcome",
	    st->name);
	ok(all_same, "%s", name);
	free(cuts);
}

static int
count_tokens(void *arg, const char *text, size_t len)
{
	(*(int *)arg)++;
	return 0;
}

/* Lines and events over their caps fail, however they arrive. */
static void
test_caps(void)
{
	struct llmsse	 p;
	char		*big;
	size_t		 i;
	int		 n = 0;
	enum llmsse_status st;

	big = malloc(3 * 1024 * 1024);
	memset(big, 'a', 3 * 1024 * 1024);
	memcpy(big, "data: ", 6);

	/* default cap: a 3 MiB line with no end fails and stays bounded */
	llmsse_init(&p, count_tokens, &n);
	st = LLMSSE_OK;
	for (i = 0; i < 3 * 1024 * 1024 && st == LLMSSE_OK; i += 16384)
		st = llmsse_feed(&p, big + i, 16384);
	is_str(llmsse_status_name(st), "too_big", "3 MiB line: too_big");
	ok(i <= LLMSSE_MAX_LINE + 16384, "3 MiB line: fails at the cap (%zu)", i);
	ok(p.linecap <= 2 * LLMSSE_MAX_LINE + 2, "line buffer bounded (%zu)",
	    p.linecap);
	is_str(p.message, "LLM stream line too long", "line cap message");
	is_str(llmsse_status_name(llmsse_feed(&p, "\n\n", 2)), "too_big",
	    "too_big sticks on feed");
	is_str(llmsse_status_name(llmsse_finish(&p)), "too_big",
	    "too_big sticks on finish");
	llmsse_free(&p);

	/* a small cap, exactly at and one over, byte by byte */
	llmsse_init(&p, count_tokens, &n);
	p.max_line = 64;
	memset(big, 'x', 64);
	for (i = 0; i < 64; i++)
		st = llmsse_feed(&p, big + i, 1);
	is_str(llmsse_status_name(st), "ok", "line of exactly max_line: ok");
	st = llmsse_feed(&p, "x", 1);
	is_str(llmsse_status_name(st), "too_big", "max_line + 1: too_big");
	llmsse_free(&p);

	/* a long line split by CRLF is two short lines */
	llmsse_init(&p, count_tokens, &n);
	p.max_line = 64;
	st = llmsse_feed(&p, big, 60);
	st = llmsse_feed(&p, "\r", 1);
	st = llmsse_feed(&p, "\n", 1);
	st = llmsse_feed(&p, big, 60);
	is_str(llmsse_status_name(st), "ok", "line ends reset the line cap");
	llmsse_free(&p);

	/* event cap: many short data lines */
	llmsse_init(&p, count_tokens, &n);
	p.max_event = 100;
	st = LLMSSE_OK;
	for (i = 0; i < 20 && st == LLMSSE_OK; i++)
		st = llmsse_feed(&p, "data: 0123456789\n", 17);
	is_str(llmsse_status_name(st), "too_big", "event over max_event: too_big");
	ok(i > 5 && i <= 10, "event cap hit after ~100 bytes (%zu lines)", i);
	is_str(p.message, "LLM stream event too large", "event cap message");
	llmsse_free(&p);

	/* a big but allowed token passes whole */
	{
		static const char pre[] = "data: {\"choices\":[{\"delta\":{\"content\":\"";
		static const char post[] = "\"}}]}\n\ndata: [DONE]\n\n";
		size_t tl = 200000, total = sizeof(pre) - 1 + tl + sizeof(post) - 1;
		char *s = malloc(total);

		memcpy(s, pre, sizeof(pre) - 1);
		memset(s + sizeof(pre) - 1, 'z', tl);
		memcpy(s + sizeof(pre) - 1 + tl, post, sizeof(post) - 1);
		n = 0;
		llmsse_init(&p, count_tokens, &n);
		for (i = 0; i < total; i += 1000)
			llmsse_feed(&p, s + i, total - i < 1000 ? total - i : 1000);
		is_str(llmsse_status_name(llmsse_finish(&p)), "done",
		    "200 kB token in 1000-byte pieces: done");
		is_int(n, 1, "200 kB token: one token");
		llmsse_free(&p);
		free(s);
	}
	free(big);
}

/* llmsse_error_object on its own: shapes and what it lets through. */
static void
test_error_object(void)
{
	static const struct {
		const char *json;
		int is_error;
		const char *msg;
	} cases[] = {
		{ "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}",
		    1, "Rate limit reached" },
		{ "{\"error\":{\"code\":500}}", 1, "" },
		{ "{\"error\":\"bad\"}", 1, "bad" },
		{ "{\"error\":null,\"choices\":[]}", 0, "" },
		{ "{\"object\":\"error\",\"message\":\"boom\"}", 1, "boom" },
		{ "{\"object\":\"chat.completion\"}", 0, "" },
		{ "{\"error\":{\"message\":\"caf\xc3\xa9\"}}", 1, "" },
		{ "{\"error\":{\"message\":\"0123456789012345678901234567890123456789"
		    "012345678901234567890123456789012345678901234567890123456789\"}}",
		    1, "0123456789012345678901234567890123456789"
		    "012345678901234567890123456789012345678901234567890123456789" },
		{ "{\"error\":{\"message\":\"0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789012345678901234567890\"}}",
		    1, "" },
		{ "[1]", 0, "" },
	};
	size_t	 i;
	char	 out[160];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = json_tokener_parse(cases[i].json);

		is_int(llmsse_error_object(o, out, sizeof(out)),
		    cases[i].is_error, cases[i].json);
		is_str(out, cases[i].msg, "  its message");
		json_object_put(o);
	}
}

/* llmsse_utf8_clean on its own: what becomes U+FFFD, what is held back. */
static void
test_utf8_clean(void)
{
	static const struct {
		const char	*in;
		size_t		 len;
		int		 with_tail;
		const char	*out;
		size_t		 tail;
	} cases[] = {
		{ "plain \xc3\xa9", 8, 1, "plain \xc3\xa9", 0 },
		{ "a\0b", 3, 0, "ab", 0 },
		{ "x\xe6\x97", 3, 1, "x", 2 },
		{ "x\xe6\x97", 3, 0, "x\xef\xbf\xbd", 0 },
		{ "\xf0\x9f\x98", 3, 1, "", 3 },
		{ "\xed\xa0\x80", 3, 1, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 0 },
		{ "\xe0\x80\xaf", 3, 1, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 0 },
		{ "\xf4\x90\x80\x80", 4, 1,
		    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 0 },
		{ "\xe6\x97x", 3, 1, "\xef\xbf\xbdx", 0 },
		{ "\xff", 1, 1, "\xef\xbf\xbd", 0 },
	};
	char	 out[64], name[64];
	size_t	 i, n, tail;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tail = 99;
		n = llmsse_utf8_clean(cases[i].in, cases[i].len, out,
		    cases[i].with_tail ? &tail : NULL);
		out[n] = '\0';
		snprintf(name, sizeof(name), "utf8_clean case %zu", i);
		is_str(out, cases[i].out, name);
		if (cases[i].with_tail)
			is_int(tail, cases[i].tail, "  tail");
	}
}

int
main(void)
{
	size_t	 i;

	for (i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		test_stream(&corpus[i]);
	test_caps();
	test_error_object();
	test_utf8_clean();
	return done();
}
