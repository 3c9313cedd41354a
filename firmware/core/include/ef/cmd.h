/* Decoding of protocol v1 `cmd` messages (server -> node), edgefleet/protocol/cmd.schema.json.
 *
 * A bounded, non-allocating reader for the one flat object the schema allows:
 * every key must be one the schema names, each at most once, with the right type
 * and range (v == 1, seq in [0, 2^32), id 1-64 of [A-Za-z0-9._-], op in the enum,
 * n in [1, 100000], thr a finite number > 0, campaign 1-64 of [A-Za-z0-9._-],
 * windows an integer in [16, 4096], rpm a number in (0, 1e6]); required keys present;
 * nothing after the object. Anything else is EF_ERR_SCHEMA, with `error` naming the
 * first problem (for the node's log), and the node ignores it. */
#ifndef EF_CMD_H
#define EF_CMD_H
#include <stddef.h>
#include <stdint.h>

#include "ef/status.h"

typedef enum {
    EF_OP_CALIBRATE, EF_OP_DEBUG, EF_OP_REBOOT, EF_OP_SET_THRESHOLD, EF_OP_PING, EF_OP_REVERT,
    EF_OP_COMMISSION, EF_OP_COMMISSION_END
} ef_cmd_op;

typedef struct {
    uint32_t seq;
    char id[65];
    ef_cmd_op op;
    int has_n; uint32_t n;
    int has_thr; double thr;
    char campaign[65]; /* revert: the campaign whose model to revert; "" when absent */
    int has_windows; uint32_t windows; /* commission: windows per class */
    int has_rpm; double rpm;           /* commission: the one class around this speed */
    const char *error; /* refused: what was wrong (static text), else NULL */
} ef_cmd;

/* The name of an op, as in the schema's enum. */
const char *ef_cmd_op_str(ef_cmd_op op);

ef_status ef_cmd_decode(const char *json, size_t len, ef_cmd *out);
#endif
