/*
 * oggopus.c: the encoder's pages, the reader under every split, bad
 * input, and a spliced stream decoded by libogg + libopus on their own.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "oggopus.h"
#include "tap.h"

#define MAXPAGES	512

struct pages {
	int		 n;
	struct oo_page	 pg[MAXPAGES];
	unsigned char	*copy[MAXPAGES];
};

static void
pages_free(struct pages *ps)
{
	int i;

	for (i = 0; i < ps->n; i++)
		free(ps->copy[i]);
	ps->n = 0;
}

/* Take every page the reader has; copy each. Return the last rc. */
static int
drain(struct oo_reader *r, struct pages *ps)
{
	struct oo_page pg;
	int rc;

	while ((rc = oo_reader_next(r, &pg)) == 1) {
		if (ps->n == MAXPAGES)
			return -2;
		ps->pg[ps->n] = pg;
		ps->copy[ps->n] = malloc(pg.len);
		memcpy(ps->copy[ps->n], pg.data, pg.len);
		ps->pg[ps->n].data = ps->copy[ps->n];
		ps->n++;
	}
	return rc;
}

static int
read_all(const unsigned char *p, size_t len, struct pages *ps)
{
	struct oo_reader r;
	int rc;

	oo_reader_init(&r, 1 << 20);
	rc = oo_reader_feed(&r, p, len) == -1 ? -1 : drain(&r, ps);
	oo_reader_free(&r);
	return rc;
}

static int
same_pages(const struct pages *a, const struct pages *b)
{
	int i;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++)
		if (a->pg[i].len != b->pg[i].len ||
		    memcmp(a->pg[i].data, b->pg[i].data, a->pg[i].len) != 0 ||
		    a->pg[i].npackets != b->pg[i].npackets ||
		    a->pg[i].is_header != b->pg[i].is_header)
			return 0;
	return 1;
}

static int
crc_ok(const struct oo_page *pg)
{
	unsigned char *c;
	uint32_t want, got;

	c = malloc(pg->len);
	memcpy(c, pg->data, pg->len);
	want = (uint32_t)c[22] | (uint32_t)c[23] << 8 |
	    (uint32_t)c[24] << 16 | (uint32_t)c[25] << 24;
	memset(c + 22, 0, 4);
	got = oo_crc(c, pg->len);
	free(c);
	return got == want;
}

static void
test_round_trip(void)
{
	struct oo_enc *e;
	struct pages ps = { 0 };
	unsigned char *out = NULL;
	size_t outlen = 0;
	const unsigned char *b;
	int i, mono = 1, crcs = 1, serials = 1, seqs = 1, one = 1, nonempty = 1;

	e = oo_enc_new(20);
	ok(e != NULL, "encoder at 24 kHz, 20 ms");
	ok(oo_enc_new(25) == NULL, "25 ms frames refused");
	is_int(oo_enc_frame_samples(e), 480, "480 samples per 20 ms frame");
	is_int(oo_enc_set_serial(e, 42), 0, "serial settable before output");
	is_int(oo_enc_silence(e, 990, &out, &outlen), 0, "990 ms of silence");
	is_int(oo_enc_set_serial(e, 43), -1, "serial fixed once started");
	is_int(read_all(out, outlen, &ps), 0, "reader takes all of it");
	is_int(ps.n, 2 + 50, "OpusHead, OpusTags and 50 audio pages");
	ok(ps.pg[0].header_type & 0x02, "first page is BOS");
	ok(ps.pg[0].is_header && memcmp(ps.pg[0].data + ps.pg[0].hdrlen,
	    "OpusHead", 8) == 0, "first page carries OpusHead");
	b = ps.pg[0].data + ps.pg[0].hdrlen;
	ok(b[8] == 1 && b[9] == 1, "OpusHead version 1, mono");
	ok(b[10] | b[11] << 8, "OpusHead pre-skip is set");
	is_int(b[12] | b[13] << 8 | b[14] << 16, 24000, "input rate 24000");
	ok(ps.pg[1].is_header && !(ps.pg[1].header_type & 0x02) &&
	    memcmp(ps.pg[1].data + ps.pg[1].hdrlen, "OpusTags", 8) == 0,
	    "second page carries OpusTags, not BOS");
	ok(!ps.pg[2].is_header, "third page is audio");
	for (i = 0; i < ps.n; i++) {
		crcs &= crc_ok(&ps.pg[i]);
		serials &= ps.pg[i].serial == 42;
		seqs &= ps.pg[i].seqno == (uint32_t)i;
		one &= ps.pg[i].npackets == 1;
		nonempty &= ps.pg[i].len > ps.pg[i].hdrlen;
		if (i >= 2)
			mono &= ps.pg[i].granule == (int64_t)(i - 1) * 960;
		if (i > 2 && (ps.pg[i].header_type & 0x02))
			mono = 0;
	}
	ok(crcs, "every CRC valid");
	ok(serials, "every page has serial 42");
	ok(seqs, "page sequence numbers 0, 1, 2, ...");
	ok(one, "one packet per page");
	ok(nonempty, "no empty packet");
	ok(mono, "granules count 48 kHz samples: 960 per page");
	pages_free(&ps);

	/* Later output has no headers. */
	free(out);
	out = NULL;
	outlen = 0;
	is_int(oo_enc_silence(e, 40, &out, &outlen), 0, "more silence");
	is_int(read_all(out, outlen, &ps), 0, "read it");
	ok(ps.n == 2 && !ps.pg[0].is_header && ps.pg[0].seqno == 52 &&
	    ps.pg[1].granule == 52 * 960, "continues: no headers, seq 52");
	pages_free(&ps);
	free(out);
	oo_enc_free(e);
}

static void
test_pcm_buffering(void)
{
	struct oo_enc *e;
	struct pages ps = { 0 };
	unsigned char *out = NULL;
	size_t outlen = 0;
	int16_t pcm[1000];
	int i;

	for (i = 0; i < 1000; i++)
		pcm[i] = (int16_t)((i % 48) < 24 ? 3000 : -3000);
	e = oo_enc_new_rate(24000, 40);
	is_int(oo_enc_set_header(e, 42, 3840, 48000, "KyutaiMoshi"), 0,
	    "header fields set");
	oo_enc_pcm(e, pcm, 1000, &out, &outlen);
	oo_enc_pcm(e, pcm, 1000, &out, &outlen);
	read_all(out, outlen, &ps);
	is_int(ps.n, 2 + 2, "2000 samples: 2 pages of 960, 80 wait");
	ok(ps.n >= 2 && (ps.pg[0].data[ps.pg[0].hdrlen + 10] |
	    ps.pg[0].data[ps.pg[0].hdrlen + 11] << 8) == 3840,
	    "pre-skip 3840 as asked");
	ok(ps.n >= 2 && memcmp(ps.pg[1].data + ps.pg[1].hdrlen + 12,
	    "KyutaiMoshi", 11) == 0, "vendor as asked");
	pages_free(&ps);
	free(out);
	out = NULL;
	outlen = 0;
	is_int(oo_enc_flush(e, &out, &outlen), 0, "flush");
	read_all(out, outlen, &ps);
	ok(ps.n == 1 && ps.pg[0].granule == 3 * 1920,
	    "flush pads the rest to a third frame");
	pages_free(&ps);
	free(out);
	oo_enc_free(e);
}

static void
test_splits(void)
{
	struct oo_enc *e;
	struct oo_reader r;
	struct pages whole = { 0 }, ps = { 0 };
	unsigned char *out = NULL;
	size_t outlen = 0, i, k;
	int bytewise, every = 1;

	e = oo_enc_new(20);
	oo_enc_silence(e, 200, &out, &outlen);
	read_all(out, outlen, &whole);
	is_int(whole.n, 12, "12 pages");

	oo_reader_init(&r, 1 << 16);
	bytewise = 1;
	for (i = 0; i < outlen; i++)
		if (oo_reader_feed(&r, out + i, 1) == -1 ||
		    drain(&r, &ps) != 0)
			bytewise = 0;
	ok(bytewise && same_pages(&whole, &ps), "byte by byte: same pages");
	oo_reader_free(&r);
	pages_free(&ps);

	for (k = 0; k <= outlen; k++) {
		oo_reader_init(&r, 1 << 16);
		if (oo_reader_feed(&r, out, k) == -1 ||
		    drain(&r, &ps) != 0 ||
		    oo_reader_feed(&r, out + k, outlen - k) == -1 ||
		    drain(&r, &ps) != 0 || !same_pages(&whole, &ps))
			every = 0;
		oo_reader_free(&r);
		pages_free(&ps);
	}
	ok(every, "split at every offset: same pages");

	oo_reader_init(&r, 100);
	is_int(oo_reader_feed(&r, out, 101), -1, "over the cap: -1");
	oo_reader_free(&r);

	out[whole.pg[0].len + 30] ^= 0x01;
	oo_reader_init(&r, 1 << 16);
	oo_reader_feed(&r, out, outlen);
	is_int(drain(&r, &ps), -1, "a flipped bit in page 2: -1");
	is_int(ps.n, 1, "after the good first page");
	is_int(oo_reader_next(&r, &ps.pg[0]), -1, "and -1 stays");
	oo_reader_free(&r);
	pages_free(&ps);
	pages_free(&whole);
	free(out);
	oo_enc_free(e);
}

static void
test_garbage(void)
{
	struct oo_reader r;
	struct oo_page pg;
	unsigned char v1[27] = "OggS\001";

	oo_reader_init(&r, 1 << 16);
	is_int(oo_reader_feed(&r, (const unsigned char *)"GET / HTTP/1.1",
	    14), -1, "HTTP is not Ogg");
	oo_reader_free(&r);

	oo_reader_init(&r, 1 << 16);
	is_int(oo_reader_feed(&r, (const unsigned char *)"Og", 2), 0,
	    "a partial capture pattern waits");
	is_int(oo_reader_next(&r, &pg), 0, "needs more");
	is_int(oo_reader_feed(&r, (const unsigned char *)"gX", 2), -1,
	    "then OggX: -1");
	oo_reader_free(&r);

	oo_reader_init(&r, 1 << 16);
	oo_reader_feed(&r, v1, sizeof(v1));
	is_int(oo_reader_next(&r, &pg), -1, "version 1: -1");
	oo_reader_free(&r);
}

/* Decode with libogg's own parser (checks CRC, serial, gaps) + libopus. */
static long
libogg_decode(const unsigned char *p, size_t len, int *gaps, int *headers)
{
	ogg_sync_state oy;
	ogg_stream_state os;
	ogg_page og;
	ogg_packet op;
	OpusDecoder *dec;
	int16_t pcm[5760];
	long total = 0;
	int err, started = 0, n;
	char *buf;

	*gaps = *headers = 0;
	dec = opus_decoder_create(24000, 1, &err);
	ogg_sync_init(&oy);
	buf = ogg_sync_buffer(&oy, (long)len);
	memcpy(buf, p, len);
	ogg_sync_wrote(&oy, (long)len);
	while ((n = ogg_sync_pageout(&oy, &og)) != 0) {
		if (n < 0) {
			(*gaps)++;
			continue;
		}
		if (!started) {
			ogg_stream_init(&os, ogg_page_serialno(&og));
			started = 1;
		}
		if (ogg_stream_pagein(&os, &og) != 0)
			(*gaps)++;
		while ((n = ogg_stream_packetout(&os, &op)) != 0) {
			if (n < 0) {
				(*gaps)++;
				continue;
			}
			if (op.bytes >= 8 && (memcmp(op.packet, "OpusHead",
			    8) == 0 || memcmp(op.packet, "OpusTags", 8) == 0)) {
				(*headers)++;
				continue;
			}
			n = opus_decode(dec, op.packet, (opus_int32)op.bytes,
			    pcm, 5760, 0);
			if (n < 0)
				(*gaps)++;
			else
				total += n;
		}
	}
	if (started)
		ogg_stream_clear(&os);
	ogg_sync_clear(&oy);
	opus_decoder_destroy(dec);
	return total;
}

static void
splice_in(struct oo_splice *s, const unsigned char *p, size_t len,
    unsigned char **out, size_t *outlen)
{
	struct pages ps = { 0 };
	int i;
	size_t n;

	read_all(p, len, &ps);
	for (i = 0; i < ps.n; i++) {
		*out = realloc(*out, *outlen + ps.pg[i].len);
		n = oo_splice_page(s, &ps.pg[i], *out + *outlen);
		*outlen += n;
	}
	pages_free(&ps);
}

static void
test_splice(void)
{
	struct oo_enc *a, *b;
	struct oo_splice s;
	struct oo_dec *d;
	struct pages ps = { 0 };
	unsigned char *pa = NULL, *pb = NULL, *out = NULL;
	size_t la = 0, lb = 0, lo = 0;
	int i, bos = 0, seq = 1, mono = 1, crcs = 1, ser = 1, hdr = 0;
	int gaps, headers;
	int64_t last = 0;

	a = oo_enc_new_rate(24000, 40);
	b = oo_enc_new_rate(24000, 40);
	oo_enc_set_header(a, 42, 3840, 48000, "KyutaiMoshi");
	oo_enc_set_header(b, 7, 3840, 48000, "KyutaiMoshi");
	oo_enc_silence(a, 400, &pa, &la);
	oo_enc_silence(b, 800, &pb, &lb);
	oo_splice_init(&s);
	splice_in(&s, pa, la, &out, &lo);
	oo_splice_new_source(&s);
	splice_in(&s, pb, lb, &out, &lo);

	is_int(read_all(out, lo, &ps), 0, "spliced stream reads");
	is_int(ps.n, 2 + 10 + 20, "headers once, 10 + 20 audio pages");
	for (i = 0; i < ps.n; i++) {
		bos += (ps.pg[i].header_type & 0x02) != 0;
		hdr += ps.pg[i].is_header;
		seq &= ps.pg[i].seqno == (uint32_t)i;
		ser &= ps.pg[i].serial == 42;
		crcs &= crc_ok(&ps.pg[i]);
		if (ps.pg[i].granule < last)
			mono = 0;
		last = ps.pg[i].granule;
	}
	is_int(bos, 1, "one BOS page");
	is_int(hdr, 2, "two header pages");
	ok(seq, "sequence numbers continuous");
	ok(ser, "one serial, the first stream's");
	ok(crcs, "CRCs valid");
	ok(mono, "granules monotonic");
	is_int(last, 30 * 1920, "last granule continues the first stream");
	pages_free(&ps);

	is_int(libogg_decode(out, lo, &gaps, &headers), 30 * 960,
	    "libogg + opus_decode: 1.2 s at 24 kHz");
	is_int(gaps, 0, "libogg saw no hole, bad CRC or foreign page");
	is_int(headers, 2, "libogg saw two header packets");

	d = oo_dec_new(24000, 1 << 16);
	is_int(oo_dec_feed(d, out, lo, NULL, 24000 * 5), 30 * 960,
	    "oo_dec agrees");
	is_int(oo_dec_packets(d), 30, "30 packets");
	oo_dec_free(d);
	d = oo_dec_new(24000, 1 << 16);
	is_int(oo_dec_feed(d, out, lo, NULL, 960 * 10), -1,
	    "oo_dec: over maxsamples is -1");
	oo_dec_free(d);

	free(pa);
	free(pb);
	free(out);
	oo_enc_free(a);
	oo_enc_free(b);
}

static void
test_dec_split(void)
{
	struct oo_enc *e;
	struct oo_dec *d;
	unsigned char *out = NULL;
	size_t outlen = 0, i;
	long total = 0, n;
	int good = 1;

	e = oo_enc_new(20);
	oo_enc_silence(e, 300, &out, &outlen);
	d = oo_dec_new(24000, 1 << 16);
	for (i = 0; i < outlen; i += 7) {
		n = oo_dec_feed(d, out + i, outlen - i < 7 ? outlen - i : 7,
		    NULL, 24000);
		if (n < 0)
			good = 0;
		else
			total += n;
	}
	ok(good, "decoder fed in 7-byte pieces");
	is_int(total, 15 * 480, "decodes 15 frames of 480");
	oo_dec_free(d);
	free(out);
	oo_enc_free(e);
}

int
main(void)
{
	test_round_trip();
	test_pcm_buffering();
	test_splits();
	test_garbage();
	test_splice();
	test_dec_split();
	return done();
}
