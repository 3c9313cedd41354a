/* IIS3DWB driver over SPI (mode 3, read = address | 0x80, auto-increment IF_INC).
 * Registers (IIS3DWB datasheet, section 8): WHO_AM_I 0x0F = 0x7B; CTRL1_XL 0x10
 * (XL_EN = 101b in bits 7:5 turns the accelerometer on at 26.667 kHz, FS_XL 00 = +-2 g);
 * CTRL3_C 0x12 (BDU bit 6, IF_INC bit 2, SW_RESET bit 0); STATUS_REG 0x1E (XLDA bit 0);
 * OUTZ_L_A 0x2C / OUTZ_H_A 0x2D. Sensitivity at +-2 g: 0.061 mg/LSB.
 * The node takes windows as snapshots: it polls XLDA for n consecutive samples of the
 * axis normal to the mounting surface (Z), then processes them while the sensor runs on. */
#include "sensor.h"

#include "board.h"

#define WHO_AM_I 0x0Fu
#define CTRL1_XL 0x10u
#define CTRL3_C 0x12u
#define STATUS_REG 0x1Eu
#define OUTZ_L_A 0x2Cu
#define G_PER_LSB (0.061e-3f)

static void wr(uint8_t reg, uint8_t v)
{
    board_spi_select(1);
    board_spi_xfer(reg & 0x7Fu);
    board_spi_xfer(v);
    board_spi_select(0);
}

static uint8_t rd(uint8_t reg)
{
    uint8_t v;
    board_spi_select(1);
    board_spi_xfer(reg | 0x80u);
    v = board_spi_xfer(0);
    board_spi_select(0);
    return v;
}

int sensor_init(void)
{
    uint32_t t;
    if (rd(WHO_AM_I) != 0x7Bu)
        return -1;
    wr(CTRL3_C, 0x01u); /* software reset */
    for (t = board_us(); board_us() - t < 1000u;)
        ;
    wr(CTRL3_C, (1u << 6) | (1u << 2)); /* BDU, IF_INC */
    wr(CTRL1_XL, 0xA0u);                /* XL_EN = 101: 26.667 kHz, +-2 g */
    return 0;
}

static int16_t read_z(void)
{
    uint8_t lo, hi;
    while (!(rd(STATUS_REG) & 1u)) /* XLDA: a new sample */
        ;
    board_spi_select(1);
    board_spi_xfer(OUTZ_L_A | 0x80u);
    lo = board_spi_xfer(0);
    hi = board_spi_xfer(0);
    board_spi_select(0);
    return (int16_t)(uint16_t)((uint16_t)hi << 8 | lo);
}

int sensor_read(void *ctx, float *dst, uint32_t n, float *rpm)
{
    uint32_t i;
    (void)ctx;
    if (rpm)
        *rpm = 0.0f; /* this board has no speed input: one any-speed class */
    for (i = 0; i < n; i++)
        dst[i] = (float)read_z() * G_PER_LSB;
    return 0;
}

uint32_t sensor_noise(void)
{
    uint32_t e = 0, i;
    for (i = 0; i < 32; i++)
        e = (e << 1 | (e >> 31)) ^ (uint32_t)(uint16_t)read_z();
    return e;
}
