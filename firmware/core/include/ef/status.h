/* Error codes shared by every edgefleet core module.
 *
 * Every fallible core function returns an ef_status: EF_OK (0) on success,
 * a negative code naming the first check that failed otherwise.
 * ef_status_str() gives a short stable name for logs and host tools. */
#ifndef EF_STATUS_H
#define EF_STATUS_H

typedef enum {
    EF_OK = 0,
    EF_ERR_ARG = -1,            /* NULL pointer or impossible argument */
    EF_ERR_TRUNCATED = -2,      /* buffer shorter than the structure it must hold */
    EF_ERR_MAGIC = -3,
    EF_ERR_VERSION = -4,        /* unsupported format version */
    EF_ERR_SIZE = -5,           /* a declared size disagrees with the data */
    EF_ERR_CRC = -6,
    EF_ERR_OFFSET = -7,         /* an offset is out of bounds or misaligned */
    EF_ERR_LAYER = -8,          /* a layer record is inconsistent */
    EF_ERR_CHAIN = -9,          /* consecutive layers do not chain */
    EF_ERR_FEATURES = -10,      /* features section inconsistent */
    EF_ERR_SCORING = -11,       /* scoring section inconsistent */
    EF_ERR_RATE = -12,          /* sampling rate cannot serve the feature definition */
    EF_ERR_CAPACITY = -13,      /* fixed buffer too small */
    EF_ERR_FLASH = -14,         /* flash driver reported an error */
    EF_ERR_MANIFEST = -15,      /* manifest malformed */
    EF_ERR_SIGNATURE = -16,
    EF_ERR_HASH = -17,          /* SHA-256 of the artifact differs from the manifest */
    EF_ERR_DOWNGRADE = -18,     /* offered version not newer than the running one */
    EF_ERR_INCOMPATIBLE = -19,  /* min_firmware, sizes or shapes do not fit this node */
    EF_ERR_SELFTEST = -20,      /* self-test vector gave a different output */
    EF_ERR_STATE = -21,         /* event not allowed in the current OTA state */
    EF_ERR_GAP = -22,           /* chunk offset beyond the next expected byte */
    EF_ERR_NO_MODEL = -23,      /* no slot holds a bootable model */
    EF_ERR_FRAME = -24,         /* serial frame malformed (COBS or CRC) */
    EF_ERR_SCHEMA = -25,        /* value outside the wire-protocol schema */
    /* the commissioning baseline (docs/baseline.md, ef/baseline.h) */
    EF_ERR_CLASSES = -26,       /* baseline record: class count outside 1..8 */
    EF_ERR_THRESHOLD = -27,     /* baseline record: a class threshold not positive and finite */
    EF_ERR_SPREAD = -28,        /* baseline record: a spread under the floor */
    EF_ERR_FRONTEND = -29,      /* baseline learned with another feature front end (CRC) */
    EF_ERR_N_FEATURES = -30,    /* baseline feature count differs from the model's inputs */
    EF_ERR_NONFINITE = -31,     /* a feature is NaN or infinite */
    EF_ERR_TOO_FEW = -32,       /* too few windows to commission a class */
    EF_ERR_NO_BASELINE = -33,   /* no baseline record on flash */
    EF_ERR_BEARING = -34,       /* bearing geometry that cannot be (diagnosis.BearingGeometry's checks) */
    EF_ERR_UNAUTHORIZED = -35   /* OTA offer without a valid campaign ticket from a trusted key (docs/ota.md) */
} ef_status;

const char *ef_status_str(int status);

#endif
