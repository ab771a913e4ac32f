//! Tenant database passwords at rest: AES-256-GCM under one 32-byte key.
//!
//! # Stored format (`tenants.db_password_encrypted`)
//!
//! ```text
//! byte 0       format version, 1
//! bytes 1..13  nonce: 96 random bits, fresh for every encryption
//! bytes 13..   AES-256-GCM ciphertext of the UTF-8 password, then its 16-byte tag
//! ```
//!
//! The version byte is also the associated data, so it cannot be altered
//! without the tag failing. A password of n bytes takes n + 29 bytes; the
//! column holds 512, so passwords up to 483 bytes.
//!
//! # The key
//!
//! 32 bytes, written as 64 hex digits or as base64 (what
//! `silo secret generate-key` prints), from `[control_plane] secret_key_file`
//! or, without it, the `SILO_SECRET_KEY` environment variable. A key file
//! may also hold the 32 raw bytes. Neither the key nor a password is ever
//! part of an error message or of `Debug` output.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;

use crate::secret::Secret;

/// The environment variable holding the key when no key file is configured.
pub const KEY_ENV: &str = "SILO_SECRET_KEY";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Why a key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no key for tenant database passwords: set {KEY_ENV} or [control_plane] secret_key_file (create one with `silo secret generate-key`)"
    )]
    Missing,
    #[error("{0}: expected 32 bytes written as 64 hex digits or as base64")]
    Malformed(String),
    #[error("{0}: {1}")]
    Unreadable(String, String),
    #[error("the system's random source failed: {0}")]
    Random(String),
}

/// Why a stored password could not be decrypted. Says nothing of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("too short to be an encrypted value")]
    Truncated,
    #[error("unknown format version {0} (this silo reads version 1)")]
    Version(u8),
    #[error("cannot be decrypted with this key (wrong key, or the value was altered)")]
    Authentication,
    #[error("decrypts to something that is not UTF-8 text")]
    NotText,
}

/// The AES-256-GCM key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Secret<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(Secret::new(bytes))
    }

    /// A fresh key from the system's random source.
    ///
    /// # Errors
    /// The random source failed.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or
    /// not); surrounding whitespace is ignored. `origin` names where the
    /// text came from, for the error.
    ///
    /// # Errors
    /// Anything else than 32 bytes in one of those forms.
    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let malformed = || KeyError::Malformed(origin.to_string());
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text).ok_or_else(malformed)?
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(malformed)?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// The key from `file` if given, else from [`KEY_ENV`].
    ///
    /// # Errors
    /// No key configured, an unreadable file, or a malformed key.
    pub fn load(file: Option<&Path>) -> Result<SecretKey, KeyError> {
        match file {
            Some(path) => {
                let origin = format!("secret key file {}", path.display());
                let bytes = std::fs::read(path)
                    .map_err(|e| KeyError::Unreadable(origin.clone(), e.to_string()))?;
                match std::str::from_utf8(&bytes) {
                    Ok(text) => SecretKey::parse(text, &origin),
                    Err(_) => <[u8; 32]>::try_from(bytes.as_slice())
                        .map(SecretKey::from_bytes)
                        .map_err(|_| KeyError::Malformed(origin)),
                }
            }
            None => match std::env::var(KEY_ENV) {
                Ok(text) if !text.trim().is_empty() => SecretKey::parse(&text, KEY_ENV),
                Ok(_) | Err(std::env::VarError::NotPresent) => Err(KeyError::Missing),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(KeyError::Malformed(KEY_ENV.to_string()))
                }
            },
        }
    }

    /// Base64, as `silo secret generate-key` prints it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.expose())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose().into())
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    ///
    /// # Errors
    /// The random source failed.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &[VERSION],
                },
            )
            // Only for inputs of gigabytes, which a password never is.
            .map_err(|_| KeyError::Random("encryption refused the input".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value written by [`SecretKey::seal`].
    ///
    /// # Errors
    /// The value is damaged, of another format version, or was sealed
    /// under another key.
    pub fn open(&self, stored: &[u8]) -> Result<Secret<String>, OpenError> {
        if stored.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        if stored[0] != VERSION {
            return Err(OpenError::Version(stored[0]));
        }
        let plain = self
            .cipher()
            .decrypt(
                Nonce::from_slice(&stored[1..HEADER_LEN]),
                Payload {
                    msg: &stored[HEADER_LEN..],
                    aad: &[VERSION],
                },
            )
            .map_err(|_| OpenError::Authentication)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| OpenError::NotText)
    }
}

/// Upper-case hex, as `UNHEX('…')` takes it.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let k = key(7);
        let a = k.seal(b"s3cret pass").unwrap();
        let b = k.seal(b"s3cret pass").unwrap();
        assert_ne!(a, b, "the nonce must differ between encryptions");
        assert_eq!(a.len(), 11 + 29);
        assert_eq!(a[0], 1);
        assert_eq!(k.open(&a).unwrap().expose(), "s3cret pass");
        assert_eq!(k.open(&b).unwrap().expose(), "s3cret pass");
        assert_eq!(k.open(&k.seal(b"").unwrap()).unwrap().expose(), "");
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(7);
        let sealed = k.seal(b"password").unwrap();
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(k.open(&bad).unwrap_err(), OpenError::Authentication, "{i}");
        }
        let mut bad = sealed.clone();
        bad[0] = 2;
        assert_eq!(k.open(&bad).unwrap_err(), OpenError::Version(2));
        assert_eq!(
            k.open(&sealed[..sealed.len() - 1]).unwrap_err(),
            OpenError::Authentication
        );
        assert_eq!(k.open(&sealed[..20]).unwrap_err(), OpenError::Truncated);
    }

    #[test]
    fn a_wrong_key_fails() {
        let sealed = key(7).seal(b"password").unwrap();
        assert_eq!(key(8).open(&sealed).unwrap_err(), OpenError::Authentication);
    }

    #[test]
    fn keys_parse_from_hex_and_base64_only_at_32_bytes() {
        let k = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::parse(&k.to_base64(), "t").unwrap(), k);
        let hex = to_hex(k.0.expose());
        assert_eq!(SecretKey::parse(&format!(" {hex}\n"), "t").unwrap(), k);
        assert_eq!(
            SecretKey::parse(&hex.to_lowercase(), "t").unwrap(),
            k,
            "lower-case hex"
        );
        for bad in ["", "abc", &hex[..62], "not base64 at all!!", "AAAA"] {
            assert_eq!(
                SecretKey::parse(bad, "SILO_SECRET_KEY"),
                Err(KeyError::Malformed("SILO_SECRET_KEY".into()))
            );
        }
    }

    #[test]
    fn key_files_hold_text_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let k = SecretKey::generate().unwrap();
        let text = dir.path().join("key.b64");
        std::fs::write(&text, format!("{}\n", k.to_base64())).unwrap();
        assert_eq!(SecretKey::load(Some(&text)).unwrap(), k);
        let raw = dir.path().join("key.bin");
        std::fs::write(&raw, k.0.expose()).unwrap();
        // Raw bytes that happen to be UTF-8 are read as text, and fail.
        if std::str::from_utf8(k.0.expose()).is_err() {
            assert_eq!(SecretKey::load(Some(&raw)).unwrap(), k);
        }
        let missing = dir.path().join("none");
        assert!(matches!(
            SecretKey::load(Some(&missing)),
            Err(KeyError::Unreadable(..))
        ));
    }

    #[test]
    fn nothing_secret_in_debug_or_errors() {
        let k = key(0xAB);
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
        let err = SecretKey::parse("ABABABAB", "SILO_SECRET_KEY").unwrap_err();
        assert!(!err.to_string().contains("ABAB"));
    }
}
