/* Commissioning on a node (docs/baseline.md): the baseline record on flash, the windows a
 * node learns from, and which windows it judges. The arithmetic is ef/baseline.h's.
 *
 * Two flash areas of its own (apart from the model slots); the records' area is memory-mapped:
 *
 *   records [0, R)    copy 0: 16-byte head {"EFBR", u32 seq, u32 size, u32 ~size}, then the record,
 *                     then (C only) the rows' index of its classes {"EFRY", u32 count, per class f32 rpm,
 *                     u32 rows, u8 slot, u8 bank, u16 0; CRC-32 of all before it}
 *   records [R, 2R)   copy 1, the same            (R = records size / 2, a multiple of its erase size)
 *   rows    [(2k+b)*C, (2k+b+1)*C)  slot k's commissioning rows in bank b (each n int16 Q10 LE, then
 *                     the window's speed as f32 LE, 0: none; in arrival order), C = rows size / 16
 *                     rounded down to its erase size, k < 8. ("EFRX", an index of rows without speeds,
 *                     is not read: the settle test needs each row's speed.)
 *
 * A new record goes to the copy not in force: erase it, write the record, then its head last;
 * then the old copy is erased. A power cut at any point leaves the old record or the new one
 * whole: a copy without a complete head, or whose record fails any check, is ignored; of two
 * valid copies the higher sequence number wins. The rows are written as windows arrive (each
 * scratch sector erased when the first row reaches it), so RAM holds only the per-class counts,
 * never the rows (a board may still back the rows area with RAM). When a class that reached its
 * target has not settled (ef_baseline_settled), its newer half is copied to the class's other
 * bank and learning goes on there: NOR flash cannot drop rows in place. Unless its two halves ran
 * at different speeds (ef_baseline_speeds_apart, the window's speed known): then a run-in cannot be
 * told from the speed's effect. If each half has settled on its own (the same test on its rows),
 * they are two steady stints and the class keeps both (outcome learning). Else the class waits for
 * its older speeds to return instead, its older half copied and its newer half dropped, at most
 * EF_COMMISSION_MAX_WAITS times (the waits are not restarts). Once a record is written
 * its classes' rows stay in their slots, indexed (kept) for another model's thresholds; a one-class
 * commissioning learns into a free slot (with all 8 taken, it gives up the rows of the class it
 * replaces, else of the lowest band), an all-class one starts from none. The index of a record's
 * rows is written after it in its copy and read back at init, so it outlives a reset; commissioning
 * in progress does not (a reset during commissioning starts it again). */
#ifndef EF_COMMISSION_H
#define EF_COMMISSION_H
#include <stddef.h>
#include <stdint.h>

#include "ef/baseline.h"
#include "ef/platform.h"
#include "ef/protocol.h"
#include "ef/status.h"

#define EF_COMMISSION_COPY_HEAD 16u
#define EF_COMMISSION_MAX_WAITS 4u /* Python MAX_WAITS: a class waits at most this often for its older speeds */

/* What commissioning did with a window (Python Commissioner.add). */
typedef enum {
    EF_COMM_LEARNING = 0, /* its row was stored */
    EF_COMM_CLASS_FULL,   /* its class already holds `target` rows */
    EF_COMM_NONFINITE,    /* a feature is NaN or infinite */
    EF_COMM_CLASS_LIMIT,  /* a ninth speed class */
    EF_COMM_OTHER_CLASS,  /* one-class commissioning: another speed */
    EF_COMM_NOT_STATIONARY, /* the class reached its target unsettled: its older half dropped */
    EF_COMM_SPEED_CHANGING, /* the speed moved more than 1 % since the last window: not learned */
    EF_COMM_FLASH_ERROR,  /* the row could not be stored */
    EF_COMM_SPEEDS_APART  /* the class reached its target unsettled, its halves at different speeds and
                           * one of them unsettled on its own: its newer half dropped, to wait for the
                           * older speeds (EF_COMMISSION_MAX_WAITS) */
} ef_commission_outcome;

/* How a node treats a window. */
typedef enum {
    EF_WINDOW_JUDGED = 0,      /* by its class's baseline: verdict set */
    EF_WINDOW_COMMISSIONING,   /* taken by commissioning: no verdict */
    EF_WINDOW_UNCOMMISSIONED   /* no class covers its speed: no verdict */
} ef_window_state;

/* A class whose rows are in the scratch: one being learned, or (kept) one of the record in force,
 * whose rows stay for another model's thresholds (ef_commission_rederive). */
typedef struct {
    float rpm;        /* the speed of the class's first window (its centre); 0: any speed */
    uint32_t rows;    /* rows stored so far, from the start of the class's bank */
    uint8_t bank;     /* which of the class's two regions holds them */
    uint8_t restarts : 4; /* times it reached its target unsettled (EF_BASELINE_MAX_RESTARTS: finished anyway) */
    uint8_t waits : 4;    /* times its newer half was dropped instead (EF_COMMISSION_MAX_WAITS); one byte for both */
    uint8_t slot;     /* which of the 8 slots (two banks each) of the scratch */
    uint8_t kept;     /* 1: a class of the record in force (not learning) */
} ef_commission_class;

typedef struct {
    /* the areas (ef_commission_init) */
    const ef_flash *records, *rows;
    uint16_t max_features;
    uint32_t copy_size;      /* R */
    uint32_t max_windows;    /* per class: what the row scratch and the learning work buffer allow */
    /* the model the rows and the record are for */
    ef_baseline_for model;
    /* the record in force */
    int has_baseline;
    ef_baseline baseline;    /* read in place from its copy */
    uint8_t copy;            /* copy holding the newest valid record (in force or not) */
    uint32_t seq;            /* its sequence number; 0: neither copy is valid */
    ef_status load_status;   /* why there is no baseline in force (EF_OK when there is) */
    /* commissioning */
    int learning;
    uint32_t target;         /* rows per class that end it */
    float only_rpm;          /* > 0: the one class around this speed (the others are kept) */
    uint32_t region;         /* scratch bytes per class and bank */
    uint8_t n_classes;       /* entries in cls: the classes being learned, and the record's kept ones */
    ef_commission_class cls[EF_BASELINE_MAX_CLASSES];
    float last_rpm;          /* the previous window's speed: a ramp is not learned from */
    int learn_new_classes;   /* commissioned: a speed in no class starts learning that class (default 1) */
    int estimated;           /* the speeds are the v2 front end's estimates (no speed input): classes by
                              * ef_baseline_class_for_estimate, steady within EF_BASELINE_STEADY_SPEED_ESTIMATED */
} ef_commission;

/* Use `records` (mapped; two copies) and `rows` for models of up to max_features inputs and a
 * learning work buffer of work_len bytes, then ef_commission_model(m). EF_ERR_CAPACITY if a copy
 * cannot hold a record of 8 classes or the rows and work buffer not 8 classes of 64 windows;
 * EF_ERR_FLASH if `records` is not mapped. */
ef_status ef_commission_init(ef_commission *c, const ef_flash *records, const ef_flash *rows,
                             uint16_t max_features, size_t work_len, const ef_model *m);

/* The node runs model m (at start-up, after an OTA switch): the newest valid record is in force
 * if it was learned with m's feature front end and input count; otherwise (or without a record)
 * the node commissions all classes. Commissioning in progress goes on if the front end is the same. */
ef_status ef_commission_model(ef_commission *c, const ef_model *m);

/* Commission again (cmd commission): windows per class (0: the default 64; else 16..max_windows),
 * rpm > 0 the one class around that speed (needs a speed input: has_speed; the record's other
 * classes are kept), else every class. Refused, and nothing changes: EF_ERR_ARG (windows outside
 * 16..4096, rpm not finite or negative), EF_ERR_CAPACITY (windows above max_windows),
 * EF_ERR_INCOMPATIBLE (rpm on a node without a speed input). */
ef_status ef_commission_start(ef_commission *c, uint32_t windows, float rpm, int has_speed);

/* Commissioning's part of one window (Python Commissioner.add): its row into its class's
 * scratch; at the class's target, the settle test (work: 4 bytes per row of half a class). */
ef_commission_outcome ef_commission_add(ef_commission *c, const float *features, float rpm, void *work,
                                        size_t work_len);

/* Route one window whose features are computed, as the simulated node (device_sim/fleet.py):
 * a commissioned node meeting a speed in no class (and fewer than 8 classes) starts learning
 * that class; a window on a ramp is not learned from; a commissioning node takes every window
 * but those of a known class outside its one-class band (*outcome set); the others are judged
 * under their class (*v set, the model input left in sm->q) or are uncommissioned. */
ef_window_state ef_commission_window(ef_commission *c, const ef_baseline_model *sm, const float *features,
                                     float rpm, void *work, size_t work_len, ef_baseline_verdict *v,
                                     ef_commission_outcome *outcome);

/* Every class seen so far holds `target` rows: time to finish. */
int ef_commission_done(const ef_commission *c);

/* Learn every class with at least min_windows rows (one-class commissioning: merged with the
 * record, whose classes holding a new class's centre are replaced, the others kept, the 8 highest
 * bands if there are more), write the record to the free copy, retire the old one, and use it.
 * `features` n floats and `work` (4 bytes per row + one class block) are scratch. On
 * EF_ERR_TOO_FEW (no class has min_windows rows) commissioning goes on; EF_ERR_STATE when not
 * commissioning; EF_ERR_FLASH if the record could not be written (the old one stays in force). */
ef_status ef_commission_finish(ef_commission *c, const ef_baseline_model *sm, uint64_t learned_ms,
                               uint32_t min_windows, float *features, void *work, size_t work_len);

/* ---- another model with the same front end (docs/baseline.md): its thresholds from the kept rows ----
 * The thresholds belong to the model: a node that switches to another model keeps the record's centre
 * and spread but re-derives each class's thresholds from the commissioning rows it kept (Python
 * learn_class, as device_sim's _rebaseline), and a shadow candidate is judged by the thresholds it
 * would get. A class whose rows are not indexed (after an all-class commissioning began, given up
 * for a ninth slot, a copy without room for the index), or whose rows no longer give its centre and
 * spread (overwritten by a commissioning a reset cut short), keeps the record's thresholds. `features` n floats and `work` (4 bytes per row + one class block) are
 * scratch, as for ef_commission_finish. */

/* How many classes of the record in force have their commissioning rows indexed. */
int ef_commission_kept_rows(const ef_commission *c);

/* Model sm now runs (after ef_commission_model kept the record): a new record whose classes with
 * kept rows are learned again with sm (same centre and spread; sm's thresholds), the others
 * copied, the learned time kept; written as ef_commission_finish writes one (a one-class
 * commissioning in progress goes on). EF_ERR_TOO_FEW: no class has its rows, nothing written;
 * EF_ERR_STATE: no record in force. */
ef_status ef_commission_rederive(ef_commission *c, const ef_baseline_model *sm, float *features, void *work,
                                 size_t work_len);

/* The score threshold model sm would get per class of the record in force, learned from the kept
 * rows (thr[k] = 0 for a class without them); nothing is written. */
ef_status ef_commission_class_thresholds(const ef_commission *c, const ef_baseline_model *sm, float *features,
                                         void *work, size_t work_len, float thr[EF_BASELINE_MAX_CLASSES]);

/* A shadow candidate's verdict on a window the running model's class judged (bv): its score of the
 * same class-standardized features (cand's buffers), anomalous when over thr (its threshold for that
 * class) or when the window's HI is over the class's (HI does not depend on the model). */
ef_status ef_commission_shadow(const ef_commission *c, const ef_baseline_model *cand, const float *features,
                               const ef_baseline_verdict *bv, float thr, float *score, int *anom);

/* First 16 hex digits of the SHA-256 of the record in force ("" without one). */
void ef_commission_hash(const ef_commission *c, char out[17]);

/* The status `comm` (docs/baseline.md, "Reported"): target and per-class progress while
 * commissioning, and the record's hash, learned time and classes (speed bands rounded to 0.1
 * rpm as the Python summary) once there is one; NULL when neither. The arrays hold 8 entries,
 * hash 17 chars; pc points into them. */
const ef_proto_comm *ef_commission_summary(const ef_commission *c, ef_proto_comm *pc, ef_proto_comm_progress *prog,
                                           ef_proto_comm_class *cls, char hash[17]);

const char *ef_commission_outcome_str(ef_commission_outcome o);

#endif
