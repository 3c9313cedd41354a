/* Arm semihosting calls (ARM DUI0471, "Semihosting operations"), as QEMU implements them. */
#include "semihost.h"

#include <string.h>

static int sh_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return (int)r0;
}

int sh_open(const char *path, uint32_t mode)
{
    uint32_t a[3] = {(uint32_t)(uintptr_t)path, mode, (uint32_t)strlen(path)};
    return sh_call(0x01, a);
}

int sh_close(int fd)
{
    uint32_t a[1] = {(uint32_t)fd};
    return sh_call(0x02, a);
}

size_t sh_read(int fd, void *buf, size_t len)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    int left = sh_call(0x06, a); /* bytes NOT read */
    return left < 0 || (size_t)left > len ? 0 : len - (size_t)left;
}

size_t sh_write(int fd, const void *buf, size_t len)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    int left = sh_call(0x05, a); /* bytes NOT written */
    return left < 0 || (size_t)left > len ? 0 : len - (size_t)left;
}

int sh_seek(int fd, uint32_t pos)
{
    uint32_t a[2] = {(uint32_t)fd, pos};
    return sh_call(0x0A, a);
}

long sh_flen(int fd)
{
    uint32_t a[1] = {(uint32_t)fd};
    return (long)sh_call(0x0C, a);
}

void sh_puts(const char *s)
{
    sh_call(0x04, s);
}

int sh_cmdline(char *buf, size_t cap)
{
    uint32_t a[2] = {(uint32_t)(uintptr_t)buf, (uint32_t)cap};
    return sh_call(0x15, a) == 0 ? 0 : -1;
}

uint32_t sh_time(void)
{
    return (uint32_t)sh_call(0x11, NULL);
}

void sh_exit(int code)
{
    uint32_t a[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    for (;;)
        sh_call(0x20, a); /* SYS_EXIT_EXTENDED: the code becomes QEMU's exit status */
}

int sh_argv(char *line, char **argv, int max)
{
    int n = 0;
    char *p = line;
    while (*p && n < max) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        argv[n++] = p;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        *p++ = '\0';
    return *p ? -1 : n; /* -1: more words than max */
}
