//! The token bucket's column loop four rows at a time (AVX2).
//!
//! The bucket is kept in the virtual-scheduling form of [`super::bucket`]'s block loop: with
//! `t` the units refilled since an origin time, the level is `cap - (f - t)` for a count
//! `f >= t`; a row refills with `f = max(f, t)` and a take of `need` units conforms iff
//! `max(f, t) + need <= t + cap`, then adds `need` to `f`. If every row of a run from `s` on
//! conforms, then with `N_i` the units taken by rows `s..=i`,
//!
//! `f_i = N_i + max(f_(s-1), max over s <= j <= i of (t_j - N_(j-1)))`,
//!
//! a prefix sum and a prefix maximum, which vector lanes compute four rows at a time. The
//! lanes take that bet for four rows and check every one (`f_i <= t_i + cap`); the first row
//! that loses it is refused by hand and the run starts again after it, so the answers are
//! exactly those of the row-at-a-time loop.
//!
//! Rows the lanes do not take (the caller runs them one at a time and comes back): a time
//! before the row before, a time 2**32 ns or more past the origin, a cost above `max_cost`
//! (or with its top bit set: a negative int64), and the last rows when fewer than four are
//! left.

use super::Nanos;
use core::arch::x86_64::{
    __m256i, _mm256_add_epi64, _mm256_alignr_epi8, _mm256_blend_epi32, _mm256_blendv_epi8,
    _mm256_castsi256_pd, _mm256_cmpgt_epi64, _mm256_loadu_si256, _mm256_movemask_pd,
    _mm256_mul_epu32, _mm256_or_si256, _mm256_permute2x128_si256, _mm256_permute4x64_epi64,
    _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_setzero_si256, _mm256_slli_si256,
    _mm256_srli_epi64, _mm256_storeu_si256, _mm256_sub_epi64, _mm256_testz_si256,
};

/// A bucket's constants, as [`take_run`] needs them.
pub struct Run {
    /// Capacity in units, below 2**60.
    pub cap: u64,
    /// Units a nanosecond, below 2**30.
    pub per_ns: u64,
    /// Units a token, below 2**32.
    pub unit: u64,
    /// The largest cost that can conform, below 2**32.
    pub max_cost: u64,
}

impl Run {
    /// The constants if [`take_run`] can take the bucket: then a refill over less than 2**32 ns
    /// is below 2**62 units, a cost up to `max_cost` is at most `cap` units, and no sum below
    /// reaches 2**63.
    pub fn new(cap: u64, per_ns: u64, unit: u64, max_cost: u64) -> Option<Run> {
        (cap < 1 << 60 && per_ns < 1 << 30 && unit < 1 << 32 && max_cost < 1 << 32).then_some(Run {
            cap,
            per_ns,
            unit,
            max_cost,
        })
    }
}

/// `max(a, b)` of signed 64-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn max64(a: __m256i, b: __m256i) -> __m256i {
    _mm256_blendv_epi8(b, a, _mm256_cmpgt_epi64(a, b))
}

/// The four lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code, clippy::cast_ptr_alignment)] // an unaligned store
fn lanes(v: __m256i) -> [i64; 4] {
    let mut a = [0i64; 4];
    // SAFETY: `a` is 32 bytes, written by an unaligned store.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast::<__m256i>(), v) };
    a
}

/// Runs of conforming (or refused) rows shorter than this, twice in a row, send the rows back
/// to the caller's one-at-a-time loop for a while: each change of run costs about what a few
/// rows do there.
pub const CHURN: usize = 6;

/// Runs the rows of `costs`, `times` and `out` (as long as the shortest) from the first on,
/// for a bucket whose origin is `origin` (the time of the row before the first, at which
/// `t = 0`) and whose count is `f` there (`0 <= f <= cap`: the level is `cap - f`). Writes
/// the answers of the rows it takes and returns how many it took (`k`: rows `0..k`, all with
/// times in `[origin, origin + 2**32)`, never going back), the count `f >= t` after them,
/// relative to the same origin, and whether it stopped because answers change too often for
/// the lanes to pay (then the caller should run some rows itself before coming back).
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
// Lanes below 2**63; unaligned loads.
#[allow(
    unsafe_code,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_ptr_alignment
)]
pub unsafe fn take_run(
    costs: &[u64],
    times: &[Nanos],
    out: &mut [bool],
    origin: Nanos,
    f: i64,
    r: &Run,
) -> (usize, i64, bool) {
    let n = costs.len().min(times.len()).min(out.len());
    let zero = _mm256_setzero_si256();
    let c = Consts {
        origin: _mm256_set1_epi64x(origin as i64),
        // Both below 2**32, in every 32-bit half: `_mm256_mul_epu32` reads the low one (set
        // this way, the compiler sees a 32-bit multiply and emits one instruction).
        per_ns: _mm256_set1_epi32(r.per_ns as i32),
        unit: _mm256_set1_epi32(r.unit as i32),
        max_cost: _mm256_set1_epi64x(r.max_cost as i64),
        cap: _mm256_set1_epi64x(r.cap as i64),
    };
    let mut f = f;
    // The time of the row before, in ns past the origin (every lane).
    let mut before = zero;
    // Rows in the run before the current one, and where the current one began.
    let (mut last_run, mut run_start) = (usize::MAX, 0);
    let mut i = 0;
    loop {
        // A run of conforming rows. In every lane: units taken since the run began, and the
        // prefix maximum (which starts at the count).
        let mut taken = zero;
        let mut top = _mm256_set1_epi64x(f);
        let refused = loop {
            if i + 4 > n {
                return (i, lanes(taken)[0] + lanes(top)[0], false);
            }
            // SAFETY: rows i..i + 4 are in both slices (i + 4 <= n).
            let (d, cv, odd) = unsafe { rows(times, costs, i, before, &c) };
            let (t, need) = (_mm256_mul_epu32(d, c.per_ns), _mm256_mul_epu32(cv, c.unit));
            // N: units taken through each row if all conform.
            let s1 = _mm256_add_epi64(
                need,
                _mm256_blend_epi32::<0b11>(_mm256_permute4x64_epi64::<0b10_01_00_00>(need), zero),
            );
            let s2 = _mm256_add_epi64(s1, _mm256_permute2x128_si256::<0x08>(s1, s1));
            let upto = _mm256_add_epi64(s2, taken);
            // max(f, t_j - N_(j-1)) through each row (a lane repeated by a shift changes no
            // maximum).
            let v = _mm256_sub_epi64(t, _mm256_sub_epi64(upto, need));
            let m1 = max64(v, _mm256_permute4x64_epi64::<0b10_01_00_00>(v));
            let m2 = max64(m1, _mm256_permute4x64_epi64::<0b01_00_01_00>(m1));
            let p = max64(m2, top);
            let fv = _mm256_add_epi64(upto, p);
            let short = _mm256_cmpgt_epi64(fv, _mm256_add_epi64(t, c.cap));
            // Rows from the first that stops are written again, here or by the caller.
            out[i..i + 4].copy_from_slice(&[true; 4]);
            let stop = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_or_si256(odd, short)));
            if stop == 0 {
                taken = _mm256_permute4x64_epi64::<0b11_11_11_11>(upto);
                top = _mm256_permute4x64_epi64::<0b11_11_11_11>(p);
                before = _mm256_permute4x64_epi64::<0b11_11_11_11>(d);
                i += 4;
                continue;
            }
            // The rows before lane j conform; lane j is the caller's or refused here.
            let j = stop.trailing_zeros() as usize;
            let f_before = if j == 0 {
                lanes(taken)[0] + lanes(top)[0]
            } else {
                lanes(fv)[j - 1]
            };
            if _mm256_movemask_pd(_mm256_castsi256_pd(odd)) & (1 << j) != 0 {
                return (i + j, f_before, false);
            }
            out[i + j] = false;
            before = _mm256_set1_epi64x(lanes(d)[j]);
            break (j, f_before.max(lanes(t)[j]));
        };
        (i, f) = (i + refused.0 + 1, refused.1);
        if churn(&mut last_run, &mut run_start, i) {
            return (i, f, true);
        }
        // A run of refused rows: the count stays put (a refused row never finds the bucket
        // full, as a cost up to max_cost fits a full bucket), so each row is judged alone:
        // refused while f + need > t + cap.
        let fv = _mm256_set1_epi64x(f);
        let taken = loop {
            if i + 4 > n {
                return (i, f, false);
            }
            // SAFETY: rows i..i + 4 are in both slices (i + 4 <= n).
            let (d, cv, odd) = unsafe { rows(times, costs, i, before, &c) };
            let (t, need) = (_mm256_mul_epu32(d, c.per_ns), _mm256_mul_epu32(cv, c.unit));
            let fits = _mm256_cmpgt_epi64(
                _mm256_add_epi64(t, c.cap),
                _mm256_sub_epi64(_mm256_add_epi64(fv, need), _mm256_set1_epi64x(1)),
            );
            out[i..i + 4].copy_from_slice(&[false; 4]);
            let stop = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_or_si256(odd, fits)));
            if stop == 0 {
                before = _mm256_permute4x64_epi64::<0b11_11_11_11>(d);
                i += 4;
                continue;
            }
            let j = stop.trailing_zeros() as usize;
            if _mm256_movemask_pd(_mm256_castsi256_pd(odd)) & (1 << j) != 0 {
                return (i + j, f, false);
            }
            // Row j conforms: a run of takes starts.
            out[i + j] = true;
            before = _mm256_set1_epi64x(lanes(d)[j]);
            break (j, f.max(lanes(t)[j]) + lanes(need)[j]);
        };
        (i, f) = (i + taken.0 + 1, taken.1);
        if churn(&mut last_run, &mut run_start, i) {
            return (i, f, true);
        }
    }
}

/// Rows a call to [`take_all`] takes at once.
pub const ALL_ROWS: usize = 128;

/// The rows of `costs` and `times` (the first [`ALL_ROWS`] of each) when they all conform for
/// want of anything else: their costs add up to no more than the level at the start (`cap -
/// f`, `f` the count at `origin` as in [`take_run`]). Later refills only raise the level, so
/// every row conforms whatever the times. Returns the count after them, relative to `origin`,
/// computed as in [`take_run`] (`f_end = N + max(f, max_j (t_j - N_(j-1)))`, in lanes without a
/// chain from one four rows to the next beyond an add and a maximum), or `None`, having
/// changed nothing, when the costs do not fit, or a cost is above `max_cost`, or a time goes
/// back or lies 2**32 ns or more past `origin` (the caller then runs the rows otherwise).
///
/// # Safety
/// The CPU must have AVX2, and both slices must hold at least [`ALL_ROWS`] rows.
#[target_feature(enable = "avx2")]
// Lanes below 2**63; unaligned loads.
#[allow(
    unsafe_code,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_ptr_alignment
)]
pub unsafe fn take_all(
    costs: &[u64],
    times: &[Nanos],
    origin: Nanos,
    f: i64,
    r: &Run,
) -> Option<i64> {
    assert!(costs.len() >= ALL_ROWS && times.len() >= ALL_ROWS);
    let zero = _mm256_setzero_si256();
    // First the costs alone: their sum, and whether one has a bit at 32 or above. A cost past
    // max_cost needs no check of its own: its units alone exceed the capacity, so the sum
    // cannot fit the level.
    let (mut sum, mut wide) = (zero, zero);
    for i in (0..ALL_ROWS).step_by(4) {
        // SAFETY: rows i..i + 4 are in `costs` (i + 4 <= ALL_ROWS <= costs.len()).
        let cv = unsafe { _mm256_loadu_si256(costs.as_ptr().add(i).cast::<__m256i>()) };
        sum = _mm256_add_epi64(sum, cv);
        wide = _mm256_or_si256(wide, cv);
    }
    let wide = _mm256_srli_epi64::<32>(wide);
    if _mm256_testz_si256(wide, wide) == 0 {
        return None;
    }
    // Each cost below 2**32: the sum is below 2**39.
    let tokens = lanes(sum).iter().map(|&x| x as u64).sum::<u64>();
    let level = r.cap - f as u64;
    if u128::from(tokens) * u128::from(r.unit) > u128::from(level) {
        return None;
    }
    // Below 2**32 in every 32-bit half, as in `take_run`.
    let (origin, per_ns, unit) = (
        _mm256_set1_epi64x(origin as i64),
        _mm256_set1_epi32(r.per_ns as i32),
        _mm256_set1_epi32(r.unit as i32),
    );
    // `taken`: units taken before the current four rows (every lane); `top`: the maximum of
    // `t_j - N_(j-1)` so far (per lane); `prev`: the times of the four rows before.
    let (mut taken, mut top, mut prev) = (zero, _mm256_set1_epi64x(f), zero);
    let (mut back, mut far) = (zero, zero);
    for i in (0..ALL_ROWS).step_by(4) {
        // SAFETY: rows i..i + 4 are in both slices (i + 4 <= ALL_ROWS).
        let (tv, cv) = unsafe {
            (
                _mm256_loadu_si256(times.as_ptr().add(i).cast::<__m256i>()),
                _mm256_loadu_si256(costs.as_ptr().add(i).cast::<__m256i>()),
            )
        };
        let d = _mm256_sub_epi64(tv, origin);
        // Each row's predecessor, [prev3, d0, d1, d2]; the first row's is the origin (0).
        let pred = _mm256_alignr_epi8::<8>(d, _mm256_permute2x128_si256::<0x21>(prev, d));
        back = _mm256_or_si256(back, _mm256_cmpgt_epi64(pred, d));
        far = _mm256_or_si256(far, d);
        prev = d;
        let (t, need) = (_mm256_mul_epu32(d, per_ns), _mm256_mul_epu32(cv, unit));
        // Units taken through each row, within the four, then since the first row.
        let s1 = _mm256_add_epi64(need, _mm256_slli_si256::<8>(need));
        let s2 = _mm256_add_epi64(
            s1,
            _mm256_blend_epi32::<0b0000_1111>(_mm256_permute4x64_epi64::<0b01_01_00_00>(s1), zero),
        );
        let upto = _mm256_add_epi64(s2, taken);
        top = max64(top, _mm256_sub_epi64(t, _mm256_sub_epi64(upto, need)));
        taken = _mm256_add_epi64(taken, _mm256_permute4x64_epi64::<0b11_11_11_11>(s2));
    }
    // A time past origin + 2**32 ns (or before the origin, which wraps high), or going back.
    let far = _mm256_or_si256(_mm256_srli_epi64::<32>(far), back);
    if _mm256_testz_si256(far, far) == 0 {
        return None;
    }
    let top = lanes(top).into_iter().max().unwrap_or(f);
    Some(lanes(taken)[0] + top)
}

/// The bucket's constants in every lane.
struct Consts {
    origin: __m256i,
    per_ns: __m256i,
    unit: __m256i,
    max_cost: __m256i,
    cap: __m256i,
}

/// Rows `i..i + 4`: their times in ns past the origin, their costs, and the lanes the caller
/// must run (time out of range or going back from the row before, whose time is `before`;
/// cost above `max_cost`). In range (no bit at 32 or above in d or the cost) the signed
/// comparisons compare the true values; a lane's predecessor is `before` (in range) or an
/// earlier lane, itself checked first.
///
/// # Safety
/// The CPU must have AVX2, and `i + 4` rows must be in `times` and `costs`.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code, clippy::cast_ptr_alignment)] // unaligned loads
unsafe fn rows(
    times: &[Nanos],
    costs: &[u64],
    i: usize,
    before: __m256i,
    c: &Consts,
) -> (__m256i, __m256i, __m256i) {
    debug_assert!(i + 4 <= times.len().min(costs.len()));
    // SAFETY: the caller's promise; unaligned loads.
    let (tv, cv) = unsafe {
        (
            _mm256_loadu_si256(times.as_ptr().add(i).cast::<__m256i>()),
            _mm256_loadu_si256(costs.as_ptr().add(i).cast::<__m256i>()),
        )
    };
    let d = _mm256_sub_epi64(tv, c.origin);
    // [before, d0, d1, d2]: each row's predecessor.
    let d_before = _mm256_blend_epi32::<0b11>(_mm256_permute4x64_epi64::<0b10_01_00_00>(d), before);
    let wide = _mm256_srli_epi64::<32>(_mm256_or_si256(d, cv));
    let odd = _mm256_or_si256(
        _mm256_cmpgt_epi64(wide, _mm256_setzero_si256()),
        _mm256_or_si256(
            _mm256_cmpgt_epi64(d_before, d),
            _mm256_cmpgt_epi64(cv, c.max_cost),
        ),
    );
    (d, cv, odd)
}

/// Notes a change of run at row `i`; true when this run and the one before were both
/// shorter than [`CHURN`] rows.
fn churn(last_run: &mut usize, run_start: &mut usize, i: usize) -> bool {
    let run = i - *run_start;
    let both_short = run < CHURN && *last_run < CHURN;
    (*last_run, *run_start) = (run, i);
    both_short
}
