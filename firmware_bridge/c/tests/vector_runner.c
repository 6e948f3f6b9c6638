/* Host-side driver for the C protocol code: one command per stdin line, one answer per stdout line.
 * tests/test_bridge_protocol.py feeds it the shared vectors and hypothesis-made streams and
 * compares every answer with the Python implementation.
 *
 *   CRC <hex>                         -> crc as 4 hex digits
 *   COBS <hex>                        -> encoded hex | "ERR"
 *   UNCOBS <hex>                      -> decoded hex | "ERR"
 *   FRAME <type> <seq> <payload hex>  -> wire hex (COBS + delimiter)
 *   DECODE <cap> <stream hex>         -> "F type seq payloadhex" per frame ... "S frames cobs short
 *                                        oversized length crc version discarded", all on one line
 *   HELLO <flags> <sr> <win> <hop> <max> <model hex> <n> <label hex>...  -> payload hex
 *   RESULT <start> <end> <flags> <label> <n> <prob>...                -> payload hex
 *   STATUS <flags> <8 counters>                                       -> payload hex
 *   TEXT <level> <text hex>                                           -> payload hex
 *   AUDIO <payload hex>               -> "start n s0 s1 ..." | "ERR"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeser_bridge.h"

static char line[1 << 20];
static uint8_t bin[1 << 19];
static uint8_t out[1 << 19];

static size_t unhex(const char *s, uint8_t *dst) {
    size_t n = 0;
    if (!s || !strcmp(s, "-")) return 0; /* "-": empty */
    for (; s[0] && s[1]; s += 2) {
        unsigned v;
        sscanf(s, "%2x", &v);
        dst[n++] = (uint8_t)v;
    }
    return n;
}

static void print_hex(const uint8_t *p, size_t n) {
    if (!n) fputs("-", stdout);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static char *next(void) { return strtok(NULL, " \n"); }

static unsigned long num(void) { return strtoul(next(), NULL, 0); }

int main(void) {
    while (fgets(line, sizeof line, stdin)) {
        char *cmd = strtok(line, " \n");
        if (!cmd) continue;
        if (!strcmp(cmd, "CRC")) {
            size_t n = unhex(next(), bin);
            printf("%04x", ebp_crc16(bin, n, 0xFFFF));
        } else if (!strcmp(cmd, "COBS")) {
            size_t n = unhex(next(), bin);
            size_t m = ebp_cobs_encode(bin, n, out, sizeof out);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "UNCOBS")) {
            size_t n = unhex(next(), bin);
            long m = ebp_cobs_decode(bin, n, out);
            if (m >= 0) print_hex(out, (size_t)m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "FRAME")) {
            uint8_t type = (uint8_t)num();
            uint16_t seq = (uint16_t)num();
            size_t n = unhex(next(), bin);
            size_t m = ebp_encode_frame(type, seq, bin, (uint16_t)n, out, EBP_MAX_WIRE);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "DECODE")) {
            size_t cap = (size_t)num();
            size_t n = unhex(next(), bin);
            static uint8_t dbuf[1 << 16];
            ebp_decoder_t d;
            ebp_frame_t f;
            ebp_decoder_init(&d, dbuf, cap < sizeof dbuf ? cap : sizeof dbuf);
            for (size_t i = 0; i < n; i++) {
                if (ebp_decoder_push(&d, bin[i], &f) == EBP_PUSH_FRAME) {
                    printf("F %u %u ", f.type, f.seq);
                    print_hex(f.payload, f.length);
                    fputs(" ", stdout);
                }
            }
            const ebp_stats_t *s = &d.stats;
            printf("S %u %u %u %u %u %u %u %u", s->frames, s->cobs, s->short_, s->oversized, s->length, s->crc,
                   s->version, s->discarded_bytes);
        } else if (!strcmp(cmd, "HELLO")) {
            static uint8_t strs[64][256];
            static const char *labels[64];
            ebp_hello_t h;
            h.flags = (uint8_t)num();
            h.sample_rate = (uint32_t)num();
            h.window_samples = (uint32_t)num();
            h.hop_samples = (uint32_t)num();
            h.max_audio_samples = (uint16_t)num();
            static uint8_t model[256];
            size_t mn = unhex(next(), model);
            model[mn] = 0;
            h.model_id = (const char *)model;
            h.n_labels = (uint8_t)num();
            for (int i = 0; i < h.n_labels; i++) {
                size_t ln = unhex(next(), strs[i]);
                strs[i][ln] = 0;
                labels[i] = (const char *)strs[i];
            }
            h.labels = labels;
            size_t m = ebp_pack_hello(&h, out, EBP_MAX_PAYLOAD);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "RESULT")) {
            uint32_t start = (uint32_t)num(), end = (uint32_t)num();
            uint8_t flags = (uint8_t)num(), label = (uint8_t)num(), n = (uint8_t)num();
            float probs[256];
            for (int i = 0; i < n; i++) probs[i] = strtof(next(), NULL);
            size_t m = ebp_pack_result(start, end, flags, label, probs, n, out, EBP_MAX_PAYLOAD);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "STATUS")) {
            ebp_status_t s;
            s.flags = (uint8_t)num();
            s.uptime_ms = (uint32_t)num();
            s.samples = (uint32_t)num();
            s.results = (uint32_t)num();
            s.frames = (uint32_t)num();
            s.bad_frames = (uint32_t)num();
            s.seq_gaps = (uint32_t)num();
            s.resyncs = (uint32_t)num();
            s.overruns = (uint32_t)num();
            size_t m = ebp_pack_status(&s, out, EBP_MAX_PAYLOAD);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "TEXT")) {
            uint8_t level = (uint8_t)num();
            size_t n = unhex(next(), bin);
            bin[n] = 0;
            size_t m = ebp_pack_text(level, (const char *)bin, out, EBP_MAX_PAYLOAD);
            if (m) print_hex(out, m); else fputs("ERR", stdout);
        } else if (!strcmp(cmd, "AUDIO")) {
            size_t n = unhex(next(), bin);
            uint32_t start;
            const uint8_t *samples;
            size_t count;
            if (ebp_unpack_audio(bin, n, &start, &samples, &count)) {
                fputs("ERR", stdout);
            } else {
                printf("%u %zu", start, count);
                for (size_t i = 0; i < count; i++) printf(" %d", ebp_sample(samples, i));
            }
        } else {
            fputs("ERR unknown command", stdout);
        }
        fputs("\n", stdout);
        fflush(stdout);
    }
    return 0;
}
