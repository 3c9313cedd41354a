/* ef_serial encode|decode: the serial framing over stdin/stdout.
 *   encode: stdin holds records (u16 LE length + payload); stdout gets the framed stream.
 *   decode: stdin is a raw byte stream (noise allowed); stdout gets the good
 *           payloads as records; stderr a JSON summary {"frames":n,"dropped":m}.
 * Payloads up to 4096 bytes. */
#include <stdio.h>
#include <string.h>

#include "ef/platform.h"
#include "ef/serial.h"

#define MAX_PAYLOAD 4096u

static uint8_t g_rxbuf[EF_SERIAL_ENCODED_MAX(MAX_PAYLOAD)];

static int encode(void)
{
    uint8_t hdr[2], payload[MAX_PAYLOAD], out[EF_SERIAL_ENCODED_MAX(MAX_PAYLOAD)];
    while (fread(hdr, 1, 2, stdin) == 2) {
        size_t len = (size_t)(hdr[0] | hdr[1] << 8), n;
        if (len > MAX_PAYLOAD || fread(payload, 1, len, stdin) != len) {
            fprintf(stderr, "error: bad record\n");
            return 1;
        }
        n = ef_serial_encode(payload, len, out, sizeof out);
        if (n == 0 || fwrite(out, 1, n, stdout) != n)
            return 1;
    }
    return 0;
}

static int decode(void)
{
    ef_serial_rx rx;
    uint8_t chunk[512];
    int got, i;
    ef_serial_rx_init(&rx, g_rxbuf, sizeof g_rxbuf);
    /* the board's serial link: stdin on the host port */
    while ((got = ef_platform_serial_read(chunk, sizeof chunk)) >= 0) {
        for (i = 0; i < got; i++) {
            const uint8_t *p;
            int n = ef_serial_rx_byte(&rx, chunk[i], &p);
            if (n >= 0) {
                uint8_t hdr[2] = {(uint8_t)(n & 0xFF), (uint8_t)(n >> 8)};
                fwrite(hdr, 1, 2, stdout);
                fwrite(p, 1, (size_t)n, stdout);
            }
        }
    }
    fprintf(stderr, "{\"frames\":%u,\"dropped\":%u}\n", (unsigned)rx.frames, (unsigned)rx.dropped);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "encode") == 0)
        return encode();
    if (argc == 2 && strcmp(argv[1], "decode") == 0)
        return decode();
    fprintf(stderr, "usage: ef_serial encode|decode < in > out\n");
    return 1;
}
