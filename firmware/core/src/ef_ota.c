/* OTA slots and the transition table (see ef/ota.h for the flash layout). */
#include "ef/ota.h"

#include <string.h>

#include "ef/bytes.h"
#include "ef/crypto.h"
#include "ef/engine.h"

#define HDR_MAGIC 0x4C534645u /* "EFSL" */
#define OFF_MAGIC 0u
#define OFF_FIELDS 4u
#define FIELDS_LEN 44u /* manifest_len, version, size, sha256 */
#define OFF_VERIFIED 48u
#define OFF_TRIAL 52u
#define OFF_CONFIRMED 56u
#define OFF_REJECTED 60u
#define OFF_MANIFEST 64u
#define FLAG_SET 0x00000000u
#define FLAG_CLEAR 0xFFFFFFFFu

typedef struct {
    uint32_t magic, manifest_len, version, size;
    uint8_t sha256[32];
    uint32_t verified, trial, confirmed, rejected;
} slot_hdr;

static uint32_t slot_base(const ef_ota *o, uint8_t slot) { return (uint32_t)slot * o->slot_size; }
static uint32_t slot_capacity(uint32_t slot_size) { return slot_size - EF_OTA_HDR_SIZE; }

static int read_hdr(const ef_flash *f, uint32_t base, slot_hdr *h)
{
    uint8_t b[64];
    if (f->read(f->ctx, base, b, sizeof b) != 0)
        return -1;
    h->magic = ef_le32(b);
    h->manifest_len = ef_le32(b + 4);
    h->version = ef_le32(b + 8);
    h->size = ef_le32(b + 12);
    memcpy(h->sha256, b + 16, 32);
    h->verified = ef_le32(b + 48);
    h->trial = ef_le32(b + 52);
    h->confirmed = ef_le32(b + 56);
    h->rejected = ef_le32(b + 60);
    return 0;
}

static ef_status write_flag(const ef_flash *f, uint32_t addr)
{
    uint8_t z[4];
    ef_put_le32(z, FLAG_SET);
    return f->write(f->ctx, addr, z, 4) == 0 ? EF_OK : EF_ERR_FLASH;
}

/* Header present and consistent with the area (a torn write is not "set"). */
static int hdr_valid(const slot_hdr *h, uint32_t slot_size)
{
    return h->magic == HDR_MAGIC && h->size >= EF_MODEL_HEADER_SIZE &&
           h->size <= slot_capacity(slot_size) && h->manifest_len <= EF_OTA_HDR_SIZE - OFF_MANIFEST;
}

/* Open the artifact of a slot in place; EF_OK only if it validates and matches the header. */
static ef_status open_slot(const ef_ota *o, uint8_t slot, const slot_hdr *h, ef_model *m)
{
    const ef_flash *f = o->flash;
    const uint8_t *p = f->map ? f->map(f->ctx, slot_base(o, slot) + EF_OTA_HDR_SIZE, h->size) : NULL;
    ef_status st;
    if (p == NULL)
        return EF_ERR_FLASH;
    st = ef_model_open(m, p, h->size);
    if (st == EF_OK && (m->model_version != h->version || m->total_size != h->size))
        st = EF_ERR_SIZE;
    return st;
}

ef_status ef_ota_provision(const ef_flash *f, uint32_t slot_size, const uint8_t *artifact,
                           uint32_t len)
{
    uint8_t b[64];
    ef_model m;
    if (f == NULL || artifact == NULL || len > slot_size - EF_OTA_HDR_SIZE || 2u * slot_size > f->size)
        return EF_ERR_ARG;
    if (ef_model_open(&m, artifact, len) != EF_OK)
        return EF_ERR_ARG;
    memset(b, 0, sizeof b);
    ef_put_le32(b, HDR_MAGIC);
    ef_put_le32(b + 4, 0);
    ef_put_le32(b + 8, m.model_version);
    ef_put_le32(b + 12, m.total_size);
    ef_sha256(artifact, m.total_size, b + 16);
    ef_put_le32(b + OFF_REJECTED, FLAG_CLEAR); /* verified, trial, confirmed set; not rejected */
    if (f->erase(f->ctx, 0, slot_size) != 0 ||
        f->write(f->ctx, EF_OTA_HDR_SIZE, artifact, m.total_size) != 0 ||
        f->write(f->ctx, 0, b, 60) != 0)
        return EF_ERR_FLASH;
    return EF_OK;
}

ef_status ef_ota_boot(ef_ota *o)
{
    slot_hdr h[2];
    ef_model m[2];
    int ok[2] = {0, 0};
    uint32_t interrupted = 0; /* version of a trial a reset ended, 0 if none */
    uint8_t s;
    if (o == NULL || o->flash == NULL || o->public_key == NULL || /* or o->auth: the same pointer */
        (o->authz && o->auth->trust == NULL) ||
        o->slot_size <= EF_OTA_HDR_SIZE || 2u * (uint64_t)o->slot_size > o->flash->size ||
        o->flash->erase_size == 0 || o->slot_size % o->flash->erase_size != 0 ||
        EF_OTA_HDR_SIZE % o->flash->erase_size != 0)
        return EF_ERR_ARG;
    for (s = 0; s < 2; s++) {
        if (read_hdr(o->flash, slot_base(o, s), &h[s]) != 0)
            return EF_ERR_FLASH;
        if (!hdr_valid(&h[s], o->slot_size))
            continue;
        /* in trial, never confirmed, not yet rejected: a reboot during trial -> revert */
        if (h[s].trial == FLAG_SET && h[s].confirmed != FLAG_SET && h[s].rejected == FLAG_CLEAR) {
            if (write_flag(o->flash, slot_base(o, s) + OFF_REJECTED) != EF_OK)
                return EF_ERR_FLASH;
            h[s].rejected = FLAG_SET;
            interrupted = h[s].version;
        }
        ok[s] = h[s].confirmed == FLAG_SET && h[s].rejected == FLAG_CLEAR &&
                open_slot(o, s, &h[s], &m[s]) == EF_OK;
    }
    if (!ok[0] && !ok[1])
        return EF_ERR_NO_MODEL;
    s = (ok[1] && (!ok[0] || m[1].model_version > m[0].model_version)) ? 1 : 0;
    o->active = o->running = s;
    o->model = m[s];
    o->state = EF_OTA_IDLE;
    o->report = interrupted ? EF_OTA_REPORT_REVERTED : EF_OTA_REPORT_NONE;
    o->reason = EF_OK;
    o->received = o->size = 0;
    o->version = interrupted;
    return EF_OK;
}

uint32_t ef_ota_next_offset(const ef_ota *o) { return o->received; }

/* ---------------------------------------------------------------- handlers */

static uint8_t inactive(const ef_ota *o) { return (uint8_t)(o->active ^ 1u); }

static ef_status fail(ef_ota *o, ef_ota_report r, ef_status why, ef_ota_state next)
{
    o->report = r;
    o->reason = why;
    o->state = next;
    return why;
}

/* ---------------------------------------------------------------- authorization (docs/ota.md) */

const uint8_t *ef_trust_find(const ef_trust *t, const uint8_t key_id[8], uint8_t role)
{
    uint8_t i, h[32];
    if (t == NULL || key_id == NULL)
        return NULL;
    for (i = 0; i < t->n && i < EF_TRUST_MAX; i++) {
        ef_sha256(t->keys[i], 32, h);
        if ((t->roles[i] & role) != 0 && memcmp(h, key_id, 8) == 0)
            return t->keys[i];
    }
    return NULL;
}

__attribute__((noinline)) ef_status ef_trust_apply(ef_trust *t, const uint8_t *doc, size_t len)
{
    ef_keyset ks;
    const uint8_t *pk;
    ef_status st;
    if (t == NULL || doc == NULL)
        return EF_ERR_ARG;
    if ((st = ef_keyset_parse(doc, len, &ks)) != EF_OK)
        return st;
    if (ks.trust.serial <= t->serial)
        return EF_ERR_DOWNGRADE; /* offers carry the last few keysets: an old one is not an error */
    if ((pk = ef_trust_find(t, ks.key_id, EF_ROLE_MODEL)) == NULL)
        return EF_ERR_UNAUTHORIZED;
    if (ef_ed25519_verify(ks.signature, pk, doc + ks.body_off, ks.body_len) != EF_OK)
        return EF_ERR_SIGNATURE;
    *t = ks.trust;
    return EF_OK;
}

/* The offer's keysets, oldest first: each may bring the key that signs the next one (or the ticket).
 * Applied to a copy (its own frame: the legacy path keeps its stack depth); a newer set goes to
 * auth->keep, even when a later keyset or the ticket is refused (edgefleet/device/ota_client.py
 * does the same). EF_OK, EF_ERR_UNAUTHORIZED, or EF_ERR_FLASH when the new set could not be kept. */
static __attribute__((noinline)) ef_status apply_keysets(ef_ota *o, const ef_ota_input *in)
{
    ef_trust next;
    ef_status st = EF_OK;
    size_t i = 0;
    int changed = 0;
    if (in->keys == NULL || in->keys_len == 0)
        return EF_OK;
    next = *o->auth->trust;
    while (st == EF_OK && i < in->keys_len) {
        size_t j = i;
        while (j < in->keys_len && in->keys[j] != ' ')
            j++;
        if (j > i) {
            ef_status r = ef_trust_apply(&next, in->keys + i, j - i);
            if (r == EF_OK)
                changed = 1;
            else if (r != EF_ERR_DOWNGRADE)
                st = EF_ERR_UNAUTHORIZED;
        }
        i = j + 1;
    }
    if (changed && (o->auth->keep == NULL || o->auth->keep(o->auth, &next) != EF_OK))
        return EF_ERR_FLASH;
    return st;
}

/* The offer's ticket (after its keysets): EF_OK and the trial policy the ticket signs (policy[3]:
 * trial_s, shadow, shadow_s), or EF_ERR_UNAUTHORIZED. The ticket must name this device, the offer's
 * campaign and the manifest's model and artifact. Out of line, with the ticket in its own frame, so
 * a board on the legacy path (no trust set) keeps its old stack depth. */
static __attribute__((noinline)) ef_status authorize(ef_ota *o, const ef_ota_input *in, const ef_manifest *mf,
                                                     uint32_t policy[3])
{
    ef_ticket tk, *t = &tk;
    const uint8_t *pk;
    if (in->ticket == NULL || in->campaign == NULL || o->auth->device == NULL ||
        ef_ticket_parse(in->ticket, in->ticket_len, t) != EF_OK)
        return EF_ERR_UNAUTHORIZED;
    pk = ef_trust_find(o->auth->trust, t->key_id, EF_ROLE_CAMPAIGN);
    if (pk == NULL || ef_ed25519_verify(t->signature, pk, in->ticket + t->body_off, t->body_len) != EF_OK)
        return EF_ERR_UNAUTHORIZED;
    if (strcmp(t->device, o->auth->device) != 0 || strcmp(t->campaign, in->campaign) != 0 ||
        t->model != mf->version || memcmp(t->sha256, mf->sha256, 32) != 0 ||
        t->trial_s > 604800u || t->shadow_s > 604800u) /* the protocol's bound on both */
        return EF_ERR_UNAUTHORIZED;
    policy[0] = t->trial_s;
    policy[1] = t->shadow;
    policy[2] = t->shadow_s;
    return EF_OK;
}

static ef_status on_offer(ef_ota *o, const ef_ota_input *in)
{
    ef_manifest mf;
    uint32_t policy[3] = {0, 0, 0};
    const uint8_t *model_key = o->authz ? NULL : o->public_key;
    uint32_t base = slot_base(o, inactive(o));
    ef_status st = ef_manifest_parse(in->manifest, in->manifest_len, &mf);
    if (st != EF_OK)
        return fail(o, EF_OTA_REPORT_REJECTED, st, EF_OTA_IDLE);
    if (o->authz) {
        if ((st = apply_keysets(o, in)) != EF_OK || (st = authorize(o, in, &mf, policy)) != EF_OK)
            return fail(o, st == EF_ERR_FLASH ? EF_OTA_REPORT_FAILED : EF_OTA_REPORT_REJECTED, st, EF_OTA_IDLE);
        if ((model_key = ef_trust_find(o->auth->trust, mf.key_id, EF_ROLE_MODEL)) == NULL)
            return fail(o, EF_OTA_REPORT_REJECTED, EF_ERR_SIGNATURE, EF_OTA_IDLE);
    } else {
        uint8_t kid[32];
        ef_sha256(o->public_key, 32, kid);
        if (memcmp(kid, mf.key_id, 8) != 0)
            return fail(o, EF_OTA_REPORT_REJECTED, EF_ERR_SIGNATURE, EF_OTA_IDLE);
    }
    st = ef_ed25519_verify(mf.signature, model_key, in->manifest + mf.body_off, mf.body_len);
    if (st != EF_OK)
        return fail(o, EF_OTA_REPORT_REJECTED, st, EF_OTA_IDLE);
    if (mf.version <= o->model.model_version)
        return fail(o, EF_OTA_REPORT_REJECTED, EF_ERR_DOWNGRADE, EF_OTA_IDLE);
    if (mf.min_firmware > o->firmware_version || mf.size > slot_capacity(o->slot_size) ||
        mf.size < EF_MODEL_HEADER_SIZE || in->manifest_len > EF_OTA_HDR_SIZE - OFF_MANIFEST ||
        (uint64_t)mf.n_inputs + mf.n_outputs > o->work_len)
        return fail(o, EF_OTA_REPORT_REJECTED, EF_ERR_INCOMPATIBLE, EF_OTA_IDLE);
    /* erase the inactive slot (header + artifact), store the manifest, then the header */
    { /* scoped: b shares its stack slot with kid above */
        uint8_t b[64];
        if (o->flash->erase(o->flash->ctx, base, o->slot_size) != 0 ||
            o->flash->write(o->flash->ctx, base + OFF_MANIFEST, in->manifest, (uint32_t)in->manifest_len) != 0)
            return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
        ef_put_le32(b, (uint32_t)in->manifest_len);
        ef_put_le32(b + 4, mf.version);
        ef_put_le32(b + 8, mf.size);
        memcpy(b + 12, mf.sha256, 32);
        ef_put_le32(b + 44, HDR_MAGIC);
        if (o->flash->write(o->flash->ctx, base + OFF_FIELDS, b, FIELDS_LEN) != 0 ||
            o->flash->write(o->flash->ctx, base + OFF_MAGIC, b + 44, 4) != 0)
            return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
    }
    o->received = 0;
    o->size = mf.size;
    o->version = mf.version;
    if (o->authz) { /* the trial policy is the signed ticket's, nobody else's */
        o->trial_ms = policy[0] * 1000u;
        o->auth->shadow = policy[1];
        o->auth->shadow_s = policy[2];
    }
    o->report = EF_OTA_REPORT_ACCEPTED;
    o->reason = EF_OK;
    o->state = EF_OTA_RECEIVING;
    return EF_OK;
}

/* Decode and run the manifest's self-test rows (stored in flash) on model m. */
static ef_status self_test(ef_ota *o, uint32_t base, const ef_manifest *mf, const ef_model *m)
{
    uint8_t hex[64];
    int8_t *x = (int8_t *)o->work, *y = x + m->n_inputs, *arena = y + m->n_outputs;
    uint32_t r, i;
    if ((uint64_t)m->n_inputs + m->n_outputs + m->arena_bytes > o->work_len)
        return EF_ERR_INCOMPATIBLE;
    for (r = 0; r < mf->rows; r++) {
        for (i = 0; i < m->n_inputs; i += 32) { /* 32 bytes of row per 64 hex digits */
            uint32_t n = m->n_inputs - i < 32 ? m->n_inputs - i : 32;
            if (o->flash->read(o->flash->ctx, base + OFF_MANIFEST + mf->st_in_off +
                               2u * (r * m->n_inputs + i), hex, 2u * n) != 0)
                return EF_ERR_FLASH;
            if (ef_hex_decode((const char *)hex, n, (uint8_t *)x + i) != 0)
                return EF_ERR_MANIFEST;
        }
        ef_engine_infer(m, x, y, arena, o->work_len - m->n_inputs - m->n_outputs);
        for (i = 0; i < m->n_outputs; i += 32) {
            uint32_t n = m->n_outputs - i < 32 ? m->n_outputs - i : 32;
            uint8_t want[32];
            if (o->flash->read(o->flash->ctx, base + OFF_MANIFEST + mf->st_out_off +
                               2u * (r * m->n_outputs + i), hex, 2u * n) != 0)
                return EF_ERR_FLASH;
            if (ef_hex_decode((const char *)hex, n, want) != 0)
                return EF_ERR_MANIFEST;
            if (memcmp(want, (uint8_t *)y + i, n) != 0)
                return EF_ERR_SELFTEST;
        }
    }
    return EF_OK;
}

/* Whole artifact received: hash, signature, model checks, self-test, then trial. */
static ef_status install(ef_ota *o, uint32_t now)
{
    const uint8_t slot = inactive(o);
    const uint32_t base = slot_base(o, slot);
    const ef_flash *f = o->flash;
    uint8_t digest[32];
    slot_hdr h;
    ef_manifest mf;
    ef_model m;
    ef_status st;
    const uint8_t *mp, *mk;
    o->report = EF_OTA_REPORT_VERIFYING;
    if (read_hdr(f, base, &h) != 0 || !hdr_valid(&h, o->slot_size))
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
    mp = f->map ? f->map(f->ctx, base + OFF_MANIFEST, h.manifest_len) : NULL;
    if (mp == NULL || ef_manifest_parse(mp, h.manifest_len, &mf) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_MANIFEST, EF_OTA_IDLE);
    /* re-check the stored manifest: the bytes in flash are the ones we act on */
    /* the key: the legacy one, or the trusted model key the manifest names (the set changes only with an offer) */
    mk = o->authz ? ef_trust_find(o->auth->trust, mf.key_id, EF_ROLE_MODEL) : o->public_key;
    st = mk == NULL ? EF_ERR_SIGNATURE
                    : ef_ed25519_verify_flash(mf.signature, mk, f, base + OFF_MANIFEST + mf.body_off, mf.body_len);
    if (st == EF_OK)
        st = ef_sha256_flash(f, base + EF_OTA_HDR_SIZE, h.size, digest);
    if (st == EF_OK && memcmp(digest, h.sha256, 32) != 0)
        st = EF_ERR_HASH;
    if (st == EF_OK)
        st = open_slot(o, slot, &h, &m);
    if (st == EF_OK && (m.n_inputs != mf.n_inputs || m.n_outputs != mf.n_outputs ||
                        m.min_firmware > o->firmware_version))
        st = EF_ERR_INCOMPATIBLE;
    if (st == EF_OK && (st = write_flag(f, base + OFF_VERIFIED)) == EF_OK)
        st = self_test(o, base, &mf, &m);
    if (st != EF_OK) {
        if (st != EF_ERR_FLASH)
            write_flag(f, base + OFF_REJECTED); /* best effort: a cut here leaves it unconfirmed */
        return fail(o, st == EF_ERR_FLASH ? EF_OTA_REPORT_FAILED : EF_OTA_REPORT_REJECTED, st,
                    EF_OTA_IDLE);
    }
    if (write_flag(f, base + OFF_TRIAL) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
    o->running = slot;
    o->model = m;
    o->trial_start = now;
    o->report = EF_OTA_REPORT_TRIAL;
    o->reason = EF_OK;
    o->state = EF_OTA_TRIAL;
    return EF_OK;
}

static ef_status on_chunk(ef_ota *o, const ef_ota_input *in)
{
    const uint32_t base = slot_base(o, inactive(o)) + EF_OTA_HDR_SIZE;
    const ef_flash *f = o->flash;
    uint64_t end = (uint64_t)in->offset + in->len;
    uint32_t skip;
    if (in->data == NULL || in->len == 0 || end > o->size)
        return o->reason = EF_ERR_SIZE;
    if (in->offset > o->received)
        return o->reason = EF_ERR_GAP; /* ask again from ef_ota_next_offset() */
    skip = o->received - in->offset; /* bytes already written (a duplicate delivery) */
    if (skip > 0) {
        const uint32_t dup = skip < in->len ? skip : (uint32_t)in->len;
        const uint8_t *have = f->map ? f->map(f->ctx, base + in->offset, dup) : NULL;
        if (have == NULL || memcmp(have, in->data, dup) != 0)
            return o->reason = EF_ERR_GAP; /* differs from what we hold: resend from next offset */
        if (skip >= in->len)
            return EF_OK;
    }
    if (f->write(f->ctx, base + o->received, in->data + skip, (uint32_t)(in->len - skip)) != 0)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
    o->received = (uint32_t)end;
    o->report = EF_OTA_REPORT_DOWNLOADING;
    o->reason = EF_OK;
    return o->received == o->size ? install(o, in->now_ms) : EF_OK;
}

static ef_status confirm(ef_ota *o)
{
    if (write_flag(o->flash, slot_base(o, o->running) + OFF_CONFIRMED) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_TRIAL);
    o->active = o->running;
    o->report = EF_OTA_REPORT_CONFIRMED;
    o->reason = EF_OK;
    o->state = EF_OTA_IDLE;
    return EF_OK;
}

/* Back to the confirmed slot; the trial slot is marked rejected so no boot picks it. */
static ef_status revert(ef_ota *o)
{
    slot_hdr h;
    ef_model m;
    ef_status st = write_flag(o->flash, slot_base(o, o->running) + OFF_REJECTED);
    if (st != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, st, EF_OTA_TRIAL);
    if (read_hdr(o->flash, slot_base(o, o->active), &h) != 0 || open_slot(o, o->active, &h, &m) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_NO_MODEL, EF_OTA_IDLE);
    o->running = o->active;
    o->model = m;
    o->report = EF_OTA_REPORT_REVERTED;
    o->reason = EF_OK;
    o->state = EF_OTA_IDLE;
    return EF_OK;
}

/* Server-ordered rollback with no trial running: back to the other slot if it
 * holds a confirmed, valid model; the current one is marked rejected. */
static ef_status on_rollback(ef_ota *o, const ef_ota_input *in)
{
    slot_hdr h;
    ef_model m;
    const uint8_t other = inactive(o);
    (void)in;
    if (read_hdr(o->flash, slot_base(o, other), &h) != 0 || !hdr_valid(&h, o->slot_size) ||
        h.confirmed != FLAG_SET || h.rejected != FLAG_CLEAR || open_slot(o, other, &h, &m) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_NO_MODEL, EF_OTA_IDLE);
    if (write_flag(o->flash, slot_base(o, o->active) + OFF_REJECTED) != EF_OK)
        return fail(o, EF_OTA_REPORT_FAILED, EF_ERR_FLASH, EF_OTA_IDLE);
    o->active = o->running = other;
    o->model = m;
    o->report = EF_OTA_REPORT_REVERTED;
    o->reason = EF_OK;
    return EF_OK;
}

static ef_status on_tick(ef_ota *o, const ef_ota_input *in)
{
    if ((uint32_t)(in->now_ms - o->trial_start) < o->trial_ms)
        return EF_OK;
    return in->healthy ? confirm(o) : revert(o);
}

static ef_status on_confirm(ef_ota *o, const ef_ota_input *in) { (void)in; return confirm(o); }
static ef_status on_revert(ef_ota *o, const ef_ota_input *in) { (void)in; return revert(o); }
static ef_status on_cancel(ef_ota *o, const ef_ota_input *in)
{
    (void)in;
    return fail(o, EF_OTA_REPORT_FAILED, EF_OK, EF_OTA_IDLE);
}
static ef_status on_busy(ef_ota *o, const ef_ota_input *in)
{
    (void)in;
    o->report = EF_OTA_REPORT_REJECTED; /* another update is in trial */
    return o->reason = EF_ERR_STATE;
}
static ef_status on_nothing(ef_ota *o, const ef_ota_input *in) { (void)o; (void)in; return EF_OK; }

typedef ef_status (*handler)(ef_ota *o, const ef_ota_input *in);
static const struct {
    uint8_t state, event;
    handler run;
} k_table[] = { /* first match wins; no match: EF_ERR_STATE */
    {EF_OTA_IDLE, EF_OTA_EV_OFFER, on_offer},
    {EF_OTA_RECEIVING, EF_OTA_EV_OFFER, on_offer}, /* a new offer restarts the download */
    {EF_OTA_RECEIVING, EF_OTA_EV_CHUNK, on_chunk},
    {EF_OTA_RECEIVING, EF_OTA_EV_REVERT, on_cancel},
    {EF_OTA_TRIAL, EF_OTA_EV_OFFER, on_busy},
    {EF_OTA_TRIAL, EF_OTA_EV_TICK, on_tick},
    {EF_OTA_TRIAL, EF_OTA_EV_CONFIRM, on_confirm},
    {EF_OTA_TRIAL, EF_OTA_EV_REVERT, on_revert},
    {EF_OTA_IDLE, EF_OTA_EV_REVERT, on_rollback},
    {EF_OTA_IDLE, EF_OTA_EV_TICK, on_nothing},
    {EF_OTA_RECEIVING, EF_OTA_EV_TICK, on_nothing},
};

ef_status ef_ota_handle(ef_ota *o, ef_ota_event ev, const ef_ota_input *in)
{
    size_t i;
    if (o == NULL || in == NULL)
        return EF_ERR_ARG;
    for (i = 0; i < sizeof k_table / sizeof k_table[0]; i++) {
        if (k_table[i].state == o->state && k_table[i].event == ev)
            return k_table[i].run(o, in);
    }
    return o->reason = EF_ERR_STATE;
}

const char *ef_ota_report_str(ef_ota_report r)
{
    static const char *const names[] = {"none", "accepted", "downloading", "verifying", "trial",
                                        "confirmed", "reverted", "rejected", "failed"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}
