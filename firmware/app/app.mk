# The node application (app/) and the Cortex-M4F image build every board port uses
# (included by firmware/Makefile; needs gcc-arm-none-eabi and libnewlib-arm-none-eabi).
#
# $(call mcu_board,NAME,PORT_SOURCES,LDSCRIPT,EXTRA_CFLAGS) builds build/NAME/ef_mcu_node.elf
# from the board's sources (ports/NAME/*.c stems), the node application (MCU_APP), the core
# (MCU_CORE) and CMSIS-DSP, and its size report build/NAME/size.json. A board with a flash
# driver for two model slots adds the OTA layer by setting MCU_OTA_NAME := $(MCU_OTA) before
# the call and passing -DNODE_OTA=1 in EXTRA_CFLAGS (ports/mps2-an386 does; docs/mcu.md).
M4_CC ?= arm-none-eabi-gcc
M4_ARCH := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
M4_CFLAGS := $(M4_ARCH) -Os -g -ffunction-sections -fdata-sections -D__GNUC_PYTHON__
M4_INC := -Icore/include -Iapp -I$(CMSIS)/Include -I$(CMSIS)/PrivateInclude -I$(MONO) \
          -idirafter $(SODIUM)/include/sodium
M4_LDFLAGS := $(M4_ARCH) --specs=nano.specs --specs=nosys.specs -nostartfiles -Wl,--gc-sections -u _printf_float
# The engine's per-layer kernel on the M4: ef_layer_m4 (DSP extension) in place of the
# portable ef_layer_ref (core/src; ef/engine.h). The layer walk (ef_engine) is the same.
# `make M4_LAYER=ef_layer_ref ...` builds the images with the portable kernel (after `make clean`).
M4_LAYER ?= ef_layer_m4
# ef_baseline, ef_commission: commissioning (docs/baseline.md); ef_sha256 + libsodium's SHA-256 hash
# its record for the status (every board, with or without OTA); ef_diagnosis: an anomaly's why/hint;
# ef_sensor_check: the per-window sensor check (v1 windows, before the FFT).
MCU_CORE := ef_status ef_crc ef_model ef_engine $(M4_LAYER) ef_features ef_lowfreq ef_pipeline ef_serial ef_protocol ef_cmd \
            ef_baseline ef_commission ef_diagnosis ef_sha256 ef_sensor_check
MCU_SHA256 := tp/sodium/crypto_hash/sha256/cp/hash_sha256_cp
MCU_APP := node_app node_link
# The OTA layer, for a board that sets MCU_OTA_<board> := $(MCU_OTA) and -DNODE_OTA=1
# (objects go into its lib.a, so an image that never calls them does not link them).
MCU_OTA := core/ef_manifest core/ef_crypto core/ef_ota app/node_ota tp/monocypher \
           $(SODIUM_SRC:%=tp/sodium/%)

# The engine's inner loop is the one hot spot: it alone is built for speed (M4_ENGINE_OPT;
# -O2 beat -O3 -funroll-loops, whose unrolled loop spills pointers: 2.50 vs 2.85 instructions per MAC).
M4_ENGINE_OPT ?= -O2

define mcu_board # $1 name, $2 port sources (ports/$1/*.c stems), $3 linker script, $4 extra cflags
build/$1/core/ef_engine.o: core/src/ef_engine.c $(wildcard core/include/ef/*.h) $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $(M4_ENGINE_OPT) $4 $(M4_INC) $(WARN) -c $$< -o $$@
build/$1/core/ef_layer_%.o: core/src/ef_layer_%.c $(wildcard core/include/ef/*.h) $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $(M4_ENGINE_OPT) $4 $(M4_INC) $(WARN) -c $$< -o $$@
build/$1/core/%.o: core/src/%.c $(wildcard core/include/ef/*.h) $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 $(M4_INC) $(WARN) -c $$< -o $$@
build/$1/port/%.o: ports/$1/%.c $(wildcard ports/$1/*.h app/*.h core/include/ef/*.h) $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 $(M4_INC) -Iports/$1 $(WARN) -c $$< -o $$@
build/$1/app/%.o: app/%.c $(wildcard app/*.h core/include/ef/*.h) $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 $(M4_INC) $(WARN) -c $$< -o $$@
build/$1/tp/cmsis/%.o: $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 -std=c99 -w -I$(CMSIS)/Include -I$(CMSIS)/PrivateInclude -c $(CMSIS)/Source/$$*.c -o $$@
build/$1/tp/monocypher.o: $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 -std=c99 -w -I$(MONO) -c $(MONO)/monocypher.c -o $$@
build/$1/tp/sodium/%.o: $(TP)/.fetched
	@mkdir -p $$(@D)
	$(M4_CC) $(M4_CFLAGS) $4 $(SODIUM_CFLAGS) -c $(SODIUM)/$$*.c -o $$@
build/$1/lib.a: $(MCU_CORE:%=build/$1/core/%.o) $(CMSIS_SRC:%=build/$1/tp/cmsis/%.o) $(MCU_SHA256:%=build/$1/%.o) \
               $(MCU_OTA_$1:%=build/$1/%.o)
	rm -f $$@ && arm-none-eabi-ar rcs $$@ $$^
build/$1/ef_mcu_node.elf: $(2:%=build/$1/port/%.o) $(MCU_APP:%=build/$1/app/%.o) build/$1/lib.a $3
	$(M4_CC) $(M4_LDFLAGS) -T $3 -Wl,-Map=build/$1/ef_mcu_node.map $(2:%=build/$1/port/%.o) \
	    $(MCU_APP:%=build/$1/app/%.o) build/$1/lib.a -lm -o $$@
build/$1/size.json: build/$1/ef_mcu_node.elf tools/size_report.py
	python3 tools/size_report.py build/$1/ef_mcu_node.elf build/$1/ef_mcu_node.map --board $1 --json $$@ >/dev/null
endef
