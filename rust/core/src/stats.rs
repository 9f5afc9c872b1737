//! Value statistics shared by `select` and `inspect`: summaries, equal-width histograms
//! and the binning both compute them with.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// Equal-width histogram: `counts[i]` holds values in `[edges[i], edges[i+1])`, the last
/// bin closed on the right.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Count, sum, min and max of values, merged across threads.
#[derive(Clone, Copy)]
pub(crate) struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    pub(crate) const EMPTY: Acc = Acc {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };
    pub(crate) fn add(mut self, v: f64) -> Acc {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self
    }
    pub(crate) fn merge(self, o: Acc) -> Acc {
        Acc {
            count: self.count + o.count,
            sum: self.sum + o.sum,
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    pub(crate) fn summary(self) -> Option<Summary> {
        (self.count > 0).then(|| Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.sum / self.count as f64,
        })
    }
}

/// Maps values to `bins` equal-width bins over `[min, max]` (the last bin closed), with
/// the division done once.
#[derive(Clone, Copy)]
pub struct Binner {
    min: f64,
    scale: f64,
    last: usize,
}

impl Binner {
    pub fn new(min: f64, max: f64, bins: usize) -> Binner {
        let scale = if max > min {
            bins as f64 / (max - min)
        } else {
            0.0
        };
        assert!(
            (1..=1 << 30).contains(&bins),
            "Binner: 1 to 2^30 bins, got {bins}"
        );
        Binner {
            min,
            scale,
            last: bins - 1,
        }
    }

    /// `(min, scale, last)`, for SIMD versions of `bin`.
    pub fn parts(&self) -> (f64, f64, usize) {
        (self.min, self.scale, self.last)
    }

    /// `((v - min) * scale) as usize` capped at the last bin (NaN and negatives give 0).
    /// Computed through `i32`, which gives the same bin for every input (both casts
    /// truncate and saturate, NaN -> 0, and the cap `last` is below `i32::MAX`) and,
    /// unlike a cast to `usize`, vectorises with SSE2/AVX2.
    #[inline(always)]
    pub fn bin(&self, v: f64) -> usize {
        (((v - self.min) * self.scale) as i32).clamp(0, self.last as i32) as usize
    }
}

/// Equal-width edges of `bins` bins from `min` to `max`.
pub fn bin_edges(min: f64, max: f64, bins: usize) -> Vec<f64> {
    (0..=bins)
        .map(|i| min + (max - min) * i as f64 / bins as f64)
        .collect()
}
