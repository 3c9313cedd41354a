/* What the MCU node application needs from a board, beyond ef/platform.h.
 * Implemented by board_mps2.c (QEMU) and by each real-board port. */
#ifndef EF_BOARD_H
#define EF_BOARD_H
#include <stddef.h>
#include <stdint.h>

void board_init(void);
uint32_t board_us(void);           /* free-running microseconds (wraps) */
int board_uart_getc(void);         /* next received byte, or -1 when none is pending */
void board_uart_write(const uint8_t *data, size_t len); /* blocking */
void board_idle(void);             /* sleep until the next interrupt */
uint32_t board_entropy(void);      /* a few unpredictable bits for the boot id */
__attribute__((noreturn)) void board_reset(void);
/* A few bytes of RAM a warm reset (board_reset, a watchdog) leaves as they were and the startup
 * code does not touch; their content after a power cut is garbage. NULL: the board has none. */
void *board_retained(size_t *len);
uint32_t board_stack_used(void);  /* high-water mark of the painted stack, bytes */
__attribute__((noreturn)) void board_fatal(const char *why, int code);
#endif
