/*
 * A resumable parser for an OpenAI-compatible chat completions stream
 * (text/event-stream; WHATWG SSE framing, docs/fastcgi-sse-lws.md §4).
 *
 * Bytes come in arbitrary pieces (a curl write callback: split anywhere,
 * mid-line, between CR and LF, inside a UTF-8 character). Lines end in
 * LF, CR or CRLF; ':' lines are comments; "data:" lines (one optional
 * space after the colon) are joined with '\n' until a blank line
 * dispatches the event; other fields are ignored. Each event's data is
 * "[DONE]" or a JSON chunk whose choices[0].delta.content string is a
 * token. Line and event sizes are capped: nothing grows without bound.
 *
 * Tokens handed to on_token are valid UTF-8 without NUL (they become JSON
 * strings of events): a NUL is dropped, an invalid sequence becomes
 * U+FFFD, and the bytes of a character that a server split across two
 * deltas are held back until the rest arrives (U+FFFD if it never does).
 *
 * Outcomes: a stream is good only when "[DONE]" was seen; one that ends
 * before it (llmsse_finish) is LLMSSE_CUT, which the client reports as
 * upstream_malformed "stream ended before [DONE]". Bytes after "[DONE]"
 * are ignored. The first error sticks: every later call returns it.
 */
#ifndef TANDEM_LLMSSE_H
#define TANDEM_LLMSSE_H

#include <stddef.h>

#define LLMSSE_MAX_LINE		(1024 * 1024)
#define LLMSSE_MAX_EVENT	(1024 * 1024)

enum llmsse_status {
	LLMSSE_OK,		/* more may come */
	LLMSSE_DONE,		/* "[DONE]" seen */
	LLMSSE_TOOBIG,		/* a line or an event over its cap */
	LLMSSE_MALFORMED,	/* invalid JSON, or not the chunk shape */
	LLMSSE_UPSTREAM_ERROR,	/* the server sent {"error": …} in the stream */
	LLMSSE_CUT,		/* finish without "[DONE]" */
	LLMSSE_ABORTED,		/* on_token returned non-zero */
	LLMSSE_NOMEM
};

struct llmsse {
	/* settings: set after llmsse_init, before the first feed */
	size_t		 max_line;	/* bytes of one line, terminator excluded */
	size_t		 max_event;	/* bytes of one event's joined data */
	int		(*on_token)(void *arg, const char *text, size_t len);
	void		*arg;

	/* results */
	enum llmsse_status status;
	size_t		 ntokens;	/* non-empty content deltas emitted */
	size_t		 nevents;	/* events dispatched */
	char		 message[160];	/* for humans, when status is an error */

	/* state */
	char		*line;
	size_t		 linelen, linecap;
	char		*data;
	size_t		 datalen, datacap;
	int		 has_data;	/* a data field since the last dispatch */
	int		 after_cr;	/* last byte was CR: a leading LF ends nothing */
	int		 first_line;	/* still on line one (a BOM may open it) */
	int		 finished;	/* a choice had a finish_reason */
	char		 pend[4];	/* start of a character split by a delta */
	size_t		 npend;
};

/* Zero the parser with default caps; on_token may be NULL. */
void		 llmsse_init(struct llmsse *,
		    int (*on_token)(void *, const char *, size_t), void *arg);
/* Free buffers; the struct may be llmsse_init'ed again. */
void		 llmsse_free(struct llmsse *);
/* Feed bytes. Return LLMSSE_OK, LLMSSE_DONE or an error (sticky). */
enum llmsse_status llmsse_feed(struct llmsse *, const char *, size_t);
/*
 * End of stream: dispatch a last event that had no blank line after it.
 * Return LLMSSE_DONE when "[DONE]" was seen, LLMSSE_CUT when not, or an
 * earlier error.
 */
enum llmsse_status llmsse_finish(struct llmsse *);
/*
 * Copy s[0..n) to out as valid UTF-8 without NUL: a NUL is dropped, each
 * maximal invalid sequence becomes U+FFFD. out must hold 3 * n bytes.
 * When tail is not NULL, an incomplete character at the very end is not
 * copied and *tail gets its length (at most 3); else it becomes U+FFFD.
 * Return the bytes written.
 */
size_t		 llmsse_utf8_clean(const char *s, size_t n, char *out,
		    size_t *tail);
/* A short name of a status, for logs and tests. */
const char	*llmsse_status_name(enum llmsse_status);

/*
 * If obj is an error answer ({"error": {"message": …}}, {"error": "…"}
 * or {"object": "error", "message": …}), write a short, printable form
 * of its message (empty when absent or unfit to show) and return 1.
 * Return 0 for anything else.
 */
struct json_object;
int		 llmsse_error_object(struct json_object *, char *, size_t);

#endif
