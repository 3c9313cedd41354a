/* ef/crypto.h over mbedTLS (SHA-2) and Monocypher (Ed25519 group equation). */
#include "ef/crypto.h"

#include <string.h>

#include "mbedtls/sha256.h"
#include "mbedtls/sha512.h"
#include "mbedtls/version.h"
#include "monocypher.h"

#if MBEDTLS_VERSION_MAJOR < 3 /* 2.x names carry _ret */
#define sha256_starts(c) mbedtls_sha256_starts_ret(c, 0)
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#define sha512_starts(c) mbedtls_sha512_starts_ret(c, 0)
#define sha512_update mbedtls_sha512_update_ret
#define sha512_finish mbedtls_sha512_finish_ret
#else
#define sha256_starts(c) mbedtls_sha256_starts(c, 0)
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#define sha512_starts(c) mbedtls_sha512_starts(c, 0)
#define sha512_update mbedtls_sha512_update
#define sha512_finish mbedtls_sha512_finish
#endif

#define EF_CRYPTO_CHUNK 256u

void ef_sha256(const void *data, size_t len, uint8_t out[32])
{
    mbedtls_sha256_context c;
    mbedtls_sha256_init(&c);
    sha256_starts(&c);
    sha256_update(&c, (const unsigned char *)data, len);
    sha256_finish(&c, out);
    mbedtls_sha256_free(&c);
}

ef_status ef_sha256_flash(const ef_flash *f, uint32_t off, uint32_t len, uint8_t out[32])
{
    mbedtls_sha256_context c;
    uint8_t buf[EF_CRYPTO_CHUNK];
    ef_status st = EF_OK;
    mbedtls_sha256_init(&c);
    sha256_starts(&c);
    while (len > 0) {
        uint32_t n = len < EF_CRYPTO_CHUNK ? len : EF_CRYPTO_CHUNK;
        if (f->read(f->ctx, off, buf, n) != 0) {
            st = EF_ERR_FLASH;
            break;
        }
        sha256_update(&c, buf, n);
        off += n;
        len -= n;
    }
    sha256_finish(&c, out);
    mbedtls_sha256_free(&c);
    return st;
}

/* h_ram = SHA-512(R || A || M) mod L, the message streamed by `feed`. */
typedef int (*feed_fn)(const void *src, uint32_t pos, uint8_t *dst, uint32_t n);

static ef_status verify(const uint8_t sig[64], const uint8_t pk[32], feed_fn feed, const void *src,
                        uint32_t len)
{
    mbedtls_sha512_context c;
    uint8_t buf[EF_CRYPTO_CHUNK], h[64], h_ram[32];
    uint32_t pos = 0;
    ef_status st = EF_OK;
    mbedtls_sha512_init(&c);
    sha512_starts(&c);
    sha512_update(&c, sig, 32);
    sha512_update(&c, pk, 32);
    while (pos < len) {
        uint32_t n = len - pos < EF_CRYPTO_CHUNK ? len - pos : EF_CRYPTO_CHUNK;
        if (feed(src, pos, buf, n) != 0) {
            st = EF_ERR_FLASH;
            break;
        }
        sha512_update(&c, buf, n);
        pos += n;
    }
    sha512_finish(&c, h);
    mbedtls_sha512_free(&c);
    if (st != EF_OK)
        return st;
    crypto_eddsa_reduce(h_ram, h);
    return crypto_eddsa_check_equation(sig, pk, h_ram) == 0 ? EF_OK : EF_ERR_SIGNATURE;
}

typedef struct {
    const ef_flash *f;
    uint32_t off;
} flash_src;

static int feed_flash(const void *src, uint32_t pos, uint8_t *dst, uint32_t n)
{
    const flash_src *s = (const flash_src *)src;
    return s->f->read(s->f->ctx, s->off + pos, dst, n);
}

static int feed_mem(const void *src, uint32_t pos, uint8_t *dst, uint32_t n)
{
    memcpy(dst, (const uint8_t *)src + pos, n);
    return 0;
}

ef_status ef_ed25519_verify_flash(const uint8_t sig[64], const uint8_t public_key[32],
                                  const ef_flash *f, uint32_t off, uint32_t len)
{
    flash_src s;
    s.f = f;
    s.off = off;
    return verify(sig, public_key, feed_flash, &s, len);
}

ef_status ef_ed25519_verify(const uint8_t sig[64], const uint8_t public_key[32],
                            const uint8_t *msg, size_t len)
{
    if (((len >> 16) >> 16) != 0) /* beyond 32 bits (never true on 32-bit targets) */
        return EF_ERR_ARG;
    return verify(sig, public_key, feed_mem, msg, (uint32_t)len);
}
