/* The node's serial link to its bridge (edgefleet bridge), for node_app.c and node_ota.c:
 * link messages "KIND BODY", one ef_serial frame each (COBS + CRC-32, the core's
 * ef/serial.h), over the board's UART (board.h); and the bridge's clock, which the node
 * learns from the bridge's `hello MS` and runs on from the platform's millisecond tick
 * (ef_platform_ticks_ms). The message kinds are listed in node_app.h and node_ota.h;
 * docs/mcu.md describes the link. */
#ifndef NODE_LINK_H
#define NODE_LINK_H
#include <stddef.h>
#include <stdint.h>

/* At the node's start: no frame partly received, no hello heard yet. */
void node_link_init(void);

/* Stream one link message as one ef_serial frame without a frame buffer; body NULL: no body. */
void node_link_send(const char *kind, const char *body, size_t len);

/* One message streamed in pieces (what node_link_send does in one call): begin with its
 * kind, put the body (the space after the kind included) in any number of pieces, end.
 * node_link_spoil() before the end makes every receiver drop the frame. */
void node_link_begin(const char *kind);
void node_link_put(const void *data, size_t len);
void node_link_spoil(void);
void node_link_end(void);

/* Reads the UART until a frame is complete: its payload length (>= 0) and *payload (valid
 * until the next call); -1 when no complete frame is pending. Bad frames are dropped. */
int node_link_poll(const uint8_t **payload);

/* The bridge said `hello MS`: its clock read bridge_ms at board tick `tick` (ms). */
void node_link_sync(uint64_t bridge_ms, uint32_t tick);
/* The bridge's clock now (ms since the epoch): bridge_ms of the last hello + board ms since. */
uint64_t node_link_now_ms(void);
#endif
