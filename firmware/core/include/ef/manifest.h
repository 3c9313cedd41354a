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

/* OTA authorization (docs/ota.md, "Authorization"): campaign tickets and keysets, signed and
 * framed as manifests are ({"body":<canonical JSON>,"signature":"<128 hex>"}), made by
 * edgefleet/runtime/trust.py. Both bodies are flat objects of known fields; an unknown,
 * missing or repeated field, or a value out of range, is EF_ERR_MANIFEST. */
#define EF_TICKET_FORMAT "edgefleet-ticket/1"
#define EF_KEYSET_FORMAT "edgefleet-keyset/1"
#define EF_TRUST_MAX 4u          /* keys a node holds */
#define EF_ROLE_MODEL 1u         /* may sign manifests and keysets */
#define EF_ROLE_CAMPAIGN 2u      /* may sign campaign tickets */

/* The keys a node trusts, with their roles, and the serial of the keyset they came from
 * (0: provisioned at the factory). */
typedef struct {
    uint32_t serial;
    uint8_t n;
    uint8_t roles[EF_TRUST_MAX];
    uint8_t keys[EF_TRUST_MAX][32];
} ef_trust;

/* One offer's authorization: this campaign, this device, this model, this trial policy. */
typedef struct {
    uint32_t body_off, body_len;
    uint8_t signature[64];
    uint8_t key_id[8];
    char campaign[65], device[65];
    uint32_t model, trial_s, shadow, shadow_s;
    uint8_t sha256[32];
} ef_ticket;

typedef struct {
    uint32_t body_off, body_len;
    uint8_t signature[64];
    uint8_t key_id[8];
    ef_trust trust;                 /* the keys it lists, and its serial */
} ef_keyset;

ef_status ef_ticket_parse(const uint8_t *data, size_t len, ef_ticket *out);
ef_status ef_keyset_parse(const uint8_t *data, size_t len, ef_keyset *out);

/* "1.2.3" -> 0x010203 into *out; -1 if not MAJOR.MINOR.PATCH in range. */
int ef_parse_version(const char *s, size_t len, uint32_t *out);

/* Decode 2*n hex digits; -1 on a non-hex digit. */
int ef_hex_decode(const char *hex, size_t n, uint8_t *out);

#endif
