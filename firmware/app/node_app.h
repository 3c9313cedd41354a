/* The MCU node application, shared by every board port: the core pipeline per
 * window, protocol v1 messages over the COBS+CRC serial link to a bridge
 * (edgefleet bridge), and the commands calibrate, debug, set_threshold, ping, reboot,
 * commission, commission_end.
 *
 * Commissioning (docs/baseline.md; node_config.baseline set): a node without a valid
 * baseline for its model learns one by itself (results `state: commissioning`, no
 * verdict), then judges each window by the class of its speed (`cls`, `hi_thr`, `hi`;
 * a speed in no class is `uncommissioned`); the record lives in its own flash area
 * (ef/commission.h) and survives resets; after an OTA switch it is kept if the new
 * model has the same feature front end, else the node commissions again. Without
 * node_config.baseline the node judges by the model's own normalization and threshold.
 *
 * Link messages (one per ef_serial frame) are "KIND BODY": node -> bridge
 * `boot` (no body: "I am up, say hello"; repeated every 500 ms until the hello), `will` (the status to register as the MQTT
 * last will), `status`, `result` (or `summary` in summary mode), `debug` (protocol v1 JSON bodies); bridge -> node
 * `hello MS` (the bridge's clock in ms since the epoch: the node answers with
 * will + birth and starts its results) and `cmd JSON`; with OTA, the messages of
 * node_ota.h; the link itself (framing, the bridge's clock) is node_link.h. See docs/mcu.md. */
#ifndef EF_NODE_APP_H
#define EF_NODE_APP_H
#include <stddef.h>
#include <stdint.h>

#include "ef/diagnosis.h"
#include "node_ota.h"

/* Fill dst with the next n samples (g) and *rpm with the machine's speed during them (rev/min;
 * 0 when unknown or the board has no speed input). 0 on success, < 0 when the data has ended.
 * A v2 front end (feature kind 2) streams its window of about one second in pieces (up to half
 * an HF segment each, straight into the pipeline's segment buffer): the first piece of a window
 * gets rpm, the others rpm == NULL (the same window, the same speed). */
typedef int (*node_source)(void *ctx, float *dst, uint32_t n, float *rpm);

/* Commissioning's flash areas (ef/commission.h): the records' (mapped; two copies of at least
 * 16 + EF_BASELINE_RECORD_SIZE(NODE_IO_MAX, 8) bytes each) and the rows' (8 class regions). */
typedef struct {
    const ef_flash *records, *rows;
} node_baseline_config;

typedef struct {
    const uint8_t *artifact; size_t artifact_len; /* in flash, read in place */
    double fs;
    node_source source; void *source_ctx;
    const char *boot;         /* fixed boot id (tests), or NULL to draw one */
    int has_t0; uint64_t t0;  /* fixed timeline ts = t0 + start/fs (parity with ef_node); no hello wait */
    int paced;                /* one window per window length of board time, else back to back */
    uint32_t max_windows;     /* stop after this many (0: run until the source ends) */
    const node_ota_config *ota; /* two model slots and OTA (node_ota.h), or NULL: run `artifact` */
    const node_baseline_config *baseline; /* commissioning, or NULL: the model's own threshold */
    int has_speed;            /* the source reports each window's speed (commission by rpm); without it a
                               * v2 node classes windows by the speed its front end estimates */
    const ef_bearing *bearing; /* the machine's bearing (ef_bearing_set), or NULL: the why's hint names
                                * a bearing defect only with it */
    uint32_t summary_every_ms; /* summary mode: one `summary` per period of this many ms (1000-3600000, aligned
                                * to multiples of it) instead of a `result` per window; 0: results */
} node_config;

/* Runs the node; returns an exit code (0: the source ended or max_windows reached). */
int node_run(const node_config *cfg);
#endif
