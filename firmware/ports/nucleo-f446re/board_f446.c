/* NUCLEO-F446RE board layer, registers from RM0390 (STM32F446xx reference manual):
 *   clock   HSI 16 MHz -> PLL (M=16, N=336, P=2) = 168 MHz SYSCLK, APB1 42 MHz, APB2 84 MHz,
 *           flash 5 wait states, voltage scale 1 (RM0390 3.4.1, 5.1.4, 6.3.2-6.3.3)
 *   serial  USART2 on PA2/PA3 (AF7) = the ST-LINK virtual COM port, 115200 8N1,
 *           receive by interrupt (IRQ 38) into a ring (RM0390 25.6)
 *   sensor  SPI1 on PA5 SCK / PA6 MISO / PA7 MOSI (AF5), chip select PB6 (Arduino D13/D12/D11/D10),
 *           mode 3, 84 MHz / 16 = 5.25 MHz (RM0390 26.7), to an IIS3DWB vibration sensor
 *   time    SysTick at 168 MHz, 1 ms interrupt */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "ef/platform.h"
#include "sensor.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SYSCLK_HZ 168000000u
#define APB1_HZ 42000000u
/* RCC (0x40023800) */
#define RCC_CR REG(0x40023800u)
#define RCC_PLLCFGR REG(0x40023804u)
#define RCC_CFGR REG(0x40023808u)
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
#define RCC_APB2ENR REG(0x40023844u)
#define FLASH_ACR REG(0x40023C00u)
#define PWR_CR REG(0x40007000u)
/* GPIO ports A (0x40020000) and B (0x40020400) */
#define GPIO_MODER(p) REG((p) + 0x00u)
#define GPIO_OSPEEDR(p) REG((p) + 0x08u)
#define GPIO_BSRR(p) REG((p) + 0x18u)
#define GPIO_AFRL(p) REG((p) + 0x20u)
#define GPIOA 0x40020000u
#define GPIOB 0x40020400u
/* USART2 (0x40004400) */
#define USART2_SR REG(0x40004400u)
#define USART2_DR REG(0x40004404u)
#define USART2_BRR REG(0x40004408u)
#define USART2_CR1 REG(0x4000440Cu)
/* SPI1 (0x40013000) */
#define SPI1_CR1 REG(0x40013000u)
#define SPI1_SR REG(0x40013008u)
#define SPI1_DR REG(0x4001300Cu)
/* core */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define NVIC_ISER1 REG(0xE000E104u)
#define SCB_AIRCR REG(0xE000ED0Cu)

static volatile uint32_t g_ms;
static volatile uint8_t g_rx[256];
static volatile uint16_t g_rx_head, g_rx_tail;

void SysTick_Handler(void)
{
    g_ms++;
}

void USART2_IRQHandler(void)
{
    uint32_t sr = USART2_SR;
    if (sr & ((1u << 5) | (1u << 3))) { /* RXNE or overrun: reading DR clears both */
        uint8_t b = (uint8_t)USART2_DR;
        uint16_t next = (uint16_t)((g_rx_head + 1u) % sizeof g_rx);
        if (next != g_rx_tail) {
            g_rx[g_rx_head] = b;
            g_rx_head = next;
        }
    }
}

static void pin_af(uint32_t port, uint32_t pin, uint32_t af)
{
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2 * pin))) | (2u << (2 * pin));
    GPIO_OSPEEDR(port) |= 2u << (2 * pin); /* fast */
    GPIO_AFRL(port) = (GPIO_AFRL(port) & ~(0xFu << (4 * pin))) | (af << (4 * pin));
}

static void clock_168mhz(void)
{
    RCC_APB1ENR |= 1u << 28;                 /* PWREN */
    PWR_CR |= 3u << 14;                      /* VOS = scale 1 */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10); /* 5 WS, prefetch, I- and D-cache */
    RCC_PLLCFGR = 16u | (336u << 6) | (0u << 16) | (0u << 22) | (7u << 24); /* M, N, P=2, HSI, Q=7 */
    RCC_CR |= 1u << 24;                      /* PLLON */
    while (!(RCC_CR & (1u << 25)))           /* PLLRDY */
        ;
    RCC_CFGR = (RCC_CFGR & ~0xFCF3u) | (5u << 10) | (4u << 13) | 2u; /* APB1 /4, APB2 /2, SW = PLL */
    while (((RCC_CFGR >> 2) & 3u) != 2u)
        ;
}

void board_init(void)
{
    clock_168mhz();
    RCC_AHB1ENR |= 3u;       /* GPIOA, GPIOB */
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    RCC_APB2ENR |= 1u << 12; /* SPI1 */
    pin_af(GPIOA, 2, 7);
    pin_af(GPIOA, 3, 7);
    USART2_BRR = (APB1_HZ + 115200u / 2u) / 115200u; /* oversampling 16: BRR = fck / baud */
    USART2_CR1 = (1u << 13) | (1u << 5) | (1u << 3) | (1u << 2); /* UE, RXNEIE, TE, RE */
    NVIC_ISER1 = 1u << (38 - 32);
    pin_af(GPIOA, 5, 5);
    pin_af(GPIOA, 6, 5);
    pin_af(GPIOA, 7, 5);
    GPIO_BSRR(GPIOB) = 1u << 6; /* CS high */
    GPIO_MODER(GPIOB) = (GPIO_MODER(GPIOB) & ~(3u << 12)) | (1u << 12); /* PB6 output */
    /* master, CPOL=1 CPHA=1, fPCLK/16, software NSS held high, enabled */
    SPI1_CR1 = (1u << 0) | (1u << 1) | (1u << 2) | (3u << 3) | (1u << 8) | (1u << 9) | (1u << 6);
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u;
}

void board_spi_select(int on)
{
    GPIO_BSRR(GPIOB) = on ? (1u << (6 + 16)) : (1u << 6);
}

uint8_t board_spi_xfer(uint8_t out)
{
    while (!(SPI1_SR & 2u)) /* TXE */
        ;
    *(volatile uint8_t *)&SPI1_DR = out;
    while (!(SPI1_SR & 1u)) /* RXNE */
        ;
    return (uint8_t)SPI1_DR;
}

uint32_t ef_platform_ticks_ms(void)
{
    return g_ms;
}

#define SCB_ICSR REG(0xE000ED04u)

uint32_t board_us(void) /* monotonic, as board_mps2.c */
{
    static uint32_t last;
    uint32_t ms, v, us;
    int pending;
    do {
        ms = g_ms;
        v = SYST_CVR;
        pending = (SCB_ICSR >> 26) & 1u;
    } while (ms != g_ms);
    if (pending && v > SYST_RVR / 2u)
        ms++;
    us = ms * 1000u + (SYST_RVR - v) / (SYSCLK_HZ / 1000000u);
    if ((int32_t)(us - last) < 0)
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
    return b;
}

void board_uart_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        while (!(USART2_SR & (1u << 7))) /* TXE */
            ;
        USART2_DR = data[i];
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
    (void)line; /* the only serial port carries the framed link: no text log on this board */
}

void board_idle(void)
{
    __asm__ volatile("wfi");
}

uint32_t board_entropy(void)
{
    return sensor_noise() ^ SYST_CVR ^ (g_ms << 20);
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
    SCB_AIRCR = 0x05FA0004u;
    for (;;)
        ;
}

void board_fatal(const char *why, int code)
{
    (void)why;
    (void)code;
    board_reset(); /* a node restarts rather than stop */
}

static uint8_t g_heap[640] __attribute__((aligned(8)));
static size_t g_heap_used;
void *_sbrk(ptrdiff_t incr) /* newlib-nano's printf("%g") needs a few hundred bytes once */
{
    void *p;
    if (incr < 0 || (size_t)incr > sizeof g_heap - g_heap_used)
        return (void *)-1;
    p = g_heap + g_heap_used;
    g_heap_used += (size_t)incr;
    return p;
}
