//! Build identification.

/// The git commit this binary was built from, if the build knew it.
pub const GIT_SHA: &str = match option_env!("HERMES_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};
