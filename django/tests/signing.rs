//! Django's signing, against what a real Django 5.2 produced
//! (`tests/vectors/make.py` wrote `tests/vectors/django-5.2.json`): every
//! session Django signed is read back to the same data, under the current
//! key and under a fallback; a changed byte, another salt or another key is
//! refused; the session auth hash is Django's, digit for digit.

use serde_json::Value;
use ws_token_auth_django::SESSION_SALT;
use ws_token_auth_django::signing::{
    MAX_OBJECT_BYTES, SecretKeys, SigningError, session_auth_hash, session_hash_matches, sign_object, unsign_object,
};

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/django-5.2.json")).expect("the vectors are JSON")
}

fn keys(v: &Value) -> SecretKeys {
    SecretKeys::new(v["secret_key"].as_str().unwrap())
        .unwrap()
        .with_fallbacks([v["fallback_key"].as_str().unwrap()])
        .unwrap()
}

#[test]
fn every_session_django_signed_reads_back_to_its_data() {
    let v = vectors();
    assert_eq!(v["salt"], SESSION_SALT);
    let keys = keys(&v);
    let sessions = v["sessions"].as_array().unwrap();
    assert!(sessions.iter().any(|s| s["signed"].as_str().unwrap().starts_with('.')), "a compressed vector");
    assert!(sessions.iter().any(|s| !s["signed"].as_str().unwrap().starts_with('.')), "a plain vector");
    for session in sessions {
        let read = unsign_object(session["signed"].as_str().unwrap(), SESSION_SALT, &keys);
        assert_eq!(read.as_ref(), Ok(&session["data"]), "{}", session["what"]);
    }
}

#[test]
fn a_fallback_signature_needs_the_fallback_and_the_current_key_alone_is_not_enough() {
    let v = vectors();
    let current_only = SecretKeys::new(v["secret_key"].as_str().unwrap()).unwrap();
    let by_fallback =
        v["sessions"].as_array().unwrap().iter().find(|s| s["what"] == "signed with the fallback key").unwrap();
    let signed = by_fallback["signed"].as_str().unwrap();
    assert_eq!(unsign_object(signed, SESSION_SALT, &current_only), Err(SigningError::BadSignature));
    assert!(unsign_object(signed, SESSION_SALT, &keys(&v)).is_ok());
}

#[test]
fn a_changed_byte_another_salt_or_another_key_is_refused() {
    let v = vectors();
    let keys = keys(&v);
    for session in v["sessions"].as_array().unwrap() {
        let signed = session["signed"].as_str().unwrap();
        assert_eq!(unsign_object(signed, "django.contrib.sessions.OtherStore", &keys), Err(SigningError::BadSignature));
        let other = SecretKeys::new("another-key").unwrap();
        assert_eq!(unsign_object(signed, SESSION_SALT, &other), Err(SigningError::BadSignature));
        for at in [1, signed.len() / 2, signed.len() - 2] {
            let mut bytes = signed.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(unsign_object(&tampered, SESSION_SALT, &keys).is_err(), "{} tampered at {at}", session["what"]);
        }
    }
}

#[test]
fn the_session_auth_hash_is_djangos() {
    let v = vectors();
    let keys = keys(&v);
    let password = v["password"].as_str().unwrap();
    assert_eq!(session_auth_hash(password, keys.current()), v["auth_hash"].as_str().unwrap());
    assert!(session_hash_matches(v["auth_hash_fallback"].as_str().unwrap(), password, &keys), "fallback hash");
    assert!(!session_hash_matches(v["auth_hash"].as_str().unwrap(), "pbkdf2_sha256$changed", &keys));
    let data = &v["sessions"][0]["data"];
    assert_eq!(data["_auth_user_hash"], v["auth_hash"], "the session's hash is the user's");
}

#[test]
fn what_we_sign_django_reads_and_we_read_back() {
    let v = vectors();
    let keys = keys(&v);
    let data = serde_json::json!({"_auth_user_id": "8", "name": "Zoë ✓", "cart": vec!["item"; 50]});
    let signed = sign_object(&data, SESSION_SALT, keys.current(), 1_764_000_000);
    assert!(signed.starts_with('.'), "compressed like Django's");
    assert!(signed.is_ascii());
    assert_eq!(unsign_object(&signed, SESSION_SALT, &keys), Ok(data));
}

#[test]
fn bad_data_under_a_good_signature_is_an_error_value_not_a_panic() {
    let keys = SecretKeys::new("k").unwrap();
    let key = keys.current();
    // Properly signed, but a zlib bomb: far past the limit when inflated.
    let bomb = serde_json::json!({"pad": "a".repeat(MAX_OBJECT_BYTES * 4)});
    let signed = sign_object(&bomb, SESSION_SALT, key, 0);
    assert!(signed.len() < MAX_OBJECT_BYTES, "it compresses");
    assert_eq!(unsign_object(&signed, SESSION_SALT, &keys), Err(SigningError::BadCompression));
    for junk in ["", ":", "::", "a:b", "!!!:0:sig", ".%%%:0:sig", "e30"] {
        assert!(unsign_object(junk, SESSION_SALT, &keys).is_err(), "{junk:?}");
    }
}
