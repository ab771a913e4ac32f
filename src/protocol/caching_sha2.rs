//! caching_sha2_password on the server side, free of I/O: the digest a
//! server keeps, the fast-path check, the packets of the exchange and the
//! password recovered from full authentication (cleartext over TLS, or
//! RSA-OAEP over plain TCP).
//!
//! Fast path: the client sends `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce)`.
//! Knowing `SHA256(SHA256(pw))`, the server recovers `SHA256(pw)` and checks
//! that hashing it gives the stored digest. A server that does not have the
//! digest asks for full authentication and caches it once the password is
//! verified. See
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>.

use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::auth::NativeHash;
use crate::secret::Secret;

pub const CACHING_SHA2_PLUGIN: &str = "caching_sha2_password";

/// AuthMoreData status bytes (after the 0x01 marker).
pub const FAST_AUTH_SUCCESS: u8 = 0x03;
pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// What a client on plain TCP sends to ask for the server's public key.
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// Modulus size of a generated key, as MySQL's default.
pub const RSA_BITS: usize = 2048;

/// SHA256(SHA256(password)): what a server needs for the fast path.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha2Digest([u8; 32]);

impl std::fmt::Debug for Sha2Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha2Digest(..)")
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl Sha2Digest {
    pub fn from_password(password: &[u8]) -> Self {
        Sha2Digest(sha256(&[&sha256(&[password])]))
    }
}

/// An AuthMoreData packet carrying one status byte.
pub fn more_data(status: u8) -> [u8; 2] {
    [0x01, status]
}

/// Whether a first response means "no password": empty, or the single NUL
/// that libmysqlclient and Connector/C send for an empty password.
pub fn is_empty_response(token: &[u8]) -> bool {
    token.is_empty() || token == [0]
}

/// Checks a fast-path scramble against `expected` in constant time.
pub fn verify_scramble(expected: &Sha2Digest, nonce: &[u8], token: &[u8]) -> bool {
    let Ok(token) = <&[u8; 32]>::try_from(token) else {
        return false;
    };
    let mask = sha256(&[&expected.0, nonce]);
    let mut stage1 = [0u8; 32];
    for ((out, t), m) in stage1.iter_mut().zip(token).zip(mask) {
        *out = t ^ m;
    }
    sha256(&[&stage1]).ct_eq(&expected.0).into()
}

/// Checks a clear-text password against the stored native hash in constant
/// time. A user with no password (`expected == None`) must send an empty one.
pub fn verify_password(expected: Option<&NativeHash>, password: &[u8]) -> bool {
    match expected {
        None => password.is_empty(),
        Some(stage2) => NativeHash::from_password(password).ct_eq(stage2),
    }
}

/// The password of a full authentication over TLS: the packet is the
/// password followed by a NUL. `None` when the NUL is missing.
pub fn cleartext_password(packet: &[u8]) -> Option<Secret<Vec<u8>>> {
    packet.strip_suffix(&[0]).map(|pw| Secret::new(pw.to_vec()))
}

/// The PEM (SubjectPublicKeyInfo) answer to a public-key request.
pub fn public_key_packet(key: &RsaKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.public_pem.len() + 1);
    out.push(0x01);
    out.extend_from_slice(key.public_pem.as_bytes());
    out
}

/// The server's RSA key for the plain-TCP exchange.
pub struct RsaKey {
    private: rsa::PrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey(..)")
    }
}

/// Why an RSA key could not be had; says nothing about the key itself.
#[derive(Debug, thiserror::Error)]
pub enum RsaKeyError {
    #[error("RSA key generation failed")]
    Generate,
    #[error("not a PKCS#8 or PKCS#1 PEM RSA private key")]
    Parse,
    #[error("cannot encode the RSA public key")]
    Encode,
}

impl RsaKey {
    /// A fresh key of [`RSA_BITS`] bits from the OS random source. CPU-bound:
    /// run it off the event loop.
    ///
    /// # Errors
    /// The random source failed.
    pub fn generate() -> Result<Self, RsaKeyError> {
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
            .map_err(|_| RsaKeyError::Generate)?;
        Self::from_private(private)
    }

    /// Parses a PEM private key (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`).
    ///
    /// # Errors
    /// Not an RSA private key in either form.
    pub fn from_pem(pem: &str) -> Result<Self, RsaKeyError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let private = rsa::PrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| rsa::PrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| RsaKeyError::Parse)?;
        Self::from_private(private)
    }

    fn from_private(private: rsa::PrivateKey) -> Result<Self, RsaKeyError> {
        let public_pem = private
            .as_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| RsaKeyError::Encode)?;
        Ok(RsaKey {
            private,
            public_pem,
        })
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Whether a packet sent where the RSA-encrypted password belongs is a
    /// NUL-terminated clear text instead: not the key's size, NUL at the end.
    pub fn looks_unencrypted(&self, packet: &[u8]) -> bool {
        use rsa::traits::PublicKeyParts;
        packet.len() != self.private.size() && packet.last() == Some(&0)
    }

    /// Recovers the password from the client's RSA packet:
    /// `RSA-OAEP-SHA1(password || NUL XOR nonce repeated)`.
    ///
    /// Every failure (wrong size, bad padding, no trailing NUL) gives the same
    /// empty result and a false `Choice`, so a caller that answers all of
    /// them like a wrong password is no padding oracle.
    pub fn decrypt_password(&self, nonce: &[u8], packet: &[u8]) -> (Choice, Secret<Vec<u8>>) {
        let Ok(mut plain) = self.private.oaep_decrypt::<Sha1>(packet) else {
            return (Choice::from(0), Secret::new(Vec::new()));
        };
        if !nonce.is_empty() {
            for (byte, n) in plain.iter_mut().zip(nonce.iter().cycle()) {
                *byte ^= n;
            }
        }
        match plain.split_last() {
            Some((0, password)) => (Choice::from(1), Secret::new(password.to_vec())),
            _ => (Choice::from(0), Secret::new(Vec::new())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::protocol::auth::new_scramble;
    use std::sync::OnceLock;

    fn key() -> &'static RsaKey {
        static KEY: OnceLock<RsaKey> = OnceLock::new();
        KEY.get_or_init(|| RsaKey::generate().unwrap())
    }

    fn client_scramble(nonce: &[u8; 20], password: &[u8]) -> [u8; 32] {
        mysql_common::auth::plugins::caching_sha2_password::scramble_sha256(nonce, password)
            .unwrap()
    }

    /// What mysql_common's client sends in the RSA exchange.
    fn client_rsa(nonce: &[u8], password: &[u8], pem: &str) -> Vec<u8> {
        let mut pass = password.to_vec();
        pass.push(0);
        for (i, b) in pass.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        mysql_common::crypto::encrypt(&pass, pem.as_bytes()).unwrap()
    }

    #[test]
    fn known_scramble_verifies() {
        // mysql_common's own test vector for scramble_sha256.
        let nonce = [
            0x4e, 0x52, 0x33, 0x48, 0x50, 0x3a, 0x71, 0x49, 0x59, 0x61, 0x5f, 0x39, 0x3d, 0x64,
            0x62, 0x3f, 0x53, 0x64, 0x7b, 0x60,
        ];
        let token = client_scramble(&nonce, b"G!ider27");
        assert_eq!(token[..4], [0x4f, 0x97, 0xbb, 0xfd]);
        let digest = Sha2Digest::from_password(b"G!ider27");
        assert!(verify_scramble(&digest, &nonce, &token));
    }

    #[test]
    fn scramble_check_refuses_wrong_password_nonce_and_length() {
        let nonce = new_scramble().unwrap();
        let digest = Sha2Digest::from_password(b"app-pass");
        let token = client_scramble(&nonce, b"app-pass");
        assert!(verify_scramble(&digest, &nonce, &token));
        assert!(!verify_scramble(
            &digest,
            &nonce,
            &client_scramble(&nonce, b"app-pasS")
        ));
        assert!(!verify_scramble(&digest, &new_scramble().unwrap(), &token));
        assert!(!verify_scramble(&digest, &nonce, &token[..31]));
        assert!(!verify_scramble(&digest, &nonce, b""));
    }

    #[test]
    fn cleartext_password_checks_against_the_native_hash() {
        let hash = NativeHash::from_password(b"app-pass");
        assert!(verify_password(Some(&hash), b"app-pass"));
        assert!(!verify_password(Some(&hash), b"app-pas"));
        assert!(!verify_password(Some(&hash), b""));
        assert!(verify_password(None, b""));
        assert!(!verify_password(None, b"x"));
        assert_eq!(
            cleartext_password(b"pw\0").unwrap().expose().as_slice(),
            b"pw"
        );
        assert!(cleartext_password(b"pw").is_none());
        assert!(cleartext_password(b"").is_none());
    }

    #[test]
    fn empty_responses() {
        assert!(is_empty_response(b""));
        assert!(is_empty_response(b"\0"));
        assert!(!is_empty_response(b"\0\0"));
    }

    #[test]
    fn rsa_exchange_round_trips_with_mysql_common_client() {
        let key = key();
        let nonce = new_scramble().unwrap();
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let packet = public_key_packet(key);
        assert_eq!(packet[0], 0x01);
        // A password longer than the nonce exercises the repeated XOR.
        let long = b"a password longer than twenty bytes";
        let (ok, pw) = key.decrypt_password(&nonce, &client_rsa(&nonce, long, key.public_pem()));
        assert!(bool::from(ok));
        assert_eq!(pw.expose().as_slice(), long);
        // The wrong nonce leaves no trailing NUL.
        let other = new_scramble().unwrap();
        let (ok, pw) = key.decrypt_password(&other, &client_rsa(&nonce, long, key.public_pem()));
        assert!(!bool::from(ok) || pw.expose().as_slice() != long);
    }

    #[test]
    fn clear_text_where_rsa_belongs_is_recognised() {
        let key = key();
        assert!(key.looks_unencrypted(b"app-pass\0"));
        assert!(!key.looks_unencrypted(b"app-pass"));
        let nonce = new_scramble().unwrap();
        let encrypted = client_rsa(&nonce, b"app-pass", key.public_pem());
        assert_eq!(encrypted.len(), RSA_BITS / 8);
        assert!(!key.looks_unencrypted(&encrypted));
    }

    #[test]
    fn rsa_garbage_is_refused_without_panic() {
        let key = key();
        let nonce = new_scramble().unwrap();
        for len in [0usize, 1, 2, 255, 256, 257, 1000] {
            for fill in [0u8, 0xFF, 0x5A] {
                let (ok, pw) = key.decrypt_password(&nonce, &vec![fill; len]);
                assert!(!bool::from(ok));
                assert!(pw.expose().is_empty());
            }
        }
    }

    #[test]
    fn keys_load_from_pem_and_hide_in_debug() {
        use rsa::pkcs8::EncodePrivateKey;
        let pem = key().private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let loaded = RsaKey::from_pem(&pem).unwrap();
        assert_eq!(loaded.public_pem(), key().public_pem());
        assert!(
            RsaKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert_eq!(format!("{loaded:?}"), "RsaKey(..)");
        assert_eq!(
            format!("{:?}", Sha2Digest::from_password(b"x")),
            "Sha2Digest(..)"
        );
    }
}
