/* STM32F446 reset and vector table (RM0390 table 38): 16 system exceptions and
 * IRQ 0..96; only SysTick and USART2 (IRQ 38) have handlers. */
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
    SCB_CPACR |= 0xFu << 20; /* the FPU (CP10, CP11) */
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
void USART2_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));

#define N_IRQ 97
typedef void (*vector)(void);
__attribute__((section(".isr_vector"), used)) const vector g_vectors[16 + N_IRQ] = {
    [0] = (vector)(uintptr_t)&_estack,
    [1] = (vector)Reset_Handler,
    [2] = Default_Handler, /* NMI */
    [3] = Fault_Handler, [4] = Fault_Handler, [5] = Fault_Handler, [6] = Fault_Handler,
    [11] = Default_Handler, /* SVC */
    [12] = Default_Handler, /* debug monitor */
    [14] = Default_Handler, /* PendSV */
    [15] = SysTick_Handler,
    [16 + 38] = USART2_IRQHandler,
};
