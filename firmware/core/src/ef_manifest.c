/* A small, bounded JSON walker for the manifest body: no allocation, no
 * recursion beyond EF_JSON_DEPTH, every index checked against the length. */
#include "ef/manifest.h"

#include <string.h>

#define EF_JSON_DEPTH 8

typedef struct {
    const uint8_t *s;
    size_t n, i;
} cursor;

static int skip_value(cursor *c, int depth);

static int skip_string(cursor *c)
{
    if (c->i >= c->n || c->s[c->i] != '"')
        return -1;
    c->i++;
    while (c->i < c->n) {
        uint8_t ch = c->s[c->i++];
        if (ch == '"')
            return 0;
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            if (c->i >= c->n)
                return -1;
            ch = c->s[c->i++];
            if (ch == 'u') {
                if (c->i + 4 > c->n)
                    return -1;
                c->i += 4;
            } else if (!strchr("\"\\/bfnrt", ch) || ch == 0) {
                return -1;
            }
        }
    }
    return -1;
}

static int skip_number(cursor *c)
{
    size_t start = c->i;
    while (c->i < c->n && strchr("+-0123456789.eE", c->s[c->i]) && c->s[c->i] != 0)
        c->i++;
    return c->i > start ? 0 : -1;
}

static int skip_literal(cursor *c, const char *lit)
{
    size_t k = strlen(lit);
    if (c->i + k > c->n || memcmp(c->s + c->i, lit, k) != 0)
        return -1;
    c->i += k;
    return 0;
}

static int skip_container(cursor *c, int depth, uint8_t close, int keyed)
{
    c->i++; /* '{' or '[' */
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        return 0;
    }
    for (;;) {
        if (keyed && (skip_string(c) != 0 || c->i >= c->n || c->s[c->i++] != ':'))
            return -1;
        if (skip_value(c, depth + 1) != 0 || c->i >= c->n)
            return -1;
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == close) {
            c->i++;
            return 0;
        }
        return -1;
    }
}

static int skip_value(cursor *c, int depth)
{
    if (depth > EF_JSON_DEPTH || c->i >= c->n)
        return -1;
    switch (c->s[c->i]) {
    case '"': return skip_string(c);
    case '{': return skip_container(c, depth, '}', 1);
    case '[': return skip_container(c, depth, ']', 0);
    case 't': return skip_literal(c, "true");
    case 'f': return skip_literal(c, "false");
    case 'n': return skip_literal(c, "null");
    default: return skip_number(c);
    }
}

static int key_is(const uint8_t *key, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* A plain decimal integer in [0, 2^32). */
static int parse_u32(const uint8_t *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    size_t i;
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10u + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int ef_hex_decode(const char *hex, size_t n, uint8_t *out)
{
    size_t i;
    for (i = 0; i < n; i++) {
        int hi = hexval((uint8_t)hex[2 * i]), lo = hexval((uint8_t)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int ef_parse_version(const char *s, size_t len, uint32_t *out)
{
    uint32_t part[3] = {0, 0, 0};
    size_t i, p = 0, digits = 0;
    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (digits == 0 || ++p > 2)
                return -1;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9' && digits < 5) {
            part[p] = part[p] * 10u + (uint32_t)(s[i] - '0');
            digits++;
        } else {
            return -1;
        }
    }
    if (p != 2 || digits == 0 || part[0] > 65535u || part[1] > 255u || part[2] > 255u)
        return -1;
    *out = part[0] << 16 | part[1] << 8 | part[2];
    return 0;
}

/* Field found flags */
enum {
    F_FORMAT = 1, F_VERSION = 2, F_SIZE = 4, F_SHA = 8, F_MINFW = 16, F_NIN = 32, F_NOUT = 64,
    F_KEY = 128, F_ST_IN = 256, F_ST_OUT = 512, F_ROWS = 1024, F_ALL = 2047
};

static int parse_self_test(cursor *c, ef_manifest *m, unsigned *found)
{
    c->i++; /* '{' */
    for (;;) {
        size_t k0 = c->i + 1, v0;
        size_t klen;
        if (skip_string(c) != 0)
            return -1;
        klen = c->i - 1 - k0;
        if (c->i >= c->n || c->s[c->i++] != ':')
            return -1;
        v0 = c->i;
        if (skip_value(c, 2) != 0 || c->i >= c->n)
            return -1;
        if (key_is(c->s + k0, klen, "input") && c->s[v0] == '"') {
            m->st_in_off = (uint32_t)(v0 + 1);
            m->st_in_len = (uint32_t)(c->i - v0 - 2);
            *found |= F_ST_IN;
        } else if (key_is(c->s + k0, klen, "output") && c->s[v0] == '"') {
            m->st_out_off = (uint32_t)(v0 + 1);
            m->st_out_len = (uint32_t)(c->i - v0 - 2);
            *found |= F_ST_OUT;
        } else if (key_is(c->s + k0, klen, "rows")) {
            if (parse_u32(c->s + v0, c->i - v0, &m->rows) != 0)
                return -1;
            *found |= F_ROWS;
        }
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == '}') {
            c->i++;
            return 0;
        }
        return -1;
    }
}

static int string_value(const uint8_t *s, size_t v0, size_t end, const uint8_t **p, size_t *n)
{
    if (s[v0] != '"' || end < v0 + 2)
        return -1;
    *p = s + v0 + 1;
    *n = end - v0 - 2;
    return 0;
}

static int parse_body(cursor *c, ef_manifest *m)
{
    unsigned found = 0;
    if (c->i >= c->n || c->s[c->i] != '{')
        return -1;
    c->i++;
    for (;;) {
        size_t k0 = c->i + 1, v0, klen, n;
        const uint8_t *p;
        if (skip_string(c) != 0)
            return -1;
        klen = c->i - 1 - k0;
        if (c->i >= c->n || c->s[c->i++] != ':')
            return -1;
        v0 = c->i;
        if (c->i < c->n && c->s[c->i] == '{' && key_is(c->s + k0, klen, "self_test")) {
            if (parse_self_test(c, m, &found) != 0)
                return -1;
        } else if (skip_value(c, 1) != 0) {
            return -1;
        } else if (key_is(c->s + k0, klen, "format")) {
            if (string_value(c->s, v0, c->i, &p, &n) != 0 || n != strlen(EF_MANIFEST_FORMAT) ||
                memcmp(p, EF_MANIFEST_FORMAT, n) != 0)
                return -1;
            found |= F_FORMAT;
        } else if (key_is(c->s + k0, klen, "version")) {
            if (parse_u32(c->s + v0, c->i - v0, &m->version) != 0)
                return -1;
            found |= F_VERSION;
        } else if (key_is(c->s + k0, klen, "size")) {
            if (parse_u32(c->s + v0, c->i - v0, &m->size) != 0)
                return -1;
            found |= F_SIZE;
        } else if (key_is(c->s + k0, klen, "n_inputs")) {
            if (parse_u32(c->s + v0, c->i - v0, &m->n_inputs) != 0)
                return -1;
            found |= F_NIN;
        } else if (key_is(c->s + k0, klen, "n_outputs")) {
            if (parse_u32(c->s + v0, c->i - v0, &m->n_outputs) != 0)
                return -1;
            found |= F_NOUT;
        } else if (key_is(c->s + k0, klen, "sha256")) {
            if (string_value(c->s, v0, c->i, &p, &n) != 0 || n != 64 ||
                ef_hex_decode((const char *)p, 32, m->sha256) != 0)
                return -1;
            found |= F_SHA;
        } else if (key_is(c->s + k0, klen, "key_id")) {
            if (string_value(c->s, v0, c->i, &p, &n) != 0 || n != 16 ||
                ef_hex_decode((const char *)p, 8, m->key_id) != 0)
                return -1;
            found |= F_KEY;
        } else if (key_is(c->s + k0, klen, "min_firmware")) {
            if (string_value(c->s, v0, c->i, &p, &n) != 0 ||
                ef_parse_version((const char *)p, n, &m->min_firmware) != 0)
                return -1;
            found |= F_MINFW;
        }
        if (c->i >= c->n)
            return -1;
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == '}') {
            c->i++;
            return found == F_ALL ? 0 : -1;
        }
        return -1;
    }
}

static const char k_prefix[] = "{\"body\":";
static const char k_mark[] = ",\"signature\":\"";

/* {"body":...,"signature":"<128 hex>"}: the body's range and the signature; -1 if not so framed. */
static int frame(const uint8_t *data, size_t len, uint32_t *body_off, uint32_t *body_len, uint8_t sig[64])
{
    const size_t pre = sizeof k_prefix - 1, mark = sizeof k_mark - 1;
    size_t cut;
    if (((len >> 16) >> 16) != 0 || len < pre + mark + 128 + 2 + 2 || memcmp(data, k_prefix, pre) != 0 ||
        data[len - 2] != '"' || data[len - 1] != '}')
        return -1;
    cut = len - 2 - 128 - mark; /* the signature is exactly 128 hex digits */
    if (memcmp(data + cut, k_mark, mark) != 0 || ef_hex_decode((const char *)data + cut + mark, 64, sig) != 0)
        return -1;
    *body_off = (uint32_t)pre;
    *body_len = (uint32_t)(cut - pre);
    return 0;
}

ef_status ef_manifest_parse(const uint8_t *data, size_t len, ef_manifest *m)
{
    size_t cut;
    cursor c;
    if (data == NULL || m == NULL)
        return EF_ERR_ARG;
    memset(m, 0, sizeof *m);
    if (frame(data, len, &m->body_off, &m->body_len, m->signature) != 0)
        return EF_ERR_MANIFEST;
    cut = (size_t)m->body_off + m->body_len;
    c.s = data;
    c.n = cut; /* the body must end exactly at the signature mark */
    c.i = m->body_off;
    if (parse_body(&c, m) != 0 || c.i != cut)
        return EF_ERR_MANIFEST;
    if (m->rows == 0 || m->n_inputs == 0 || m->n_outputs == 0 ||
        (uint64_t)m->st_in_len != 2ull * m->rows * m->n_inputs ||
        (uint64_t)m->st_out_len != 2ull * m->rows * m->n_outputs)
        return EF_ERR_MANIFEST;
    return EF_OK;
}

/* ---------------------------------------------------------------- tickets and keysets */

/* Calls fn for each "key":value of a flat object spanning exactly s[start, end). */
typedef int (*field_fn)(void *ctx, const uint8_t *key, size_t klen, const uint8_t *v, size_t vlen);

static int walk_flat(const uint8_t *s, size_t start, size_t end, field_fn fn, void *ctx)
{
    cursor c;
    c.s = s;
    c.n = end;
    c.i = start;
    if (c.i >= c.n || s[c.i++] != '{')
        return -1;
    for (;;) {
        size_t k0 = c.i + 1, klen, v0;
        if (skip_string(&c) != 0)
            return -1;
        klen = c.i - 1 - k0;
        if (c.i >= c.n || s[c.i++] != ':')
            return -1;
        v0 = c.i;
        if (skip_value(&c, 1) != 0 || c.i >= c.n || fn(ctx, s + k0, klen, s + v0, c.i - v0) != 0)
            return -1;
        if (s[c.i] == ',') {
            c.i++;
            continue;
        }
        return s[c.i] == '}' && c.i + 1 == end ? 0 : -1;
    }
}

/* A JSON string value of lowercase hex digits, exactly 2*n of them, decoded into out. */
static int hex_value(const uint8_t *v, size_t vlen, size_t n, uint8_t *out)
{
    size_t i;
    if (vlen != 2 * n + 2 || v[0] != '"' || v[vlen - 1] != '"')
        return -1;
    for (i = 1; i + 1 < vlen; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return -1;
    return ef_hex_decode((const char *)v + 1, n, out);
}

/* A JSON string value of 1..64 id characters ([A-Za-z0-9._-], the protocol's ids) into out[65]. */
static int id_value(const uint8_t *v, size_t vlen, char *out)
{
    size_t i;
    if (vlen < 3 || vlen > 66 || v[0] != '"' || v[vlen - 1] != '"')
        return -1;
    for (i = 1; i + 1 < vlen; i++) {
        uint8_t ch = v[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return -1;
        out[i - 1] = (char)ch;
    }
    out[vlen - 2] = '\0';
    return 0;
}

static int format_is(const uint8_t *v, size_t vlen, const char *fmt)
{
    size_t n = strlen(fmt);
    return vlen == n + 2 && v[0] == '"' && memcmp(v + 1, fmt, n) == 0 && v[vlen - 1] == '"';
}

/* Field bits of a ticket, in the body's (sorted) key order. */
enum {
    T_CAMPAIGN = 1, T_DEVICE = 2, T_FORMAT = 4, T_KEY = 8, T_MODEL = 16, T_SHA = 32, T_SHADOW = 64,
    T_SHADOW_S = 128, T_TRIAL_S = 256, T_ALL = 511
};

typedef struct {
    ef_ticket *t;
    unsigned found;
} ticket_ctx;

static int ticket_field(void *ctx, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    ticket_ctx *x = (ticket_ctx *)ctx;
    ef_ticket *t = x->t;
    unsigned bit;
    int bad;
    if (key_is(k, klen, "campaign"))
        bit = T_CAMPAIGN, bad = id_value(v, vlen, t->campaign);
    else if (key_is(k, klen, "device"))
        bit = T_DEVICE, bad = id_value(v, vlen, t->device);
    else if (key_is(k, klen, "format"))
        bit = T_FORMAT, bad = !format_is(v, vlen, EF_TICKET_FORMAT);
    else if (key_is(k, klen, "key_id"))
        bit = T_KEY, bad = hex_value(v, vlen, 8, t->key_id);
    else if (key_is(k, klen, "model"))
        bit = T_MODEL, bad = parse_u32(v, vlen, &t->model);
    else if (key_is(k, klen, "sha256"))
        bit = T_SHA, bad = hex_value(v, vlen, 32, t->sha256);
    else if (key_is(k, klen, "shadow"))
        bit = T_SHADOW, bad = parse_u32(v, vlen, &t->shadow) != 0 || t->shadow > 1u;
    else if (key_is(k, klen, "shadow_s"))
        bit = T_SHADOW_S, bad = parse_u32(v, vlen, &t->shadow_s);
    else if (key_is(k, klen, "trial_s"))
        bit = T_TRIAL_S, bad = parse_u32(v, vlen, &t->trial_s);
    else
        return -1; /* a field this node does not know: it cannot tell what was authorized */
    if (bad || (x->found & bit))
        return -1;
    x->found |= bit;
    return 0;
}

ef_status ef_ticket_parse(const uint8_t *data, size_t len, ef_ticket *t)
{
    ticket_ctx x;
    if (data == NULL || t == NULL)
        return EF_ERR_ARG;
    memset(t, 0, sizeof *t);
    x.t = t;
    x.found = 0;
    if (frame(data, len, &t->body_off, &t->body_len, t->signature) != 0 ||
        walk_flat(data, t->body_off, (size_t)t->body_off + t->body_len, ticket_field, &x) != 0 || x.found != T_ALL)
        return EF_ERR_MANIFEST;
    return EF_OK;
}

enum { K_FORMAT = 1, K_KEY = 2, K_KEYS = 4, K_SERIAL = 8, K_ALL = 15 };

typedef struct {
    ef_keyset *ks;
    unsigned found;
} keyset_ctx;

/* "keys": hex of (role byte, 32-byte Ed25519 key) per entry, 1..EF_TRUST_MAX entries, one may sign models. */
static int keys_value(const uint8_t *v, size_t vlen, ef_trust *t)
{
    size_t n, i;
    uint8_t any_model = 0;
    if (vlen < 2 || v[0] != '"' || v[vlen - 1] != '"' || (vlen - 2) % 66 != 0)
        return -1;
    for (i = 1; i + 1 < vlen; i++) /* lowercase hex only, as the signer writes it */
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return -1;
    n = (vlen - 2) / 66;
    if (n == 0 || n > EF_TRUST_MAX)
        return -1;
    for (i = 0; i < n; i++) {
        uint8_t entry[33];
        if (ef_hex_decode((const char *)v + 1 + 66 * i, 33, entry) != 0 || entry[0] < 1u || entry[0] > 3u)
            return -1;
        t->roles[i] = entry[0];
        memcpy(t->keys[i], entry + 1, 32);
        any_model |= (uint8_t)(entry[0] & EF_ROLE_MODEL);
    }
    if (!any_model)
        return -1;
    t->n = (uint8_t)n;
    return 0;
}

static int keyset_field(void *ctx, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    keyset_ctx *x = (keyset_ctx *)ctx;
    unsigned bit;
    int bad;
    if (key_is(k, klen, "format"))
        bit = K_FORMAT, bad = !format_is(v, vlen, EF_KEYSET_FORMAT);
    else if (key_is(k, klen, "key_id"))
        bit = K_KEY, bad = hex_value(v, vlen, 8, x->ks->key_id);
    else if (key_is(k, klen, "keys"))
        bit = K_KEYS, bad = keys_value(v, vlen, &x->ks->trust);
    else if (key_is(k, klen, "serial"))
        bit = K_SERIAL, bad = parse_u32(v, vlen, &x->ks->trust.serial);
    else
        return -1;
    if (bad || (x->found & bit))
        return -1;
    x->found |= bit;
    return 0;
}

ef_status ef_keyset_parse(const uint8_t *data, size_t len, ef_keyset *ks)
{
    keyset_ctx x;
    if (data == NULL || ks == NULL)
        return EF_ERR_ARG;
    memset(ks, 0, sizeof *ks);
    x.ks = ks;
    x.found = 0;
    if (frame(data, len, &ks->body_off, &ks->body_len, ks->signature) != 0 ||
        walk_flat(data, ks->body_off, (size_t)ks->body_off + ks->body_len, keyset_field, &x) != 0 ||
        x.found != K_ALL)
        return EF_ERR_MANIFEST;
    return EF_OK;
}
