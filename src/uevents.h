/*
 * Unmute server events to tandem voice events (SPEC.md §3.2,
 * docs/unmute-protocol.md §4): a table keyed on the event's "type".
 * Pure state and no I/O, so recorded frames can be replayed in tests.
 */
#ifndef TANDEM_UEVENTS_H
#define TANDEM_UEVENTS_H

#include <stddef.h>

#include <json-c/json.h>

#include "oggopus.h"

#define UEV_TEXT_MAX	(64 * 1024)	/* a turn's words kept for text_complete */
#define UEV_OGG_MAX	(4 * 1024 * 1024) /* Ogg bytes buffered between deltas */
#define UEV_AUDIO_MS	40		/* one Unmute packet: 960 samples at 24 kHz */

/* Receives each voice event; takes ownership of data. */
typedef void	 uev_emit_fn(void *arg, const char *type, struct json_object *);

enum uev_status {
	UEV_CONTINUE,
	UEV_TURN_STARTED,
	UEV_TURN_DONE,
	UEV_FAIL		/* code and message in err_code, err_msg */
};

struct uev {
	uev_emit_fn		*emit;
	void			*arg;
	int			 turn;		/* number of the last turn started */
	int			 in_turn;
	int			 turns_done;
	/* the current turn's totals */
	char			*text;
	size_t			 tlen, tcap;
	int			 chunks;
	long long		 bytes;
	long			 packets;
	/* the audio of this session, rewritten into the first Ogg stream */
	struct oo_reader	 rd;
	struct oo_splice	 sp;
	unsigned char		*held;		/* header pages not yet sent */
	size_t			 heldlen, heldcap;
	const char		*err_code;
	char			 err_msg[160];
};

void	 uev_init(struct uev *, uev_emit_fn *, void *arg);
void	 uev_free(struct uev *);
/*
 * A further Unmute session starts: its Ogg stream is spliced into the
 * first one (headers dropped), turn numbers go on, and an error
 * recorded for an earlier attempt is forgotten.
 */
void	 uev_new_source(struct uev *);
/* Handle one server text frame (untrusted). */
enum uev_status uev_feed(struct uev *, const char *msg, size_t len);
/* Record a failure in err_code/err_msg; return UEV_FAIL. */
enum uev_status uev_fail(struct uev *, const char *code, const char *msg);

/* Standard base64. Return a malloc'd NUL-terminated string, or NULL. */
char	*b64_encode(const unsigned char *, size_t, size_t *outlen);
/*
 * Decode standard base64 (padding optional, no other characters).
 * Return a malloc'd buffer and its length in *outlen, or NULL.
 */
unsigned char *b64_decode(const char *, size_t, size_t *outlen);

#endif
