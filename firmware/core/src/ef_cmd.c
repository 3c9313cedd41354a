/* Bounded reader for protocol v1 `cmd` messages (see ef/cmd.h). */
#include "ef/cmd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} cursor;

static const char *const k_ops[] = {"calibrate", "debug", "reboot", "set_threshold", "ping", "revert"};

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int take(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string without escapes (no v1 cmd string can hold one) into dst[cap]. */
static int read_string(cursor *c, char *dst, size_t cap)
{
    size_t n = 0;
    if (!take(c, '"'))
        return -1;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f || n + 1 >= cap)
            return -1;
        dst[n++] = (char)ch;
    }
    if (c->p >= c->end)
        return -1;
    c->p++;
    dst[n] = '\0';
    return (int)n;
}

/* A JSON number (strict grammar) as a double; *integral set when it has no fraction/exponent. */
static int read_number(cursor *c, double *out, int *integral)
{
    char tmp[40];
    const char *s;
    size_t n;
    char *stop;
    skip_ws(c);
    s = c->p;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return -1;
    if (*c->p == '0')
        c->p++;
    else
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    *integral = 1;
    if (c->p < c->end && *c->p == '.') {
        *integral = 0;
        c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return -1;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        *integral = 0;
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return -1;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    n = (size_t)(c->p - s);
    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *out = strtod(tmp, &stop);
    return stop == tmp + n && isfinite(*out) ? 0 : -1;
}

static int valid_id(const char *s, size_t n)
{
    size_t i;
    if (n < 1 || n > 64)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

ef_status ef_cmd_decode(const char *json, size_t len, ef_cmd *out)
{
    cursor c;
    unsigned seen = 0; /* bits: v seq id op n thr campaign */
    char key[16], str[72];
    if (json == NULL || out == NULL)
        return EF_ERR_ARG;
    memset(out, 0, sizeof *out);
    c.p = json;
    c.end = json + len;
    if (!take(&c, '{'))
        return EF_ERR_SCHEMA;
    if (!take(&c, '}')) {
        do {
            double num;
            int integral, klen = read_string(&c, key, sizeof key), bit = -1;
            if (klen < 0 || !take(&c, ':'))
                return EF_ERR_SCHEMA;
            if (strcmp(key, "id") == 0 || strcmp(key, "op") == 0 || strcmp(key, "campaign") == 0) {
                int slen = read_string(&c, str, sizeof str);
                if (slen < 0)
                    return EF_ERR_SCHEMA;
                if (key[0] != 'o') { /* id and campaign: the same pattern */
                    if (!valid_id(str, (size_t)slen))
                        return EF_ERR_SCHEMA;
                    memcpy(key[0] == 'i' ? out->id : out->campaign, str, (size_t)slen + 1);
                    bit = key[0] == 'i' ? 2 : 6;
                } else {
                    size_t i;
                    for (i = 0; i < sizeof k_ops / sizeof k_ops[0] && strcmp(str, k_ops[i]) != 0; i++)
                        ;
                    if (i == sizeof k_ops / sizeof k_ops[0])
                        return EF_ERR_SCHEMA;
                    out->op = (ef_cmd_op)i;
                    bit = 3;
                }
            } else {
                if (read_number(&c, &num, &integral) != 0)
                    return EF_ERR_SCHEMA;
                if (strcmp(key, "v") == 0 && integral && num == 1.0)
                    bit = 0;
                else if (strcmp(key, "seq") == 0 && integral && num >= 0.0 && num <= 4294967295.0) {
                    out->seq = (uint32_t)num;
                    bit = 1;
                } else if (strcmp(key, "n") == 0 && integral && num >= 1.0 && num <= 100000.0) {
                    out->has_n = 1;
                    out->n = (uint32_t)num;
                    bit = 4;
                } else if (strcmp(key, "thr") == 0 && num > 0.0) {
                    out->has_thr = 1;
                    out->thr = num;
                    bit = 5;
                }
            }
            if (bit < 0 || (seen & (1u << bit)))
                return EF_ERR_SCHEMA; /* unknown key, bad value or duplicate */
            seen |= 1u << bit;
        } while (take(&c, ','));
        if (!take(&c, '}'))
            return EF_ERR_SCHEMA;
    }
    skip_ws(&c);
    if (c.p != c.end || (seen & 0xFu) != 0xFu)
        return EF_ERR_SCHEMA;
    return EF_OK;
}
