//! Password hashes of the built-in users: new hashes are argon2id PHC strings, and the bcrypt
//! hashes the original server stored (`$2a$`/`$2b$`/`$2y$`) still verify and are flagged for
//! upgrade; except on a database original servers share ([`Scheme::Bcrypt`]), where new hashes
//! are the original's bcrypt so that those servers can still verify them. Also the initial admin's generated password and the minimum-length rule.
//!
//! Hashing and verifying are CPU-heavy (tens of milliseconds): callers run them on
//! `tokio::task::spawn_blocking`, never on a runtime thread. Nothing here logs or stores a
//! password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

/// Characters of [`generate`]d passwords: letters and digits without the look-alikes
/// `0 O o 1 l I`.
const GENERATED_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Length of a [`generate`]d password, in characters.
const GENERATED_LEN: usize = 24;

/// Shortest password [`check_new`] accepts, in characters (the original's rule).
const MIN_LEN: usize = 6;

/// Salt length of new hashes, in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Prefixes of the bcrypt hashes the original server may have stored.
const BCRYPT_PREFIXES: [&str; 3] = ["$2a$", "$2b$", "$2y$"];

/// bcrypt's cost factor for new bcrypt hashes: the original's (`bcrypt.DefaultCost`).
const BCRYPT_COST: u32 = 10;

/// Longest password bcrypt takes, in bytes: it ignores the rest, and Go's bcrypt refuses it.
const BCRYPT_MAX_BYTES: usize = 72;

/// How new password hashes are made: a property of where users are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    /// argon2id PHC strings (the embedded store).
    #[default]
    Argon2id,
    /// bcrypt `$2a$10$…`, the original server's: for a PostgreSQL database that original
    /// servers may share, since they verify nothing else.
    Bcrypt,
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The argon2 hasher failed (it only does on invalid parameters or a broken RNG).
    #[error("hashing the password with argon2id failed: {0}")]
    Hash(String),
    /// bcrypt takes at most 72 bytes.
    #[error("password must be at most 72 bytes")]
    TooLong,
    /// The bcrypt hasher failed (the OS random source).
    #[error("hashing the password with bcrypt failed: {0}")]
    Bcrypt(String),
}

/// Hashes `password` the way `scheme` says: [`hash`], or bcrypt at the original's cost with
/// Go's `$2a$` prefix.
///
/// CPU-heavy: callers run it on `tokio::task::spawn_blocking`.
pub fn hash_as(scheme: Scheme, password: &str) -> Result<String, PasswordError> {
    match scheme {
        Scheme::Argon2id => hash(password),
        Scheme::Bcrypt => {
            if password.len() > BCRYPT_MAX_BYTES {
                return Err(PasswordError::TooLong);
            }
            bcrypt::hash_with_result(password, BCRYPT_COST)
                .map(|parts| parts.format_for_version(bcrypt::Version::TwoA))
                .map_err(|e| PasswordError::Bcrypt(e.to_string()))
        }
    }
}

/// As [`needs_upgrade`] for `scheme`: under [`Scheme::Bcrypt`] any bcrypt hash is kept and
/// anything else (an argon2 hash an original server could not verify) is replaced.
pub fn needs_upgrade_to(scheme: Scheme, stored: &str) -> bool {
    match scheme {
        Scheme::Argon2id => needs_upgrade(stored),
        Scheme::Bcrypt => !is_bcrypt(stored),
    }
}

/// Hashes `password` as an argon2id PHC string (`$argon2id$v=19$...`) with the default
/// parameters and a random salt.
///
/// CPU-heavy: callers run it on `tokio::task::spawn_blocking`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = random_salt()?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Hash(err.to_string()))
}

/// Whether `password` matches `stored`, an argon2 PHC string or a bcrypt hash
/// (`$2a$`/`$2b$`/`$2y$`, as the original server stored). False on a mismatch and on a hash that
/// cannot be parsed; never panics.
///
/// CPU-heavy: callers run it on `tokio::task::spawn_blocking`.
pub fn verify(password: &str, stored: &str) -> bool {
    if is_bcrypt(stored) {
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    match PasswordHash::new(stored) {
        // Argon2 takes algorithm, version and parameters from the parsed hash.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `stored` should be replaced by a fresh [`hash`] after a successful login: a bcrypt
/// hash, an argon2 hash with another algorithm, version, parameters or output length, or
/// anything unparseable.
pub fn needs_upgrade(stored: &str) -> bool {
    if is_bcrypt(stored) {
        return true;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let current = Params::default();
    let same_params = Params::try_from(&parsed).is_ok_and(|params| {
        params.m_cost() == current.m_cost()
            && params.t_cost() == current.t_cost()
            && params.p_cost() == current.p_cost()
    });
    let same_output = parsed
        .hash
        .as_ref()
        .is_some_and(|output| output.len() == Params::DEFAULT_OUTPUT_LEN);
    !(parsed.algorithm == Algorithm::Argon2id.ident()
        && parsed.version == Some(Version::V0x13.into())
        && same_params
        && same_output)
}

/// A random password for the initial admin: 24 characters drawn from an alphabet without
/// look-alike characters, from the thread-local CSPRNG.
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_LEN)
        .map(|_| char::from(GENERATED_ALPHABET[rng.random_range(0..GENERATED_ALPHABET.len())]))
        .collect()
}

/// The original's rule for a new password: at least 6 characters.
pub fn check_new(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_LEN {
        return Err("password must be at least 6 characters");
    }
    Ok(())
}

/// A 16-byte salt from the thread-local CSPRNG (argon2's own `OsRng` needs a feature the
/// workspace does not enable).
fn random_salt() -> Result<SaltString, PasswordError> {
    let bytes: [u8; SALT_LEN] = rand::random();
    SaltString::encode_b64(&bytes).map_err(|err| PasswordError::Hash(err.to_string()))
}

fn is_bcrypt(stored: &str) -> bool {
    BCRYPT_PREFIXES
        .iter()
        .any(|prefix| stored.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify_roundtrips() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(verify("correct horse", &stored));
        assert!(!needs_upgrade(&stored));
    }

    #[test]
    fn wrong_password_is_rejected() {
        let stored = hash("correct horse").unwrap();
        assert!(!verify("correct horsf", &stored));
        assert!(!verify("", &stored));
    }

    #[test]
    fn salts_differ_between_hashes() {
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
    }

    #[test]
    fn bcrypt_hash_of_the_original_verifies_and_needs_upgrade() {
        let stored = bcrypt::hash("hunter22", 4).unwrap();
        assert!(stored.starts_with("$2b$04$"), "{stored}");
        assert!(verify("hunter22", &stored));
        assert!(!verify("hunter23", &stored));
        assert!(needs_upgrade(&stored));

        // Go's x/crypto/bcrypt writes `$2a$`; the same digest verifies under that prefix.
        let go_style = stored.replacen("$2b$", "$2a$", 1);
        assert!(verify("hunter22", &go_style));
        assert!(needs_upgrade(&go_style));
    }

    #[test]
    fn the_bcrypt_scheme_writes_what_go_verifies_and_keeps_it() {
        let stored = hash_as(Scheme::Bcrypt, "hunter22").unwrap();
        assert!(stored.starts_with("$2a$10$"), "{stored}");
        assert_eq!(stored.len(), 60);
        assert!(verify("hunter22", &stored));
        assert!(!verify("hunter23", &stored));
        assert!(!needs_upgrade_to(Scheme::Bcrypt, &stored));
        assert!(needs_upgrade_to(Scheme::Argon2id, &stored));
        // An argon2 hash on a shared database goes back to bcrypt at the next sign-in.
        let argon = hash("hunter22").unwrap();
        assert!(needs_upgrade_to(Scheme::Bcrypt, &argon));
        assert!(!needs_upgrade_to(Scheme::Argon2id, &argon));
        // bcrypt would drop what is past 72 bytes; the password is refused instead.
        assert!(matches!(
            hash_as(Scheme::Bcrypt, &"x".repeat(73)),
            Err(PasswordError::TooLong)
        ));
        assert!(hash_as(Scheme::Bcrypt, &"x".repeat(72)).is_ok());
    }

    #[test]
    fn argon2_with_other_params_or_algorithm_needs_upgrade() {
        let salt = random_salt().unwrap();
        let weak = Params::new(8, 1, 1, None).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, weak.clone());
        let stored = argon2i.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify("pw", &stored));
        assert!(needs_upgrade(&stored));

        let argon2id = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak);
        let stored = argon2id.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify("pw", &stored));
        assert!(needs_upgrade(&stored));
    }

    #[test]
    fn garbage_hashes_are_false_not_panics() {
        for stored in [
            "",
            "plaintext",
            "$2b$",
            "$2b$04$short",
            "$2y$99$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabc",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$bad$bad",
            "$unknown$v=1$abc",
        ] {
            assert!(!verify("pw", stored), "{stored:?}");
            assert!(needs_upgrade(stored), "{stored:?}");
        }
    }

    #[test]
    fn generated_passwords_have_24_unambiguous_chars() {
        let first = generate();
        assert_eq!(first.chars().count(), 24);
        assert!(
            first.bytes().all(|b| GENERATED_ALPHABET.contains(&b)),
            "{first}"
        );
        assert!(!first.contains(['0', 'O', 'o', '1', 'l', 'I']));
        assert_ne!(first, generate());
    }

    #[test]
    fn new_passwords_need_six_characters() {
        assert_eq!(
            check_new("12345"),
            Err("password must be at least 6 characters")
        );
        assert_eq!(check_new(""), Err("password must be at least 6 characters"));
        assert_eq!(check_new("123456"), Ok(()));
        // Characters, not bytes.
        assert_eq!(
            check_new("ééééé"),
            Err("password must be at least 6 characters")
        );
    }
}
