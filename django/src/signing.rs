//! Django's signing, as `django.core.signing` and `django.utils.crypto` do it,
//! for what this crate reads: the session data of the database session
//! backend and the session auth hash.
//!
//! A signed object is `BASE64[:TIMESTAMP]:SIGNATURE`: the URL-safe base64
//! (no padding) of the serialized object, prefixed with `.` when zlib
//! compressed it; the signature is the base64 of an HMAC-SHA256 whose key is
//! SHA-256(`salt + "signer"` + secret key) ([`salted_hmac`]). A value signed
//! with any of [`SecretKeys`] (the current key, then `SECRET_KEY_FALLBACKS`)
//! is accepted, as Django does.
//!
//! ```
//! use ws_token_auth_django::signing::{SecretKeys, sign_object, unsign_object};
//!
//! let keys = SecretKeys::new("s3cret")?;
//! let salt = "django.contrib.sessions.SessionStore";
//! let signed = sign_object(&serde_json::json!({"_auth_user_id": "7"}), salt, keys.current(), 1_700_000_000);
//! assert_eq!(unsign_object(&signed, salt, &keys)?["_auth_user_id"], "7");
//! assert!(unsign_object(&signed, "another salt", &keys).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The most a signed object may inflate to (Django's sessions are small; a
/// zlib bomb stops here).
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;

/// Django's `SECRET_KEY` and its `SECRET_KEY_FALLBACKS`. Never shown: its
/// `Debug` says how many keys it holds, nothing else.
///
/// ```
/// use ws_token_auth_django::signing::SecretKeys;
///
/// let keys = SecretKeys::new("s3cret")?.with_fallbacks(["old"])?;
/// assert_eq!(format!("{keys:?}"), "SecretKeys { keys: 2, .. }");
/// assert!(SecretKeys::new("").is_err());
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
#[derive(Clone)]
pub struct SecretKeys {
    keys: Vec<Key>,
}

/// One secret key (current or fallback); never shown.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A secret key was empty (Django refuses to start with an empty
/// `SECRET_KEY`; so does this crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a Django secret key is empty")]
pub struct EmptyKey;

impl SecretKeys {
    /// The keys, with `secret_key` as the current one.
    ///
    /// # Errors
    /// [`EmptyKey`] if it is empty.
    pub fn new(secret_key: impl Into<Vec<u8>>) -> Result<Self, EmptyKey> {
        Ok(Self { keys: vec![key(secret_key)?] })
    }

    /// Adds `SECRET_KEY_FALLBACKS`, tried after the current key.
    ///
    /// # Errors
    /// [`EmptyKey`] if one is empty.
    pub fn with_fallbacks<K: Into<Vec<u8>>>(
        mut self,
        fallbacks: impl IntoIterator<Item = K>,
    ) -> Result<Self, EmptyKey> {
        for fallback in fallbacks {
            self.keys.push(key(fallback)?);
        }
        Ok(self)
    }

    /// The current key (what Django signs with).
    #[must_use]
    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key: the current one first.
    pub fn all(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

fn key(value: impl Into<Vec<u8>>) -> Result<Key, EmptyKey> {
    let value = value.into();
    if value.is_empty() { Err(EmptyKey) } else { Ok(Key(value)) }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

/// Why a signed object was refused. Says nothing of the object or the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// Not of the form `DATA[:TIMESTAMP]:SIGNATURE`, or not base64.
    #[error("not a signed object")]
    Malformed,
    /// No key signed it (tampered, another app's, or a retired key).
    #[error("bad signature")]
    BadSignature,
    /// The data is not valid zlib, or inflates past [`MAX_OBJECT_BYTES`].
    #[error("the signed data does not inflate")]
    BadCompression,
    /// The data is not JSON (another session serializer, such as pickle).
    #[error("the signed data is not JSON (only Django's JSONSerializer is read)")]
    NotJson,
}

/// Django's `salted_hmac(key_salt, value, secret, algorithm="sha256")`:
/// HMAC-SHA256 of `value` under the key SHA-256(`key_salt` + `secret`).
///
/// ```
/// use ws_token_auth_django::signing::{SecretKeys, salted_hmac};
/// let keys = SecretKeys::new("s3cret")?;
/// assert_eq!(salted_hmac("salt", b"value", keys.current()).len(), 32);
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
#[must_use]
pub fn salted_hmac(key_salt: &str, value: &[u8], secret: &Key) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(key_salt.as_bytes());
    hasher.update(&secret.0);
    let key = hasher.finalize();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(value);
    mac.finalize().into_bytes().into()
}

fn signature(salt: &str, value: &str, key: &Key) -> String {
    URL_SAFE_NO_PAD.encode(salted_hmac(&format!("{salt}signer"), value.as_bytes(), key))
}

/// Django's `signing.loads(signed, salt=salt, serializer=JSONSerializer)`:
/// checks the signature under each key, then decodes (and inflates) the
/// JSON object. The timestamp is not checked: the session backend does not
/// (the row's `expire_date` does).
///
/// # Errors
/// [`SigningError`] for anything but a valid object signed by one of `keys`.
///
/// ```
/// use ws_token_auth_django::signing::{SecretKeys, SigningError, unsign_object};
/// let keys = SecretKeys::new("s3cret")?;
/// assert_eq!(unsign_object("e30:1xZrQP:forged", "salt", &keys), Err(SigningError::BadSignature));
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
pub fn unsign_object(signed: &str, salt: &str, keys: &SecretKeys) -> Result<serde_json::Value, SigningError> {
    let (value, sig) = signed.rsplit_once(':').ok_or(SigningError::Malformed)?;
    let good = keys.all().any(|key| bool::from(signature(salt, value, key).as_bytes().ct_eq(sig.as_bytes())));
    if !good {
        return Err(SigningError::BadSignature);
    }
    // TimestampSigner: the data is everything before the last separator.
    let (data, _timestamp) = value.rsplit_once(':').ok_or(SigningError::Malformed)?;
    let (compressed, data) = match data.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, data),
    };
    let bytes = URL_SAFE_NO_PAD.decode(data.trim_end_matches('=')).map_err(|_| SigningError::Malformed)?;
    let bytes = if compressed { inflate(&bytes)? } else { bytes };
    serde_json::from_slice(&bytes).map_err(|_| SigningError::NotJson)
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, SigningError> {
    let mut out = Vec::new();
    let limit = MAX_OBJECT_BYTES as u64 + 1;
    flate2::read::ZlibDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| SigningError::BadCompression)?;
    if out.len() > MAX_OBJECT_BYTES {
        return Err(SigningError::BadCompression);
    }
    Ok(out)
}

/// Django's `signing.dumps(object, salt=salt, serializer=JSONSerializer,
/// compress=True)` at the Unix time `timestamp`: what Django's database
/// session backend writes. For tests and tools; this crate never writes to
/// Django's tables.
///
/// ```
/// use ws_token_auth_django::signing::{SecretKeys, sign_object};
/// let keys = SecretKeys::new("s3cret")?;
/// let signed = sign_object(&serde_json::json!({}), "salt", keys.current(), 0);
/// assert_eq!(signed.split(':').count(), 3);
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
#[must_use]
pub fn sign_object(object: &serde_json::Value, salt: &str, key: &Key, timestamp: u64) -> String {
    let data = ascii_json(object);
    let compressed = {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, &data).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    };
    let base64 = if compressed.len() + 1 < data.len() {
        format!(".{}", URL_SAFE_NO_PAD.encode(compressed))
    } else {
        URL_SAFE_NO_PAD.encode(data)
    };
    let value = format!("{base64}:{}", base62(timestamp));
    let sig = signature(salt, &value, key);
    format!("{value}:{sig}")
}

/// JSON as Python's `json.dumps(separators=(",", ":"))` writes it: ASCII,
/// other characters as `\uXXXX` escapes (Django reads it back as Latin-1).
fn ascii_json(object: &serde_json::Value) -> Vec<u8> {
    let text = serde_json::to_string(object).expect("a JSON value serializes");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

fn base62(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// The salt of `AbstractBaseUser.get_session_auth_hash`.
const AUTH_HASH_SALT: &str = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";

/// Whether `session_hash` (a session's `_auth_user_hash`) is the session auth
/// hash of `password_hash` (the user's `password` column) under one of
/// `keys`, as Django's `get_user` checks it: a password change ends the
/// sessions made before it.
///
/// ```
/// use ws_token_auth_django::signing::{SecretKeys, session_hash_matches};
/// let keys = SecretKeys::new("s3cret")?;
/// assert!(!session_hash_matches("not the hash", "pbkdf2_sha256$...", &keys));
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
#[must_use]
pub fn session_hash_matches(session_hash: &str, password_hash: &str, keys: &SecretKeys) -> bool {
    keys.all().any(|key| bool::from(session_auth_hash(password_hash, key).as_bytes().ct_eq(session_hash.as_bytes())))
}

/// Django's `get_session_auth_hash()` of a user whose `password` column is
/// `password_hash`, under `key`: what `login()` puts in the session as
/// `_auth_user_hash`.
///
/// ```
/// use ws_token_auth_django::signing::{SecretKeys, session_auth_hash, session_hash_matches};
/// let keys = SecretKeys::new("s3cret")?;
/// let hash = session_auth_hash("pbkdf2_sha256$...", keys.current());
/// assert!(session_hash_matches(&hash, "pbkdf2_sha256$...", &keys));
/// assert!(!session_hash_matches(&hash, "pbkdf2_sha256$changed", &keys));
/// # Ok::<(), ws_token_auth_django::signing::EmptyKey>(())
/// ```
#[must_use]
pub fn session_auth_hash(password_hash: &str, key: &Key) -> String {
    hex(&salted_hmac(AUTH_HASH_SALT, password_hash.as_bytes(), key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
