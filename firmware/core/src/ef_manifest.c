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

ef_status ef_manifest_parse(const uint8_t *data, size_t len, ef_manifest *m)
{
    const size_t pre = sizeof k_prefix - 1, mark = sizeof k_mark - 1;
    size_t cut;
    cursor c;
    if (data == NULL || m == NULL)
        return EF_ERR_ARG;
    memset(m, 0, sizeof *m);
    if (((len >> 16) >> 16) != 0 || len < pre + mark + 128 + 2 + 2 || memcmp(data, k_prefix, pre) != 0 ||
        data[len - 2] != '"' || data[len - 1] != '}')
        return EF_ERR_MANIFEST;
    cut = len - 2 - 128 - mark; /* the signature is exactly 128 hex digits */
    if (memcmp(data + cut, k_mark, mark) != 0 ||
        ef_hex_decode((const char *)data + cut + mark, 64, m->signature) != 0)
        return EF_ERR_MANIFEST;
    m->body_off = (uint32_t)pre;
    m->body_len = (uint32_t)(cut - pre);
    c.s = data;
    c.n = cut; /* the body must end exactly at the signature mark */
    c.i = pre;
    if (parse_body(&c, m) != 0 || c.i != cut)
        return EF_ERR_MANIFEST;
    if (m->rows == 0 || m->n_inputs == 0 || m->n_outputs == 0 ||
        (uint64_t)m->st_in_len != 2ull * m->rows * m->n_inputs ||
        (uint64_t)m->st_out_len != 2ull * m->rows * m->n_outputs)
        return EF_ERR_MANIFEST;
    return EF_OK;
}
