//! VRRPv2 authentication, as keepalived still offers it: a simple password (`auth_type PASS`)
//! and `IPsec` AH (`auth_type AH`, see [`crate::vrrp::ah`]).
//!
//! RFC 3768 §5.3.6 removed authentication, but keepalived peers configured with a password send
//! Auth Type 1 or 2 (RFC 2338 §5.3.6) and drop adverts without it, so we must speak it.

/// Auth Type values of the VRRPv2 header (RFC 2338 §5.3.6, kept as reserved by RFC 3768).
pub const AUTH_NONE: u8 = 0;
pub const AUTH_SIMPLE: u8 = 1;
pub const AUTH_AH: u8 = 2;

/// Length of the Authentication Data field (RFC 3768 §5.3.10).
pub const AUTH_DATA_LEN: usize = 8;

/// An instance's authentication: the password travels in the advert (PASS) or keys the AH
/// header's HMAC (AH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Pass(Password),
    Ah(Password),
}

impl Auth {
    /// The Auth Type of the VRRPv2 header.
    #[must_use]
    pub const fn auth_type(&self) -> u8 {
        match self {
            Self::Pass(_) => AUTH_SIMPLE,
            Self::Ah(_) => AUTH_AH,
        }
    }

    /// The Authentication Data field: the password for PASS, zeros for AH (keepalived's).
    #[must_use]
    pub const fn auth_data(&self) -> [u8; AUTH_DATA_LEN] {
        match self {
            Self::Pass(p) => p.0,
            Self::Ah(_) => [0; AUTH_DATA_LEN],
        }
    }
}

/// A simple-text password as it travels: its first 8 bytes, zero padded (keepalived truncates
/// longer `auth_pass` values the same way).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Password([u8; AUTH_DATA_LEN]);

impl Password {
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut data = [0; AUTH_DATA_LEN];
        let len = text.len().min(AUTH_DATA_LEN);
        data[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self(data)
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8; AUTH_DATA_LEN] {
        &self.0
    }

    /// Compares in constant time, so response timing does not reveal how many leading bytes of
    /// a guess were right.
    #[must_use]
    pub fn matches(&self, received: &[u8; AUTH_DATA_LEN]) -> bool {
        let diff = self
            .0
            .iter()
            .zip(received)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for Password {
    // Never print the secret into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_to_eight_bytes_like_keepalived() {
        assert_eq!(Password::new("secret12xyz").as_bytes(), b"secret12");
    }

    #[test]
    fn pads_short_passwords_with_zeros() {
        assert_eq!(Password::new("1234").as_bytes(), b"1234\0\0\0\0");
    }

    #[test]
    fn matches_only_the_exact_bytes() {
        let pw = Password::new("secret12");
        assert!(pw.matches(b"secret12"));
        assert!(!pw.matches(b"secret13"));
        assert!(!pw.matches(b"\0\0\0\0\0\0\0\0"));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", Password::new("secret12")), "Password(..)");
    }
}
