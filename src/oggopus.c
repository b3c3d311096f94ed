/*
 * Ogg/Opus for the voice path: see oggopus.h, RFC 3533 (Ogg) and
 * RFC 7845 (Opus in Ogg).
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "oggopus.h"

#define OO_MAX_PACKET	4000	/* more than one 120 ms Opus frame */
#define OO_HEAD_LEN	19

struct oo_enc {
	OpusEncoder	*opus;
	ogg_stream_state os;
	int		 stream_init;
	int		 rate;
	int		 frame;		/* samples per frame at rate */
	int		 scale;		/* 48000 / rate */
	uint32_t	 serial;
	int		 preskip;	/* 48 kHz samples */
	uint32_t	 input_rate;
	char		*vendor;
	int		 started;	/* headers written */
	int64_t		 granule;	/* 48 kHz samples written */
	int64_t		 packetno;
	int16_t		*pend;		/* a partial frame */
	int		 npend;
};

struct oo_dec {
	OpusDecoder	*opus;
	struct oo_reader rd;
	unsigned char	*pkt;		/* a packet spanning pages */
	size_t		 pktlen;
	int		 rate;
	long		 packets;
	int		 bad;
};

static uint32_t	 crc_table[256];
static pthread_once_t	 crc_once = PTHREAD_ONCE_INIT;

/* Fill the table once: voice threads of several streams share it. */
static void
crc_fill(void)
{
	uint32_t r;
	int i, j;

	for (i = 0; i < 256; i++) {
		r = (uint32_t)i << 24;
		for (j = 0; j < 8; j++)
			r = (r & 0x80000000U) ? (r << 1) ^ 0x04c11db7U : r << 1;
		crc_table[i] = r;
	}
}

static uint32_t
crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
	pthread_once(&crc_once, crc_fill);
	while (n-- > 0)
		crc = (crc << 8) ^ crc_table[((crc >> 24) ^ *p++) & 0xff];
	return crc;
}

uint32_t
oo_crc(const unsigned char *p, size_t n)
{
	return crc_update(0, p, n);
}

/* CRC of a whole page as if its CRC field (bytes 22..25) were zero. */
static uint32_t
page_crc(const unsigned char *p, size_t n)
{
	static const unsigned char zero[4];
	uint32_t crc;

	crc = crc_update(0, p, 22);
	crc = crc_update(crc, zero, 4);
	return crc_update(crc, p + 26, n - 26);
}

static void
put_le32(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static uint32_t
get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
	    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
put_le64(unsigned char *p, int64_t v)
{
	put_le32(p, (uint32_t)((uint64_t)v & 0xffffffffU));
	put_le32(p + 4, (uint32_t)((uint64_t)v >> 32));
}

static int64_t
get_le64(const unsigned char *p)
{
	return (int64_t)((uint64_t)get_le32(p) |
	    (uint64_t)get_le32(p + 4) << 32);
}

/* --- writer --- */

static int
valid_rate(int rate)
{
	return rate == 8000 || rate == 12000 || rate == 16000 ||
	    rate == 24000 || rate == 48000;
}

static uint32_t
random_serial(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec ^
	    ((uint32_t)getpid() << 16);
}

struct oo_enc *
oo_enc_new_rate(int rate, int frame_ms)
{
	struct oo_enc *e;
	opus_int32 lookahead = 0;
	int err;

	if (!valid_rate(rate) || (frame_ms != 10 && frame_ms != 20 &&
	    frame_ms != 40 && frame_ms != 60))
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->rate = rate;
	e->scale = 48000 / rate;
	e->frame = rate / 1000 * frame_ms;
	e->serial = random_serial();
	e->opus = opus_encoder_create(rate, 1, OPUS_APPLICATION_VOIP, &err);
	e->pend = calloc((size_t)e->frame, sizeof(int16_t));
	if (e->opus == NULL || err != OPUS_OK || e->pend == NULL) {
		oo_enc_free(e);
		return NULL;
	}
	/* DTX off: silence still yields non-empty packets. */
	opus_encoder_ctl(e->opus, OPUS_SET_DTX(0));
	opus_encoder_ctl(e->opus, OPUS_GET_LOOKAHEAD(&lookahead));
	e->preskip = (int)lookahead * e->scale;
	e->input_rate = (uint32_t)rate;
	return e;
}

struct oo_enc *
oo_enc_new(int frame_ms)
{
	return oo_enc_new_rate(24000, frame_ms);
}

void
oo_enc_free(struct oo_enc *e)
{
	if (e == NULL)
		return;
	if (e->opus != NULL)
		opus_encoder_destroy(e->opus);
	if (e->stream_init)
		ogg_stream_clear(&e->os);
	free(e->vendor);
	free(e->pend);
	free(e);
}

int
oo_enc_set_header(struct oo_enc *e, uint32_t serial, int preskip,
    uint32_t input_rate, const char *vendor)
{
	char *v = NULL;

	if (e->started)
		return -1;
	if (vendor != NULL && (v = strdup(vendor)) == NULL)
		return -1;
	e->serial = serial;
	if (preskip >= 0)
		e->preskip = preskip > 65535 ? 65535 : preskip;
	if (input_rate != 0)
		e->input_rate = input_rate;
	if (v != NULL) {
		free(e->vendor);
		e->vendor = v;
	}
	return 0;
}

int
oo_enc_set_serial(struct oo_enc *e, uint32_t serial)
{
	if (e->started)
		return -1;
	e->serial = serial;
	return 0;
}

int
oo_enc_frame_samples(const struct oo_enc *e)
{
	return e->frame;
}

/*
 * Append the pages libogg has for us to *out. Return 0, or -1 on
 * allocation failure, with *out and *outlen as they were.
 */
static int
append_pages(struct oo_enc *e, unsigned char **out, size_t *outlen)
{
	ogg_page og;
	unsigned char *p;
	size_t n;

	while (ogg_stream_flush(&e->os, &og) != 0) {
		n = (size_t)og.header_len + (size_t)og.body_len;
		if ((p = realloc(*out, *outlen + n)) == NULL)
			return -1;
		memcpy(p + *outlen, og.header, (size_t)og.header_len);
		memcpy(p + *outlen + og.header_len, og.body,
		    (size_t)og.body_len);
		*out = p;
		*outlen += n;
	}
	return 0;
}

static int
packet_in(struct oo_enc *e, unsigned char *data, long len, int64_t granule)
{
	ogg_packet op;

	memset(&op, 0, sizeof(op));
	op.packet = data;
	op.bytes = len;
	op.b_o_s = e->packetno == 0;
	op.granulepos = granule;
	op.packetno = e->packetno++;
	return ogg_stream_packetin(&e->os, &op) == 0 ? 0 : -1;
}

/* OpusHead and OpusTags (RFC 7845 §5), each on its own page. */
static int
write_headers(struct oo_enc *e, unsigned char **out, size_t *outlen)
{
	unsigned char head[OO_HEAD_LEN], *tags;
	const char *vendor;
	size_t vlen, tlen;
	int rc;

	if (ogg_stream_init(&e->os, (int)e->serial) != 0)
		return -1;
	e->stream_init = 1;
	memcpy(head, "OpusHead", 8);
	head[8] = 1;			/* version */
	head[9] = 1;			/* channels */
	head[10] = e->preskip & 0xff;
	head[11] = (e->preskip >> 8) & 0xff;
	put_le32(head + 12, e->input_rate);
	head[16] = head[17] = 0;	/* output gain */
	head[18] = 0;			/* mapping family */
	vendor = e->vendor != NULL ? e->vendor : opus_get_version_string();
	vlen = strlen(vendor);
	tlen = 8 + 4 + vlen + 4;
	if ((tags = malloc(tlen)) == NULL)
		return -1;
	memcpy(tags, "OpusTags", 8);
	put_le32(tags + 8, (uint32_t)vlen);
	memcpy(tags + 12, vendor, vlen);
	put_le32(tags + 12 + vlen, 0);
	rc = packet_in(e, head, sizeof(head), 0) == 0 &&
	    append_pages(e, out, outlen) == 0 &&
	    packet_in(e, tags, (long)tlen, 0) == 0 &&
	    append_pages(e, out, outlen) == 0 ? 0 : -1;
	free(tags);
	if (rc == 0)
		e->started = 1;
	return rc;
}

static int
encode_frame(struct oo_enc *e, const int16_t *pcm, unsigned char **out,
    size_t *outlen)
{
	unsigned char pkt[OO_MAX_PACKET];
	opus_int32 n;

	n = opus_encode(e->opus, pcm, e->frame, pkt, sizeof(pkt));
	/* An empty packet would read as lost audio of any length. */
	if (n < 1)
		return -1;
	e->granule += (int64_t)e->frame * e->scale;
	if (packet_in(e, pkt, n, e->granule) == -1)
		return -1;
	return append_pages(e, out, outlen);
}

/* Headers first, once; *outlen back to *mark on failure. Return 0/-1. */
static int
enc_begin(struct oo_enc *e, unsigned char **out, size_t *outlen,
    size_t *mark)
{
	*mark = *outlen;
	if (!e->started && write_headers(e, out, outlen) == -1) {
		*outlen = *mark;
		return -1;
	}
	return 0;
}

int
oo_enc_pcm(struct oo_enc *e, const int16_t *pcm, int nsamples,
    unsigned char **out, size_t *outlen)
{
	size_t mark;
	int take;

	if (nsamples < 0 || enc_begin(e, out, outlen, &mark) == -1)
		return -1;
	while (nsamples > 0) {
		take = e->frame - e->npend;
		if (take > nsamples)
			take = nsamples;
		memcpy(e->pend + e->npend, pcm, (size_t)take * sizeof(*pcm));
		e->npend += take;
		pcm += take;
		nsamples -= take;
		if (e->npend < e->frame)
			break;
		e->npend = 0;
		if (encode_frame(e, e->pend, out, outlen) == -1) {
			*outlen = mark;
			return -1;
		}
	}
	return 0;
}

int
oo_enc_flush(struct oo_enc *e, unsigned char **out, size_t *outlen)
{
	size_t mark;

	if (enc_begin(e, out, outlen, &mark) == -1)
		return -1;
	if (e->npend == 0)
		return 0;
	memset(e->pend + e->npend, 0,
	    (size_t)(e->frame - e->npend) * sizeof(int16_t));
	e->npend = 0;
	if (encode_frame(e, e->pend, out, outlen) == -1) {
		*outlen = mark;
		return -1;
	}
	return 0;
}

int
oo_enc_silence(struct oo_enc *e, int ms, unsigned char **out,
    size_t *outlen)
{
	int16_t *zero;
	size_t mark;
	int frames, frame_ms, i;

	if (ms < 0 ||
	    (zero = calloc((size_t)e->frame, sizeof(int16_t))) == NULL)
		return -1;
	if (enc_begin(e, out, outlen, &mark) == -1) {
		free(zero);
		return -1;
	}
	frame_ms = e->frame * 1000 / e->rate;
	frames = (ms + frame_ms - 1) / frame_ms;
	for (i = 0; i < frames; i++) {
		if (encode_frame(e, zero, out, outlen) == -1) {
			*outlen = mark;
			free(zero);
			return -1;
		}
	}
	free(zero);
	return 0;
}

/* --- reader --- */

void
oo_reader_init(struct oo_reader *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->max = max;
}

void
oo_reader_free(struct oo_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int
oo_reader_feed(struct oo_reader *r, const unsigned char *p, size_t n)
{
	unsigned char *nb;
	size_t ncap, have, i;

	if (r->off > 0) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off;
		r->off = 0;
	}
	if (n > r->max || r->len > r->max - n)
		return -1;
	if (r->len + n > r->cap) {
		ncap = r->cap ? r->cap : 4096;
		while (ncap < r->len + n)
			ncap *= 2;
		if ((nb = realloc(r->buf, ncap)) == NULL)
			return -1;
		r->buf = nb;
		r->cap = ncap;
	}
	if (n > 0)
		memcpy(r->buf + r->len, p, n);
	r->len += n;
	/* The part of a capture pattern we have must match at once. */
	have = r->len < 4 ? r->len : 4;
	for (i = 0; i < have; i++)
		if (r->buf[i] != (unsigned char)"OggS"[i])
			return -1;
	return 0;
}

static int
starts_with(const unsigned char *p, size_t n, const char *magic)
{
	size_t m = strlen(magic);

	return n >= m && memcmp(p, magic, m) == 0;
}

int
oo_reader_next(struct oo_reader *r, struct oo_page *pg)
{
	const unsigned char *p;
	size_t avail, nseg, hdr, body, i;
	int first_is_header;

	p = r->buf + r->off;
	avail = r->len - r->off;
	if (avail >= 4 && memcmp(p, "OggS", 4) != 0)
		return -1;
	if (avail < 27)
		return 0;
	if (p[4] != 0)
		return -1;
	nseg = p[26];
	hdr = 27 + nseg;
	if (avail < hdr)
		return 0;
	for (body = 0, i = 0; i < nseg; i++)
		body += p[27 + i];
	if (avail < hdr + body)
		return 0;
	if (page_crc(p, hdr + body) != get_le32(p + 22))
		return -1;

	memset(pg, 0, sizeof(*pg));
	pg->header_type = p[5];
	pg->granule = get_le64(p + 6);
	pg->serial = get_le32(p + 14);
	pg->seqno = get_le32(p + 18);
	pg->data = p;
	pg->len = hdr + body;
	pg->hdrlen = hdr;
	for (i = 0; i < nseg; i++)
		if (p[27 + i] < 255)
			pg->npackets++;
	if (p[5] & 0x01)
		first_is_header = r->cont_header;
	else
		first_is_header = starts_with(p + hdr, body, "OpusHead") ||
		    starts_with(p + hdr, body, "OpusTags");
	pg->is_header = first_is_header;
	/* A header packet left unfinished goes on on the next page. */
	r->cont_header = nseg > 0 && p[hdr - 1] == 255 &&
	    pg->npackets == 0 && first_is_header;
	r->off += pg->len;
	return 1;
}

/* --- rewriter --- */

void
oo_splice_init(struct oo_splice *s)
{
	memset(s, 0, sizeof(*s));
}

void
oo_splice_new_source(struct oo_splice *s)
{
	s->src_started = 0;
	if (s->have_first)
		s->later = 1;
}

size_t
oo_splice_page(struct oo_splice *s, const struct oo_page *pg,
    unsigned char *out)
{
	int64_t granule;

	if (pg->len < 27)
		return 0;
	if (s->later && pg->is_header)
		return 0;
	if (!s->have_first) {
		s->have_first = 1;
		s->serial = pg->serial;
	}
	if (!s->src_started) {
		s->src_started = 1;
		s->src_serial = pg->serial;
		s->src_base = s->later ? s->granule : 0;
	}
	memcpy(out, pg->data, pg->len);
	out[5] &= ~0x04;
	if (s->later)
		out[5] &= ~0x02;
	granule = pg->granule;
	if (granule != -1) {
		granule += s->src_base;
		s->granule = granule;
	}
	put_le64(out + 6, granule);
	put_le32(out + 14, s->serial);
	put_le32(out + 18, s->next_seqno++);
	put_le32(out + 22, 0);
	put_le32(out + 22, oo_crc(out, pg->len));
	return pg->len;
}

/* --- decoder --- */

struct oo_dec *
oo_dec_new(int rate, size_t max)
{
	struct oo_dec *d;
	int err;

	if (!valid_rate(rate) || (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->rate = rate;
	oo_reader_init(&d->rd, max);
	d->opus = opus_decoder_create(rate, 1, &err);
	if (d->opus == NULL || err != OPUS_OK) {
		oo_dec_free(d);
		return NULL;
	}
	return d;
}

void
oo_dec_free(struct oo_dec *d)
{
	if (d == NULL)
		return;
	if (d->opus != NULL)
		opus_decoder_destroy(d->opus);
	oo_reader_free(&d->rd);
	free(d->pkt);
	free(d);
}

long
oo_dec_packets(const struct oo_dec *d)
{
	return d->packets;
}

/*
 * Decode one whole packet into pcm at *n. Return 0, or -1 on bad Opus
 * or when it would not fit below max.
 */
static int
decode_packet(struct oo_dec *d, const unsigned char *pkt, size_t len,
    int16_t *pcm, long max, long *n)
{
	int16_t tmp[5760];
	int got;

	if (starts_with(pkt, len, "OpusHead") ||
	    starts_with(pkt, len, "OpusTags"))
		return 0;
	/* An empty packet is a lost one: refuse to invent audio. */
	if (len == 0 || len > 0x7fffffff)
		return -1;
	got = opus_decode(d->opus, pkt, (opus_int32)len, tmp,
	    (int)(sizeof(tmp) / sizeof(tmp[0])), 0);
	if (got < 0 || *n + got > max)
		return -1;
	if (pcm != NULL)
		memcpy(pcm + *n, tmp, (size_t)got * sizeof(*tmp));
	*n += got;
	d->packets++;
	return 0;
}

/* Split a page body into packets, joining those that span pages. */
static int
decode_page(struct oo_dec *d, const struct oo_page *pg, int16_t *pcm,
    long max, long *n)
{
	const unsigned char *seg = pg->data + 27, *body = pg->data + pg->hdrlen;
	size_t nseg = pg->hdrlen - 27, i, start = 0, pos = 0;
	unsigned char *np;

	int skip;

	/* A fragment whose start or end we did not see is dropped. */
	skip = (pg->header_type & 0x01) && d->pktlen == 0;
	if (!(pg->header_type & 0x01))
		d->pktlen = 0;
	for (i = 0; i < nseg; i++) {
		pos += seg[i];
		if (seg[i] == 255 && i + 1 < nseg)
			continue;
		if (skip) {
			skip = 0;
			start = pos;
			continue;
		}
		if (seg[i] == 255 || d->pktlen > 0) {
			if (d->pktlen + (pos - start) > OO_PAGE_MAX * 4)
				return -1;
			np = realloc(d->pkt, d->pktlen + (pos - start) + 1);
			if (np == NULL)
				return -1;
			d->pkt = np;
			memcpy(d->pkt + d->pktlen, body + start, pos - start);
			d->pktlen += pos - start;
			if (seg[i] == 255)
				break;	/* goes on on the next page */
			if (decode_packet(d, d->pkt, d->pktlen, pcm, max,
			    n) == -1)
				return -1;
			d->pktlen = 0;
		} else if (decode_packet(d, body + start, pos - start, pcm,
		    max, n) == -1)
			return -1;
		start = pos;
	}
	return 0;
}

long
oo_dec_feed(struct oo_dec *d, const unsigned char *p, size_t len,
    int16_t *pcm, long maxsamples)
{
	struct oo_page pg;
	long n = 0;
	int rc;

	if (d->bad || oo_reader_feed(&d->rd, p, len) == -1)
		goto bad;
	while ((rc = oo_reader_next(&d->rd, &pg)) == 1)
		if (decode_page(d, &pg, pcm, maxsamples, &n) == -1)
			goto bad;
	if (rc == -1)
		goto bad;
	return n;
bad:
	d->bad = 1;
	return -1;
}
