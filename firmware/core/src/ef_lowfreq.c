/* Feature definition v2, streaming, float32 (ef/lowfreq.h, docs/features.md "Feature definition v2"). */
#include "ef/lowfreq.h"

#include <math.h>
#include <string.h>

#define EF_PI 3.14159265358979323846

/* alpha_i = 2 sin((2i - 1) pi / 16), i = 1..4, as Python's math.sin gives them (docs/features.md) */
static const double k_alpha[EF_LF_SECTIONS] = {0.3901806440322565, 1.1111404660392044, 1.6629392246050905,
                                               1.9615705608064609};

static double square(double x) { return x * x; }

static uint32_t round_half_away(double x) { return (uint32_t)floor(x + 0.5); } /* 0 <= x < 2^32 */

static uint32_t bin_ceil(float edge_hz, uint32_t nfft, double fs)
{
    double k = ceil((double)edge_hz * (double)nfft / fs);
    double cap = (double)(nfft / 2u + 1u);
    return (uint32_t)(k < cap ? k : cap);
}

/* bin_ceil without double arithmetic (soft-float on a Cortex-M4: a double division is ~1,000
 * instructions, and the band bins are needed per segment): the same integer, as float32 errs by
 * a few ulp (< 1e-3 below 2,049 bins), so only an edge within 4e-3 of a bin is decided in double. */
static uint32_t bin_ceil_f(float edge_hz, uint32_t nfft, float fs_f, double fs)
{
    const float x = edge_hz * (float)nfft / fs_f, r = ceilf(x);
    const float cap = (float)(nfft / 2u + 1u);
    if (fabsf(x - roundf(x)) < 4e-3f)
        return bin_ceil(edge_hz, nfft, fs);
    return (uint32_t)(r < cap ? r : cap);
}

/* [lo, hi) of the bins k = 0..nfft/2 whose frequency k * (fs / nfft), in double as Python's
 * arange(...) * (fs / nfft), lies in [lo_hz, hi_hz). */
static void bin_range(double bin_hz, uint32_t nfft, float lo_hz, float hi_hz, uint16_t *lo, uint16_t *hi)
{
    uint32_t k = 0;
    while (k <= nfft / 2u && (double)k * bin_hz < (double)lo_hz)
        k++;
    *lo = (uint16_t)k;
    while (k <= nfft / 2u && (double)k * bin_hz < (double)hi_hz)
        k++;
    *hi = (uint16_t)k;
}

/* The velocity band's power response at f Hz (docs/features.md, E(f)): [1 / (1 + (lo/f)^32) /
 * (1 + (f/hi)^32)]^2, an order-16 Butterworth band-pass run forwards and backwards (an instrument's
 * sloped edges); the powers by squaring (an overflow to infinity gives 0, as it should). */
static float pow32(float r)
{
    r *= r;
    r *= r;
    r *= r;
    r *= r;
    return r * r;
}

static float band_edges(const ef_features_view *f, float f_hz)
{
    const float amp = 1.0f / (1.0f + pow32(f->vel_lo_hz / f_hz)) / (1.0f + pow32(f_hz / f->vel_hi_hz));
    return amp * amp;
}

ef_status ef_lf_plan_init(ef_lf_plan *p, const ef_features_view *f, double fs)
{
    const uint32_t L = f ? f->lf_length : 0u;
    double d, bin_lf, kc, kmin, kmax;
    uint32_t n, i, k_top = 0;
    ef_status st;
    if (p == NULL || f == NULL)
        return EF_ERR_ARG;
    memset(p, 0, sizeof *p);
    if (f->kind != EF_FEATURE_KIND_V2)
        return EF_ERR_FEATURES;
    if ((st = ef_features_plan(&p->hf, f, fs)) != EF_OK) /* the HF segment: every v1 rule */
        return st;
    n = p->hf.n_samples;
    d = fs / (double)f->lf_rate_hz;
    if (!(d < 65536.0)) /* keeps the conversion defined; such a window is refused below anyway */
        return EF_ERR_RATE;
    p->factor = round_half_away(d);
    if (p->factor < 1u)
        p->factor = 1u;
    p->fs_lf = fs / (double)p->factor;
    if ((double)f->lf_cut_hz >= 0.4 * p->fs_lf || (double)f->vel_hi_hz > fs / 2.0)
        return EF_ERR_RATE;
    for (i = 0; i < f->n_lf; i++) {
        uint32_t lo = bin_ceil(ef_model_f32(f->lf_edges_hz, i), L, p->fs_lf);
        uint32_t hi = bin_ceil(ef_model_f32(f->lf_edges_hz, i + 1u), L, p->fs_lf);
        if (hi <= lo)
            return EF_ERR_RATE;
        k_top = hi;
    }
    bin_lf = p->fs_lf / (double)L;
    kmin = ceil((double)f->speed_min_hz / bin_lf);
    kmax = floor((double)f->speed_max_hz / bin_lf);
    if (kmin < 2.0 || kmax < kmin || 2.0 * kmin + 1.0 >= (double)k_top)
        return EF_ERR_RATE;
    p->k_min = (uint16_t)kmin;
    p->k_max = (uint16_t)(kmax < (double)L ? kmax : (double)L); /* the search stops at k_top anyway */
    p->k_top = (uint16_t)k_top;
    if ((uint64_t)(L + f->lf_settle) * p->factor > EF_LF_WINDOW_MAX)
        return EF_ERR_RATE;
    p->n_window = (L + f->lf_settle) * p->factor;
    if (p->n_window < n)
        return EF_ERR_RATE;
    p->hop = n / 2u ? n / 2u : 1u;
    p->n_segments = 1u + (p->n_window - n) / p->hop;
    if ((st = ef_features_fft_init(&p->lf_rfft, L)) != EF_OK)
        return st;
    /* the low-pass: computed in double, stored as float32 (docs/features.md) */
    kc = tan(EF_PI * (double)f->lf_cut_hz / fs);
    for (i = 0; i < EF_LF_SECTIONS; i++) { /* b1 = 2 b0 and b2 = b0 exactly, in float32 too */
        const double norm = 1.0 / (1.0 + k_alpha[i] * kc + kc * kc);
        const float b0 = (float)(kc * kc * norm);
        const float a1 = (float)(2.0 * (kc * kc - 1.0) * norm);
        const float a2 = (float)((1.0 - k_alpha[i] * kc + kc * kc) * norm);
        p->lpf[i][0] = b0;
        p->lpf[i][1] = -a1 - 2.0f;
        p->lpf[i][2] = 1.0f - a2;
    }
    /* periodic Hann: S2 = sum w^2 = 3n/8 exactly for n >= 3 */
    p->hf_step = (float)(2.0 * EF_PI / (double)n);
    p->lf_step = (float)(2.0 * EF_PI / (double)L);
    p->hf_norm = (float)(2.0 / ((double)p->hf.nfft * (3.0 * (double)n / 8.0)));
    p->lf_norm = (float)(2.0 / ((double)L * (3.0 * (double)L / 8.0)));
    p->lf_psd = (float)(2.0 / (p->fs_lf * (3.0 * (double)L / 8.0)));
    p->hf_vel = (float)square(EF_LF_G_MM_S2 * (double)p->hf.nfft / (2.0 * EF_PI * fs));
    p->lf_vel = (float)square(EF_LF_G_MM_S2 * (double)L / (2.0 * EF_PI * p->fs_lf));
    /* velocity (docs/features.md, "Velocity weights"): HF bins from vel_split to Nyquist, LF bins below
     * the top LF edge (both shaped by the band's edges); the HF bins that a Hann lobe of an LF line can
     * reach, below lf_top + 4 fs/n */
    {
        const double res = fs / (double)n, top = (double)ef_model_f32(f->lf_edges_hz, f->n_lf);
        const double bin_hf = fs / (double)p->hf.nfft;
        if ((double)f->vel_split_hz > top - 2.5 * res) /* a lobe from above lf_top would cross the split */
            return EF_ERR_RATE;
        bin_range(bin_hf, p->hf.nfft, f->vel_split_hz, INFINITY, &p->vel_hf_lo, &p->vel_hf_hi); /* to Nyquist */
        /* (above vel_hi the edge falls as f^-64: bins where E < 1e-20 add nothing a float32 sum keeps;
         * between the edges E is 1.0f exactly: neither needs computing per segment) */
        while (p->vel_hf_hi > p->vel_hf_lo && band_edges(f, (float)(p->vel_hf_hi - 1u) * (float)bin_hf) < 1e-20f)
            p->vel_hf_hi--;
        p->flat_lo = p->flat_hi = p->vel_hf_lo;
        while (p->flat_lo < p->vel_hf_hi && band_edges(f, (float)p->flat_lo * (float)bin_hf) != 1.0f)
            p->flat_lo++;
        p->flat_hi = p->flat_lo;
        while (p->flat_hi < p->vel_hf_hi && band_edges(f, (float)p->flat_hi * (float)bin_hf) == 1.0f)
            p->flat_hi++;
        p->reach_hi = p->vel_hf_lo;
        while (p->reach_hi < p->vel_hf_hi && (double)p->reach_hi * bin_hf < top + 4.0 * res)
            p->reach_hi++;
        p->vel_lf_hi = 1; /* every LF bin below the top LF edge has a weight (the band's edges shape it) */
        while (p->vel_lf_hi <= L / 2u && (double)p->vel_lf_hi * bin_lf < top)
            p->vel_lf_hi++;
        p->hf_q = (float)(0.5 * square((double)p->hf.nfft / (double)n));
        p->bin_hf = (float)(fs / (double)p->hf.nfft);
        p->bin_lf = (float)bin_lf;
        p->res_hf = (float)res;
        p->cos_phi = -cosf((float)(EF_PI / (double)n)); /* phi = pi - pi/n */
        p->sin_phi = sinf((float)(EF_PI / (double)n));
    }
    return EF_OK;
}

uint32_t ef_lf_fft_floats(const ef_lf_plan *p) { return p->hf.nfft; }

uint32_t ef_lf_work_floats(const ef_lf_plan *p)
{
    return (uint32_t)p->lf_rfft.fftLenRFFT + (p->hf.n_samples - p->hop);
}

void ef_lf_restart(ef_lf_state *s)
{
    memset(s->z, 0, sizeof s->z);
    s->i = s->fill = s->segs = s->dec = s->j = 0;
    s->vel_hf = s->kurt = s->crest = 0.0f;
    s->finished = 0;
    memset(s->acc, 0, s->f->n_bands * sizeof(float));
}

ef_status ef_lf_begin(ef_lf_state *s, const ef_lf_plan *p, const ef_features_view *f, float *fft, size_t fft_len,
                      float *work, size_t work_len, float *features)
{
    if (s == NULL || p == NULL || f == NULL || fft == NULL || work == NULL || features == NULL)
        return EF_ERR_ARG;
    if (fft_len < ef_lf_fft_floats(p) || work_len < ef_lf_work_floats(p))
        return EF_ERR_CAPACITY;
    s->p = p;
    s->f = f;
    s->seg = fft;
    s->lf = work;
    s->half = work + p->lf_rfft.fftLenRFFT;
    s->acc = features;
    ef_lf_restart(s);
    return EF_OK;
}

/* ---- the in-place real FFT ---- */

/* One output bin of CMSIS-DSP's stage_rfft_f32, the same operations in the same order. */
static void split_bin(float xAR, float xAI, float xBR, float xBI, float twR, float twI, float *out)
{
    float t1a = xBR - xAR, t1b = xBI + xAI;
    float p0 = twR * t1a, p1 = twI * t1a, p2 = twR * t1b, p3 = twI * t1b;
    out[0] = 0.5f * (xAR + xBR + p0 + p3);
    out[1] = 0.5f * (xAI - xBI + p1 - p2);
}

void ef_rfft_inplace(const arm_rfft_fast_instance_f32 *S, float *x)
{
    const uint32_t m = S->Sint.fftLen; /* complex points */
    const float *tw = S->pTwiddleRFFT;
    uint32_t a;
    arm_cfft_f32(&S->Sint, x, 0, 1);
    { /* DC and Nyquist packed together, as stage_rfft_f32 */
        float t1a = x[0] + x[0], t1b = x[1] + x[1];
        x[0] = 0.5f * (t1a + t1b);
        x[1] = 0.5f * (t1a - t1b);
    }
    /* bins a and m - a read each other: compute both from the untouched pair, then store */
    for (a = 1; a <= m / 2u; a++) {
        const uint32_t b = m - a;
        float za_r = x[2 * a], za_i = x[2 * a + 1], zb_r = x[2 * b], zb_i = x[2 * b + 1];
        float oa[2], ob[2];
        split_bin(za_r, za_i, zb_r, zb_i, tw[2 * a], tw[2 * a + 1], oa);
        if (b != a) {
            split_bin(zb_r, zb_i, za_r, za_i, tw[2 * b], tw[2 * b + 1], ob);
            x[2 * b] = ob[0];
            x[2 * b + 1] = ob[1];
        }
        x[2 * a] = oa[0];
        x[2 * a + 1] = oa[1];
    }
}

/* |Y[k]|^2 of a packed real FFT (x[1] is the Nyquist bin). */
static float bin_power(const float *y, uint32_t k, uint32_t nfft)
{
    if (k == 0)
        return y[0] * y[0];
    if (k == nfft / 2u)
        return y[1] * y[1];
    return y[2 * k] * y[2 * k] + y[2 * k + 1] * y[2 * k + 1];
}

/* The mean of x[0..n), taken around x[0] (a DC offset costs no precision; a constant is exact). */
static float mean_of(const float *x, uint32_t n)
{
    const float ref = x[0];
    float sum = 0.0f;
    uint32_t i;
    for (i = 0; i < n; i++)
        sum += x[i] - ref;
    return ref + sum / (float)n;
}

/* The periodic Hann's w[i] = 0.5 - 0.5 cos(i * step) for i = 0, 1, 2, ...: cos and sin by rotation,
 * re-seeded from cosf/sinf every 32 steps (the drift stays under 1e-6; 1/16 of the libm calls). */
typedef struct {
    float step, c, s, cd, sd;
} hann;

static void hann_begin(hann *h, float step)
{
    h->step = step;
    h->c = 1.0f;
    h->s = 0.0f;
    h->cd = cosf(step);
    h->sd = sinf(step);
}

static float hann_next(hann *h, uint32_t i)
{
    float c;
    if ((i & 31u) == 0) {
        h->c = cosf((float)i * h->step);
        h->s = sinf((float)i * h->step);
    }
    c = h->c;
    h->c = c * h->cd - h->s * h->sd;
    h->s = h->s * h->cd + c * h->sd;
    return 0.5f - 0.5f * c;
}

/* The velocity weight of HF bin k (docs/features.md, w_hf): g(f_k) = (G / (2 pi f_k))^2 (1 - 0.5 (R/f_k)^2) E(f_k),
 * R = fs / n, in units of hf_vel (= (G nfft / (2 pi fs))^2). */
static float hf_weight(const ef_lf_plan *p, const ef_features_view *f, uint32_t k)
{
    const float k2 = (float)k * (float)k;
    const float e = k >= p->flat_lo && k < p->flat_hi ? 1.0f : band_edges(f, (float)k * p->bin_hf);
    return 1.0f / k2 * (1.0f - p->hf_q / k2) * e;
}

/* ---- one HF segment (seg[0..n) complete) ---- */

static void shape_add(float d, float *m2, float *m4, float *peak)
{
    const float d2 = d * d, a = fabsf(d);
    *m2 += d2;
    *m4 += d2 * d2;
    if (a > *peak)
        *peak = a;
}

static void segment_done(ef_lf_state *s)
{
    const ef_lf_plan *p = s->p;
    const ef_features_view *f = s->f;
    const uint32_t n = p->hf.n_samples, nfft = p->hf.nfft, keep = n - p->hop;
    float *x = s->seg;
    float mean, m2 = 0.0f, m4 = 0.0f, peak = 0.0f, vel = 0.0f;
    uint32_t i, k, hi_prev = 0;
    hann h;
    memcpy(s->half, x + p->hop, keep * sizeof(float)); /* the next segment's first part */
    mean = mean_of(x, n);
    /* shape (mean removed, no window) and the periodic Hann, w[n - i] = w[i] */
    hann_begin(&h, p->hf_step);
    for (i = 0; i <= n / 2u; i++) {
        const float w = hann_next(&h, i);
        float d = x[i] - mean;
        shape_add(d, &m2, &m4, &peak);
        x[i] = d * w;
        if (i > 0 && n - i > i) {
            d = x[n - i] - mean;
            shape_add(d, &m2, &m4, &peak);
            x[n - i] = d * w;
        }
    }
    for (i = n; i < nfft; i++)
        x[i] = 0.0f;
    m2 /= (float)n;
    m4 /= (float)n;
    if (m2 > 0.0f) {
        s->kurt += m4 / (m2 * m2);
        s->crest += peak / sqrtf(m2);
    }
    ef_rfft_inplace(&p->hf.rfft, x);
    for (i = 0; i < f->n_bands; i++) { /* band sums of |Y|^2, normalized at the end */
        const float fs_f = (float)p->hf.fs;
        const uint32_t lo = i ? hi_prev : bin_ceil_f(ef_model_f32(f->edges_hz, 0), nfft, fs_f, p->hf.fs);
        const uint32_t hi = bin_ceil_f(ef_model_f32(f->edges_hz, i + 1u), nfft, fs_f, p->hf.fs);
        float acc = 0.0f;
        hi_prev = hi; /* bands share their edges */
        for (k = lo; k < hi; k++)
            acc += bin_power(x, k, nfft);
        s->acc[i] += acc;
    }
    for (k = p->vel_hf_lo; k < p->vel_hf_hi; k++) /* w_hf[k] = hf_vel * hf_weight */
        vel += bin_power(x, k, nfft) * hf_weight(p, f, k);
    s->vel_hf += vel;
    s->segs++;
    memcpy(x, s->half, keep * sizeof(float));
    s->fill = keep;
}

/* ---- input ---- */

/* One biquad, y = b0 x + b1 x1 + b2 x2 - a1 y1 - a2 y2 with b1 = 2 b0, b2 = b0 (exact in float32),
 * computed around the previous output: y = y1 + ((y1 - y2) + (b0 (x + 2 x1 + x2) + c1 y1 + c2 y2)) with
 * c1 = -a1 - 2 and c2 = 1 - a2 (exact in float32 for these poles near z = 1). The same recursion with the
 * same float32 coefficients; the large terms (a1 y1 ~ -2 y) are never rounded, only the small correction,
 * so the round-off that the poles amplify (by up to ~1/(4 b0), 2,300 at 48 kHz) is about 5 times smaller
 * than the plain direct form's (LF features within 4e-4 of Python at 48 kHz instead of 2.6e-3). */
typedef struct {
    float x1, x2, y1, y2;
} biquad;

static float section(const float *c, biquad *q, float x)
{
    const float y = q->y1 + ((q->y1 - q->y2) + (c[0] * ((x + 2.0f * q->x1) + q->x2) + c[1] * q->y1 + c[2] * q->y2));
    q->x2 = q->x1;
    q->x1 = x;
    q->y2 = q->y1;
    q->y1 = y;
    return y;
}

/* The low-pass over x[0..n) of the window (less its reference level), every D-th output kept
 * after the first S. */
static void filter(ef_lf_state *s, const float *x, uint32_t n)
{
    const ef_lf_plan *p = s->p;
    const float(*c)[3] = p->lpf; /* b0, c1, c2 */
    const uint32_t settle = s->f->lf_settle, factor = p->factor;
    const float ref = s->ref;
    biquad q[EF_LF_SECTIONS];
    uint32_t i, dec = s->dec, j = s->j;
    memcpy(q, s->z, sizeof q);
    for (i = 0; i < n; i++) {
        const float y =
            section(c[3], &q[3], section(c[2], &q[2], section(c[1], &q[1], section(c[0], &q[0], x[i] - ref))));
        if (++dec == factor) { /* u[j] = y[(j+1) D - 1] */
            dec = 0;
            if (j >= settle)
                s->lf[j - settle] = y;
            j++;
        }
    }
    memcpy(s->z, q, sizeof q);
    s->dec = dec;
    s->j = j;
}

float *ef_lf_next(ef_lf_state *s, uint32_t *room)
{
    if (s->finished) /* the previous window's features are out: the next window starts */
        ef_lf_restart(s);
    const uint32_t to_seg = s->p->hf.n_samples - s->fill, to_end = s->p->n_window - s->i;
    *room = to_seg < to_end ? to_seg : to_end;
    return s->seg + s->fill;
}

int ef_lf_commit(ef_lf_state *s, uint32_t count)
{
    const uint32_t n = s->p->hf.n_samples;
    if (s->segs > 0) /* the reference level is known: filter as the samples arrive */
        filter(s, s->seg + s->fill, count);
    s->fill += count;
    s->i += count;
    if (s->fill == n) {
        if (s->segs == 0) { /* the first segment: its mean is the window's reference level */
            s->ref = mean_of(s->seg, n);
            filter(s, s->seg, n);
        }
        if (s->segs < s->p->n_segments)
            segment_done(s);
        else /* after the last segment (never reached: fewer than h samples remain) */
            s->fill = 0;
    }
    return s->i == s->p->n_window;
}

uint32_t ef_lf_push(ef_lf_state *s, const float *x, uint32_t n)
{
    uint32_t taken = 0, room;
    while (taken < n) {
        float *dst = ef_lf_next(s, &room);
        if (room == 0)
            break;
        if (room > n - taken)
            room = n - taken;
        memcpy(dst, x + taken, room * sizeof(float));
        taken += room;
        ef_lf_commit(s, room);
    }
    return taken;
}

int ef_lf_complete(const ef_lf_state *s) { return s->i == s->p->n_window; }

/* ---- the window's end ---- */

/* sin(n u / 2) / sin(u / 2), the Dirichlet kernel's magnitude (n at u = 0). */
static float dirichlet(float u, float n)
{
    const float half = sinf(0.5f * u);
    return fabsf(half) < 1e-7f ? n : sinf(0.5f * n * u) / half;
}

/* Share of a line's power that a one-sided Hann PSD bin holds at `v` Hz from the line (docs/features.md,
 * K(v)): |W|^2 / (nfft * 0.375 n) with W = D(t)/2 - D(t - 2pi/n)/4 - D(t + 2pi/n)/4, t = 2 pi v / fs; the
 * three Dirichlet kernels share the phase exp(-j t (n-1)/2) up to exp(+-j phi), phi = pi (n-1)/n. */
static float hann_kernel(const ef_lf_plan *p, float v)
{
    const float n = (float)p->hf.n_samples, scale = 6.28318531f / (p->res_hf * n); /* 2 pi / fs */
    const float t = v * scale, sh = sinf(0.5f * t), ch = cosf(0.5f * t), sn = sinf(0.5f * n * t);
    /* sin(n (t -+ s)/2) = -sin(n t/2) (n s/2 = pi) and sin((t -+ s)/2) = sh cos(s/2) -+ ch sin(s/2), with
     * cos(s/2) = -cos(phi), sin(s/2) = sin(phi): three libm calls instead of six; near those kernels'
     * centres (where the difference cancels) each is taken directly */
    const float d1 = -sh * p->cos_phi - ch * p->sin_phi, d2 = -sh * p->cos_phi + ch * p->sin_phi;
    const float r0 = fabsf(sh) < 1e-7f ? n : sn / sh;
    const float r1 = fabsf(d1) < 0.002f ? dirichlet((v - p->res_hf) * scale, n) : -sn / d1;
    const float r2 = fabsf(d2) < 0.002f ? dirichlet((v + p->res_hf) * scale, n) : -sn / d2;
    const float re = 0.5f * r0 - 0.25f * p->cos_phi * (r1 + r2), im = 0.25f * p->sin_phi * (r1 - r2);
    return (re * re + im * im) / ((float)p->hf.nfft * 0.375f * n);
}

/* |H(f)|^2 of the four biquads at f Hz (rate fs), written around z = 1 so that float32 keeps its
 * precision with poles this close to it: |1 + z^-1|^2 = 4 (1 - sg), sg = sin^2(w/2), and
 * A(e^jw) = (1 + a1 + a2) - 2 (a1 sg + a2 s2) - j sin w (a1 + 2 a2 cos w), s2 = sin^2 w. */
static float lowpass_power(const ef_lf_plan *p, float f_hz)
{
    const float w = 6.28318531f * f_hz / (p->res_hf * (float)p->hf.n_samples);
    const float sh = sinf(0.5f * w), sg = sh * sh, s2 = 4.0f * sg * (1.0f - sg), sw = sinf(w);
    float h = 1.0f;
    uint32_t i;
    for (i = 0; i < EF_LF_SECTIONS; i++) {
        const float b0 = p->lpf[i][0], c1 = p->lpf[i][1], c2 = p->lpf[i][2];
        const float a1 = -c1 - 2.0f, a2 = 1.0f - c2;
        const float re = -(c1 + c2) - 2.0f * (a1 * sg + a2 * s2);
        const float im = sw * (-(c1 + 2.0f * c2) - 4.0f * a2 * sg); /* a1 + 2 a2 cos w */
        const float num = 4.0f * b0 * (1.0f - sg);
        h *= num * num / (re * re + im * im);
    }
    return h;
}

/* The velocity weight of LF bin j (docs/features.md): (own - counted) / |H(f_j)|^2, without the factor
 * lf_norm: own = g(f_j) from half a bin below vel_lo, counted = what the HF bins count of a line at f_j. */
static float lf_weight(const ef_lf_plan *p, const ef_features_view *f, uint32_t j)
{
    const float fj = (float)j * p->bin_lf, j2 = (float)j * (float)j;
    const float own = p->lf_vel / j2 * (1.0f - 0.5f / j2) * band_edges(f, fj);
    float counted = 0.0f;
    uint32_t k;
    for (k = p->vel_hf_lo; k < p->reach_hi; k++)
        counted += hann_kernel(p, (float)k * p->bin_hf - fj) * (p->hf_vel * hf_weight(p, f, k));
    return (own - counted) / lowpass_power(p, fj);
}

/* The median of v[0..n) (sorted in place; numpy's: the mean of the two middle values when n is even). */
static float median(float *v, uint32_t n)
{
    uint32_t i, j;
    for (i = 1; i < n; i++) { /* insertion sort: n < L/2, once per window */
        const float x = v[i];
        for (j = i; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2u ? v[n / 2u] : 0.5f * (v[n / 2u - 1u] + v[n / 2u]);
}

/* Running speed (docs/features.md, step 6): a harmonic sum of prominences over l[k] = log10(P_lf[k] +
 * floor), k = 0..k_top; `scratch` holds k_top - k_min floats (for the median). */
#define SPEED_HARMONICS 5u
#define SPEED_TERM_CAP 4.0f
#define SPEED_TERM_FLOOR 0.5f
#define SPEED_PEAK_MIN 1.0f
static float speed_hz(const ef_lf_plan *p, const float *l, float *scratch)
{
    const uint32_t top = p->k_top, last = p->lf_rfft.fftLenRFFT / 2u;
    float best = -INFINITY, base;
    uint32_t k, h, best_k = p->k_min, peak;
    float a, b, c, den, delta = 0.0f;
    memcpy(scratch, l + p->k_min, (top - p->k_min) * sizeof(float));
    base = median(scratch, top - p->k_min); /* the noise level */
    for (k = p->k_min; k <= p->k_max; k++) {
        float sum = 0.0f;
        uint32_t terms = 0;
        for (h = 1; h <= SPEED_HARMONICS; h++) {
            const uint32_t hk = h * k;
            float v;
            if (!(hk + 1u < top))
                continue;
            v = l[hk - 1u];
            if (l[hk] > v)
                v = l[hk];
            if (l[hk + 1u] > v)
                v = l[hk + 1u];
            v -= base;
            sum += v < -SPEED_TERM_FLOOR ? -SPEED_TERM_FLOOR : (v > SPEED_TERM_CAP ? SPEED_TERM_CAP : v);
            terms++;
        }
        if (terms == 0)
            break;
        /* the 1x must be a peak of its own, 10 dB above the noise */
        if (l[k] >= l[k - 1u] && l[k] >= l[k + 1u] && l[k] - base >= SPEED_PEAK_MIN && sum > best) {
            best = sum;
            best_k = k;
        }
    }
    peak = best_k - 1u; /* the 1x peak: the largest of best_k-1..best_k+1, the first on ties */
    if (l[best_k] > l[peak])
        peak = best_k;
    if (l[best_k + 1u] > l[peak])
        peak = best_k + 1u;
    if (peak + 1u > last) /* cannot happen for a plan that passed (k_top <= L/2) */
        return (float)((double)peak * p->fs_lf / (double)p->lf_rfft.fftLenRFFT);
    a = l[peak - 1u];
    b = l[peak];
    c = l[peak + 1u];
    den = a - 2.0f * b + c;
    if (den < 0.0f) {
        delta = 0.5f * (a - c) / den;
        delta = delta < -0.5f ? -0.5f : (delta > 0.5f ? 0.5f : delta);
    }
    return (float)(((double)peak + (double)delta) * p->fs_lf / (double)p->lf_rfft.fftLenRFFT);
}

void ef_lf_finish(ef_lf_state *s, ef_lf_readings *r)
{
    const ef_lf_plan *p = s->p;
    const ef_features_view *f = s->f;
    const uint32_t L = p->lf_rfft.fftLenRFFT, nb = f->n_bands;
    const float floor_ = f->log_floor, k_seg = (float)p->n_segments;
    float *u = s->lf, *out = s->acc;
    float mean, nyq, vel_lf = 0.0f, vrms;
    uint32_t i, k, at;
    /* HF: the Welch mean of the segments' band powers */
    for (i = 0; i < nb; i++)
        out[i] = log10f(out[i] * p->hf_norm / k_seg + floor_);
    /* LF spectrum: mean removed, periodic Hann, in-place FFT, then |Y|^2 in place (P[k] at u[k]) */
    mean = mean_of(u, L);
    for (i = 0; i <= L / 2u; i++) { /* once per window: cosf itself (the speed search reads this spectrum) */
        const float w = 0.5f - 0.5f * cosf((float)i * p->lf_step);
        u[i] = (u[i] - mean) * w;
        if (i > 0 && i < L / 2u)
            u[L - i] = (u[L - i] - mean) * w;
    }
    ef_rfft_inplace(&p->lf_rfft, u);
    nyq = u[1];
    u[0] = u[0] * u[0];
    for (k = 1; k < L / 2u; k++)
        u[k] = u[2 * k] * u[2 * k] + u[2 * k + 1] * u[2 * k + 1];
    u[L / 2u] = nyq * nyq;
    at = nb;
    for (i = 0; i < f->n_lf; i++) {
        uint32_t lo = 0, hi = 0;
        float acc = 0.0f;
        lo = bin_ceil_f(ef_model_f32(f->lf_edges_hz, i), L, (float)p->fs_lf, p->fs_lf);
        hi = bin_ceil_f(ef_model_f32(f->lf_edges_hz, i + 1u), L, (float)p->fs_lf, p->fs_lf);
        for (k = lo; k < hi; k++)
            acc += u[k];
        out[at++] = log10f(acc * p->lf_norm + floor_);
    }
    for (k = 1; k < p->vel_lf_hi; k++)
        vel_lf += u[k] * lf_weight(p, f, k);
    vrms = vel_lf * p->lf_norm + s->vel_hf / k_seg * p->hf_norm * p->hf_vel;
    vrms = vrms > 0.0f ? sqrtf(vrms) : 0.0f; /* the subtraction can leave a tiny negative on a silent window */
    for (k = 0; k <= p->k_top && k <= L / 2u; k++) /* log PSD for the speed search */
        u[k] = log10f(u[k] * p->lf_psd + floor_);
    r->vrms_mm_s = vrms;
    r->speed_hz = speed_hz(p, u, u + L / 2u + 1u); /* the spectrum's free upper half: the median's scratch */
    r->kurtosis = s->kurt / k_seg;
    r->crest = s->crest / k_seg;
    if (f->extras & EF_EXTRA_VRMS)
        out[at++] = log10f(vrms + EF_LF_VRMS_FLOOR);
    if (f->extras & EF_EXTRA_KURTOSIS)
        out[at++] = log10f(r->kurtosis + floor_);
    if (f->extras & EF_EXTRA_CREST)
        out[at++] = log10f(r->crest + floor_);
    s->finished = 1;
}
