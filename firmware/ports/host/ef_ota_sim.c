/* ef_ota_sim: the OTA core on the fake flash.
 *
 *   ef_ota_sim update OLD.efm NEW.efm MANIFEST PUBKEY [--chunk N] [--fw X.Y.Z]
 *              [--corrupt-chunk] [--then confirm|revert|reboot|tick-healthy|tick-unhealthy]
 *       one update, one JSON line per event, then the model the device boots;
 *       --fw is the node firmware version (default EF_FIRMWARE_VERSION, ef/version.h);
 *       --protocol BOOT CAMPAIGN also prints, after each event that changed the
 *       OTA report, the protocol v1 ota/state message the node would publish.
 *   ef_ota_sim sweep OLD.efm NEW.efm MANIFEST PUBKEY [--chunk N] [--torn]
 *       for every k: cut power after the k-th flash write/erase of a full
 *       update (offer, chunks, verify, self-test, trial, confirm), reboot, and
 *       check that a valid model boots; prints a JSON summary.
 *   OTA authorization (docs/ota.md): --trust makes PUBKEY the node's trust set (both roles,
 *       serial 0) and asks every offer for a ticket: --ticket FILE, --device ID (default
 *       "dev-1"), --campaign ID (default: --protocol's campaign, else "c1"), --keys FILE (the
 *       offer's keysets). The offer event then also prints the trust serial and trial policy.
 * Exit codes: 0 ok, 1 usage/I/O, 3 a check failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/manifest.h"
#include "ef/ota.h"
#include "ef/protocol.h"
#include "ef/version.h"
#include "ef_host.h"

#define SLOT_SIZE (EF_OTA_HDR_SIZE + 512u * 1024u)
#define ERASE_SIZE 4096u

static uint8_t g_mem[2 * SLOT_SIZE];
static uint32_t g_offered; /* version in the manifest, for ota/state messages */
static uint8_t g_work[70000];

typedef struct {
    uint8_t *old_art, *new_art, *manifest, *pubkey, *ticket, *keys;
    size_t old_len, new_len, man_len, key_len, ticket_len, keys_len;
    uint32_t chunk, fw;
    int trust;
    const char *device, *campaign;
} inputs;

static ef_ota_auth g_auth;
static ef_trust g_trust; /* where this "node" keeps its trust set (a board: flash) */

/* auth.keep: a newer set from an offer's keysets */
static ef_status keep_trust(ef_ota_auth *auth, const ef_trust *next)
{
    g_trust = *next;
    auth->trust = &g_trust;
    return EF_OK;
}

static void setup(ef_ota *o, ef_flash *dev, const inputs *in)
{
    memset(o, 0, sizeof *o);
    o->flash = dev;
    o->slot_size = SLOT_SIZE;
    o->public_key = in->pubkey;
    o->firmware_version = in->fw;
    o->trial_ms = 1000;
    o->work = g_work;
    o->work_len = sizeof g_work;
    if (in->trust) { /* a node provisioned with one key: it signs models and tickets */
        memset(&g_auth, 0, sizeof g_auth);
        memset(&g_trust, 0, sizeof g_trust);
        g_trust.n = 1;
        g_trust.roles[0] = EF_ROLE_MODEL | EF_ROLE_CAMPAIGN;
        memcpy(g_trust.keys[0], in->pubkey, 32);
        g_auth.trust = &g_trust;
        g_auth.keep = keep_trust;
        g_auth.device = in->device;
        o->auth = &g_auth;
        o->authz = 1;
    }
}

static const char *g_boot, *g_campaign;
static uint32_t g_seq;

/* The ota/state message for the current report (what the node publishes). */
static void print_state_message(const ef_ota *o, uint32_t model)
{
    char msg[512];
    ef_proto_ota_state m;
    int n;
    if (!g_boot || o->report == EF_OTA_REPORT_NONE)
        return;
    m.boot = g_boot;
    m.seq = g_seq++;
    m.ts = 1767225600000ull + 1000u * m.seq;
    m.campaign = g_campaign;
    m.model = model;
    m.state = ef_ota_report_str(o->report);
    m.has_off = o->report == EF_OTA_REPORT_DOWNLOADING || o->report == EF_OTA_REPORT_TRIAL;
    m.off = o->received;
    m.reason = o->reason != EF_OK ? ef_status_str(o->reason) : NULL;
    n = ef_proto_encode_ota_state(msg, sizeof msg, &m);
    if (n < 0)
        printf("{\"message_error\":\"%s\"}\n", ef_status_str(n));
    else
        printf("{\"ota_state\":%s}\n", msg);
}

static void print_event(const char *name, ef_status st, const ef_ota *o)
{
    printf("{\"event\":\"%s\",\"status\":\"%s\",\"report\":\"%s\",\"reason\":\"%s\",\"running\":%u}\n",
           name, ef_status_str(st), ef_ota_report_str(o->report), ef_status_str(o->reason),
           (unsigned)o->model.model_version);
    if (strcmp(name, "boot") != 0 && strcmp(name, "reboot") != 0 && strcmp(name, "tick-early") != 0)
        print_state_message(o, g_offered);
}

/* Offer + all chunks; stops at the first error. */
static ef_status download(ef_ota *o, const inputs *in, int corrupt, int verbose)
{
    ef_ota_input ev;
    ef_status st;
    uint32_t off;
    memset(&ev, 0, sizeof ev);
    ev.manifest = in->manifest;
    ev.manifest_len = in->man_len;
    ev.campaign = in->campaign;
    ev.ticket = in->ticket;
    ev.ticket_len = in->ticket_len;
    ev.keys = in->keys;
    ev.keys_len = in->keys_len;
    st = ef_ota_handle(o, EF_OTA_EV_OFFER, &ev);
    if (verbose)
        print_event("offer", st, o);
    if (verbose && in->trust)
        printf("{\"event\":\"authorization\",\"trust_serial\":%u,\"trust_keys\":%u,\"trial_ms\":%u,"
               "\"shadow\":%u,\"shadow_s\":%u}\n", (unsigned)g_auth.trust->serial, (unsigned)g_auth.trust->n,
               (unsigned)o->trial_ms, (unsigned)g_auth.shadow, (unsigned)g_auth.shadow_s);
    if (st != EF_OK)
        return st;
    for (off = 0; off < in->new_len && o->state == EF_OTA_RECEIVING; off += in->chunk) {
        uint8_t buf[4096];
        uint32_t n = (uint32_t)(in->new_len - off < in->chunk ? in->new_len - off : in->chunk);
        memcpy(buf, in->new_art + off, n);
        if (corrupt && off == 0)
            buf[n / 2] ^= 0x01;
        ev.offset = off;
        ev.data = buf;
        ev.len = n;
        st = ef_ota_handle(o, EF_OTA_EV_CHUNK, &ev);
        if (st != EF_OK)
            break;
    }
    if (verbose)
        print_event("download", st, o);
    return st;
}

static int cmd_update(const inputs *in, int corrupt, const char *then)
{
    ef_fake_flash ff;
    ef_flash dev;
    ef_ota o;
    ef_ota_input ev;
    ef_status st;
    ef_fake_flash_init(&ff, g_mem, sizeof g_mem, ERASE_SIZE);
    dev = ef_fake_flash_device(&ff);
    if (ef_ota_provision(&dev, SLOT_SIZE, in->old_art, (uint32_t)in->old_len) != EF_OK) {
        fprintf(stderr, "error: cannot provision the old artifact\n");
        return 1;
    }
    setup(&o, &dev, in);
    st = ef_ota_boot(&o);
    print_event("boot", st, &o);
    if (st != EF_OK)
        return 3;
    st = download(&o, in, corrupt, 1);
    memset(&ev, 0, sizeof ev);
    if (st == EF_OK && then) {
        if (strcmp(then, "confirm") == 0)
            st = ef_ota_handle(&o, EF_OTA_EV_CONFIRM, &ev);
        else if (strcmp(then, "revert") == 0)
            st = ef_ota_handle(&o, EF_OTA_EV_REVERT, &ev);
        else if (strncmp(then, "tick-", 5) == 0) {
            ev.healthy = strcmp(then, "tick-healthy") == 0;
            ev.now_ms = 500; /* before the deadline: nothing */
            st = ef_ota_handle(&o, EF_OTA_EV_TICK, &ev);
            print_event("tick-early", st, &o);
            ev.now_ms = 1000;
            st = ef_ota_handle(&o, EF_OTA_EV_TICK, &ev);
        }
        print_event(then, st, &o);
    }
    /* reset: the device boots whatever the flash now says */
    setup(&o, &dev, in);
    st = ef_ota_boot(&o);
    print_event("reboot", st, &o);
    printf("{\"violations\":%u,\"writes\":%u,\"erases\":%u}\n", ff.violations, ff.writes, ff.erases);
    return st == EF_OK && ff.violations == 0 ? 0 : 3;
}

/* Full update with the power cut after op k; returns the version booted afterwards (0: none). */
static uint32_t cut_run(const inputs *in, uint32_t k, int torn, int *completed, uint32_t *violations)
{
    ef_fake_flash ff;
    ef_flash dev;
    ef_ota o;
    ef_ota_input ev;
    ef_fake_flash_init(&ff, g_mem, sizeof g_mem, ERASE_SIZE);
    dev = ef_fake_flash_device(&ff);
    if (ef_ota_provision(&dev, SLOT_SIZE, in->old_art, (uint32_t)in->old_len) != EF_OK)
        return 0;
    setup(&o, &dev, in);
    if (ef_ota_boot(&o) != EF_OK)
        return 0;
    ff.writes = ff.erases = 0;
    ff.cut_after = k;
    ff.torn = torn;
    memset(&ev, 0, sizeof ev);
    if (download(&o, in, 0, 0) == EF_OK)
        ef_ota_handle(&o, EF_OTA_EV_CONFIRM, &ev);
    *completed = !ff.dead;
    *violations += ff.violations;
    /* power back: a fresh boot from flash only, then a second boot to check stability */
    ff.dead = 0;
    ff.cut_after = 0;
    setup(&o, &dev, in);
    if (ef_ota_boot(&o) != EF_OK)
        return 0;
    setup(&o, &dev, in);
    if (ef_ota_boot(&o) != EF_OK)
        return 0;
    *violations += ff.violations;
    return o.model.model_version;
}

static int cmd_sweep(const inputs *in, int torn)
{
    ef_model om, nm;
    uint32_t k, booted_old = 0, booted_new = 0, bad = 0, violations = 0;
    int completed = 0;
    if (ef_model_open(&om, in->old_art, in->old_len) != EF_OK ||
        ef_model_open(&nm, in->new_art, in->new_len) != EF_OK) {
        fprintf(stderr, "error: old or new artifact invalid\n");
        return 1;
    }
    for (k = 1; !completed && k < 100000; k++) {
        uint32_t v = cut_run(in, k, torn, &completed, &violations);
        if (completed)
            break; /* k exceeds the number of flash operations of a whole update */
        if (v == om.model_version)
            booted_old++;
        else if (v == nm.model_version)
            booted_new++;
        else
            bad++;
    }
    printf("{\"cut_points\":%u,\"booted_old\":%u,\"booted_new\":%u,\"no_valid_model\":%u,"
           "\"violations\":%u,\"torn\":%s}\n",
           k - 1, booted_old, booted_new, bad, violations, torn ? "true" : "false");
    return bad == 0 && violations == 0 && k > 1 ? 0 : 3;
}

int main(int argc, char **argv)
{
    inputs in;
    const char *then = NULL;
    int corrupt = 0, torn = 0, i, rc;
    memset(&in, 0, sizeof in);
    in.chunk = 512;
    in.fw = EF_FIRMWARE_VERSION;
    if (argc < 6 || (strcmp(argv[1], "update") != 0 && strcmp(argv[1], "sweep") != 0)) {
        fprintf(stderr, "usage: ef_ota_sim update|sweep OLD.efm NEW.efm MANIFEST PUBKEY [options]\n");
        return 1;
    }
    for (i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--corrupt-chunk") == 0)
            corrupt = 1;
        else if (strcmp(argv[i], "--torn") == 0)
            torn = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--chunk") == 0)
            in.chunk = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 2 < argc && strcmp(argv[i], "--protocol") == 0) {
            g_boot = argv[++i];
            g_campaign = argv[++i];
        } else if (strcmp(argv[i], "--trust") == 0)
            in.trust = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--device") == 0)
            in.device = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--campaign") == 0)
            in.campaign = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--ticket") == 0) {
            if ((in.ticket = ef_host_read_file(argv[++i], &in.ticket_len)) == NULL)
                return 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--keys") == 0) {
            if ((in.keys = ef_host_read_file(argv[++i], &in.keys_len)) == NULL)
                return 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--then") == 0)
            then = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--fw") == 0) {
            i++;
            if (ef_parse_version(argv[i], strlen(argv[i]), &in.fw) != 0) {
                fprintf(stderr, "error: --fw wants MAJOR.MINOR.PATCH\n");
                return 1;
            }
        } else {
            fprintf(stderr, "error: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (in.device == NULL)
        in.device = "dev-1";
    if (in.campaign == NULL)
        in.campaign = g_campaign ? g_campaign : "c1";
    if (in.chunk == 0 || in.chunk > 4096) {
        fprintf(stderr, "error: --chunk must be 1..4096\n");
        return 1;
    }
    in.old_art = ef_host_read_file(argv[2], &in.old_len);
    in.new_art = ef_host_read_file(argv[3], &in.new_len);
    in.manifest = ef_host_read_file(argv[4], &in.man_len);
    in.pubkey = ef_host_read_file(argv[5], &in.key_len);
    if (!in.old_art || !in.new_art || !in.manifest || !in.pubkey || in.key_len != 32) {
        fprintf(stderr, "error: need OLD, NEW, MANIFEST and a raw 32-byte PUBKEY file\n");
        return 1;
    }
    {
        ef_manifest mf;
        if (ef_manifest_parse(in.manifest, in.man_len, &mf) == EF_OK)
            g_offered = mf.version;
    }
    rc = strcmp(argv[1], "update") == 0 ? cmd_update(&in, corrupt, then) : cmd_sweep(&in, torn);
    free(in.old_art);
    free(in.new_art);
    free(in.manifest);
    free(in.pubkey);
    free(in.ticket);
    free(in.keys);
    return rc;
}
