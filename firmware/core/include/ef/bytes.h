/* Little-endian loads and stores that work at any alignment and on any host. */
#ifndef EF_BYTES_H
#define EF_BYTES_H
#include <stdint.h>
#include <string.h>

static inline uint16_t ef_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ef_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline int32_t ef_le32s(const uint8_t *p)
{
    uint32_t u = ef_le32(p);
    int32_t s;
    memcpy(&s, &u, sizeof s);
    return s;
}
static inline float ef_lef32(const uint8_t *p)
{
    uint32_t u = ef_le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline void ef_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

#endif
