/* Hashes and signature checks used by OTA, streamed from flash or memory.
 *
 * Backed by well-known libraries, not hand-rolled: SHA-256 and SHA-512 from
 * libsodium's portable C (the libsodium tree in the PyNaCl sdist), Ed25519
 * curve arithmetic from Monocypher (crypto_eddsa_check_equation with
 * h = SHA-512(R || A || M) reduced mod L, i.e. RFC 8032 Ed25519). The same
 * sources build for the host and the Cortex-M. */
#ifndef EF_CRYPTO_H
#define EF_CRYPTO_H
#include <stddef.h>
#include <stdint.h>

#include "ef/platform.h"
#include "ef/status.h"

void ef_sha256(const void *data, size_t len, uint8_t out[32]);
ef_status ef_sha256_flash(const ef_flash *f, uint32_t off, uint32_t len, uint8_t out[32]);

/* EF_OK when sig is a valid Ed25519 signature of the message held at
 * flash [off, off+len) under public_key; EF_ERR_SIGNATURE otherwise. */
ef_status ef_ed25519_verify_flash(const uint8_t sig[64], const uint8_t public_key[32],
                                  const ef_flash *f, uint32_t off, uint32_t len);
ef_status ef_ed25519_verify(const uint8_t sig[64], const uint8_t public_key[32],
                            const uint8_t *msg, size_t len);

#endif
