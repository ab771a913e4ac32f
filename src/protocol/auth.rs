//! mysql_native_password on the server side: nonces from the OS random
//! source and constant-time verification of the client's token.
//!
//! The client sends `SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))`. Knowing only
//! `stage2 = SHA1(SHA1(pw))` (what MariaDB stores as `*HEX`), the server
//! recovers `SHA1(pw)` from the token and checks that hashing it gives stage2.
//! See <https://mariadb.com/kb/en/connection/#mysql_native_password-plugin>.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

pub const NATIVE_PLUGIN: &str = "mysql_native_password";
pub const SCRAMBLE_LEN: usize = 20;

/// SHA1(SHA1(password)): what a server needs to check a native-password token.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeHash([u8; 20]);

impl std::fmt::Debug for NativeHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NativeHash(..)")
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl NativeHash {
    pub fn from_password(password: &[u8]) -> Self {
        NativeHash(sha1(&[&sha1(&[password])]))
    }

    /// Parses MariaDB's `PASSWORD()` output: `*` then 40 hex digits.
    pub fn parse_mariadb_hex(text: &str) -> Option<Self> {
        let hex = text.strip_prefix('*')?;
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let s = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(s, 16).ok()?;
        }
        Some(NativeHash(out))
    }

    /// Equality in constant time: one side is derived from what a client sent.
    pub fn ct_eq(&self, other: &NativeHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A fresh 20-byte nonce. Bytes are printable ASCII (33..=126) because some
/// clients treat the scramble as a C string.
///
/// # Errors
/// When the operating system's random source fails; the login must then fail.
pub fn new_scramble() -> Result<[u8; SCRAMBLE_LEN], getrandom::Error> {
    let mut raw = [0u8; SCRAMBLE_LEN];
    getrandom::fill(&mut raw)?;
    for b in raw.iter_mut() {
        *b = 33 + (*b % 94);
    }
    Ok(raw)
}

/// Checks a mysql_native_password token in constant time. A user with no
/// password (`expected == None`) must send an empty token.
pub fn verify_native(expected: Option<&NativeHash>, scramble: &[u8], token: &[u8]) -> bool {
    let Some(stage2) = expected else {
        return token.is_empty();
    };
    let Ok(token) = <&[u8; 20]>::try_from(token) else {
        return false;
    };
    let mask = sha1(&[scramble, &stage2.0]);
    let mut stage1 = [0u8; 20];
    for ((out, t), m) in stage1.iter_mut().zip(token).zip(mask) {
        *out = t ^ m;
    }
    sha1(&[&stage1]).ct_eq(&stage2.0).into()
}

/// The client side of mysql_native_password, used for backend logins.
pub fn native_token(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    mysql_common::auth::plugins::mysql_native_password::scramble_native(scramble, password)
        .map(|t| t.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_password_hash_matches_known_value() {
        // SELECT PASSWORD('password') on MariaDB.
        let from_pw = NativeHash::from_password(b"password");
        let parsed =
            NativeHash::parse_mariadb_hex("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        assert_eq!(from_pw, parsed);
        assert!(
            NativeHash::parse_mariadb_hex("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_none()
        );
        assert!(NativeHash::parse_mariadb_hex("*2470").is_none());
        assert!(
            NativeHash::parse_mariadb_hex("*ZZ70C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_none()
        );
    }

    #[test]
    fn verifies_what_a_client_computes() {
        let scramble = new_scramble().unwrap();
        let hash = NativeHash::from_password(b"app-pass");
        let token = native_token(&scramble, b"app-pass");
        assert!(verify_native(Some(&hash), &scramble, &token));
        let wrong = native_token(&scramble, b"app-pasS");
        assert!(!verify_native(Some(&hash), &scramble, &wrong));
        assert!(!verify_native(Some(&hash), &scramble, &token[..19]));
        assert!(!verify_native(Some(&hash), &scramble, b""));
        let other_scramble = new_scramble().unwrap();
        assert!(!verify_native(Some(&hash), &other_scramble, &token));
    }

    #[test]
    fn empty_password_needs_empty_token() {
        assert!(verify_native(None, b"x", b""));
        assert!(!verify_native(None, b"x", &[1; 20]));
    }

    #[test]
    fn scrambles_are_printable_and_differ() {
        let a = new_scramble().unwrap();
        let b = new_scramble().unwrap();
        assert_ne!(a, b);
        assert!(a.iter().all(|b| (33..=126).contains(b)));
    }

    #[test]
    fn debug_hides_the_hash() {
        assert_eq!(
            format!("{:?}", NativeHash::from_password(b"x")),
            "NativeHash(..)"
        );
    }
}
