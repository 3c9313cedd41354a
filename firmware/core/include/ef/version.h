/* Firmware version of this core, as reported in status messages and compared
 * with a model's min_firmware (packed major<<16 | minor<<8 | patch).
 * Kept equal to edgefleet.FIRMWARE_VERSION (checked by tests/firmware). */
#ifndef EF_VERSION_H
#define EF_VERSION_H

#define EF_FIRMWARE_VERSION_MAJOR 1
#define EF_FIRMWARE_VERSION_MINOR 0
#define EF_FIRMWARE_VERSION_PATCH 0
#define EF_FIRMWARE_VERSION_STR "1.0.0"
#define EF_FIRMWARE_VERSION \
    ((EF_FIRMWARE_VERSION_MAJOR << 16) | (EF_FIRMWARE_VERSION_MINOR << 8) | EF_FIRMWARE_VERSION_PATCH)

#endif
