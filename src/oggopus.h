/*
 * Ogg/Opus for the voice path (docs/unmute-protocol.md §5): a silence
 * encoder that writes Ogg pages (libopus + libogg), a resumable Ogg page
 * reader, and a rewriter that splices a second Ogg stream into the first.
 */
#ifndef TANDEM_OGGOPUS_H
#define TANDEM_OGGOPUS_H

#include <stddef.h>
#include <stdint.h>

/* --- writer: mono Opus at 24 kHz, one packet per page --- */

struct oo_enc;

/* frame_ms: 20, 40 or 60. Return NULL on failure. */
struct oo_enc	*oo_enc_new(int frame_ms);
void		 oo_enc_free(struct oo_enc *);
/*
 * Append the pages for ms of silence (rounded up to whole frames) to a
 * malloc'd buffer; the first call also yields the OpusHead (BOS) and
 * OpusTags pages first. Return 0, or -1 on failure.
 */
int		 oo_enc_silence(struct oo_enc *, int ms, unsigned char **out,
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
};

struct oo_reader {
	unsigned char	*buf;
	size_t		 len, cap;
	size_t		 max;		/* cap on buffered bytes */
};

void	 oo_reader_init(struct oo_reader *, size_t max);
void	 oo_reader_free(struct oo_reader *);
/* Feed bytes. Return 0, or -1 when they are not Ogg or exceed the cap. */
int	 oo_reader_feed(struct oo_reader *, const unsigned char *, size_t);
/*
 * Take the next whole page into *pg (valid until the next call).
 * Return 1 with a page, 0 when more bytes are needed, -1 on bad data.
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
};

void	 oo_splice_init(struct oo_splice *);
/* A new source stream (second Unmute session) starts. */
void	 oo_splice_new_source(struct oo_splice *);
/*
 * Rewrite one page of the current source into out (room for pg->len
 * bytes): serial, seqno, granule and CRC of the first stream. Header
 * pages of a later source are dropped. Return bytes written (0: dropped).
 */
size_t	 oo_splice_page(struct oo_splice *, const struct oo_page *,
	    unsigned char *out);
/* Ogg CRC-32 (poly 0x04c11db7) of a page whose CRC field is zeroed. */
uint32_t oo_crc(const unsigned char *, size_t);

#endif
