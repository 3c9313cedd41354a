/* ef/crypto.h over libsodium's portable SHA-2 (crypto_hash/sha{256,512}/cp, from
 * the libsodium tree in the PyNaCl sdist) and Monocypher (Ed25519 group equation).
 * The same C runs on the host and on the Cortex-M4, so host tests cover the MCU code. */
#include "ef/crypto.h"

#include <string.h>

#include "crypto_hash_sha256.h"
#include "crypto_hash_sha512.h"
#include "monocypher.h"

#define sha256_starts(c) crypto_hash_sha256_init(c)
#define sha256_update crypto_hash_sha256_update
#define sha256_finish crypto_hash_sha256_final
#define sha512_starts(c) crypto_hash_sha512_init(c)
#define sha512_update crypto_hash_sha512_update
#define sha512_finish crypto_hash_sha512_final

/* ef_sha256() and libsodium's sodium_memzero() are in ef_sha256.c: a board without OTA
 * hashes its baseline record with them and links nothing else of this file. */

#define EF_CRYPTO_CHUNK 128u

ef_status ef_sha256_flash(const ef_flash *f, uint32_t off, uint32_t len, uint8_t out[32])
{
    crypto_hash_sha256_state c;
    uint8_t buf[EF_CRYPTO_CHUNK];
    ef_status st = EF_OK;
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
    return st;
}

/* h_ram = SHA-512(R || A || M) mod L, the message streamed by `feed`. Kept out of
 * line so the hash state and buffer are off the stack before the curve check runs
 * (the deepest frame on a 2-3 KB MCU stack). */
typedef int (*feed_fn)(const void *src, uint32_t pos, uint8_t *dst, uint32_t n);

static __attribute__((noinline)) ef_status hram(const uint8_t sig[64], const uint8_t pk[32],
                                                feed_fn feed, const void *src, uint32_t len,
                                                uint8_t h_ram[32])
{
    crypto_hash_sha512_state c;
    uint8_t buf[EF_CRYPTO_CHUNK], h[64];
    uint32_t pos = 0;
    ef_status st = EF_OK;
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
    crypto_eddsa_reduce(h_ram, h);
    return st;
}

static ef_status verify(const uint8_t sig[64], const uint8_t pk[32], feed_fn feed, const void *src,
                        uint32_t len)
{
    uint8_t h_ram[32];
    ef_status st = hram(sig, pk, feed, src, len, h_ram);
    if (st != EF_OK)
        return st;
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
