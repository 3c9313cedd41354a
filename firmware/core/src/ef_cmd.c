/* Bounded reader for protocol v1 `cmd` messages (see ef/cmd.h). */
#include "ef/cmd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} cursor;

static const char *const k_ops[] = {"calibrate", "debug", "reboot", "set_threshold", "ping", "revert",
                                    "commission", "commission_end"};
#define N_OPS (sizeof k_ops / sizeof k_ops[0])

const char *ef_cmd_op_str(ef_cmd_op op) { return (size_t)op < N_OPS ? k_ops[op] : "unknown"; }

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

/* Keys and the bit each sets once seen (v, seq, id, op are required). */
enum { K_V, K_SEQ, K_ID, K_OP, K_N, K_THR, K_CAMPAIGN, K_WINDOWS, K_RPM, K_REQUIRED = 0xF };
static const char *const k_keys[] = {"v", "seq", "id", "op", "n", "thr", "campaign", "windows", "rpm"};

static int known_key(const char *key)
{
    size_t i;
    for (i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++)
        if (strcmp(key, k_keys[i]) == 0)
            return 1;
    return 0;
}

/* A string value: id and campaign (one pattern) or op (the enum). The key's bit, or -1 and *err. */
static int string_field(cursor *c, const char *key, ef_cmd *out, const char **err)
{
    char str[72];
    size_t i;
    int slen = read_string(c, str, sizeof str);
    if (slen < 0) {
        *err = "a string value is malformed or too long";
        return -1;
    }
    if (key[0] == 'o') {
        for (i = 0; i < N_OPS && strcmp(str, k_ops[i]) != 0; i++)
            ;
        if (i == N_OPS) {
            *err = "op: not an operation of the schema";
            return -1;
        }
        out->op = (ef_cmd_op)i;
        return K_OP;
    }
    if (!valid_id(str, (size_t)slen)) {
        *err = key[0] == 'i' ? "id: not 1-64 of [A-Za-z0-9._-]" : "campaign: not 1-64 of [A-Za-z0-9._-]";
        return -1;
    }
    memcpy(key[0] == 'i' ? out->id : out->campaign, str, (size_t)slen + 1);
    return key[0] == 'i' ? K_ID : K_CAMPAIGN;
}

/* A number value, typed and ranged by its key. The key's bit, or -1 and *err. */
static int number_field(cursor *c, const char *key, ef_cmd *out, const char **err)
{
    double num;
    int integral;
    if (read_number(c, &num, &integral) != 0) {
        *err = "a value is not a JSON number";
        return -1;
    }
    if (strcmp(key, "v") == 0) {
        *err = "v: protocol version is not 1";
        return integral && num == 1.0 ? K_V : -1;
    }
    if (strcmp(key, "seq") == 0) {
        *err = "seq: not an integer in 0..4294967295";
        if (!(integral && num >= 0.0 && num <= 4294967295.0))
            return -1;
        out->seq = (uint32_t)num;
        return K_SEQ;
    }
    if (strcmp(key, "n") == 0) {
        *err = "n: not an integer in 1..100000";
        if (!(integral && num >= 1.0 && num <= 100000.0))
            return -1;
        out->has_n = 1;
        out->n = (uint32_t)num;
        return K_N;
    }
    if (strcmp(key, "thr") == 0) {
        *err = "thr: not a number > 0";
        if (!(num > 0.0))
            return -1;
        out->has_thr = 1;
        out->thr = num;
        return K_THR;
    }
    if (strcmp(key, "windows") == 0) {
        *err = "windows: not an integer in 16..4096";
        if (!(integral && num >= 16.0 && num <= 4096.0))
            return -1;
        out->has_windows = 1;
        out->windows = (uint32_t)num;
        return K_WINDOWS;
    }
    if (strcmp(key, "rpm") == 0) {
        *err = "rpm: not a number in (0, 1000000]";
        if (!(num > 0.0 && num <= 1e6))
            return -1;
        out->has_rpm = 1;
        out->rpm = num;
        return K_RPM;
    }
    *err = "unknown key"; /* not reached: the caller knows every key */
    return -1;
}

static ef_status refuse(ef_cmd *out, const char *why)
{
    out->error = why;
    return EF_ERR_SCHEMA;
}

ef_status ef_cmd_decode(const char *json, size_t len, ef_cmd *out)
{
    cursor c;
    unsigned seen = 0; /* one bit per key (K_*) */
    char key[16];
    const char *err = NULL;
    if (json == NULL || out == NULL)
        return EF_ERR_ARG;
    memset(out, 0, sizeof *out);
    c.p = json;
    c.end = json + len;
    if (!take(&c, '{'))
        return refuse(out, "not a JSON object");
    if (!take(&c, '}')) {
        do {
            int bit;
            if (read_string(&c, key, sizeof key) < 0 || !known_key(key))
                return refuse(out, "unknown key");
            if (!take(&c, ':'))
                return refuse(out, "a key without a value");
            if (strcmp(key, "id") == 0 || strcmp(key, "op") == 0 || strcmp(key, "campaign") == 0)
                bit = string_field(&c, key, out, &err);
            else
                bit = number_field(&c, key, out, &err);
            if (bit < 0)
                return refuse(out, err);
            if (seen & (1u << bit))
                return refuse(out, "a key appears twice");
            seen |= 1u << bit;
        } while (take(&c, ','));
        if (!take(&c, '}'))
            return refuse(out, "the object is not closed");
    }
    skip_ws(&c);
    if (c.p != c.end)
        return refuse(out, "text after the object");
    if ((seen & K_REQUIRED) != K_REQUIRED)
        return refuse(out, "v, seq, id and op are required");
    return EF_OK;
}
