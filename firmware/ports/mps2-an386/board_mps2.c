/* MPS2 AN386 board layer (as QEMU 7.2 models it): SysTick at the 25 MHz
 * system clock for time, CMSDK APB UART0 (interrupt-driven receive into a ring)
 * for the serial link, semihosting for logs and the exit code. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "ef/platform.h"
#include "semihost.h"

#define SYSCLK_HZ 25000000u
#define REG(a) (*(volatile uint32_t *)(a))
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ISPR0 REG(0xE000E200u)
#define SCB_AIRCR REG(0xE000ED0Cu)
#define UART0 0x40004000u /* CMSDK APB UART: DATA, STATE, CTRL, INTSTATUS/INTCLEAR, BAUDDIV */
#define UART_DATA REG(UART0 + 0x00u)
#define UART_STATE REG(UART0 + 0x04u)
#define UART_CTRL REG(UART0 + 0x08u)
#define UART_INT REG(UART0 + 0x0Cu)
#define UART_BAUDDIV REG(UART0 + 0x10u)

static volatile uint32_t g_ms;
static volatile uint8_t g_rx[256];
static volatile uint16_t g_rx_head, g_rx_tail;

void SysTick_Handler(void)
{
    g_ms++;
}

/* The RX interrupt is cleared before the UART is drained, so a byte that lands while the
 * handler runs raises it again (cleared afterwards, it would sit unread and stall the link).
 * A full ring leaves the byte in the UART and stops RX interrupts until the main loop
 * has read (board_uart_getc): QEMU's UART model then holds the sender back, so a burst
 * (an OTA piece arriving while a window is processed) is delayed, never lost. */
void Uart0Rx_Handler(void)
{
    UART_INT = 2u; /* clear RX interrupt */
    while (UART_STATE & 2u) { /* RX full */
        uint16_t next = (uint16_t)((g_rx_head + 1u) % sizeof g_rx);
        if (next == g_rx_tail) {
            UART_CTRL &= ~8u; /* paused: RX interrupt off (no byte can arrive: RX is full) */
            UART_INT = 2u;
            break;
        }
        g_rx[g_rx_head] = (uint8_t)UART_DATA;
        g_rx_head = next;
    }
}

void board_init(void)
{
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    UART_BAUDDIV = SYSCLK_HZ / 115200u;
    UART_CTRL = 1u | 2u | 8u; /* TX, RX, RX interrupt */
    NVIC_ISER0 = 1u;          /* IRQ 0: UART0 RX */
}

uint32_t ef_platform_ticks_ms(void)
{
    return g_ms;
}

#define SCB_ICSR REG(0xE000ED04u)

/* Monotonic: a counter that has reloaded while its SysTick interrupt is still pending
 * (taken late, which QEMU does under load) would otherwise step back by 1 ms. */
uint32_t board_us(void)
{
    static uint32_t last;
    uint32_t ms, v, us;
    int pending;
    do { /* a consistent (ms, counter, pending) triple */
        ms = g_ms;
        v = SYST_CVR;
        pending = (SCB_ICSR >> 26) & 1u; /* PENDSTSET */
    } while (ms != g_ms);
    if (pending && v > SYST_RVR / 2u)
        ms++;
    us = ms * 1000u + (SYST_RVR - v) / (SYSCLK_HZ / 1000000u);
    if ((int32_t)(us - last) < 0) /* a pending tick older than half a period */
        us = last;
    last = us;
    return us;
}

int board_uart_getc(void)
{
    int b;
    if (g_rx_tail == g_rx_head)
        return -1;
    b = g_rx[g_rx_tail];
    g_rx_tail = (uint16_t)((g_rx_tail + 1u) % sizeof g_rx);
    if (!(UART_CTRL & 8u)) { /* paused with room again: re-arm and take the waiting byte */
        UART_CTRL |= 8u;
        NVIC_ISPR0 = 1u;
    }
    return b;
}

void board_uart_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        while (UART_STATE & 1u) /* TX full */
            ;
        UART_DATA = data[i];
    }
}

int ef_platform_serial_write(const uint8_t *data, size_t len)
{
    board_uart_write(data, len);
    return (int)len;
}

int ef_platform_serial_read(uint8_t *buf, size_t cap)
{
    size_t n = 0;
    int b;
    while (n < cap && (b = board_uart_getc()) >= 0)
        buf[n++] = (uint8_t)b;
    return (int)n;
}

void ef_platform_log(const char *line)
{
    sh_puts(line);
    sh_puts("\n");
}

void board_idle(void)
{
    __asm__ volatile("wfi");
}

uint32_t board_entropy(void)
{
    return sh_time() * 2654435761u ^ SYST_CVR ^ (g_ms << 16);
}

extern uint8_t _retained_start[], _retained_end[]; /* the linker script: the top of RAM */

void *board_retained(size_t *len)
{
    *len = (size_t)(_retained_end - _retained_start);
    return _retained_start;
}

void board_reset(void)
{
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u; /* SYSRESETREQ */
    for (;;)
        ;
}

extern uint32_t _ebss, _estack;

uint32_t board_stack_used(void)
{
    const uint32_t *p = &_ebss;
    while (p < &_estack && *p == 0xA5A5A5A5u)
        p++;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void board_fatal(const char *why, int code)
{
    sh_puts("fatal: ");
    sh_puts(why);
    sh_puts("\n");
    sh_exit(code);
}

/* newlib-nano's printf("%g") allocates a few hundred bytes once (dtoa): a small
 * fixed heap, counted in .bss, instead of an unbounded one. */
static uint8_t g_heap[640] __attribute__((aligned(8)));
static size_t g_heap_used;
void *_sbrk(ptrdiff_t incr)
{
    void *p;
    if (incr < 0 || (size_t)incr > sizeof g_heap - g_heap_used)
        return (void *)-1;
    p = g_heap + g_heap_used;
    g_heap_used += (size_t)incr;
    return p;
}
