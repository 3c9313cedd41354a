/* ef_fuzz: mutation fuzzing of everything a node parses, for the sanitized build.
 *   ef_fuzz model ARTIFACT N SEED
 *       N mutants (bit flips, truncations, header/layer fields rewritten with the
 *       CRC fixed up so deeper checks run); each in a heap block of exactly its
 *       length so any out-of-bounds read trips AddressSanitizer. An accepted
 *       mutant is then run (inference with an exact-size arena, features at 12 kHz).
 *   ef_fuzz manifest MANIFEST PUBKEY N SEED
 *       mutated manifests through the parser and Ed25519 check; counts mutants
 *       whose changed body still verified (must be 0).
 *   ef_fuzz auth TICKET KEYSET PUBKEY N SEED
 *       mutated campaign tickets and keysets (docs/ota.md, Authorization) through their parsers,
 *       the ticket's Ed25519 check and ef_trust_apply on a set trusting PUBKEY; counts mutants
 *       whose changed body still verified or was applied (must be 0).
 *   ef_fuzz ota OLD NEW MANIFEST PUBKEY N SEED
 *       random offers, chunk offsets, lengths, damaged data, ticks, confirms,
 *       reverts and power cuts; checks after every event that a model boots,
 *       no unerased byte is programmed, and a trial only ever runs the exact NEW bytes.
 * Prints one JSON summary line; exit 3 when an invariant broke. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/bytes.h"
#include "ef/crc.h"
#include "ef/crypto.h"
#include "ef/engine.h"
#include "ef/features.h"
#include "ef/manifest.h"
#include "ef/ota.h"
#include "ef/pipeline.h"
#include "ef_host.h"

static uint64_t g_rng;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static uint32_t below(uint32_t n) { return n ? rnd() % n : 0; }

static void fix_crc(uint8_t *b, size_t len)
{
    if (len >= 64) {
        uint32_t total = ef_le32(b + 8);
        if (total >= 16 && total <= len)
            ef_put_le32(b + 12, ef_crc32(0, b + 16, total - 16));
    }
}

/* One mutant of src into a fresh exact-size block; returns its length. */
static uint8_t *mutate_model(const uint8_t *src, size_t len, size_t *out_len)
{
    size_t n = len, i;
    uint8_t *b;
    uint32_t kind = below(6);
    if (kind == 0)
        n = below((uint32_t)len + 1); /* truncation */
    b = (uint8_t *)malloc(n ? n : 1);
    memcpy(b, src, n);
    if (n == 0)
        goto done;
    switch (kind) {
    case 1: /* random bit flips, CRC left stale */
        for (i = 0; i < 1 + below(4); i++)
            b[below((uint32_t)n)] ^= (uint8_t)(1u << below(8));
        break;
    case 2: /* header field rewritten, CRC fixed */
    case 3: { /* layer-table / section bytes rewritten, CRC fixed */
        uint32_t lo = kind == 2 ? 16 : 64, hi = kind == 2 ? 64 : (uint32_t)(n < 600 ? n : 600);
        for (i = 0; i < 1 + below(3); i++) {
            uint32_t at = lo + below(hi > lo ? hi - lo : 1);
            uint32_t v = below(4) == 0 ? 0xFFFFFFFFu : (below(2) ? rnd() : below(70000));
            if (at + 4 <= n)
                ef_put_le32(b + at, below(2) ? v : (ef_le32(b + at) ^ (1u << below(32))));
        }
        fix_crc(b, n);
        break;
    }
    case 4: /* data bytes rewritten (weights, scales, edges), CRC fixed */
        for (i = 0; i < 1 + below(16); i++)
            b[below((uint32_t)n)] = (uint8_t)rnd();
        fix_crc(b, n);
        break;
    default: /* float fields set to specials, CRC fixed */
        for (i = 0; i < 1 + below(3); i++) {
            static const uint32_t specials[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x00000000u,
                                                0x80000000u, 0x00000001u, 0x4B800000u};
            uint32_t at = (below((uint32_t)n / 4u)) * 4u;
            if (at + 4 <= n)
                ef_put_le32(b + at, specials[below(7)]);
        }
        fix_crc(b, n);
    }
done:
    *out_len = n;
    return b;
}

static int fuzz_model(const char *path, uint32_t iters)
{
    size_t len;
    uint8_t *src = ef_host_read_file(path, &len);
    uint32_t it, accepted = 0, counts[32] = {0};
    if (!src)
        return 1;
    for (it = 0; it < iters; it++) {
        size_t n;
        uint8_t *b = mutate_model(src, len, &n);
        ef_model m;
        ef_status st = ef_model_open(&m, b, n);
        counts[(unsigned)(-st) & 31u]++;
        if (st == EF_OK) {
            ef_features_view fv;
            ef_scoring_view sc;
            int8_t *x = (int8_t *)malloc(m.n_inputs), *y = (int8_t *)malloc(m.n_outputs);
            int8_t *arena = (int8_t *)malloc(m.arena_bytes ? m.arena_bytes : 1);
            uint32_t i;
            accepted++;
            for (i = 0; i < m.n_inputs; i++)
                x[i] = (int8_t)rnd();
            ef_engine_infer(&m, x, y, arena, m.arena_bytes);
            /* an accepted node model runs a window through its front end (v1 or v2 streaming) in
             * buffers of exactly the planned sizes */
            if (ef_model_features(&m, &fv) && ef_model_scoring(&m, &sc) && m.n_inputs == m.n_outputs) {
                ef_pipeline_buffers pb;
                ef_pipeline *pipe = (ef_pipeline *)malloc(sizeof *pipe);
                ef_pipeline_result res;
                size_t fft_len = 1;
                memset(&pb, 0, sizeof pb);
                if (fv.kind == EF_FEATURE_KIND_V2 && ef_lf_plan_init(&pipe->lf, &fv, 12000.0) == EF_OK)
                    fft_len = ef_lf_fft_floats(&pipe->lf) > ef_lf_work_floats(&pipe->lf)
                                  ? ef_lf_fft_floats(&pipe->lf) : ef_lf_work_floats(&pipe->lf);
                else if (fv.kind == EF_FEATURE_KIND_V1 && ef_features_plan(&pipe->lf.hf, &fv, 12000.0) == EF_OK)
                    fft_len = pipe->lf.hf.nfft;
                pb.window = (float *)malloc(fft_len * sizeof(float));
                pb.scratch = (float *)malloc(fft_len * sizeof(float));
                pb.fft_len = fft_len;
                pb.features = (float *)malloc(m.n_inputs * sizeof(float));
                pb.q = (int8_t *)malloc(m.n_inputs);
                pb.y = (int8_t *)malloc(m.n_inputs);
                pb.io_len = m.n_inputs;
                pb.arena = arena;
                pb.arena_len = m.arena_bytes ? m.arena_bytes : 1;
                /* (a mutant may ask for an absurd v2 window: up to 2^26 samples; a node would just be slow) */
                if (ef_pipeline_init(pipe, &m, 12000.0, &pb) == EF_OK && pipe->n_window <= (1u << 20)) {
                    float *w = (float *)malloc(pipe->n_window * sizeof(float));
                    for (i = 0; i < pipe->n_window; i++)
                        w[i] = (float)(int32_t)(rnd() % 2001u - 1000) / 500.0f;
                    ef_pipeline_run(pipe, w, &res);
                    free(w);
                }
                free(pb.window);
                free(pb.scratch);
                free(pb.features);
                free(pb.q);
                free(pb.y);
                free(pipe);
            }
            free(x);
            free(y);
            free(arena);
        }
        free(b);
    }
    printf("{\"iterations\":%u,\"accepted\":%u,\"rejected\":%u,\"reasons\":{", iters, accepted,
           iters - accepted);
    {
        int first = 1, k;
        for (k = 1; k < 32; k++)
            if (counts[k]) {
                printf("%s\"%s\":%u", first ? "" : ",", ef_status_str(-k), counts[k]);
                first = 0;
            }
    }
    printf("}}\n");
    free(src);
    return 0;
}

static int fuzz_manifest(const char *mpath, const char *kpath, uint32_t iters)
{
    size_t len, klen;
    uint8_t *src = ef_host_read_file(mpath, &len), *key = ef_host_read_file(kpath, &klen);
    uint32_t it, parsed = 0, verified = 0, forged = 0;
    ef_manifest orig;
    if (!src || !key || klen != 32 || ef_manifest_parse(src, len, &orig) != EF_OK)
        return 1;
    for (it = 0; it < iters; it++) {
        size_t n = len, i;
        uint8_t *b;
        ef_manifest mf;
        if (below(4) == 0)
            n = below((uint32_t)len + 1);
        b = (uint8_t *)malloc(n ? n : 1);
        memcpy(b, src, n);
        for (i = 0; n && i < 1 + below(3); i++) {
            static const char special[] = "{}[]\":,\\0123456789abcdefu-. ";
            uint32_t at = below((uint32_t)n);
            b[at] = below(2) ? (uint8_t)special[below(sizeof special - 1)] : (uint8_t)rnd();
        }
        if (ef_manifest_parse(b, n, &mf) == EF_OK) {
            parsed++;
            if (ef_ed25519_verify(mf.signature, key, b + mf.body_off, mf.body_len) == EF_OK) {
                verified++;
                if (mf.body_len != orig.body_len || memcmp(b + mf.body_off, src + orig.body_off, mf.body_len) != 0)
                    forged++;
            }
        }
        free(b);
    }
    printf("{\"iterations\":%u,\"parsed\":%u,\"verified\":%u,\"forged\":%u}\n", iters, parsed, verified,
           forged);
    free(src);
    free(key);
    return forged ? 3 : 0;
}

/* One mutant of src (len bytes) in a heap block of exactly its length; *n its length. */
static uint8_t *mutant(const uint8_t *src, size_t len, size_t *n)
{
    size_t i;
    uint8_t *b;
    *n = below(4) == 0 ? below((uint32_t)len + 1) : len;
    b = (uint8_t *)malloc(*n ? *n : 1);
    memcpy(b, src, *n);
    for (i = 0; *n && i < 1 + below(3); i++) {
        static const char special[] = "{}[]\":,\\0123456789abcdefu-. ";
        uint32_t at = below((uint32_t)*n);
        b[at] = below(2) ? (uint8_t)special[below(sizeof special - 1)] : (uint8_t)rnd();
    }
    return b;
}

static int fuzz_auth(const char *tpath, const char *kspath, const char *kpath, uint32_t iters)
{
    size_t tlen, kslen, klen;
    uint8_t *tsrc = ef_host_read_file(tpath, &tlen), *kssrc = ef_host_read_file(kspath, &kslen),
            *key = ef_host_read_file(kpath, &klen);
    uint32_t it, parsed = 0, verified = 0, applied = 0, forged = 0;
    ef_ticket orig;
    ef_trust base;
    if (!tsrc || !kssrc || !key || klen != 32 || ef_ticket_parse(tsrc, tlen, &orig) != EF_OK)
        return 1;
    memset(&base, 0, sizeof base);
    base.n = 1;
    base.roles[0] = EF_ROLE_MODEL | EF_ROLE_CAMPAIGN;
    memcpy(base.keys[0], key, 32);
    for (it = 0; it < iters; it++) {
        size_t n;
        uint8_t *b = mutant(tsrc, tlen, &n);
        ef_ticket t;
        ef_trust tr = base;
        if (ef_ticket_parse(b, n, &t) == EF_OK) {
            parsed++;
            if (ef_ed25519_verify(t.signature, key, b + t.body_off, t.body_len) == EF_OK) {
                verified++;
                if (t.body_len != orig.body_len || memcmp(b + t.body_off, tsrc + orig.body_off, t.body_len) != 0)
                    forged++;
            }
        }
        free(b);
        b = mutant(kssrc, kslen, &n);
        if (ef_trust_apply(&tr, b, n) == EF_OK) {
            applied++;
            if (n != kslen || memcmp(b, kssrc, n) != 0) {
                ef_keyset a, o2;
                if (ef_keyset_parse(b, n, &a) != EF_OK || ef_keyset_parse(kssrc, kslen, &o2) != EF_OK ||
                    a.body_len != o2.body_len || memcmp(b + a.body_off, kssrc + o2.body_off, a.body_len) != 0)
                    forged++;
            }
        }
        free(b);
    }
    printf("{\"iterations\":%u,\"tickets_parsed\":%u,\"tickets_verified\":%u,\"keysets_applied\":%u,"
           "\"forged\":%u}\n", iters, parsed, verified, applied, forged);
    free(tsrc);
    free(kssrc);
    free(key);
    return forged ? 3 : 0;
}

#define SLOT (EF_OTA_HDR_SIZE + 64u * 1024u)
static uint8_t g_mem[2 * SLOT];
static uint8_t g_work[70000];

static void ota_setup(ef_ota *o, ef_flash *dev, const uint8_t *key)
{
    memset(o, 0, sizeof *o);
    o->flash = dev;
    o->slot_size = SLOT;
    o->public_key = key;
    o->firmware_version = 0x010000u;
    o->trial_ms = 100;
    o->work = g_work;
    o->work_len = sizeof g_work;
}

static int fuzz_ota(char **paths, uint32_t iters)
{
    size_t olen, nlen, mlen, klen;
    uint8_t *old = ef_host_read_file(paths[0], &olen), *nw = ef_host_read_file(paths[1], &nlen);
    uint8_t *man = ef_host_read_file(paths[2], &mlen), *key = ef_host_read_file(paths[3], &klen);
    uint32_t it, events = 0, trials = 0, confirms = 0, cuts = 0, bad = 0;
    ef_fake_flash ff;
    ef_flash dev;
    if (!old || !nw || !man || !key || klen != 32 || nlen > SLOT - EF_OTA_HDR_SIZE)
        return 1;
    for (it = 0; it < iters; it++) {
        ef_ota o;
        uint32_t step, now = 0;
        ef_fake_flash_init(&ff, g_mem, sizeof g_mem, 4096);
        dev = ef_fake_flash_device(&ff);
        if (ef_ota_provision(&dev, SLOT, old, (uint32_t)olen) != EF_OK)
            return 1;
        ota_setup(&o, &dev, key);
        if (ef_ota_boot(&o) != EF_OK)
            return 1;
        for (step = 0; step < 60; step++) {
            ef_ota_input ev;
            uint8_t buf[2048];
            uint32_t r = below(100);
            memset(&ev, 0, sizeof ev);
            now += below(40);
            ev.now_ms = now;
            if (r < 8) { /* offer, sometimes damaged */
                uint8_t *m2 = (uint8_t *)malloc(mlen);
                memcpy(m2, man, mlen);
                if (below(3) == 0)
                    m2[below((uint32_t)mlen)] ^= (uint8_t)(1u << below(8));
                ev.manifest = m2;
                ev.manifest_len = below(8) == 0 ? below((uint32_t)mlen) : mlen;
                ef_ota_handle(&o, EF_OTA_EV_OFFER, &ev);
                free(m2);
            } else if (r < 80) { /* chunk: mostly the next one, sometimes wrong */
                uint32_t off = o.received, n = 1 + below(1024);
                uint32_t w = below(10);
                if (w == 0)
                    off = below((uint32_t)nlen + 100);
                else if (w == 1 && off > 0)
                    off -= below(off + 1);
                if (off < nlen && n > nlen - off && below(2))
                    n = (uint32_t)(nlen - off);
                memset(buf, 0xA5, sizeof buf);
                if (off < nlen)
                    memcpy(buf, nw + off, off + n <= nlen ? n : nlen - off);
                if (below(25) == 0)
                    buf[below(n)] ^= 0x10;
                ev.offset = off;
                ev.data = buf;
                ev.len = n;
                ef_ota_handle(&o, EF_OTA_EV_CHUNK, &ev);
            } else if (r < 88) {
                ev.healthy = (int)below(2);
                ef_ota_handle(&o, EF_OTA_EV_TICK, &ev);
            } else if (r < 92) {
                ef_ota_handle(&o, EF_OTA_EV_CONFIRM, &ev);
            } else if (r < 95) {
                ef_ota_handle(&o, EF_OTA_EV_REVERT, &ev);
            } else { /* power cut within the next few operations, then reboot */
                ff.cut_after = ff.writes + ff.erases + 1 + below(4);
                ff.torn = (int)below(2);
                cuts++;
            }
            events++;
            if (ff.dead || r >= 98) {
                ff.dead = 0;
                ff.cut_after = 0;
                ota_setup(&o, &dev, key);
                if (ef_ota_boot(&o) != EF_OK)
                    bad++;
            }
            if (o.state == EF_OTA_TRIAL || o.running != o.active) {
                const uint8_t *img = ff.mem + (uint32_t)o.running * SLOT + EF_OTA_HDR_SIZE;
                trials++;
                if (memcmp(img, nw, nlen) != 0)
                    bad++; /* a trial must only ever run the exact signed bytes */
            }
            if (o.report == EF_OTA_REPORT_CONFIRMED)
                confirms++;
        }
        if (ff.violations)
            bad++;
    }
    printf("{\"iterations\":%u,\"events\":%u,\"trial_events\":%u,\"confirm_events\":%u,\"power_cuts\":%u,"
           "\"invariant_failures\":%u}\n", iters, events, trials, confirms, cuts, bad);
    free(old);
    free(nw);
    free(man);
    free(key);
    return bad ? 3 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "model") == 0) {
        g_rng = strtoull(argv[4], NULL, 10) * 2654435761u + 1u;
        return fuzz_model(argv[2], (uint32_t)strtoul(argv[3], NULL, 10));
    }
    if (argc == 6 && strcmp(argv[1], "manifest") == 0) {
        g_rng = strtoull(argv[5], NULL, 10) * 2654435761u + 1u;
        return fuzz_manifest(argv[2], argv[3], (uint32_t)strtoul(argv[4], NULL, 10));
    }
    if (argc == 7 && strcmp(argv[1], "auth") == 0) {
        g_rng = strtoull(argv[6], NULL, 10) * 2654435761u + 1u;
        return fuzz_auth(argv[2], argv[3], argv[4], (uint32_t)strtoul(argv[5], NULL, 10));
    }
    if (argc == 8 && strcmp(argv[1], "ota") == 0) {
        g_rng = strtoull(argv[7], NULL, 10) * 2654435761u + 1u;
        return fuzz_ota(argv + 2, (uint32_t)strtoul(argv[6], NULL, 10));
    }
    fprintf(stderr, "usage: ef_fuzz model ARTIFACT N SEED | manifest MANIFEST PUBKEY N SEED |"
                    " auth TICKET KEYSET PUBKEY N SEED | ota OLD NEW MANIFEST PUBKEY N SEED\n");
    return 1;
}
