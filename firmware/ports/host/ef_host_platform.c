/* POSIX implementation of ef/platform.h: clock_gettime, stderr, stdin/stdout. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "ef/platform.h"

uint32_t ef_platform_ticks_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void ef_platform_log(const char *line) { fprintf(stderr, "%s\n", line); }

int ef_platform_serial_write(const uint8_t *data, size_t len)
{
    return (int)write(STDOUT_FILENO, data, len);
}

int ef_platform_serial_read(uint8_t *buf, size_t cap)
{
    ssize_t n = read(STDIN_FILENO, buf, cap);
    return n == 0 ? -1 : (int)n;
}
