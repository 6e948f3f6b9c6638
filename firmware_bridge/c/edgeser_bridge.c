/* edgeser serial protocol for firmware; see edgeser_bridge.h and docs/bridge.md. */
#include "edgeser_bridge.h"

#include <string.h>

uint16_t ebp_crc16(const uint8_t *data, size_t len, uint16_t crc) {
    /* bitwise rather than a 512-byte table: flash matters more than speed at these rates */
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(data[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* COBS encoder that takes bytes one at a time, so a frame is encoded straight from its parts */
typedef struct {
    uint8_t *out;
    size_t cap, pos, code_at;
    uint8_t code;
    int overflow;
} cobs_enc_t;

static void enc_start(cobs_enc_t *e, uint8_t *out, size_t cap) {
    e->out = out;
    e->cap = cap;
    e->code_at = 0;
    e->pos = 1;
    e->code = 1;
    e->overflow = cap < 1;
}

static void enc_close_block(cobs_enc_t *e) {
    e->out[e->code_at] = e->code;
    e->code_at = e->pos;
    e->code = 1;
    if (e->pos >= e->cap) {
        e->overflow = 1;
        return;
    }
    e->pos++;
}

static void enc_byte(cobs_enc_t *e, uint8_t b) {
    if (e->overflow) return;
    if (b) {
        if (e->pos >= e->cap) {
            e->overflow = 1;
            return;
        }
        e->out[e->pos++] = b;
        e->code++;
    }
    if (!b || e->code == 0xFF) enc_close_block(e);
}

static size_t enc_finish(cobs_enc_t *e) {
    if (e->overflow) return 0;
    e->out[e->code_at] = e->code;
    return e->pos;
}

size_t ebp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
    cobs_enc_t e;
    enc_start(&e, out, cap);
    for (size_t i = 0; i < len; i++) enc_byte(&e, in[i]);
    return enc_finish(&e);
}

long ebp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i];
        if (code == 0 || i + code > len) return -1;
        i++;
        for (uint8_t k = 1; k < code; k++, i++) {
            if (in[i] == 0) return -1;
            out[o++] = in[i];
        }
        if (code < 0xFF && i < len) out[o++] = 0;
    }
    return (long)o;
}

size_t ebp_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                        uint8_t *out, size_t cap) {
    /* size_t: a 16-bit length took a 65553-byte payload for a 17-byte one, with a valid CRC */
    if (len > EBP_MAX_PAYLOAD || cap < 1) return 0;
    uint8_t head[EBP_HEADER_SIZE] = {EBP_VERSION, type, (uint8_t)seq, (uint8_t)(seq >> 8),
                                     (uint8_t)len, (uint8_t)(len >> 8)};
    uint16_t crc = ebp_crc16(head, sizeof head, 0xFFFF);
    crc = ebp_crc16(payload, len, crc);
    cobs_enc_t e;
    enc_start(&e, out, cap - 1); /* keep room for the delimiter */
    for (size_t i = 0; i < sizeof head; i++) enc_byte(&e, head[i]);
    for (size_t i = 0; i < len; i++) enc_byte(&e, payload[i]);
    enc_byte(&e, (uint8_t)crc);
    enc_byte(&e, (uint8_t)(crc >> 8));
    size_t n = enc_finish(&e);
    if (!n) return 0;
    out[n] = 0;
    return n + 1;
}

void ebp_decoder_init(ebp_decoder_t *d, uint8_t *buf, size_t cap) {
    memset(d, 0, sizeof *d);
    d->buf = buf;
    d->cap = cap;
}

static int drop(ebp_decoder_t *d, int err) {
    d->stats.discarded_bytes += (uint32_t)d->len;
    d->len = 0;
    switch (err) {
        case EBP_PUSH_ERR_COBS: d->stats.cobs++; break;
        case EBP_PUSH_ERR_SHORT: d->stats.short_++; break;
        case EBP_PUSH_ERR_OVERSIZED: d->stats.oversized++; break;
        case EBP_PUSH_ERR_LENGTH: d->stats.length++; break;
        case EBP_PUSH_ERR_CRC: d->stats.crc++; break;
        default: d->stats.version++; break;
    }
    return err;
}

static int finish(ebp_decoder_t *d, ebp_frame_t *out) {
    long n = ebp_cobs_decode(d->buf, d->len, d->buf);
    if (n < 0) return drop(d, EBP_PUSH_ERR_COBS);
    const uint8_t *r = d->buf;
    if (n < EBP_HEADER_SIZE + EBP_CRC_SIZE) return drop(d, EBP_PUSH_ERR_SHORT);
    uint16_t length = (uint16_t)(r[4] | (r[5] << 8));
    if (length > EBP_MAX_PAYLOAD) return drop(d, EBP_PUSH_ERR_OVERSIZED);
    if ((long)(EBP_HEADER_SIZE + length + EBP_CRC_SIZE) != n) return drop(d, EBP_PUSH_ERR_LENGTH);
    uint16_t crc = (uint16_t)(r[n - 2] | (r[n - 1] << 8));
    if (ebp_crc16(r, (size_t)n - EBP_CRC_SIZE, 0xFFFF) != crc) return drop(d, EBP_PUSH_ERR_CRC);
    if (r[0] != EBP_VERSION) return drop(d, EBP_PUSH_ERR_VERSION);
    out->version = r[0];
    out->type = r[1];
    out->seq = (uint16_t)(r[2] | (r[3] << 8));
    out->length = length;
    out->payload = r + EBP_HEADER_SIZE;
    d->len = 0;
    d->stats.frames++;
    return EBP_PUSH_FRAME;
}

int ebp_decoder_push(ebp_decoder_t *d, uint8_t byte, ebp_frame_t *out) {
    if (byte == 0) {
        if (d->skipping) {
            d->skipping = 0;
            return EBP_PUSH_NONE;
        }
        if (d->len == 0) return EBP_PUSH_NONE; /* idle filler between frames */
        return finish(d, out);
    }
    if (d->skipping) {
        d->stats.discarded_bytes++;
        return EBP_PUSH_NONE;
    }
    if (d->len >= d->cap) {
        d->stats.discarded_bytes++; /* this byte; drop() counts the buffered ones */
        d->skipping = 1;
        return drop(d, EBP_PUSH_ERR_OVERSIZED);
    }
    d->buf[d->len++] = byte;
    return EBP_PUSH_NONE;
}

/* ---- payloads ---- */

typedef struct {
    uint8_t *out;
    size_t cap, pos;
    int overflow;
} writer_t;

static void put(writer_t *w, const void *src, size_t n) {
    if (w->overflow || w->pos + n > w->cap) {
        w->overflow = 1;
        return;
    }
    if (n) memcpy(w->out + w->pos, src, n); /* src may be NULL when n is 0 (an empty string) */
    w->pos += n;
}

static void put_u8(writer_t *w, uint8_t v) { put(w, &v, 1); }

static void put_u16(writer_t *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(w, b, 2);
}

static void put_u32(writer_t *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(w, b, 4);
}

static void put_str8(writer_t *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > 255) {
        /* cut on a UTF-8 character boundary: back off while the first byte left out continues a character */
        n = 255;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    put_u8(w, (uint8_t)n);
    put(w, s, n);
}

/* a payload over EBP_MAX_PAYLOAD no frame can carry: refused here, not cut short later */
static size_t done(writer_t *w) { return w->overflow || w->pos > EBP_MAX_PAYLOAD ? 0 : w->pos; }

size_t ebp_pack_hello(const ebp_hello_t *h, uint8_t *out, size_t cap) {
    writer_t w = {out, cap, 0, 0};
    put_u8(&w, EBP_VERSION);
    put_u8(&w, h->flags);
    put_u32(&w, h->sample_rate);
    put_u32(&w, h->window_samples);
    put_u32(&w, h->hop_samples);
    put_u16(&w, h->max_audio_samples);
    put_str8(&w, h->model_id);
    put_u8(&w, h->n_labels);
    for (uint8_t i = 0; i < h->n_labels; i++) put_str8(&w, h->labels[i]);
    return done(&w);
}

int ebp_unpack_hello_head(const uint8_t *p, size_t len, uint8_t *version, uint8_t *flags) {
    if (len < 16) return -1; /* version, flags, 3 x u32, u16 */
    *version = p[0];
    *flags = p[1];
    return 0;
}

size_t ebp_pack_result(uint32_t start_ms, uint32_t end_ms, uint8_t flags, uint8_t label, const float *probs,
                       uint8_t n, uint8_t *out, size_t cap) {
    writer_t w = {out, cap, 0, 0};
    put_u32(&w, start_ms);
    put_u32(&w, end_ms);
    put_u8(&w, flags);
    put_u8(&w, label);
    put_u8(&w, n);
    for (uint8_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &probs[i], 4); /* IEEE-754 binary32, as on every target we build for */
        put_u32(&w, bits);
    }
    return done(&w);
}

size_t ebp_pack_status(const ebp_status_t *s, uint8_t *out, size_t cap) {
    writer_t w = {out, cap, 0, 0};
    put_u8(&w, s->flags);
    const uint32_t v[8] = {s->uptime_ms, s->samples, s->results, s->frames,
                           s->bad_frames, s->seq_gaps, s->resyncs, s->overruns};
    for (int i = 0; i < 8; i++) put_u32(&w, v[i]);
    return done(&w);
}

size_t ebp_pack_text(uint8_t level_or_code, const char *text, uint8_t *out, size_t cap) {
    writer_t w = {out, cap, 0, 0};
    put_u8(&w, level_or_code);
    size_t n = text ? strlen(text) : 0;
    if (n > EBP_MAX_PAYLOAD - 1) n = EBP_MAX_PAYLOAD - 1;
    put(&w, text, n);
    return done(&w);
}

int ebp_unpack_audio(const uint8_t *p, size_t len, uint32_t *start, const uint8_t **samples, size_t *n) {
    if (len < 4 || (len - 4) % 2) return -1;
    *start = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    *samples = p + 4;
    *n = (len - 4) / 2;
    return 0;
}
