/* Unit tests of the C protocol code that need no Python: run on the host by
 * tests/test_bridge_protocol.py (built with -Wall -Wextra -Werror and sanitizers). */
#include <stdio.h>
#include <string.h>

#include "edgeser_bridge.h"

static int failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static size_t feed(ebp_decoder_t *d, const uint8_t *p, size_t n, ebp_frame_t *frames, uint8_t payloads[][64],
                   size_t max) {
    size_t got = 0;
    ebp_frame_t f;
    for (size_t i = 0; i < n; i++) {
        if (ebp_decoder_push(d, p[i], &f) == EBP_PUSH_FRAME && got < max) {
            /* the payload lives in the decoder buffer only until the next push */
            memcpy(payloads[got], f.payload, f.length < 64 ? f.length : 64);
            frames[got] = f;
            frames[got].payload = payloads[got];
            got++;
        }
    }
    return got;
}

static void test_crc(void) {
    CHECK(ebp_crc16((const uint8_t *)"123456789", 9, 0xFFFF) == 0x29B1);
    CHECK(ebp_crc16(NULL, 0, 0xFFFF) == 0xFFFF);
}

static void test_cobs_edges(void) {
    uint8_t in[600], enc[700], dec[700];
    for (size_t n = 0; n < sizeof in; n++) {
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(i % 7 == 3 ? 0 : 1 + i % 250);
        size_t m = ebp_cobs_encode(in, n, enc, sizeof enc);
        CHECK(m >= n + 1 && m <= n + n / 254 + 1);
        CHECK(memchr(enc, 0, m) == NULL);
        CHECK(ebp_cobs_decode(enc, m, dec) == (long)n);
        CHECK(memcmp(in, dec, n) == 0);
    }
    /* runs of 253/254/255 non-zero bytes straddle the 0xFF block limit */
    for (size_t n = 253; n <= 256; n++) {
        memset(in, 0x55, n);
        size_t m = ebp_cobs_encode(in, n, enc, sizeof enc);
        CHECK(m > 0 && ebp_cobs_decode(enc, m, enc) == (long)n); /* in place */
        CHECK(memcmp(enc, in, n) == 0);
    }
    CHECK(ebp_cobs_encode(in, 10, enc, 10) == 0); /* no room: refused, not overrun */
    const uint8_t bad[] = {0x05, 0x01, 0x02};
    CHECK(ebp_cobs_decode(bad, sizeof bad, dec) == -1);
}

static void test_frame_roundtrip_and_resync(void) {
    uint8_t wire[3][EBP_MAX_WIRE];
    size_t len[3];
    const uint8_t pa[] = {1, 0, 2, 0, 0, 3};
    len[0] = ebp_encode_frame(EBP_AUDIO, 7, pa, sizeof pa, wire[0], sizeof wire[0]);
    len[1] = ebp_encode_frame(EBP_LOG, 8, (const uint8_t *)"\x01hi", 3, wire[1], sizeof wire[1]);
    len[2] = ebp_encode_frame(EBP_STATUS, 9, NULL, 0, wire[2], sizeof wire[2]);
    CHECK(len[0] && len[1] && len[2]);

    /* garbage, a truncated frame, a corrupted frame, then good frames: only the good ones come out */
    uint8_t stream[4 * EBP_MAX_WIRE];
    size_t n = 0;
    const uint8_t garbage[] = {0x13, 0x37, 0xFF, 0x02};
    memcpy(stream + n, garbage, sizeof garbage); n += sizeof garbage;
    stream[n++] = 0;
    memcpy(stream + n, wire[0], len[0] - 4); n += len[0] - 4; /* cut short */
    stream[n++] = 0;
    memcpy(stream + n, wire[1], len[1]);
    stream[n + 2] ^= 0x40; /* flip a bit in the copy */
    n += len[1];
    for (int k = 0; k < 3; k++) {
        memcpy(stream + n, wire[k], len[k]);
        n += len[k];
    }
    uint8_t buf[EBP_MAX_ENCODED];
    ebp_decoder_t d;
    ebp_decoder_init(&d, buf, sizeof buf);
    ebp_frame_t frames[8];
    uint8_t payloads[8][64];
    size_t got = feed(&d, stream, n, frames, payloads, 8);
    CHECK(got == 3);
    CHECK(frames[0].type == EBP_AUDIO && frames[0].seq == 7 && frames[0].length == sizeof pa);
    CHECK(memcmp(frames[0].payload, pa, sizeof pa) == 0);
    CHECK(frames[1].type == EBP_LOG && frames[2].type == EBP_STATUS && frames[2].length == 0);
    CHECK(d.stats.frames == 3);
    CHECK(d.stats.cobs + d.stats.short_ + d.stats.crc + d.stats.length == 3);
    CHECK(d.stats.crc == 1);
}

static void test_oversized_is_bounded(void) {
    /* a small buffer: a run longer than it is dropped up to the next delimiter, never written past */
    uint8_t guard_buf[32 + 8];
    memset(guard_buf, 0xAA, sizeof guard_buf);
    ebp_decoder_t d;
    ebp_decoder_init(&d, guard_buf, 32);
    ebp_frame_t f;
    for (int i = 0; i < 1000; i++) ebp_decoder_push(&d, 0x11, &f);
    CHECK(d.stats.oversized == 1);
    for (int i = 32; i < 40; i++) CHECK(guard_buf[i] == 0xAA);
    uint8_t wire[64];
    size_t n = ebp_encode_frame(EBP_HELLO, 1, (const uint8_t *)"abc", 3, wire, sizeof wire);
    int results[64], r = 0;
    for (size_t i = 0; i < n; i++) results[r++] = ebp_decoder_push(&d, wire[i], &f);
    /* the first delimiter ends the skipped run; the frame after it is still lost (its start was skipped) */
    CHECK(results[r - 1] == EBP_PUSH_NONE);
    r = 0;
    for (size_t i = 0; i < n; i++) results[r++] = ebp_decoder_push(&d, wire[i], &f);
    CHECK(results[r - 1] == EBP_PUSH_FRAME && f.type == EBP_HELLO && f.length == 3);
    CHECK(d.stats.discarded_bytes >= 1000);

    /* a length field over EBP_MAX_PAYLOAD is refused even when the bytes fit */
    uint8_t raw[] = {EBP_VERSION, EBP_AUDIO, 0, 0, 0xFF, 0xFF, 0, 0};
    uint16_t crc = ebp_crc16(raw, 6, 0xFFFF);
    raw[6] = (uint8_t)crc;
    raw[7] = (uint8_t)(crc >> 8);
    uint8_t enc[16], b2[64];
    size_t m = ebp_cobs_encode(raw, sizeof raw, enc, sizeof enc);
    enc[m++] = 0;
    ebp_decoder_init(&d, b2, sizeof b2);
    int last = 0;
    for (size_t i = 0; i < m; i++) last = ebp_decoder_push(&d, enc[i], &f);
    CHECK(last == EBP_PUSH_ERR_OVERSIZED);
}

static void test_encode_limits(void) {
    static uint8_t big[EBP_MAX_PAYLOAD + 1];
    static uint8_t wire[EBP_MAX_WIRE];
    memset(big, 0xEE, sizeof big);
    CHECK(ebp_encode_frame(EBP_AUDIO, 0, big, EBP_MAX_PAYLOAD, wire, sizeof wire) > 0);
    CHECK(ebp_encode_frame(EBP_AUDIO, 0, big, EBP_MAX_PAYLOAD + 1, wire, sizeof wire) == 0);
    CHECK(ebp_encode_frame(EBP_AUDIO, 0, big, 100, wire, 50) == 0);
    /* the worst case fits EBP_MAX_WIRE exactly: no zero byte anywhere */
    CHECK(ebp_encode_frame(EBP_AUDIO, 0x0101, big, EBP_MAX_PAYLOAD, wire, sizeof wire) <= EBP_MAX_WIRE);
}

static void test_payloads(void) {
    uint8_t p[EBP_MAX_PAYLOAD];
    const char *labels[] = {"anger", "neutral"};
    ebp_hello_t h = {0x02, 16000, 48000, 8000, 510, "m", 2, labels};
    size_t n = ebp_pack_hello(&h, p, sizeof p);
    CHECK(n == 16 + 2 + 1 + 6 + 8);
    uint8_t v, fl;
    CHECK(ebp_unpack_hello_head(p, n, &v, &fl) == 0 && v == EBP_VERSION && fl == 0x02);
    CHECK(ebp_pack_hello(&h, p, 10) == 0);
    /* a HELLO no frame can carry (7 labels of 255 bytes) is refused even where the buffer holds it */
    static char long_label[256];
    static uint8_t roomy[4096];
    memset(long_label, 'x', 255);
    const char *many[7] = {long_label, long_label, long_label, long_label, long_label, long_label, long_label};
    ebp_hello_t big = {0x02, 16000, 48000, 8000, 510, NULL, 7, many};
    CHECK(ebp_pack_hello(&big, roomy, sizeof roomy) == 0);
    static uint8_t wire[EBP_MAX_WIRE];
    CHECK(ebp_encode_frame(EBP_HELLO, 0, roomy, 65553, wire, sizeof wire) == 0); /* not taken as 17 */
    ebp_hello_t unnamed = {0x02, 16000, 48000, 8000, 510, NULL, 2, labels};   /* NULL: an empty name */
    CHECK(ebp_pack_hello(&unnamed, p, sizeof p) == n - 1);
    float probs[2] = {0.25f, 0.75f};
    CHECK(ebp_pack_result(0, 3000, EBP_RESULT_SPEECH, 1, probs, 2, p, sizeof p) == 19);
    CHECK(ebp_pack_result(0, 500, 0, EBP_NO_LABEL, NULL, 0, p, sizeof p) == 11);
    const uint8_t audio[] = {5, 0, 0, 0, 0xFF, 0x7F, 0x00, 0x80};
    uint32_t start;
    const uint8_t *s;
    size_t count;
    CHECK(ebp_unpack_audio(audio, sizeof audio, &start, &s, &count) == 0);
    CHECK(start == 5 && count == 2 && ebp_sample(s, 0) == 32767 && ebp_sample(s, 1) == -32768);
    CHECK(ebp_unpack_audio(audio, 7, &start, &s, &count) == -1);
}

int main(void) {
    test_crc();
    test_cobs_edges();
    test_frame_roundtrip_and_resync();
    test_oversized_is_bounded();
    test_encode_limits();
    test_payloads();
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
