/* Two model slots in flash and the OTA state machine (DESIGN.md "OTA").
 *
 * Flash area layout: slot 0 at 0, slot 1 at slot_size. Each slot starts with
 * a header region (EF_OTA_HDR_SIZE bytes, a multiple of the erase size) and
 * holds the artifact right after it:
 *   0  u32 magic "EFSL" (written last: a slot without it is empty)
 *   4  u32 manifest length (0: factory image)   8  u32 model version
 *   12 u32 artifact size                        16 u8[32] artifact SHA-256
 *   48 u32 flag verified   52 u32 flag trial   56 u32 flag confirmed
 *   60 u32 flag rejected   (each 0xFFFFFFFF = unset, written once to 0)
 *   64 manifest bytes, as signed
 * Every flag is written once after an erase, so a power cut at any point
 * leaves either the old or the new value, and ef_ota_boot() maps every such
 * state to a bootable model: a slot found in trial without confirmation
 * (a reboot during trial) is rejected and the previous model runs.
 *
 * Events go through one transition table (ef_ota.c); each returns EF_OK or
 * the reason it was refused, and sets ef_ota.report for the ota/state message. */
#ifndef EF_OTA_H
#define EF_OTA_H
#include <stddef.h>
#include <stdint.h>

#include "ef/manifest.h"
#include "ef/model.h"
#include "ef/platform.h"
#include "ef/status.h"

#define EF_OTA_HDR_SIZE 16384u

typedef enum { EF_OTA_IDLE = 0, EF_OTA_RECEIVING, EF_OTA_TRIAL, EF_OTA_N_STATES } ef_ota_state;

typedef enum {
    EF_OTA_EV_OFFER = 0, EF_OTA_EV_CHUNK, EF_OTA_EV_TICK, EF_OTA_EV_CONFIRM, EF_OTA_EV_REVERT,
    EF_OTA_N_EVENTS
} ef_ota_event;

/* What the last event means for ota/state (protocol "state" enum). */
typedef enum {
    EF_OTA_REPORT_NONE = 0, EF_OTA_REPORT_ACCEPTED, EF_OTA_REPORT_DOWNLOADING,
    EF_OTA_REPORT_VERIFYING, EF_OTA_REPORT_TRIAL, EF_OTA_REPORT_CONFIRMED,
    EF_OTA_REPORT_REVERTED, EF_OTA_REPORT_REJECTED, EF_OTA_REPORT_FAILED
} ef_ota_report;

typedef struct {
    const uint8_t *manifest; size_t manifest_len; /* OFFER */
    /* OFFER with OTA authorization (ef_ota.authz): the offer's campaign id, its campaign ticket, and
     * the keysets it carries (signed keyset documents separated by one space, oldest first) */
    const char *campaign;
    const uint8_t *ticket; size_t ticket_len;
    const uint8_t *keys; size_t keys_len;
    uint32_t offset; const uint8_t *data; size_t len; /* CHUNK */
    uint32_t now_ms; /* every event */
    int healthy;     /* TICK: at the trial deadline, confirm if healthy, else revert */
} ef_ota_input;

/* A node's OTA authorization state (authz 1), kept by the caller. The trust set is read in place
 * (a board keeps it in flash, where it survives resets, and spends no RAM on it); an offer's
 * keysets are applied to a copy on the stack, and a newer set goes to `keep`. */
typedef struct ef_ota_auth ef_ota_auth;
struct ef_ota_auth {
    const ef_trust *trust;       /* its keys and their roles */
    /* store `next` (a newer set an offer's keysets brought) where it survives a reset and point
     * trust at it; EF_OK, or the offer fails (report failed, EF_ERR_FLASH). Called before the
     * offer's ticket is judged: a keyset signed by a trusted key counts even if the offer does not. */
    ef_status (*keep)(ef_ota_auth *auth, const ef_trust *next);
    const char *device;          /* this node's id: a ticket must name it */
    uint32_t shadow, shadow_s;   /* out: the accepted ticket's shadow policy */
};

typedef struct {
    /* configuration (set before ef_ota_boot) */
    const ef_flash *flash;
    uint32_t slot_size;          /* bytes per slot, a multiple of the erase size */
    /* authz 0 (the legacy path): public_key, the 32-byte Ed25519 key that signs manifests, and
     * no ticket asked. authz 1 (OTA authorization, docs/ota.md): auth, whose trust set gives the
     * keys and their roles; an offer then needs a campaign ticket for auth->device, signed by a key
     * trusted for campaigns, naming the offer's campaign and the manifest's model and SHA-256; its
     * trial policy replaces trial_ms (and fills auth->shadow, shadow_s); the manifest must be signed
     * by a key trusted for models; keysets in the offer replace the set through auth->keep (the
     * caller keeps it across resets). One pointer either way: the QEMU node's static RAM is at its budget. */
    union {
        const uint8_t *public_key;
        ef_ota_auth *auth;
    };
    uint32_t firmware_version;   /* packed major<<16 | minor<<8 | patch */
    uint32_t trial_ms;
    uint8_t *work; size_t work_len; /* self-test scratch: n_in + n_out + arena bytes */
    /* state */
    ef_ota_state state;
    ef_ota_report report;
    ef_status reason;            /* why the last event failed or rejected */
    uint8_t active;              /* confirmed slot */
    uint8_t running;             /* slot whose model runs (the trial slot during a trial) */
    uint8_t authz;               /* configuration: which of public_key / auth is set (above) */
    uint32_t received, size, version, trial_start;
    ef_model model;              /* the running model, opened in place */
} ef_ota;

/* Pick the model to run after a reset; finishes any interrupted trial (revert):
 * then report is EF_OTA_REPORT_REVERTED and version the reverted model's (the node
 * publishes it once connected), else report is EF_OTA_REPORT_NONE. */
ef_status ef_ota_boot(ef_ota *ota);

/* Feed one event (table-driven). */
ef_status ef_ota_handle(ef_ota *ota, ef_ota_event ev, const ef_ota_input *in);

/* Next artifact byte the download needs (resume point). */
uint32_t ef_ota_next_offset(const ef_ota *ota);

/* Factory provisioning of slot 0: erase, write the artifact, mark it confirmed. */
ef_status ef_ota_provision(const ef_flash *f, uint32_t slot_size, const uint8_t *artifact,
                           uint32_t len);

const char *ef_ota_report_str(ef_ota_report r);

/* Take a signed keyset: EF_OK when it replaced the set (a higher serial, signed by a key the
 * set trusts for models), EF_ERR_DOWNGRADE when not newer (nothing changes), EF_ERR_MANIFEST
 * when malformed, EF_ERR_UNAUTHORIZED / EF_ERR_SIGNATURE when its signer is not trusted / the
 * signature does not verify. */
ef_status ef_trust_apply(ef_trust *t, const uint8_t *doc, size_t len);

/* The key of `t` whose id (first 8 bytes of its SHA-256) is key_id and that has `role`; NULL if none. */
const uint8_t *ef_trust_find(const ef_trust *t, const uint8_t key_id[8], uint8_t role);

#endif
