/* The vibration sensor: an IIS3DWB (ST, 3-axis, 26.667 kHz output rate, flat to 6 kHz) on SPI. */
#ifndef EF_SENSOR_H
#define EF_SENSOR_H
#include <stdint.h>

#define SENSOR_FS_HZ 26667.0 /* IIS3DWB output data rate (datasheet: 26.667 kHz) */

void board_spi_select(int on);
uint8_t board_spi_xfer(uint8_t out);

int sensor_init(void);                 /* 0, or -1 when WHO_AM_I is wrong */
/* n consecutive samples of one axis, in g; *rpm 0: the board has no speed input (node_source) */
int sensor_read(void *ctx, float *dst, uint32_t n, float *rpm);
uint32_t sensor_noise(void);           /* low bits of a few samples */
#endif
