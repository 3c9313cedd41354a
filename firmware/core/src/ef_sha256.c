/* ef_sha256() over libsodium's portable SHA-256 (ef/crypto.h): on its own so that a board
 * without OTA can hash its commissioning baseline (status `comm.hash`) without linking the
 * Ed25519 and OTA glue of ef_crypto.c. */
#include <string.h>

#include "crypto_hash_sha256.h"
#include "ef/crypto.h"

/* libsodium's hash code wipes its state with sodium_memzero(), which lives in its
 * utils.c together with its allocator and RNG; this is that wipe, and nothing else. */
void sodium_memzero(void *const pnt, const size_t len);
void sodium_memzero(void *const pnt, const size_t len)
{
    volatile unsigned char *p = (volatile unsigned char *)pnt;
    size_t i;
    for (i = 0; i < len; i++)
        p[i] = 0;
}

void ef_sha256(const void *data, size_t len, uint8_t out[32])
{
    crypto_hash_sha256_state c;
    crypto_hash_sha256_init(&c);
    crypto_hash_sha256_update(&c, (const unsigned char *)data, len);
    crypto_hash_sha256_final(&c, out);
}
