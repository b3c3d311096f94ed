/*
 * Ogg/Opus for the voice path (docs/unmute-protocol.md §5): an encoder
 * that writes Ogg pages (libopus + libogg), a resumable Ogg page reader,
 * a rewriter that splices a second Ogg stream into the first, and a
 * decoder that turns Ogg bytes back into PCM.
 */
#ifndef TANDEM_OGGOPUS_H
#define TANDEM_OGGOPUS_H

#include <stddef.h>
#include <stdint.h>

/* --- writer: mono Opus, one packet per page --- */

struct oo_enc;

/* 24 kHz; frame_ms: 10, 20, 40 or 60. Return NULL on failure. */
struct oo_enc	*oo_enc_new(int frame_ms);
/* rate: 8000, 12000, 16000, 24000 or 48000 Hz. Return NULL on failure. */
struct oo_enc	*oo_enc_new_rate(int rate, int frame_ms);
void		 oo_enc_free(struct oo_enc *);
/*
 * Header fields, before the first output only: serial (default random),
 * pre-skip in 48 kHz samples (< 0: the encoder's lookahead), input rate
 * written in OpusHead (0: the encoder's rate), vendor (NULL: libopus's).
 * Return 0, or -1 when output has already begun.
 */
int		 oo_enc_set_header(struct oo_enc *, uint32_t serial,
		    int preskip, uint32_t input_rate, const char *vendor);
int		 oo_enc_set_serial(struct oo_enc *, uint32_t);
/* Samples per frame at the encoder's rate. */
int		 oo_enc_frame_samples(const struct oo_enc *);
/*
 * Append the pages for ms of silence (rounded up to whole frames) to
 * *out, a malloc'd buffer of *outlen bytes (*out NULL and *outlen 0 the
 * first time; the caller frees it); the first output of an encoder
 * begins with the OpusHead (BOS) and OpusTags pages. Return 0, or -1 on
 * failure (*out then still owned by the caller, unchanged).
 */
int		 oo_enc_silence(struct oo_enc *, int ms, unsigned char **out,
		    size_t *outlen);
/*
 * Encode nsamples of mono PCM at the encoder's rate; whole frames become
 * pages appended as by oo_enc_silence, a remainder waits for the next
 * call. Return 0, or -1.
 */
int		 oo_enc_pcm(struct oo_enc *, const int16_t *pcm, int nsamples,
		    unsigned char **out, size_t *outlen);
/* Pad the remainder with zeros to a whole frame and encode it. */
int		 oo_enc_flush(struct oo_enc *, unsigned char **out,
		    size_t *outlen);

/* --- reader: splits bytes into pages, whatever the splits --- */

struct oo_page {
	unsigned char	 header_type;	/* 0x01 continued, 0x02 BOS, 0x04 EOS */
	int64_t		 granule;
	uint32_t	 serial;
	uint32_t	 seqno;
	int		 npackets;	/* packets that end on this page */
	int		 is_header;	/* carries OpusHead or OpusTags */
	const unsigned char *data;	/* the whole page */
	size_t		 len;
	size_t		 hdrlen;	/* 27 + segments: the body follows */
};

#define OO_PAGE_MAX	(27 + 255 + 255 * 255)

struct oo_reader {
	unsigned char	*buf;
	size_t		 len, cap;
	size_t		 max;		/* cap on buffered bytes */
	size_t		 off;		/* start of unread bytes */
	int		 cont_header;	/* a header packet goes on next page */
};

void	 oo_reader_init(struct oo_reader *, size_t max);
void	 oo_reader_free(struct oo_reader *);
/*
 * Feed bytes (a page returned earlier is invalid afterwards). Return 0,
 * or -1 when they are not Ogg or exceed the cap.
 */
int	 oo_reader_feed(struct oo_reader *, const unsigned char *, size_t);
/*
 * Take the next whole page into *pg (valid until the next call). Return
 * 1 with a page, 0 when more bytes are needed, -1 on bad data (no
 * "OggS", version not 0, bad CRC); -1 stays.
 */
int	 oo_reader_next(struct oo_reader *, struct oo_page *);

/* --- rewriter: continue one logical stream across Unmute sessions --- */

struct oo_splice {
	int		 have_first;	/* the first stream's serial is known */
	uint32_t	 serial;	/* of the first stream */
	uint32_t	 next_seqno;
	int64_t		 granule;	/* last granule written */
	int64_t		 src_base;	/* granule offset of the current source */
	uint32_t	 src_serial;
	int		 src_started;
	int		 later;		/* the current source is not the first */
};

void	 oo_splice_init(struct oo_splice *);
/* A new source stream (second Unmute session) starts. */
void	 oo_splice_new_source(struct oo_splice *);
/*
 * Rewrite one page of the current source into out (room for pg->len
 * bytes): serial, seqno, granule and CRC of the first stream; BOS
 * cleared on a later source, EOS always cleared. Header pages of a
 * later source are dropped. Return bytes written (0: dropped).
 */
size_t	 oo_splice_page(struct oo_splice *, const struct oo_page *,
	    unsigned char *out);
/* Ogg CRC-32 (poly 0x04c11db7) of a page whose CRC field is zeroed. */
uint32_t oo_crc(const unsigned char *, size_t);

/* --- decoder: Ogg/Opus bytes to mono PCM --- */

struct oo_dec;

/* rate: as for oo_enc_new_rate. max: cap on buffered Ogg bytes. */
struct oo_dec	*oo_dec_new(int rate, size_t max);
void		 oo_dec_free(struct oo_dec *);
/*
 * Feed Ogg bytes (any splits); decode every whole audio packet, skipping
 * OpusHead/OpusTags, into pcm (room for maxsamples; pcm may be NULL to
 * only count). Return the samples decoded, or -1 on bad Ogg, bad Opus
 * or more than maxsamples.
 */
long		 oo_dec_feed(struct oo_dec *, const unsigned char *, size_t,
		    int16_t *pcm, long maxsamples);
/* Audio packets decoded so far. */
long		 oo_dec_packets(const struct oo_dec *);

#endif
