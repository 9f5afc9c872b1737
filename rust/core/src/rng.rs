//! The seeded randomness of miniplm, defined exactly so other tools can reproduce it
//! (docs/FORMATS.md): splitmix64, a per-(seed, id) draw, and a Fisher-Yates shuffle.

/// Standard splitmix64 (Steele, Lea, Flood 2014), arithmetic mod 2^64.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform 64-bit draw for instance `id` under `seed`: `splitmix64(splitmix64(seed) ^ id)`.
/// Independent of the order in which ids are visited, so streaming passes can use it.
#[inline]
pub fn rand_u64(seed: u64, id: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ id)
}

/// In-place Fisher-Yates: for i = n-1 down to 1, swap `v[i]` with `v[rand_u64(seed, i) %
/// (i + 1)]`. (The modulo bias is below 2^-40 for n < 2^24 and negligible beyond.)
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    for i in (1..v.len()).rev() {
        let j = (rand_u64(seed, i as u64) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of the reference generator seeded with 0 (state advances by the
        // golden gamma): splitmix64(0), splitmix64(gamma), ...
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        assert_eq!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..1000).collect::<Vec<_>>());
    }
}
