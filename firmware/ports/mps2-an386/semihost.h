/* Arm semihosting (bkpt 0xAB): host files, command line and exit code under QEMU.
 * Only the test and benchmark images use it; the node image uses it to read
 * its model and recorded samples, never to talk to the fleet (that is the UART). */
#ifndef EF_SEMIHOST_H
#define EF_SEMIHOST_H
#include <stddef.h>
#include <stdint.h>

#define SH_RB 1u /* "rb" */
#define SH_WB 5u /* "wb" */

int sh_open(const char *path, uint32_t mode);           /* handle, or -1 */
int sh_close(int fd);
size_t sh_read(int fd, void *buf, size_t len);          /* bytes read */
size_t sh_write(int fd, const void *buf, size_t len);   /* bytes written */
int sh_seek(int fd, uint32_t pos);
long sh_flen(int fd);
void sh_puts(const char *s);                            /* host stderr/console */
int sh_cmdline(char *buf, size_t cap);                  /* 0 or -1 */
uint32_t sh_time(void);                                 /* host seconds since the epoch */
__attribute__((noreturn)) void sh_exit(int code);
/* Split the command line in place into at most max words (first word is the image). */
int sh_argv(char *line, char **argv, int max);
#endif
