//! Scheduler tables built in userspace and read by the XDP program: the rr/wrr ring in IPVS's
//! interleaved order, and Maglev tables for mh, sh and dh.

/// Longest rr/wrr ring; weights are scaled down proportionally past it.
pub const MAX_RING: usize = 1 << 16;

/// Maglev table sizes: primes, the smallest one at least 100 x the reals is used.
pub const MAGLEV_SIZES: [u32; 13] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131_071, 262_139, 524_287, 1_048_573,
];

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One full cycle of IPVS's weighted round robin (`ip_vs_wrr.c`): positions into `weights`,
/// interleaved so that a heavier real is never picked in long bursts. Reals of weight 0 never
/// appear; all zero gives an empty ring.
#[must_use]
pub fn wrr_ring(weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    let cycle = total / u64::from(g);
    if cycle > MAX_RING as u64 {
        // Keep the proportions within a ring of MAX_RING entries; no live real drops to 0.
        let scaled: Vec<u32> = weights
            .iter()
            .map(|&w| {
                if w == 0 {
                    0
                } else {
                    let s = u64::from(w) * (MAX_RING as u64 / 2) / total;
                    u32::try_from(s.max(1)).unwrap_or(u32::MAX)
                }
            })
            .collect();
        // Every live real keeps one entry at least; if that alone overflows the ring (more
        // live reals than entries), the ring lists each live real once.
        let total_scaled: u64 = scaled.iter().map(|&w| u64::from(w)).sum();
        if total_scaled > MAX_RING as u64 || scaled == weights {
            return (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        }
        return wrr_ring(&scaled);
    }
    let max = weights.iter().copied().max().unwrap_or(0);
    let n = weights.len();
    let cycle = usize::try_from(cycle).unwrap_or(MAX_RING);
    let mut ring = Vec::with_capacity(cycle);
    let (mut i, mut cw) = (n - 1, 0i64);
    while ring.len() < cycle {
        i = (i + 1) % n;
        if i == 0 {
            cw -= i64::from(g);
            if cw <= 0 {
                cw = i64::from(max);
            }
        }
        if i64::from(weights[i]) >= cw {
            ring.push(i);
        }
    }
    ring
}

/// The Maglev table size for `reals` reals: a prime >= 100 x reals (the paper's bound for
/// near-even spread), capped at the largest size.
#[must_use]
pub fn maglev_size(reals: usize) -> u32 {
    let want = (reals as u64).saturating_mul(100);
    MAGLEV_SIZES
        .iter()
        .copied()
        .find(|&m| u64::from(m) >= want)
        .unwrap_or(MAGLEV_SIZES[MAGLEV_SIZES.len() - 1])
}

/// FNV-1a, 64 bits: a stable hash of a real's identity, the same on every node and release.
fn fnv1a(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A Maglev lookup table of `size` entries (a prime): positions into `reals`, each real
/// filling a share proportional to its weight. `reals` are (identity, weight); the identity
/// (e.g. "192.0.2.1:80") fixes each real's preference order, so every node with the same
/// reals builds the same table and removing a real moves little more than its own share.
#[must_use]
pub fn maglev_table(reals: &[(&[u8], u32)], size: u32) -> Vec<u32> {
    let live: Vec<usize> = (0..reals.len()).filter(|&i| reals[i].1 > 0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let m = u64::from(size);
    let total: u64 = live.iter().map(|&i| u64::from(reals[i].1)).sum();
    // Each real's quota of entries, by largest remainder, so the quotas add up to `size`.
    let mut quota: Vec<u64> = live
        .iter()
        .map(|&i| m * u64::from(reals[i].1) / total)
        .collect();
    let mut by_remainder: Vec<usize> = (0..live.len()).collect();
    by_remainder.sort_by_key(|&k| {
        (
            std::cmp::Reverse(m * u64::from(reals[live[k]].1) % total),
            reals[live[k]].0,
        )
    });
    let assigned: u64 = quota.iter().sum();
    for &k in by_remainder
        .iter()
        .take(usize::try_from(m - assigned).unwrap_or(0))
    {
        quota[k] += 1;
    }
    // Per live real: its position in its permutation (offset + j * skip mod M, advanced by
    // one addition per probe), its skip, and the entries it still has to fill.
    let mut perm: Vec<(u32, u32, u64)> = live
        .iter()
        .zip(&quota)
        .map(|(&i, &q)| {
            let offset = fnv1a(reals[i].0, 0) % m;
            let skip = fnv1a(reals[i].0, 0x5bd1_e995) % (m - 1) + 1;
            // Both are below m, which is a u32.
            (
                u32::try_from(offset).unwrap_or(0),
                u32::try_from(skip).unwrap_or(1),
                q,
            )
        })
        .collect();
    // Which entries are still empty, one bit each: the probes that find an entry taken (most
    // of them once the table is nearly full) read this, which stays in the L1 cache, rather
    // than the table itself.
    let len = usize::try_from(size).unwrap_or(0);
    let mut empty = vec![u64::MAX; len.div_ceil(64)];
    let mut table = vec![u32::MAX; len];
    // The reals that still have entries to fill, in turn order.
    let mut turns: Vec<usize> = (0..live.len()).filter(|&k| perm[k].2 > 0).collect();
    while !turns.is_empty() {
        let mut kept = 0;
        for t in 0..turns.len() {
            let k = turns[t];
            let (mut pos, skip, _) = perm[k];
            loop {
                let slot = pos;
                pos += skip;
                if pos >= size {
                    pos -= size;
                }
                let (word, bit) = ((slot >> 6) as usize, 1u64 << (slot & 63));
                if empty[word] & bit != 0 {
                    empty[word] &= !bit;
                    table[slot as usize] = u32::try_from(live[k]).unwrap_or(u32::MAX);
                    break;
                }
            }
            perm[k].0 = pos;
            perm[k].2 -= 1;
            if perm[k].2 > 0 {
                turns[kept] = k;
                kept += 1;
            }
        }
        turns.truncate(kept);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ring: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in ring {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn wrr_follows_ipvs_interleaving() {
        // ip_vs_wrr with weights 4, 3, 2: cw runs 4, 3, 2, 1 (gcd 1).
        assert_eq!(wrr_ring(&[4, 3, 2]), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
        assert_eq!(wrr_ring(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(wrr_ring(&[2, 0, 2]), [0, 2]);
        assert!(wrr_ring(&[0, 0]).is_empty());
    }

    #[test]
    fn wrr_ring_keeps_proportions_when_scaled() {
        let ring = wrr_ring(&[60_000, 20_000, 1]);
        assert!(ring.len() <= MAX_RING);
        let c = counts(&ring, 3);
        assert_eq!(c[2], 1, "a live real keeps at least one entry");
        let ratio =
            f64::from(u32::try_from(c[0]).unwrap()) / f64::from(u32::try_from(c[1]).unwrap());
        assert!((ratio - 3.0).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn maglev_sizes_are_prime_and_rising() {
        for w in MAGLEV_SIZES.windows(2) {
            assert!(w[0] < w[1]);
        }
        for m in MAGLEV_SIZES {
            assert!((2..=m.isqrt()).all(|d| m % d != 0), "{m} is not prime");
        }
        assert_eq!(maglev_size(3), 509);
        assert_eq!(maglev_size(10), 1021);
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("198.18.1.{i}:80")).collect()
    }

    #[test]
    fn maglev_fills_by_weight() {
        let names = ids(3);
        let reals: Vec<(&[u8], u32)> = vec![
            (names[0].as_bytes(), 3),
            (names[1].as_bytes(), 1),
            (names[2].as_bytes(), 0),
        ];
        let t = maglev_table(&reals, 1021);
        assert_eq!(t.len(), 1021);
        let mut c = [0usize; 3];
        for &e in &t {
            c[e as usize] += 1;
        }
        assert_eq!(c[2], 0, "weight 0 gets no entry");
        assert_eq!(c[0] + c[1], 1021);
        assert!(c[0].abs_diff(766) <= 1, "{c:?}");
    }

    /// The paper's population loop (§3.4) written plainly: the j-th choice of a real is
    /// (offset + j * skip) mod M, and reals take turns while they have quota left.
    fn maglev_reference(reals: &[(&[u8], u32)], size: u32, quota: &[u64]) -> Vec<u32> {
        let m = u64::from(size);
        let mut next = vec![0u64; reals.len()];
        let mut left = quota.to_vec();
        let mut table = vec![u32::MAX; usize::try_from(size).unwrap()];
        while left.iter().any(|&q| q > 0) {
            for (k, r) in reals.iter().enumerate() {
                if left[k] == 0 {
                    continue;
                }
                let offset = fnv1a(r.0, 0) % m;
                let skip = fnv1a(r.0, 0x5bd1_e995) % (m - 1) + 1;
                loop {
                    let slot = usize::try_from((offset + next[k] * skip) % m).unwrap();
                    next[k] += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = u32::try_from(k).unwrap();
                        left[k] -= 1;
                        break;
                    }
                }
            }
        }
        table
    }

    #[test]
    fn maglev_matches_the_papers_population() {
        let names = ids(37);
        let reals: Vec<(&[u8], u32)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes(), 1 + u32::try_from(i % 3).unwrap()))
            .collect();
        let size = maglev_size(reals.len());
        let table = maglev_table(&reals, size);
        let mut quota = vec![0u64; reals.len()];
        for &e in &table {
            quota[e as usize] += 1;
        }
        assert_eq!(table, maglev_reference(&reals, size, &quota));
    }

    #[test]
    fn maglev_is_stable_and_removal_moves_about_its_share() {
        let names = ids(10);
        let all: Vec<(&[u8], u32)> = names.iter().map(|n| (n.as_bytes(), 1)).collect();
        let size = maglev_size(all.len());
        let before = maglev_table(&all, size);
        assert_eq!(before, maglev_table(&all, size), "deterministic");
        // Remove real 4: map the remaining positions back to the original indexes.
        let rest: Vec<(&[u8], u32)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, r)| *r)
            .collect();
        let after: Vec<u32> = maglev_table(&rest, size)
            .into_iter()
            .map(|p| if p >= 4 { p + 1 } else { p })
            .collect();
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && **b != 4)
            .count();
        // Entries of the removed real must move; others should mostly stay (Maglev, §3.4).
        let share = before.iter().filter(|&&b| b == 4).count();
        assert!(share > 0);
        assert!(
            moved * 10 < size as usize,
            "{moved} of {size} entries of surviving reals moved"
        );
    }
}
