/* CRC-32 (zlib / IEEE 802.3, reflected 0xEDB88320), as Python's zlib.crc32. */
#ifndef EF_CRC_H
#define EF_CRC_H
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0; ef_crc32(ef_crc32(0, a, n), b, m) == crc of a||b. */
uint32_t ef_crc32(uint32_t crc, const void *data, size_t len);

#endif
