/* The node's serial link and the bridge's clock (see node_link.h). */
#include "node_link.h"

#include <string.h>

#include "board.h"
#include "ef/platform.h"
#include "ef/serial.h"

static ef_serial_tx g_tx;
static ef_serial_rx g_rx;
static uint8_t g_rx_buf[320]; /* one received frame: a cmd is < 200 B, an OTA piece < 300 B */
static uint64_t g_bridge_ms;  /* bridge time at the last hello */
static uint32_t g_bridge_tick; /* board ms at the last hello */

static void to_uart(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    board_uart_write(data, len);
}

void node_link_init(void)
{
    ef_serial_rx_init(&g_rx, g_rx_buf, sizeof g_rx_buf);
    g_bridge_ms = 0;
    g_bridge_tick = 0;
}

void node_link_begin(const char *kind)
{
    ef_serial_tx_begin(&g_tx, to_uart, NULL);
    ef_serial_tx_put(&g_tx, kind, strlen(kind));
}

void node_link_put(const void *data, size_t len) { ef_serial_tx_put(&g_tx, data, len); }

void node_link_spoil(void) { ef_serial_tx_spoil(&g_tx); }

void node_link_end(void) { ef_serial_tx_end(&g_tx); }

void node_link_send(const char *kind, const char *body, size_t len)
{
    node_link_begin(kind);
    if (body) {
        node_link_put(" ", 1);
        node_link_put(body, len);
    }
    node_link_end();
}

int node_link_poll(const uint8_t **payload)
{
    int b, n;
    while ((b = board_uart_getc()) >= 0)
        if ((n = ef_serial_rx_byte(&g_rx, (uint8_t)b, payload)) >= 0)
            return n;
    return -1;
}

void node_link_sync(uint64_t bridge_ms, uint32_t tick)
{
    g_bridge_ms = bridge_ms;
    g_bridge_tick = tick;
}

uint64_t node_link_now_ms(void) { return g_bridge_ms + (uint32_t)(ef_platform_ticks_ms() - g_bridge_tick); }
