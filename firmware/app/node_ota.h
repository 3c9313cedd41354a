/* Over-the-air model updates on a serial node: the core's slots and state machine
 * (ef/ota.h) driven by link messages from the bridge, reporting protocol v1
 * `ota/state` and asking with `ota/req` as the simulated nodes do
 * (edgefleet/ota/device.py): accepted, verifying, [shadow (off = size),] trial (off = size
 * without shadow), confirmed, rejected / failed / reverted with a reason.
 *
 * Shadow phase (offer SHADOW 1): after verification the candidate's slot is marked in trial
 * (so a reset during the phase rejects it, as a reset during a trial does) but the node
 * keeps running the old model; node_ota_shadow() gives the candidate, which the node
 * scores on every window beside it, for SHADOW_S seconds. Then, healthy, the ordinary
 * trial starts (`trial`, the running model switches); unhealthy, or on a revert cmd, the
 * candidate is rejected (`reverted`) and nothing ever switched.
 *
 * Authorization (docs/ota.md, "Authorization"; docs/mcu.md): every offer needs the campaign ticket
 * the OTA manager signed for this device (its id is cfg.device), and may carry signed keysets; the
 * bridge passes both after the manifest. The core checks them (ef_ota.authz): a ticket signed by a
 * key the node trusts for campaigns, naming this device, the offer's campaign, the manifest's model
 * and SHA-256; the trial policy is the ticket's. The node's trust set lives in two erase sectors of
 * the staging area (from cfg.trust_off), read in place; the first boot writes it from cfg.public_key
 * (one key, both roles, serial 0, as edgefleet/runtime/trust.py's TrustSet.single), and keysets
 * replace it (a higher serial signed by a key it trusts for models), so a rotation survives resets.
 * An offer without a valid ticket is `rejected` under campaign "none" with reason
 * "unauthorized offer: ...", as the simulated node reports it.
 *
 * Link messages (bridge -> node), each one ef_serial frame:
 *   offer CAMPAIGN MODEL SIZE CHUNK TRIAL_S SHADOW MLEN SHA256 SHADOW_S TLEN KLEN
 *                                         a retained ota/offer, summarised; SHADOW is 0 or 1,
 *                                         SHADOW_S the shadow phase's seconds (0 without shadow),
 *                                         MLEN, TLEN, KLEN the bytes of its manifest, ticket and
 *                                         keysets (TLEN 0: no ticket, refused at once). The older
 *                                         forms without TLEN KLEN (and SHADOW_S) have no ticket.
 *   mdat CAMPAIGN MODEL OFF <bytes>       bytes of the offer's documents, manifest || ticket ||
 *                                         keysets (MLEN + TLEN + KLEN bytes), answering `mreq`
 *   data CAMPAIGN MODEL OFF CRC <bytes>   an ota/data chunk, base64 decoded by the bridge
 *                                         (CRC is the message's, checked here)
 * and node -> bridge: `mreq CAMPAIGN MODEL OFF LEN` (document bytes), `ota/req JSON`,
 * `ota/state JSON`. The documents are staged in flash, not RAM, then handed to the core
 * (which verifies the ticket, keysets and manifest signatures over the staged bytes and stores
 * the manifest in the slot). The offer's SHA-256, sizes and trial policy are staged beside
 * them; the policy must be the ticket's. A frame carries at most NODE_OTA_PIECE bytes, so the
 * node's receive buffer stays small; the node asks for every piece, so a bridge never outruns a UART. */
#ifndef EF_NODE_OTA_H
#define EF_NODE_OTA_H
#include <stddef.h>
#include <stdint.h>

#include "ef/model.h"
#include "ef/platform.h"
#include "ef/status.h"

#define NODE_OTA_PIECE 192u /* bytes of manifest or artifact per frame */

typedef struct {
    const ef_flash *slots;      /* two slots of slot_size bytes (ef/ota.h layout) */
    uint32_t slot_size;
    const ef_flash *staging;    /* an offer's documents are received here (below trust_off >= 16 KB) */
    uint32_t trust_off;         /* two erase sectors of staging from here keep the trust set */
    const uint8_t *public_key;  /* Ed25519, 32 bytes: the factory trust set (read at boot, and only
                                   when the staging area holds no trust set yet) */
    const char *device;         /* this node's device id: tickets must name it */
    uint8_t *work; size_t work_len; /* self-test scratch (free between windows) */
    char *text; size_t text_cap;    /* message encoding scratch (free between windows) */
    const char *boot;           /* the node's boot id (read when a message is sent) */
} node_ota_config;

#if NODE_OTA /* set by boards with a flash driver for two slots (app.mk) */
/* Pick the model to run (a trial interrupted by a reset is reverted); on an empty
 * flash, provision slot 0 with the factory artifact first. Reads the trust set (or writes
 * the factory one); EF_ERR_ARG without cfg->device or a key, EF_ERR_FLASH if it cannot be kept. */
ef_status node_ota_boot(const node_ota_config *cfg, const uint8_t *factory, uint32_t factory_len);

/* Once the node is connected (after its will and birth): the `reverted` report of a
 * trial that a reset ended ("rebooted during trial"), if there was one. */
void node_ota_connected(uint64_t now_ms);

/* The running model, opened in place in its slot, and its slot letter ("A" or "B"). */
const ef_model *node_ota_model(void);
const char *node_ota_slot(void);
/* In the trial of a new model (not in its shadow phase). */
int node_ota_in_trial(void);
/* In a shadow phase: the candidate (verified, opened in place in its slot), else NULL. */
const ef_model *node_ota_shadow(void);

/* Each returns 1 when the running model changed (trial start or revert; not the start
 * or end of a shadow phase, which leaves the old model running): the caller re-plans
 * its pipeline and announces a new birth. now_ms is the epoch clock (message
 * ts), tick_ms the board clock (timers). */
int node_ota_link(const char *kind, const char *body, size_t len, uint64_t now_ms, uint32_t tick_ms);
int node_ota_tick(uint64_t now_ms, uint32_t tick_ms, int healthy);
/* Cancel the download, end the trial or shadow phase, or leave the running confirmed model
 * for the other confirmed slot. With `campaign` (a revert cmd's, else NULL) only if that is
 * the download's, trial's or running model's campaign (or the node knows none): a revert
 * for another campaign is ignored. The `reverted` report names the node's campaign, else
 * `campaign`, else "none". */
int node_ota_revert(uint64_t now_ms, uint32_t tick_ms, const char *reason, const char *campaign);
#else /* no OTA on this board: node_config.ota stays NULL and none of these runs */
static inline ef_status node_ota_boot(const node_ota_config *cfg, const uint8_t *f, uint32_t n)
{ (void)cfg; (void)f; (void)n; return EF_ERR_ARG; }
static inline void node_ota_connected(uint64_t t) { (void)t; }
static inline const ef_model *node_ota_model(void) { return 0; }
static inline const char *node_ota_slot(void) { return "A"; }
static inline int node_ota_in_trial(void) { return 0; }
static inline const ef_model *node_ota_shadow(void) { return 0; }
static inline int node_ota_link(const char *k, const char *b, size_t n, uint64_t t, uint32_t k2)
{ (void)k; (void)b; (void)n; (void)t; (void)k2; return 0; }
static inline int node_ota_tick(uint64_t t, uint32_t k, int h) { (void)t; (void)k; (void)h; return 0; }
static inline int node_ota_revert(uint64_t t, uint32_t k, const char *r, const char *c)
{ (void)t; (void)k; (void)r; (void)c; return 0; }
#endif
#endif
