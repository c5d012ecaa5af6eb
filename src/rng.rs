//! The one source of randomness: a seeded generator split into named streams.
//!
//! candle's CPU generator cannot be seeded, so every random number in drop-exp
//! (weight init, batch order, dropout masks, injected noise) comes from here.
//! A run's `--seed` is expanded into four independent streams:
//!
//! * [`Stream::Init`] draws the initial weights,
//! * [`Stream::Shuffle`] draws each epoch's batch order,
//! * [`Stream::Noise`] draws masks and noise,
//! * [`Stream::Probe`] draws the noise of measurements (activation probes,
//!   MC-dropout passes), so that measuring never changes training.
//!
//! Because init and shuffle never depend on the configuration, two
//! configurations trained with the same seed start from the same weights and
//! see the same batches; only their noise differs. Comparisons between
//! configurations can then be paired by seed (common random numbers).

use rand::{RngCore, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The purpose a stream of random numbers serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Init,
    Shuffle,
    Noise,
    /// Measurements that must not disturb training (probes, MC passes).
    Probe,
}

impl Stream {
    fn tag(self) -> u64 {
        match self {
            Stream::Init => 0x1a17_0000_0000_0001,
            Stream::Shuffle => 0x5e0f_0000_0000_0002,
            Stream::Noise => 0x9015_0000_0000_0003,
            Stream::Probe => 0x960b_0000_0000_0004,
        }
    }
}

/// SplitMix64 finaliser: turns (seed, tag) into a well-mixed 64-bit seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded generator for one stream of one run.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: Xoshiro256PlusPlus,
}

impl Rng {
    /// The generator for `stream` of the run seeded with `seed`.
    pub fn new(seed: u64, stream: Stream) -> Self {
        let s = mix(mix(seed) ^ stream.tag());
        Self {
            inner: Xoshiro256PlusPlus::seed_from_u64(s),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn uniform(&mut self) -> f32 {
        (self.inner.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Fills `out` with uniforms in [0, 1), two per 64-bit draw (bulk filling
    /// is about three times faster than one draw per number).
    pub fn fill_uniform(&mut self, out: &mut [f32]) {
        const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
        let mut chunks = out.chunks_exact_mut(2);
        for pair in &mut chunks {
            let r = self.inner.next_u64();
            pair[0] = ((r >> 40) as u32) as f32 * SCALE;
            pair[1] = (((r >> 8) & 0xff_ffff) as u32) as f32 * SCALE;
        }
        for x in chunks.into_remainder() {
            *x = self.uniform();
        }
    }

    /// Fills `out` with standard normal draws.
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        for x in out.iter_mut() {
            *x = StandardNormal.sample(&mut self.inner);
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = (self.inner.next_u64() % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_repeats() {
        let mut a = Rng::new(7, Stream::Noise);
        let mut b = Rng::new(7, Stream::Noise);
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn streams_and_seeds_differ() {
        let a = Rng::new(7, Stream::Noise).next_u64();
        assert_ne!(a, Rng::new(7, Stream::Init).next_u64());
        assert_ne!(a, Rng::new(8, Stream::Noise).next_u64());
    }

    #[test]
    fn uniforms_are_in_range_with_mean_one_half() {
        let mut r = Rng::new(1, Stream::Noise);
        let mut v = vec![0f32; 100_001];
        r.fill_uniform(&mut v);
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        // sd of the mean = sqrt(1/12 / n) ~ 0.0009; allow 5 sd.
        assert!((mean - 0.5).abs() < 0.0046, "mean {mean}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::new(3, Stream::Shuffle).permutation(1000);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<u32>>());
    }
}
