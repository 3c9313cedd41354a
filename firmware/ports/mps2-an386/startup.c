/* Cortex-M4F reset and vector table for the MPS2 AN386 (and any M4 with the
 * same core peripherals): copy .data, zero .bss, enable the FPU, run main(). */
#include <stdint.h>

#include "board.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

__attribute__((noreturn)) void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++)
        *dst = 0;
    { /* paint the stack below this frame, so its high-water mark can be measured */
        uint32_t *sp;
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        for (dst = &_ebss; dst < sp - 16; dst++)
            *dst = 0xA5A5A5A5u;
    }
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11 full access: the FPU */
    __asm__ volatile("dsb\n isb" ::: "memory");
    board_fatal("main returned", main());
}

static void Fault_Handler(void)
{
    board_fatal("hard fault", 3);
}

static void Default_Handler(void)
{
    board_fatal("unexpected interrupt", 4);
}

void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void Uart0Rx_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*vector)(void);
__attribute__((section(".isr_vector"), used)) const vector g_vectors[16 + 2] = {
    (vector)(uintptr_t)&_estack, (vector)Reset_Handler,
    Default_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, /* NMI..UsageFault */
    0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,        /* SVC, Debug, PendSV */
    SysTick_Handler,
    Uart0Rx_Handler, /* IRQ 0: UART0 RX on the MPS2 (and USART2 is elsewhere on an STM32: its port has its own table) */
    Default_Handler,
};
