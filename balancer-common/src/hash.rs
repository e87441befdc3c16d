//! The flow hash both sides agree on: userspace uses it to predict and test which bucket a
//! client lands in, the XDP program to pick the bucket.

/// Murmur3's 32-bit finaliser: every input bit affects every output bit.
#[expect(clippy::inline_always, reason = "called per packet by the XDP program")]
#[inline(always)]
#[must_use]
pub const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of an address (as stored in the maps) and an optional port, for sh, dh and mh.
#[expect(clippy::inline_always, reason = "called per packet by the XDP program")]
#[inline(always)]
#[must_use]
pub const fn addr_hash(addr: &[u32; 4], port_be: u16) -> u32 {
    let mut h = 0x9e37_79b9u32;
    h = mix32(h ^ addr[0]);
    h = mix32(h ^ addr[1]);
    h = mix32(h ^ addr[2]);
    h = mix32(h ^ addr[3]);
    mix32(h ^ port_be as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_every_word_change_the_hash() {
        let a = [1, 2, 3, 4];
        let base = addr_hash(&a, 0);
        assert_ne!(base, addr_hash(&a, 80));
        for i in 0..4 {
            let mut b = a;
            b[i] ^= 1;
            assert_ne!(base, addr_hash(&b, 0), "word {i}");
        }
    }
}
