/* Signed model manifest (end of docs/artifact-format.md), parsed in place.
 *
 * The file is {"body":<canonical JSON>,"signature":"<128 hex>"}; the
 * signature covers the body bytes exactly as they appear. ef_manifest_parse()
 * checks the framing and reads the fields the device needs; the self-test
 * rows stay where they are (offsets into the manifest) so the device can
 * decode them later from flash without a RAM copy. */
#ifndef EF_MANIFEST_H
#define EF_MANIFEST_H
#include <stddef.h>
#include <stdint.h>

#include "ef/status.h"

#define EF_MANIFEST_FORMAT "edgefleet-manifest/1"

typedef struct {
    uint32_t body_off, body_len;   /* the signed bytes */
    uint8_t signature[64];
    uint32_t version, size, n_inputs, n_outputs, min_firmware; /* min_firmware packed */
    uint8_t sha256[32];
    uint8_t key_id[8];              /* first 8 bytes of SHA-256(public key) */
    uint32_t rows;                  /* self-test rows */
    uint32_t st_in_off, st_in_len;  /* hex of int8 rows, offsets from manifest start */
    uint32_t st_out_off, st_out_len;
} ef_manifest;

/* EF_OK and a filled `out`, or EF_ERR_MANIFEST (malformed, missing or
 * out-of-range field, wrong format, inconsistent self-test lengths). */
ef_status ef_manifest_parse(const uint8_t *data, size_t len, ef_manifest *out);

/* "1.2.3" -> 0x010203 into *out; -1 if not MAJOR.MINOR.PATCH in range. */
int ef_parse_version(const char *s, size_t len, uint32_t *out);

/* Decode 2*n hex digits; -1 on a non-hex digit. */
int ef_hex_decode(const char *hex, size_t n, uint8_t *out);

#endif
