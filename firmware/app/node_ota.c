/* OTA on a serial node (see node_ota.h): link messages in, the core's state machine,
 * protocol v1 ota/req and ota/state out. Mirrors edgefleet/ota/device.py. */
#include "node_ota.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ef/bytes.h"
#include "ef/crc.h"
#include "ef/manifest.h"
#include "ef/ota.h"
#include "ef/protocol.h"
#include "ef/version.h"
#include "node_link.h"

#define REQUEST_TIMEOUT_MS 5000u /* re-request a piece that has not arrived */
#define MAX_RETRIES 20u          /* per offset, before the download fails */
#define MANIFEST_MAX 8192u       /* ota/offer schema: manifest maxLength */
#define TICKET_MAX 2048u         /* ... ticket maxLength */
#define KEYS_MAX 4096u           /* ... keys maxLength */
#define SHADOW_S_MAX 604800u     /* ota/offer schema: shadow_s maximum */
/* The staging area during a transfer: the offer's head (below) at 0, its documents (manifest ||
 * ticket || keysets) from STAGE_DOCS; the trust set in two sectors from cfg.trust_off. */
#define STAGE_DOCS 64u
#define TRUST_MAGIC 0x53544645u  /* "EFTS": an auth record (below) */
#define ABORTED_MAX 8u           /* reverted campaigns remembered, as the simulated node */

/* What the offer line said, kept in flash until its documents are in: no RAM for it. */
typedef struct {
    uint8_t sha[32];
    uint32_t mlen, tlen, klen;
    uint32_t trial_s, shadow, shadow_s; /* must be the ticket's */
} stage_head;
/* The campaign of a download is kept in its slot, in the header region's last 128 bytes,
 * which the core leaves unused (manifests end by 64 + MANIFEST_MAX), so that a trial
 * ended by a reset can still be reported under its campaign. */
#define META_OFF (EF_OTA_HDR_SIZE - 128u)

typedef enum { PH_IDLE = 0, PH_MANIFEST, PH_DOWNLOAD } phase;

static struct {
    node_ota_config cfg;
    ef_ota ota;
    phase ph;
    ef_ota_auth auth;        /* the trust set (in flash) and the accepted ticket's shadow policy;
                                the trial length is the core's trial_ms, also the ticket's */
    char campaign[65];       /* of the download or trial in progress */
    uint8_t in_shadow;       /* the core is in trial, but the old model runs: shadow phase */
    uint8_t trust_sector;    /* which of the two trust sectors holds the set */
    uint32_t model, size, chunk, dlen, mgot; /* dlen: bytes of the offer's documents */
    uint32_t shadow_start;   /* board ms when the shadow phase began */
    uint32_t last_req, retries;
    uint32_t state_seq, req_seq;
    uint32_t boot_reverted;  /* version of a trial a reset ended: reported once connected */
} g_o;

/* ---- messages ---- */

static void send_state(const char *campaign, uint32_t model, const char *state, uint64_t now,
                       int has_off, uint32_t off, const char *reason)
{
    ef_proto_ota_state s;
    int n;
    s.boot = g_o.cfg.boot;
    s.seq = g_o.state_seq;
    s.ts = now;
    s.campaign = campaign;
    s.model = model;
    s.state = state;
    s.has_off = has_off;
    s.off = off;
    s.reason = reason;
    if ((n = ef_proto_encode_ota_state(g_o.cfg.text, g_o.cfg.text_cap, &s)) > 0) {
        g_o.state_seq++;
        node_link_send("ota/state", g_o.cfg.text, (size_t)n);
    }
}

static void send_request(uint32_t tick)
{
    int n;
    g_o.last_req = tick;
    if (g_o.ph == PH_MANIFEST) { /* the bridge answers from the offer it holds */
        uint32_t len = g_o.dlen - g_o.mgot < NODE_OTA_PIECE ? g_o.dlen - g_o.mgot : NODE_OTA_PIECE;
        n = snprintf(g_o.cfg.text, g_o.cfg.text_cap, "%s %lu %lu %lu", g_o.campaign,
                     (unsigned long)g_o.model, (unsigned long)g_o.mgot, (unsigned long)len);
        if (n > 0)
            node_link_send("mreq", g_o.cfg.text, (size_t)n);
    } else {
        ef_proto_ota_req r;
        uint32_t off = ef_ota_next_offset(&g_o.ota), want = g_o.chunk < NODE_OTA_PIECE ? g_o.chunk : NODE_OTA_PIECE;
        r.boot = g_o.cfg.boot;
        r.seq = g_o.req_seq;
        r.campaign = g_o.campaign;
        r.model = g_o.model;
        r.off = off;
        r.len = g_o.size - off < want ? g_o.size - off : want;
        if ((n = ef_proto_encode_ota_req(g_o.cfg.text, g_o.cfg.text_cap, &r)) > 0) {
            g_o.req_seq++;
            node_link_send("ota/req", g_o.cfg.text, (size_t)n);
        }
    }
}

/* A refusal of the core, as a reason a person can read. */
static void refused(const char *what, ef_status why, char *out, size_t cap)
{
    snprintf(out, cap, "%s: %s", what, ef_status_str(why));
}

/* Leave the download (the core back to idle); `state` failed or rejected. Under "none" while the offer's
 * documents are still coming: its campaign is unproven (a forged offer whose documents are then withheld
 * must not make a real campaign count a failure); a genuine one stays "offered" and comes again. */
static void abandon(const char *state, uint64_t now, const char *reason, uint32_t tick)
{
    ef_ota_input in;
    const char *campaign = g_o.ph == PH_MANIFEST ? "none" : g_o.campaign;
    memset(&in, 0, sizeof in);
    in.now_ms = tick;
    if (g_o.ota.state == EF_OTA_RECEIVING)
        ef_ota_handle(&g_o.ota, EF_OTA_EV_REVERT, &in); /* cancels the download */
    g_o.ph = PH_IDLE;
    send_state(campaign, g_o.model, state, now, 0, 0, reason);
}

static void retry(uint64_t now, uint32_t tick, const char *why)
{
    char reason[80];
    if (++g_o.retries > MAX_RETRIES) {
        snprintf(reason, sizeof reason, "%s: gave up after %u retries", why, (unsigned)MAX_RETRIES);
        abandon("failed", now, reason, tick);
        return;
    }
    send_request(tick);
}

/* ---- parsing "A B C ... <bytes>" ---- */

typedef struct {
    const char *p, *end;
} cursor;

static int token(cursor *c, const char **t, size_t *n)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p != ' ')
        c->p++;
    *t = s;
    *n = (size_t)(c->p - s);
    if (c->p < c->end)
        c->p++; /* the space */
    return *n > 0 ? 0 : -1;
}

static int number(cursor *c, uint32_t *v)
{
    const char *t;
    size_t n, i;
    uint64_t x = 0;
    if (token(c, &t, &n) != 0 || n > 10)
        return -1;
    for (i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return -1;
        x = x * 10u + (uint64_t)(t[i] - '0');
    }
    if (x > 0xFFFFFFFFu)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

/* campaign and model, and whether they are the transfer in progress */
static int ours(cursor *c, uint32_t *model)
{
    const char *t;
    size_t n;
    if (token(c, &t, &n) != 0 || number(c, model) != 0)
        return 0;
    return g_o.ph != PH_IDLE && n == strlen(g_o.campaign) && memcmp(t, g_o.campaign, n) == 0 &&
           *model == g_o.model;
}

/* ---- events ---- */

static uint32_t running_version(void) { return g_o.ota.model.model_version; }

/* ---- the trust set and the reverted campaigns, in flash ---- */

/* A record: magic, CRC-32 of the rest, the trust set, then the ids of the last ABORTED_MAX campaigns
 * a revert cmd named (NUL-terminated; an erased entry is empty). Their tickets are never taken again,
 * as edgefleet/device/ota_client.py's Slots.aborted. */
typedef struct {
    uint32_t seq; /* one more than the record it replaced: the higher of the two is in force */
    ef_trust trust;
    char aborted[ABORTED_MAX][65];
} auth_record;

/* The record in sector k, or NULL when it holds none (erased, torn or garbage). */
static const auth_record *record_at(uint8_t k)
{
    const ef_flash *f = g_o.cfg.staging;
    const uint8_t *p = f->map(f->ctx, g_o.cfg.trust_off + k * f->erase_size, 8u + (uint32_t)sizeof(auth_record));
    const auth_record *r;
    if (p == NULL || ef_le32(p) != TRUST_MAGIC || ef_le32(p + 4) != ef_crc32(0, p + 8, sizeof(auth_record)))
        return NULL;
    r = (const auth_record *)(const void *)(p + 8); /* sector-aligned + 8 */
    return r->trust.n >= 1 && r->trust.n <= EF_TRUST_MAX ? r : NULL;
}

/* The length of a reverted-campaign entry: 0 when empty (erased, or not a terminated id). */
static size_t entry_len(const char *e)
{
    const char *z = memchr(e, '\0', 65);
    return (uint8_t)e[0] == 0xFFu || z == NULL ? 0u : (size_t)(z - e);
}

static const auth_record *record(void)
{
    return (const auth_record *)(const void *)((const uint8_t *)g_o.auth.trust - offsetof(auth_record, trust));
}

/* Write a record into the other sector: `trust`, the current record's reverted campaigns from `from`
 * on (none without a current record), then `add` if not NULL; its CRC over what flash now holds, then
 * the magic that makes it count (a power cut before leaves the old record in force). Read in place. */
static ef_status write_record(const ef_trust *trust, uint32_t from, const char *add)
{
    const ef_flash *f = g_o.cfg.staging;
    const auth_record *cur = g_o.auth.trust ? record() : NULL;
    const uint8_t k = (uint8_t)(g_o.trust_sector ^ 1u);
    const uint32_t off = g_o.cfg.trust_off + k * f->erase_size, list = off + 8u + (uint32_t)offsetof(auth_record, aborted);
    const uint8_t *body;
    uint8_t head[8];
    uint32_t i, n = 0, seq = cur ? cur->seq + 1u : 0u;
    if (f->erase(f->ctx, off, f->erase_size) != 0 || f->write(f->ctx, off + 8u, &seq, 4) != 0 ||
        f->write(f->ctx, off + 8u + (uint32_t)offsetof(auth_record, trust), trust, sizeof *trust) != 0)
        return EF_ERR_FLASH;
    for (i = from; cur != NULL && i < ABORTED_MAX; i++)
        if (entry_len(cur->aborted[i]) > 0 &&
            f->write(f->ctx, list + 65u * n++, cur->aborted[i], (uint32_t)entry_len(cur->aborted[i]) + 1u) != 0)
            return EF_ERR_FLASH;
    if (add != NULL && f->write(f->ctx, list + 65u * n, add, (uint32_t)strlen(add) + 1u) != 0)
        return EF_ERR_FLASH;
    if ((body = f->map(f->ctx, off + 8u, (uint32_t)sizeof(auth_record))) == NULL)
        return EF_ERR_FLASH;
    ef_put_le32(head, TRUST_MAGIC);
    ef_put_le32(head + 4, ef_crc32(0, body, sizeof(auth_record)));
    if (f->write(f->ctx, off + 4u, head + 4, 4) != 0 || f->write(f->ctx, off, head, 4) != 0 || record_at(k) == NULL)
        return EF_ERR_FLASH;
    g_o.trust_sector = k;
    g_o.auth.trust = &record_at(k)->trust;
    return EF_OK;
}

/* auth.keep: a newer trust set from an offer's keysets (the reverted campaigns carried over). */
static ef_status keep_trust(ef_ota_auth *auth, const ef_trust *next)
{
    (void)auth; /* it is g_o.auth */
    return write_record(next, 0, NULL);
}

/* A revert cmd named `campaign`: never take its ticket again (the oldest of a full list dropped). */
static void remember_reverted(const char *campaign)
{
    const auth_record *r = record();
    uint32_t i, used = 0;
    for (i = 0; i < ABORTED_MAX; i++) {
        const size_t n = entry_len(r->aborted[i]);
        if (n > 0 && n == strlen(campaign) && memcmp(r->aborted[i], campaign, n) == 0)
            return;
        used += n > 0;
    }
    if (write_record(&r->trust, used == ABORTED_MAX ? 1u : 0u, campaign) != EF_OK)
        ef_platform_log("flash: the reverted campaign was not recorded");
}

/* Whether a revert cmd named this campaign (n bytes) here. */
static int was_reverted(const char *campaign, size_t n)
{
    const auth_record *r = record();
    uint32_t i;
    for (i = 0; i < ABORTED_MAX; i++)
        if (n > 0 && entry_len(r->aborted[i]) == n && memcmp(r->aborted[i], campaign, n) == 0)
            return 1;
    return 0;
}

/* At boot: the newer of the two records, else the factory set from the key. */
static ef_status trust_boot(const uint8_t *key)
{
    const auth_record *a = record_at(0), *b = record_at(1);
    ef_trust t;
    if (a != NULL || b != NULL) {
        g_o.trust_sector = (uint8_t)(a == NULL || (b != NULL && b->seq > a->seq));
        g_o.auth.trust = g_o.trust_sector ? &b->trust : &a->trust;
        return EF_OK;
    }
    if (key == NULL)
        return EF_ERR_ARG;
    memset(&t, 0, sizeof t);
    t.n = 1;
    t.roles[0] = EF_ROLE_MODEL | EF_ROLE_CAMPAIGN;
    memcpy(t.keys[0], key, 32);
    g_o.trust_sector = 1; /* the first record goes to sector 0 */
    g_o.auth.trust = NULL;
    return write_record(&t, 0, NULL);
}

/* An accepted download or a trial in progress is never given up for a new offer: its ticket and
 * manifest are fetched piece by piece into the staging area and only verified at the end, so a forged
 * offer (a rogue publisher, a spoofed retained message) could otherwise cancel a genuine campaign's
 * download and make it report "failed". The new offer is refused under "none", unverified, which no
 * campaign counts: the manager keeps a genuine one "offered" and publishes it again (--offer-resend)
 * until the node is free. 1 when refused; OtaClient.offer does the same (docs/ota.md, "Busy"). */
static int busy(uint32_t model, uint64_t now)
{
    if (g_o.ota.state == EF_OTA_TRIAL) {
        if (model != running_version()) /* the trial's own offer again: nothing to say */
            send_state("none", model, "rejected", now, 0, 0, "busy: another update is in trial");
        return 1;
    }
    if (g_o.ph != PH_DOWNLOAD)
        return 0;
    send_state("none", model, "rejected", now, 0, 0, "busy: another download is in progress");
    return 1;
}

static __attribute__((noinline)) void on_offer(cursor *c, uint64_t now, uint32_t tick)
{
    const ef_flash *stg = g_o.cfg.staging;
    const char *camp, *t;
    size_t n_camp, n;
    uint32_t model, size, chunk, shadow, mlen, erase;
    stage_head h;
    char reason[120];
    memset(&h, 0, sizeof h);
    if (token(c, &camp, &n_camp) != 0 || n_camp > 64 || number(c, &model) != 0 || number(c, &size) != 0 ||
        number(c, &chunk) != 0 || number(c, &h.trial_s) != 0 || number(c, &shadow) != 0 || shadow > 1u ||
        number(c, &mlen) != 0 || token(c, &t, &n) != 0 || n != 64 || ef_hex_decode(t, 32, h.sha) != 0 ||
        chunk == 0 || h.trial_s > SHADOW_S_MAX) {
        ef_platform_log("offer refused: malformed");
        return;
    }
    h.shadow_s = h.trial_s; /* no SHADOW_S: the offer's shadow_s defaults to trial_s */
    if (c->p < c->end && (number(c, &h.shadow_s) != 0 || h.shadow_s > SHADOW_S_MAX ||
                          (c->p < c->end && (number(c, &h.tlen) != 0 || number(c, &h.klen) != 0 || c->p < c->end)))) {
        ef_platform_log("offer refused: malformed");
        return;
    }
    h.shadow = shadow;
    if (!shadow)
        h.shadow_s = 0;
    if (g_o.ph != PH_IDLE && n_camp == strlen(g_o.campaign) && memcmp(camp, g_o.campaign, n_camp) == 0 &&
        model == g_o.model)
        return; /* repeated offer (retained, reconnect): keep the download going */
    if (busy(model, now))
        return;
    g_o.ph = PH_IDLE; /* an offer still fetching its documents is dropped unreported: the bridge serves
                         only the newest offer's, and nothing was said under its campaign yet */
    if (h.tlen == 0) { /* under "none": an unauthorized sender must not count against a real campaign */
        send_state("none", model, "rejected", now, 0, 0, "unauthorized offer: no campaign ticket");
        return;
    }
    if (was_reverted(camp, n_camp)) { /* its genuine offer replayed: the ticket must name this campaign */
        snprintf(reason, sizeof reason, "unauthorized offer: campaign %.*s was reverted here", (int)n_camp, camp);
        send_state("none", model, "rejected", now, 0, 0, reason);
        return;
    }
    memcpy(g_o.campaign, camp, n_camp);
    g_o.campaign[n_camp] = '\0';
    g_o.model = model;
    /* No refusal before the ticket is checked names the offered campaign: nothing proves it yet, and a
     * forged offer must not count against a real campaign. Not newer or too large: the core's verdict,
     * after the ticket (offer_refused). */
    h.mlen = mlen;
    /* only the sectors the documents need (trust_off is above the largest): the trust set lies further up */
    erase = (STAGE_DOCS + mlen + h.tlen + h.klen + stg->erase_size - 1u) / stg->erase_size * stg->erase_size;
    if (mlen < 2 || mlen > MANIFEST_MAX || h.tlen > TICKET_MAX || h.klen > KEYS_MAX ||
        stg->erase(stg->ctx, 0, erase) != 0 || stg->write(stg->ctx, 0, &h, (uint32_t)sizeof h) != 0) {
        send_state("none", model, "rejected", now, 0, 0, "documents do not fit the staging area");
        return;
    }
    g_o.size = size;
    g_o.chunk = chunk;
    g_o.dlen = mlen + h.tlen + h.klen;
    g_o.mgot = 0;
    g_o.retries = 0;
    g_o.ph = PH_MANIFEST;
    send_request(tick);
}

/* Refused for want of authorization: reported under "none", as the simulated node does. */
static void unauthorized(uint64_t now, const char *why)
{
    char reason[100];
    g_o.ph = PH_IDLE;
    snprintf(reason, sizeof reason, "unauthorized offer: %s", why);
    send_state("none", g_o.model, "rejected", now, 0, 0, reason);
}

/* 1 when the staged manifest names the offered version, size and SHA-256, 0 when not, -1 when it
 * does not parse. Out of line: its ef_manifest is off the stack before the core's offer event. */
static __attribute__((noinline)) int describes_offer(const uint8_t *m, const stage_head *h)
{
    ef_manifest mf;
    if (ef_manifest_parse(m, h->mlen, &mf) != EF_OK)
        return -1;
    return mf.version == g_o.model && mf.size == g_o.size && memcmp(mf.sha256, h->sha, 32) == 0;
}

/* The core refused the offer (st): report why, in the simulated node's words where it has them.
 * Out of line, for the same reason. */
static __attribute__((noinline)) void offer_refused(uint64_t now, ef_status st)
{
    const uint32_t cap = g_o.cfg.slot_size - EF_OTA_HDR_SIZE;
    char reason[80];
    if (st == EF_ERR_UNAUTHORIZED) {
        unauthorized(now, "no valid ticket for this device, campaign and artifact from a trusted key");
        return;
    }
    g_o.ph = PH_IDLE;
    if (st == EF_ERR_DOWNGRADE)
        snprintf(reason, sizeof reason, "version %lu is not newer than running %lu (no downgrade)",
                 (unsigned long)g_o.model, (unsigned long)running_version());
    else if (st == EF_ERR_INCOMPATIBLE && (g_o.size == 0 || g_o.size > cap))
        snprintf(reason, sizeof reason, "artifact of %lu B exceeds the %lu B slot", (unsigned long)g_o.size,
                 (unsigned long)cap);
    else
        refused("manifest", st, reason, sizeof reason);
    send_state(g_o.campaign, g_o.model, g_o.ota.report == EF_OTA_REPORT_FAILED ? "failed" : "rejected", now, 0, 0,
               reason);
}

/* All documents are staged: check the manifest describes the offer, then the core's offer event
 * (keysets, ticket, manifest signature), then that the offer's trial policy is the ticket's. */
static __attribute__((noinline)) void manifest_done(uint64_t now, uint32_t tick)
{
    const ef_flash *f = g_o.cfg.staging;
    const stage_head *h = (const stage_head *)(const void *)f->map(f->ctx, 0, (uint32_t)sizeof(stage_head));
    const uint8_t *m = f->map(f->ctx, STAGE_DOCS, g_o.dlen);
    ef_ota_input in;
    ef_status st;
    int ok = h != NULL && m != NULL ? describes_offer(m, h) : -1;
    if (ok <= 0) { /* before the ticket is checked (it names the manifest's model): under "none" */
        unauthorized(now, ok < 0 ? "manifest: bad-manifest" : "manifest does not describe the offered artifact");
        return;
    }
    memset(&in, 0, sizeof in);
    in.manifest = m;
    in.manifest_len = h->mlen;
    in.campaign = g_o.campaign;
    in.ticket = m + h->mlen;
    in.ticket_len = h->tlen;
    in.keys = h->klen ? m + h->mlen + h->tlen : NULL;
    in.keys_len = h->klen;
    in.now_ms = tick;
    if ((st = ef_ota_handle(&g_o.ota, EF_OTA_EV_OFFER, &in)) != EF_OK) {
        offer_refused(now, st);
        return;
    }
    if (g_o.ota.trial_ms != h->trial_s * 1000u || g_o.auth.shadow != h->shadow ||
        g_o.auth.shadow_s != h->shadow_s) { /* the ticket's policy rules; an offer that says otherwise lies */
        memset(&in, 0, sizeof in);
        in.now_ms = tick;
        ef_ota_handle(&g_o.ota, EF_OTA_EV_REVERT, &in); /* cancels the download: the slot stays unverified */
        unauthorized(now, "trial policy differs from the signed ticket");
        return;
    }
    g_o.ph = PH_DOWNLOAD;
    g_o.retries = 0;
    g_o.cfg.slots->write(g_o.cfg.slots->ctx, (uint32_t)(g_o.ota.active ^ 1u) * g_o.cfg.slot_size + META_OFF,
                         g_o.campaign, (uint32_t)strlen(g_o.campaign) + 1u); /* best effort: only for reports */
    send_state(g_o.campaign, g_o.model, "accepted", now, 0, 0, NULL);
    send_request(tick);
}

static __attribute__((noinline)) void on_mdat(cursor *c, uint64_t now, uint32_t tick)
{
    uint32_t model, off, len;
    if (!ours(c, &model) || g_o.ph != PH_MANIFEST || number(c, &off) != 0 || off != g_o.mgot)
        return; /* stale or out of order: the pending request stands */
    len = (uint32_t)(c->end - c->p);
    if (len == 0 || len > g_o.dlen - off) {
        retry(now, tick, "corrupted manifest piece");
        return;
    }
    if (g_o.cfg.staging->write(g_o.cfg.staging->ctx, STAGE_DOCS + off, c->p, len) != 0) {
        abandon("failed", now, "flash: staging write", tick);
        return;
    }
    g_o.mgot += len;
    g_o.retries = 0;
    if (g_o.mgot < g_o.dlen)
        send_request(tick);
    else
        manifest_done(now, tick);
}

static void confirm_now(uint64_t now, uint32_t tick)
{
    ef_ota_input in;
    memset(&in, 0, sizeof in);
    in.now_ms = tick;
    if (ef_ota_handle(&g_o.ota, EF_OTA_EV_CONFIRM, &in) == EF_OK)
        send_state(g_o.campaign, g_o.model, "confirmed", now, 0, 0, NULL);
}

/* The core's revert (the candidate's slot marked rejected, the confirmed model reopened);
 * 1 if it went back. */
static int core_revert(uint32_t tick)
{
    ef_ota_input in;
    memset(&in, 0, sizeof in);
    in.now_ms = tick;
    g_o.ota.report = EF_OTA_REPORT_NONE;
    return ef_ota_handle(&g_o.ota, EF_OTA_EV_REVERT, &in) == EF_OK && g_o.ota.report == EF_OTA_REPORT_REVERTED;
}

/* End of the shadow phase (device.py `_end_shadow`): an unhealthy candidate is rejected
 * (the old model never stopped running: returns 0); a healthy one starts its ordinary
 * trial now, and the running model switches (returns 1). */
static int end_shadow(uint64_t now, uint32_t tick, int healthy)
{
    if (!healthy) {
        if (!core_revert(tick))
            return 0; /* a flash error: tried again at the next tick */
        g_o.in_shadow = 0;
        send_state(g_o.campaign, g_o.model, "reverted", now, 0, 0, "unhealthy at the end of the shadow phase");
        return 0;
    }
    g_o.in_shadow = 0;
    g_o.ota.trial_start = tick; /* the core has been in trial since the install: restart its clock */
    send_state(g_o.campaign, g_o.model, "trial", now, 0, 0, NULL);
    if (g_o.ota.trial_ms == 0)
        confirm_now(now, tick);
    return 1;
}

static __attribute__((noinline)) int on_data(cursor *c, uint64_t now, uint32_t tick)
{
    uint32_t model, off, crc, len;
    ef_ota_input in;
    ef_status st;
    char reason[80];
    if (!ours(c, &model) || g_o.ph != PH_DOWNLOAD || number(c, &off) != 0 || number(c, &crc) != 0 ||
        off != ef_ota_next_offset(&g_o.ota))
        return 0; /* a chunk for another transfer, a duplicate or out of order: ignore */
    len = (uint32_t)(c->end - c->p);
    if (len == 0 || ef_crc32(0, c->p, len) != crc || (uint64_t)off + len > g_o.size) {
        retry(now, tick, "corrupted chunk");
        return 0;
    }
    memset(&in, 0, sizeof in);
    in.offset = off;
    in.data = (const uint8_t *)c->p;
    in.len = len;
    in.now_ms = tick;
    if (off + len == g_o.size)
        send_state(g_o.campaign, g_o.model, "verifying", now, 0, 0, NULL);
    st = ef_ota_handle(&g_o.ota, EF_OTA_EV_CHUNK, &in);
    g_o.retries = 0;
    if (g_o.ota.state == EF_OTA_RECEIVING) {
        if (st == EF_OK || st == EF_ERR_GAP)
            send_request(tick);
        return 0;
    }
    g_o.ph = PH_IDLE;
    if (g_o.ota.report != EF_OTA_REPORT_TRIAL) { /* hash, signature, model checks or self-test */
        refused("install", st, reason, sizeof reason);
        send_state(g_o.campaign, g_o.model, g_o.ota.report == EF_OTA_REPORT_FAILED ? "failed" : "rejected",
                   now, 0, 0, reason);
        return 0;
    }
    if (g_o.auth.shadow) { /* the core runs the candidate from its slot; the node keeps the old model */
        g_o.in_shadow = 1;
        g_o.shadow_start = tick;
        send_state(g_o.campaign, g_o.model, "shadow", now, 1, g_o.size, NULL);
        return g_o.auth.shadow_s == 0 ? end_shadow(now, tick, 1) : 0;
    }
    send_state(g_o.campaign, g_o.model, "trial", now, 1, g_o.size, NULL);
    if (g_o.ota.trial_ms == 0)
        confirm_now(now, tick);
    return 1;
}

/* The campaign whose download wrote `slot` (its header region's last 128 bytes) into out[65];
 * "" when there is none (the factory model) or it does not read as a campaign id. */
static void slot_campaign(uint8_t slot, char *out)
{
    const uint8_t *m = g_o.cfg.slots->map(g_o.cfg.slots->ctx, (uint32_t)slot * g_o.cfg.slot_size + META_OFF, 65);
    size_t n = 0;
    while (m && n < 64 && ((m[n] >= 'A' && m[n] <= 'Z') || (m[n] >= 'a' && m[n] <= 'z') ||
                           (m[n] >= '0' && m[n] <= '9') || m[n] == '.' || m[n] == '_' || m[n] == '-'))
        n++;
    if (n > 0 && m[n] == '\0')
        memcpy(out, m, n + 1);
    else
        out[0] = '\0';
}

/* ---- public ---- */

ef_status node_ota_boot(const node_ota_config *cfg, const uint8_t *factory, uint32_t factory_len)
{
    ef_status st;
    memset(&g_o, 0, sizeof g_o);
    g_o.cfg = *cfg;
    g_o.ota.flash = cfg->slots;
    g_o.ota.slot_size = cfg->slot_size;
    g_o.ota.firmware_version = EF_FIRMWARE_VERSION;
    g_o.ota.work = cfg->work;
    g_o.ota.work_len = cfg->work_len;
    if (cfg->device == NULL || cfg->staging->erase_size == 0 || cfg->trust_off % cfg->staging->erase_size != 0 ||
        cfg->trust_off < STAGE_DOCS + MANIFEST_MAX + TICKET_MAX + KEYS_MAX ||
        cfg->trust_off + 2u * (uint64_t)cfg->staging->erase_size > cfg->staging->size)
        return EF_ERR_ARG;
    g_o.auth.device = cfg->device;
    g_o.auth.keep = keep_trust;
    if ((st = trust_boot(cfg->public_key)) != EF_OK)
        return st;
    g_o.ota.auth = &g_o.auth; /* OTA authorization: every offer needs its campaign ticket */
    g_o.ota.authz = 1;
    if ((st = ef_ota_boot(&g_o.ota)) == EF_ERR_NO_MODEL && factory != NULL) {
        if ((st = ef_ota_provision(cfg->slots, cfg->slot_size, factory, factory_len)) != EF_OK)
            return st;
        st = ef_ota_boot(&g_o.ota);
    }
    if (st == EF_OK && g_o.ota.report == EF_OTA_REPORT_REVERTED) { /* the trial ran in the other slot */
        slot_campaign((uint8_t)(g_o.ota.running ^ 1u), g_o.campaign);
        if (g_o.campaign[0] == '\0')
            strcpy(g_o.campaign, "none");
        g_o.boot_reverted = g_o.ota.version;
    }
    return st;
}

void node_ota_connected(uint64_t now_ms)
{
    if (g_o.boot_reverted == 0)
        return;
    send_state(g_o.campaign, g_o.boot_reverted, "reverted", now_ms, 0, 0, "rebooted during trial");
    g_o.boot_reverted = 0;
}

const ef_model *node_ota_model(void) { return &g_o.ota.model; }
/* In a shadow phase the core's running model is the candidate; the node's is the confirmed one. */
const char *node_ota_slot(void) { return (g_o.in_shadow ? g_o.ota.active : g_o.ota.running) ? "B" : "A"; }
int node_ota_in_trial(void) { return g_o.ota.state == EF_OTA_TRIAL && !g_o.in_shadow; }
const ef_model *node_ota_shadow(void)
{
    return g_o.in_shadow && g_o.ota.state == EF_OTA_TRIAL ? &g_o.ota.model : NULL;
}

int node_ota_link(const char *kind, const char *body, size_t len, uint64_t now_ms, uint32_t tick_ms)
{
    cursor c;
    c.p = body;
    c.end = body + len;
    if (strcmp(kind, "offer") == 0)
        on_offer(&c, now_ms, tick_ms);
    else if (strcmp(kind, "mdat") == 0)
        on_mdat(&c, now_ms, tick_ms);
    else if (strcmp(kind, "data") == 0)
        return on_data(&c, now_ms, tick_ms);
    return 0;
}

int node_ota_tick(uint64_t now_ms, uint32_t tick_ms, int healthy)
{
    ef_ota_input in;
    if (g_o.ph != PH_IDLE && (uint32_t)(tick_ms - g_o.last_req) >= REQUEST_TIMEOUT_MS) {
        retry(now_ms, tick_ms, g_o.ph == PH_MANIFEST ? "manifest timeout" : "chunk timeout");
        return 0;
    }
    if (g_o.ota.state != EF_OTA_TRIAL)
        return 0;
    if (g_o.in_shadow)
        return (uint32_t)(tick_ms - g_o.shadow_start) >= g_o.auth.shadow_s * 1000u
                   ? end_shadow(now_ms, tick_ms, healthy)
                   : 0;
    memset(&in, 0, sizeof in);
    in.now_ms = tick_ms;
    in.healthy = healthy;
    g_o.ota.report = EF_OTA_REPORT_NONE;
    ef_ota_handle(&g_o.ota, EF_OTA_EV_TICK, &in);
    if (g_o.ota.report == EF_OTA_REPORT_CONFIRMED)
        send_state(g_o.campaign, g_o.model, "confirmed", now_ms, 0, 0, NULL);
    else if (g_o.ota.report == EF_OTA_REPORT_REVERTED) {
        send_state(g_o.campaign, g_o.model, "reverted", now_ms, 0, 0, "unhealthy at the end of the trial");
        return 1;
    }
    return 0;
}

int node_ota_revert(uint64_t now_ms, uint32_t tick_ms, const char *reason, const char *campaign)
{
    const int shadow = g_o.in_shadow;
    const uint32_t leaving = running_version(); /* in a shadow phase: the candidate */
    char why[80];
    if (g_o.ph == PH_IDLE && g_o.ota.state != EF_OTA_TRIAL) /* idle: whoever installed the running model */
        slot_campaign(g_o.ota.running, g_o.campaign);
    if (campaign && g_o.campaign[0] && strcmp(campaign, g_o.campaign) != 0) {
        ef_platform_log("revert ignored: for another campaign");
        return 0;
    }
    if (campaign && campaign[0])
        remember_reverted(campaign); /* its ticket is never taken again */
    if (g_o.ph != PH_IDLE) {
        snprintf(why, sizeof why, "cancelled: %s", reason);
        abandon("failed", now_ms, why, tick_ms);
        return 0;
    }
    if (!core_revert(tick_ms))
        return 0; /* nothing to go back to */
    g_o.in_shadow = 0;
    send_state(g_o.campaign[0] ? g_o.campaign : campaign ? campaign : "none", leaving, "reverted", now_ms, 0, 0,
               reason);
    return !shadow; /* a shadow phase only drops the candidate: the old model never stopped */
}
