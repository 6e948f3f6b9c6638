/* edgeser serial protocol for firmware: framing, COBS, CRC-16 and message payloads.
 *
 * Byte-compatible with edgeser.firmware_bridge.protocol (docs/bridge.md); both are checked
 * against tests/data/bridge_vectors.json. No malloc, no globals: every buffer is the caller's.
 *
 * Frame before COBS: version u8 | type u8 | seq u16 | length u16 | payload | crc u16,
 * little-endian, CRC-16/CCITT-FALSE over version..payload. On the wire: COBS(frame) 0x00.
 */
#ifndef EDGESER_BRIDGE_H
#define EDGESER_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EBP_VERSION 1
#define EBP_HEADER_SIZE 6
#define EBP_CRC_SIZE 2
#define EBP_MAX_PAYLOAD 1024
#define EBP_MAX_RAW (EBP_HEADER_SIZE + EBP_MAX_PAYLOAD + EBP_CRC_SIZE)
/* COBS adds one code byte per started run of 254 bytes, plus the leading one */
#define EBP_MAX_ENCODED (EBP_MAX_RAW + EBP_MAX_RAW / 254 + 1)
/* one frame on the wire, delimiter included: the size of a transmit buffer */
#define EBP_MAX_WIRE (EBP_MAX_ENCODED + 1)
/* int16 samples one AUDIO frame can carry after its 4-byte start index */
#define EBP_MAX_AUDIO_SAMPLES ((EBP_MAX_PAYLOAD - 4) / 2)

enum ebp_type {
    EBP_HELLO = 0x01,
    EBP_AUDIO = 0x02,
    EBP_RESULT = 0x03,
    EBP_STATUS = 0x04,
    EBP_LOG = 0x05,
    EBP_ERROR = 0x06
};

enum ebp_hello_flags { EBP_FLAG_HOST = 0x01, EBP_FLAG_ACCEPTS_AUDIO = 0x02, EBP_FLAG_OWN_MIC = 0x04 };
enum ebp_result_flags { EBP_RESULT_UTTERANCE = 0x01, EBP_RESULT_SPEECH = 0x02 };
#define EBP_NO_LABEL 0xFF /* label of a silence result, which carries no probabilities */
enum ebp_status_flags { EBP_STATUS_END_OF_STREAM = 0x01 };
enum ebp_error_code { EBP_E_VERSION = 1, EBP_E_PAYLOAD = 2, EBP_E_TYPE = 3, EBP_E_OVERRUN = 4, EBP_E_INTERNAL = 5 };

/* ebp_decoder_push results: a frame, nothing yet, or the reason a frame was dropped */
enum ebp_push {
    EBP_PUSH_FRAME = 1,
    EBP_PUSH_NONE = 0,
    EBP_PUSH_ERR_COBS = -1,      /* not valid COBS: garbage */
    EBP_PUSH_ERR_SHORT = -2,     /* shorter than header + CRC */
    EBP_PUSH_ERR_OVERSIZED = -3, /* longer than the buffer, or length field over EBP_MAX_PAYLOAD */
    EBP_PUSH_ERR_LENGTH = -4,    /* length field disagrees with the bytes received */
    EBP_PUSH_ERR_CRC = -5,
    EBP_PUSH_ERR_VERSION = -6
};

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t length;
    const uint8_t *payload; /* points into the decoder's buffer until the next push */
} ebp_frame_t;

typedef struct {
    uint32_t frames;
    uint32_t cobs, short_, oversized, length, crc, version;
    uint32_t discarded_bytes;
} ebp_stats_t;

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint8_t skipping; /* after an overflow: drop bytes up to the next delimiter */
    ebp_stats_t stats;
} ebp_decoder_t;

uint16_t ebp_crc16(const uint8_t *data, size_t len, uint16_t crc); /* start with crc = 0xFFFF */

/* Return the bytes written, or 0 when `cap` is too small. */
size_t ebp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);
/* In-place capable (out may equal in). Returns the decoded length, or -1 for invalid COBS. */
long ebp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out);

/* COBS(frame) + 0x00 into out; 0 when len > EBP_MAX_PAYLOAD or cap is too small. */
size_t ebp_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                        uint8_t *out, size_t cap);

/* buf should hold EBP_MAX_ENCODED bytes to accept every legal frame. */
void ebp_decoder_init(ebp_decoder_t *d, uint8_t *buf, size_t cap);
/* Feed one received byte; on EBP_PUSH_FRAME, *out is valid until the next call. */
int ebp_decoder_push(ebp_decoder_t *d, uint8_t byte, ebp_frame_t *out);

/* ---- payloads: pack functions return the bytes written, or 0 when cap is too small ---- */

typedef struct {
    uint8_t flags;
    uint32_t sample_rate, window_samples, hop_samples;
    uint16_t max_audio_samples;
    const char *model_id;
    uint8_t n_labels;
    const char *const *labels;
} ebp_hello_t;

typedef struct {
    uint8_t flags;
    uint32_t uptime_ms, samples, results, frames, bad_frames, seq_gaps, resyncs, overruns;
} ebp_status_t;

size_t ebp_pack_hello(const ebp_hello_t *h, uint8_t *out, size_t cap);
/* The fixed part of a HELLO (what a device needs of the host's); -1 if truncated. */
int ebp_unpack_hello_head(const uint8_t *p, size_t len, uint8_t *version, uint8_t *flags);
size_t ebp_pack_result(uint32_t start_ms, uint32_t end_ms, uint8_t flags, uint8_t label, const float *probs,
                       uint8_t n, uint8_t *out, size_t cap);
size_t ebp_pack_status(const ebp_status_t *s, uint8_t *out, size_t cap);
/* LOG (level) and ERROR (code): one byte, then UTF-8 text without a terminator */
size_t ebp_pack_text(uint8_t level_or_code, const char *text, uint8_t *out, size_t cap);
/* AUDIO: 0 on success, -1 if malformed. Read sample i with ebp_sample(samples, i). */
int ebp_unpack_audio(const uint8_t *p, size_t len, uint32_t *start, const uint8_t **samples, size_t *n);

static inline int16_t ebp_sample(const uint8_t *samples, size_t i) {
    return (int16_t)(uint16_t)(samples[2 * i] | (samples[2 * i + 1] << 8));
}

#ifdef __cplusplus
}
#endif
#endif
