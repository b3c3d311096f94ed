/*
 * The voice path (SPEC.md §3.2, §4; docs/unmute-protocol.md): relays
 * Unmute's spoken reply to the user's message, then on the web and
 * medical routes speaks the agent's answer as a follow-up turn.
 *
 * Unmute has no way to take user text and only advances while it
 * receives audio, so the message rides in the session's instructions
 * and the client streams Ogg/Opus silence in real time; the greeting
 * (turn 1) is the reply. The follow-up is by default a fresh session
 * whose instructions dictate its greeting (a handshake and a greeting,
 * where a session.update on the same connection waits ~8.5 s of
 * streamed silence, protocol doc §10); its audio is spliced into the
 * first Ogg stream.
 *
 * Everything runs on this thread in one lws context: a 20 ms tick
 * paces the silence, polls the agent's answer and checks stop and the
 * timeouts.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "instr.h"
#include "job.h"
#include "log.h"
#include "oggopus.h"
#include "pace.h"
#include "scoreboard.h"
#include "uevents.h"
#include "unmute.h"

#define TICK_MS		20
#define FRAME_MS	20	/* Opus frame of the silence encoder */
#define APPEND_MS	40	/* silence per append message */
#define LEAD_MS		40	/* how far ahead of real time we send */
#define MAX_QUEUED	8	/* appends waiting on a slow socket */
#define CLOSE_GRACE_MS	300	/* for close handshakes before we go */
#define BUSY_POLL_MS	50
#define FOLLOW_RETRIES	3	/* a follow-up refused as busy, tried again */
#define FOLLOW_RETRY_MS	500

enum phase {
	PH_FIRST,		/* turn 1: Unmute's reply to the message */
	PH_WAIT_ANSWER,		/* turn 1 done; the agent may have more */
	PH_FOLLOW,		/* the follow-up turn */
	PH_DONE
};

/* One Unmute websocket. */
struct vsess {
	struct voice	*v;
	struct um_conn	*c;
	int		 slot;		/* URL index held in the scoreboard, -1 none */
	int		 follow;	/* the follow-up session */
	struct oo_enc	*enc;
	int		 streaming;	/* sending silence */
	struct pace	 pace;		/* the silence stream's clock */
	int		 updated;	/* session.update sent */
	int		 leaving;	/* we closed it on purpose */
	int		 released;
};

struct voice {
	struct job		*job;
	const struct conf	*cf;
	struct um_ctx		*ctx;
	struct uev		 ev;
	struct vsess		 s[2];	/* [0] the session, [1] the follow-up */
	enum phase		 phase;
	int			 in_turn;
	long long		 t0;
	long long		 turn_deadline;	/* 0: none */
	long long		 last_event;
	long long		 busy_since;	/* waiting for a follow-up slot */
	long long		 done_at;
	int			 answer_none;
	int			 early_failed;	/* an early follow-up connect failed */
	int			 retries;	/* follow-up sessions tried again */
	long long		 retry_at;	/* not before then */
	int			 update_lost;	/* s[0] gone: follow up in a session */
	char			*answer;
	const char		*err_code;
};

static const struct um_ops sess_ops;

static void
emit(struct voice *v, const char *type, struct json_object *d)
{
	sse_emit(v->job->sse, SSE_PATH_VOICE, type, d);
}

static void
uev_emit(void *arg, const char *type, struct json_object *d)
{
	emit(arg, type, d);
}

/* Is the follow-up a session.update on the first connection? */
static int
by_update(const struct voice *v)
{
	return strcmp(v->cf->unmute.follow_up, "update") == 0 &&
	    !v->update_lost;
}

static void
release_slot(struct vsess *s)
{
	if (s->slot >= 0 && !s->released && sb != NULL)
		sb_unmute_release(s->slot);
	s->released = 1;
}

static void
leave(struct vsess *s)
{
	if (s->c != NULL && !um_is_ended(s->c)) {
		s->leaving = 1;
		um_close(s->c);
	}
	s->streaming = 0;
}

/* Close both sessions and enter PH_DONE. Return 0, or -1 if already done. */
static int
wind_up(struct voice *v)
{
	if (v->phase == PH_DONE)
		return -1;
	leave(&v->s[0]);
	leave(&v->s[1]);
	v->phase = PH_DONE;
	v->done_at = mono_ms();
	return 0;
}

static void
finish(struct voice *v)
{
	struct json_object *d;

	if (wind_up(v) == -1)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "turns", json_object_new_int(v->ev.turns_done));
	json_object_object_add(d, "elapsed_ms",
	    json_object_new_int64(mono_ms() - v->t0));
	emit(v, "unmute_complete", d);
	v->job->voice_result = PATH_COMPLETE;
}

/* The voice path fails: one unmute_error, the rest of the stream goes on. */
static void
fail(struct voice *v, const char *code, const char *msg)
{
	struct json_object *d;

	if (wind_up(v) == -1)
		return;
	v->err_code = code;
	log_info("%s: voice: %s: %s", v->job->sse->request_id, code, msg);
	if (strcmp(code, "unmute_busy") == 0 && sb != NULL)
		atomic_fetch_add(&sb->unmute_busy, 1);
	d = json_object_new_object();
	json_object_object_add(d, "code", json_object_new_string(code));
	json_object_object_add(d, "message", json_object_new_string(msg));
	emit(v, "unmute_error", d);
	v->job->voice_result = strcmp(code, "upstream_timeout") == 0 ?
	    PATH_TIMEOUT : PATH_ERROR;
}

static int
open_session(struct voice *v, struct vsess *s, int slot)
{
	struct um_url		 u;
	struct json_object	*d;

	memset(s, 0, sizeof(*s));
	s->v = v;
	s->slot = slot;
	s->follow = s == &v->s[1];
	if (um_url_parse(v->cf->unmute.urls[slot], &u) == -1) {
		release_slot(s);
		fail(v, "unmute_unavailable", "The voice service URL is invalid");
		return -1;
	}
	if (!s->follow) {
		d = json_object_new_object();
		json_object_object_add(d, "url", json_object_new_string(u.shown));
		emit(v, "unmute_connecting", d);
	}
	s->c = um_open(v->ctx, &u, v->cf->unmute.max_message, &sess_ops, s);
	if (s->c == NULL) {
		release_slot(s);
		fail(v, "internal", "Cannot start a voice connection");
		return -1;
	}
	return 0;
}

static int
send_json(struct vsess *s, struct json_object *o)
{
	char	*txt = instr_json(o);
	int	 rc = -1;

	if (txt != NULL)
		rc = um_send(s->c, txt, strlen(txt));
	free(txt);
	json_object_put(o);
	return rc;
}

/* session.update (+ response.create), then silence. */
static void
start_session(struct voice *v, struct vsess *s, const char *text)
{
	const struct conf	*cf = v->cf;
	struct json_object	*o;

	if (text == NULL) {
		fail(v, "internal", "Cannot build the voice instructions");
		return;
	}
	o = instr_session_update(text, cf->unmute.voice, cf->unmute.language,
	    cf->unmute.allow_recording);
	if (send_json(s, o) == -1) {
		fail(v, "internal", "Cannot send to the voice service");
		return;
	}
	/* OpenAI-dialect servers want it; Unmute answers invalid_request_error. */
	if (cf->unmute.response_create) {
		o = json_object_new_object();
		json_object_object_add(o, "type",
		    json_object_new_string("response.create"));
		(void)send_json(s, o);
	}
	s->updated = 1;
	s->streaming = 1;
	pace_start(&s->pace, mono_ms());
	v->turn_deadline = mono_ms() + cf->unmute.turn_timeout_ms;
	v->last_event = mono_ms();
}

static void
start_follow_up(struct voice *v)
{
	struct vsess	*s = &v->s[1];
	char		*text;

	uev_new_source(&v->ev);
	text = instr_follow_up(v->answer);
	v->phase = PH_FOLLOW;
	start_session(v, s, text);
	free(text);
}

/* follow_up = update: new instructions on the same connection. */
static void
update_follow_up(struct voice *v)
{
	char *text = instr_follow_up(v->answer);

	v->phase = PH_FOLLOW;
	start_session(v, &v->s[0], text);
	free(text);
}

static void
sess_open(void *arg, struct um_conn *c)
{
	struct vsess	*s = arg;
	struct voice	*v = s->v;
	struct json_object *d;
	char		*text;

	if (v->phase == PH_DONE || c != s->c)
		return;
	if (s->follow) {
		log_debug("%s: voice: follow-up session open after %lld ms",
		    v->job->sse->request_id,
		    um_opened_ms(c) - um_started_ms(c));
		/* Its greeting must not overlap turn 1. */
		if (v->phase == PH_WAIT_ANSWER && v->answer != NULL)
			start_follow_up(v);
		return;
	}
	d = json_object_new_object();
	json_object_object_add(d, "handshake_ms",
	    json_object_new_int64(um_opened_ms(c) - um_started_ms(c)));
	emit(v, "unmute_connected", d);
	text = instr_text(v->cf->unmute.instructions, v->job->req->message);
	start_session(v, s, text);
	free(text);
}

static void
turn_done(struct voice *v, struct vsess *s)
{
	v->in_turn = 0;
	v->turn_deadline = 0;
	if (v->phase == PH_FOLLOW) {
		finish(v);
		return;
	}
	if (v->phase != PH_FIRST)
		return;		/* a turn we did not ask for */
	v->phase = PH_WAIT_ANSWER;
	if (by_update(v)) {
		/* Hold the server's clock still until there is an answer. */
		s->streaming = 0;
	} else {
		leave(s);
		release_slot(s);
		v->busy_since = mono_ms();
	}
}

/*
 * A follow-up session failed before its turn began. One opened during
 * turn 1 is opened again after it (Unmute may have no place for two
 * sessions: compose's STT takes one); one refused as busy is tried
 * again a little later, since Unmute frees the place of the last
 * session only once it is gone. Return 1 if so, 0 if the voice path
 * fails.
 */
static int
follow_retry(struct voice *v, struct vsess *s, const char *code)
{
	if (!s->follow)
		return 0;
	if (v->phase == PH_FIRST)
		v->early_failed = 1;
	else if (!v->in_turn && strcmp(code, "unmute_busy") == 0 &&
	    v->retries < FOLLOW_RETRIES) {
		v->retries++;
		v->phase = PH_WAIT_ANSWER;
		v->retry_at = mono_ms() + FOLLOW_RETRY_MS;
		v->busy_since = v->retry_at;
	} else
		return 0;
	log_debug("%s: voice: follow-up session failed (%s), %s",
	    v->job->sse->request_id, code,
	    v->phase == PH_FIRST ? "again after turn 1" : "trying again");
	leave(s);
	release_slot(s);
	s->c = NULL;		/* its late callbacks are ignored */
	v->ev.err_code = NULL;
	return 1;
}

static void
drop_event(void *arg, const char *type, struct json_object *d)
{
	(void)arg;
	(void)type;
	json_object_put(d);
}

/*
 * A message of a follow-up session before its session.update belongs
 * to no turn; only a failure in it counts (STT full at connect).
 */
static void
early_message(struct voice *v, struct vsess *s, const char *msg, size_t len)
{
	struct uev	 u;

	uev_init(&u, drop_event, NULL);
	if (uev_feed(&u, msg, len) == UEV_FAIL &&
	    !follow_retry(v, s, u.err_code))
		fail(v, u.err_code, u.err_msg);
	uev_free(&u);
}

static int
sess_message(void *arg, struct um_conn *c, const char *msg, size_t len)
{
	struct vsess	*s = arg;
	struct voice	*v = s->v;

	if (v->phase == PH_DONE || s->leaving || c != s->c)
		return 0;
	v->last_event = mono_ms();
	if (s->follow && !s->updated) {
		early_message(v, s, msg, len);
		return 0;
	}
	switch (uev_feed(&v->ev, msg, len)) {
	case UEV_FAIL:
		if (!follow_retry(v, s, v->ev.err_code))
			fail(v, v->ev.err_code, v->ev.err_msg);
		break;
	case UEV_TURN_STARTED:
		v->in_turn = 1;
		break;
	case UEV_TURN_DONE:
		turn_done(v, s);
		break;
	case UEV_CONTINUE:
		break;
	}
	return 0;
}

/* Why a connection ended, as an error code; the message in *msg. */
static const char *
end_code(struct um_conn *c, const char **msg)
{
	switch (um_end_reason(c)) {
	case UM_END_HANDSHAKE_EOF:
		*msg = "The voice service dropped the connection; it is probably full";
		return "unmute_busy";
	case UM_END_TIMEOUT:
		*msg = "The voice service did not accept the connection in time";
		return "unmute_busy";
	case UM_END_REFUSED:
		*msg = "Cannot connect to the voice service";
		return "unmute_unavailable";
	case UM_END_HTTP:
		*msg = "The voice service refused the websocket handshake";
		return "unmute_unavailable";
	case UM_END_BINARY:
		*msg = "The voice service sent a binary frame";
		return "unmute_protocol";
	case UM_END_TOO_BIG:
		*msg = "The voice service sent a message over the size limit";
		return "unmute_protocol";
	case UM_END_PEER_CLOSE:
		if (um_close_code(c) == 1011) {
			*msg = "The voice service ended the session with an error";
			return "unmute_unavailable";
		}
		/* FALLTHROUGH */
	default:
		*msg = "The voice service closed the session before the reply ended";
		return "unmute_closed";
	}
}

/*
 * Unmute closes 1000 about 1 s after a turn that ends in "Bye!"
 * (protocol doc §6). Between turns in follow_up = update mode, that
 * only means the follow-up needs a session of its own.
 */
static int
said_goodbye(struct voice *v, struct vsess *s, struct um_conn *c)
{
	if (s->follow || v->in_turn || (v->phase != PH_WAIT_ANSWER &&
	    v->phase != PH_FOLLOW) || um_end_reason(c) != UM_END_PEER_CLOSE ||
	    um_close_code(c) != 1000)
		return 0;
	log_debug("%s: voice: Unmute closed between turns; the follow-up "
	    "takes a new session", v->job->sse->request_id);
	v->update_lost = 1;
	v->phase = PH_WAIT_ANSWER;
	v->busy_since = mono_ms();
	v->turn_deadline = 0;
	return 1;
}

static void
sess_end(void *arg, struct um_conn *c)
{
	struct vsess	*s = arg;
	struct voice	*v = s->v;
	const char	*code, *msg;

	if (c != s->c)
		return;		/* an attempt given up: already released */
	release_slot(s);
	s->streaming = 0;
	if (s->leaving || v->phase == PH_DONE)
		return;
	code = end_code(c, &msg);
	if (follow_retry(v, s, code) || said_goodbye(v, s, c))
		return;
	fail(v, code, msg);
}

static const struct um_ops sess_ops = {
	sess_open, sess_message, sess_end
};

/* Send the silence that real time asks for now. */
static void
pace(struct voice *v, struct vsess *s, long long now)
{
	unsigned char	*ogg;
	size_t		 ogglen, blen;
	char		*b64, *msg;
	int		 n;

	if (!s->streaming || s->c == NULL || !um_is_open(s->c))
		return;
	if (s->enc == NULL && (s->enc = oo_enc_new(FRAME_MS)) == NULL) {
		fail(v, "internal", "Cannot start the Opus encoder");
		return;
	}
	while (pace_due(&s->pace, now, LEAD_MS) && um_queued(s->c) < MAX_QUEUED) {
		ogg = NULL;
		ogglen = 0;
		/* The first append begins with the BOS OpusHead page. */
		if (oo_enc_silence(s->enc, APPEND_MS, &ogg, &ogglen) == -1 ||
		    (b64 = b64_encode(ogg, ogglen, &blen)) == NULL) {
			free(ogg);
			fail(v, "internal", "Cannot encode silence");
			return;
		}
		free(ogg);
		n = asprintf(&msg,
		    "{\"type\":\"input_audio_buffer.append\",\"audio\":\"%s\"}",
		    b64);
		free(b64);
		if (n == -1 || um_send(s->c, msg, (size_t)n) == -1) {
			if (n != -1)
				free(msg);
			return;
		}
		free(msg);
		pace_sent(&s->pace, APPEND_MS);
	}
	/* A socket that cannot keep up does not make us burst later. */
	pace_no_burst(&s->pace, now);
}

/* Look at the agent's answer without blocking. */
static void
poll_answer(struct voice *v)
{
	struct job	*j = v->job;
	int		 route = atomic_load(&j->route);
	enum answer_state st;

	if (v->answer != NULL || v->answer_none)
		return;
	if (route >= 0 && route != ROUTE_WEB && route != ROUTE_MEDICAL) {
		v->answer_none = 1;
		return;
	}
	pthread_mutex_lock(&j->mu);
	st = j->answer_state;
	pthread_mutex_unlock(&j->mu);
	if (st == ANSWER_NONE)
		v->answer_none = 1;
	else if (st == ANSWER_READY &&
	    (v->answer = job_wait_answer(j, 0)) == NULL)
		v->answer_none = 1;
	/* A blank answer has nothing to say. */
	if (v->answer != NULL && v->answer[strspn(v->answer, " \t\r\n")] == '\0') {
		free(v->answer);
		v->answer = NULL;
		v->answer_none = 1;
	}
}

/*
 * Open the follow-up session as soon as the answer is known, even while
 * turn 1 still plays (it saves the handshake); without a free slot,
 * retry until busy_wait after turn 1 gave its slot back.
 */
static void
follow_up_session(struct voice *v, long long now)
{
	struct vsess	*s = &v->s[1];
	int		 slot;

	if (s->c != NULL || v->answer == NULL ||
	    (v->early_failed && v->phase == PH_FIRST) || now < v->retry_at)
		return;
	slot = sb != NULL ? sb_unmute_acquire(v->cf->unmute.nurls,
	    v->cf->unmute.max_sessions) : 0;
	if (slot >= 0) {
		(void)open_session(v, s, slot);
		return;
	}
	if (v->phase == PH_WAIT_ANSWER &&
	    now - v->busy_since >= v->cf->unmute.busy_wait_ms)
		fail(v, "unmute_busy",
		    "The voice service is at capacity; try again later");
}

static int
all_ended(const struct voice *v)
{
	int i;

	for (i = 0; i < 2; i++)
		if (v->s[i].c != NULL && !um_is_ended(v->s[i].c))
			return 0;
	return 1;
}

static int
tick(void *arg)
{
	struct voice	*v = arg;
	long long	 now = mono_ms();
	int		 i, update;

	if (v->phase == PH_DONE)
		return all_ended(v) || now - v->done_at >= CLOSE_GRACE_MS;
	if (job_stopped(v->job)) {
		/* Not an error of ours: the supervisor reports the stop. */
		leave(&v->s[0]);
		leave(&v->s[1]);
		v->phase = PH_DONE;
		v->done_at = now;
		return 0;
	}
	for (i = 0; i < 2 && v->phase != PH_DONE; i++)
		pace(v, &v->s[i], now);
	if (v->phase == PH_DONE)
		return 0;
	if (v->turn_deadline != 0 && now >= v->turn_deadline) {
		fail(v, "upstream_timeout",
		    "The voice service did not finish its turn in time");
		return 0;
	}
	if (v->in_turn && now - v->last_event >= v->cf->unmute.stall_timeout_ms) {
		fail(v, "upstream_timeout", "The voice service stalled mid-turn");
		return 0;
	}
	poll_answer(v);
	update = by_update(v);
	if (v->phase == PH_WAIT_ANSWER && v->answer_none) {
		finish(v);
		return 0;
	}
	if (update) {
		if (v->phase == PH_WAIT_ANSWER && v->answer != NULL)
			update_follow_up(v);
		return 0;
	}
	if (v->phase == PH_FIRST || v->phase == PH_WAIT_ANSWER)
		follow_up_session(v, now);
	if (v->phase == PH_WAIT_ANSWER && v->s[1].c != NULL &&
	    um_is_open(v->s[1].c) && !v->s[1].updated)
		start_follow_up(v);
	return 0;
}

/* Take a URL slot, waiting up to busy_wait. Return its index or -1. */
static int
acquire_slot(struct voice *v)
{
	long long	 end = mono_ms() + v->cf->unmute.busy_wait_ms;
	int		 slot;

	if (sb == NULL)
		return 0;
	for (;;) {
		slot = sb_unmute_acquire(v->cf->unmute.nurls,
		    v->cf->unmute.max_sessions);
		if (slot >= 0 || mono_ms() >= end || job_stopped(v->job))
			return slot;
		usleep(BUSY_POLL_MS * 1000);
	}
}

static int
any_tls(const struct conf *cf)
{
	int i;

	for (i = 0; i < cf->unmute.nurls; i++)
		if (strncasecmp(cf->unmute.urls[i], "wss:", 4) == 0)
			return 1;
	return 0;
}

void *
voice_path(void *arg)
{
	struct job	*job = arg;
	struct voice	 v;
	int		 slot;

	if (!job->req->voice) {
		job->voice_result = PATH_SKIPPED;
		return NULL;
	}
	memset(&v, 0, sizeof(v));
	v.job = job;
	v.cf = job->conf;
	v.t0 = mono_ms();
	v.s[0].slot = v.s[1].slot = -1;
	uev_init(&v.ev, uev_emit, &v);

	/* Without early start, connect once the tagger has routed. */
	while (!v.cf->unmute.early_start && atomic_load(&job->route) < 0 &&
	    !job_stopped(job))
		usleep(TICK_MS * 1000);
	if ((slot = acquire_slot(&v)) < 0) {
		if (!job_stopped(job))
			fail(&v, "unmute_busy",
			    "The voice service is at capacity; try again later");
		goto out;
	}
	v.ctx = um_ctx_new(any_tls(v.cf), v.cf->unmute.tls_insecure,
	    v.cf->unmute.connect_timeout_ms);
	if (v.ctx == NULL) {
		if (sb != NULL)
			sb_unmute_release(slot);
		fail(&v, "internal", "Cannot start the websocket client");
		goto out;
	}
	if (open_session(&v, &v.s[0], slot) == 0)
		um_ctx_run(v.ctx, TICK_MS, tick, &v);
	release_slot(&v.s[0]);
	release_slot(&v.s[1]);
	um_ctx_free(v.ctx);
	oo_enc_free(v.s[0].enc);
	oo_enc_free(v.s[1].enc);
out:
	uev_free(&v.ev);
	free(v.answer);
	return NULL;
}
