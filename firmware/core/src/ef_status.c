/* Names for ef_status codes (stable: host tools and tests print them). */
#include "ef/status.h"

const char *ef_status_str(int status)
{
    switch (status) {
    case EF_OK: return "ok";
    case EF_ERR_ARG: return "bad-argument";
    case EF_ERR_TRUNCATED: return "truncated";
    case EF_ERR_MAGIC: return "bad-magic";
    case EF_ERR_VERSION: return "bad-version";
    case EF_ERR_SIZE: return "bad-size";
    case EF_ERR_CRC: return "bad-crc";
    case EF_ERR_OFFSET: return "bad-offset";
    case EF_ERR_LAYER: return "bad-layer";
    case EF_ERR_CHAIN: return "bad-layer-chain";
    case EF_ERR_FEATURES: return "bad-features";
    case EF_ERR_SCORING: return "bad-scoring";
    case EF_ERR_RATE: return "unsupported-rate";
    case EF_ERR_CAPACITY: return "capacity";
    case EF_ERR_FLASH: return "flash";
    case EF_ERR_MANIFEST: return "bad-manifest";
    case EF_ERR_SIGNATURE: return "bad-signature";
    case EF_ERR_HASH: return "bad-sha256";
    case EF_ERR_DOWNGRADE: return "not-newer";
    case EF_ERR_INCOMPATIBLE: return "incompatible";
    case EF_ERR_SELFTEST: return "self-test-failed";
    case EF_ERR_STATE: return "wrong-state";
    case EF_ERR_GAP: return "chunk-gap";
    case EF_ERR_NO_MODEL: return "no-model";
    case EF_ERR_FRAME: return "bad-frame";
    case EF_ERR_SCHEMA: return "schema";
    case EF_ERR_CLASSES: return "bad-class-count";
    case EF_ERR_THRESHOLD: return "bad-threshold";
    case EF_ERR_SPREAD: return "spread-under-floor";
    case EF_ERR_FRONTEND: return "other-front-end";
    case EF_ERR_N_FEATURES: return "feature-count";
    case EF_ERR_NONFINITE: return "nonfinite";
    case EF_ERR_TOO_FEW: return "too-few-windows";
    case EF_ERR_NO_BASELINE: return "no-baseline";
    case EF_ERR_BEARING: return "bad-bearing";
    case EF_ERR_UNAUTHORIZED: return "unauthorized";
    default: return "unknown";
    }
}
