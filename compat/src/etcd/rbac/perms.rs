//! Whether a caller may touch a key range: the union of the key ranges its roles grant for
//! reading and for writing, checked as etcd checks it (a range is allowed only if the union
//! covers all of it; a user with the `root` role may do anything).

use crate::etcd::error::{Code, EtcdError};

/// One granted key range, as etcd stores a permission: `range_end` empty is the key alone,
/// `[0]` is every key from `key` on, anything else the half-open range `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: Vec<u8>,
    /// `None`: no upper bound.
    end: Option<Vec<u8>>,
}

fn span(key: &[u8], range_end: &[u8]) -> Span {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Some(next)
        }
        [0] => None,
        end => Some(end.to_vec()),
    };
    Span {
        start: key.to_vec(),
        end,
    }
}

/// A union of key ranges, kept sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<Span>);

impl Ranges {
    pub fn add(&mut self, key: &[u8], range_end: &[u8]) {
        let s = span(key, range_end);
        // An empty range (end at or before start) grants nothing.
        if s.end.as_ref().is_some_and(|e| *e <= s.start) {
            return;
        }
        self.0.push(s);
        self.0.sort();
        let mut merged: Vec<Span> = Vec::with_capacity(self.0.len());
        for s in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if last.end.as_ref().is_none_or(|e| *e >= s.start) => {
                    last.end = match (last.end.take(), s.end) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                _ => merged.push(s),
            }
        }
        self.0 = merged;
    }

    /// Whether the union holds every key of the request range (etcd's encoding, as above).
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let want = span(key, range_end);
        if want.end.as_ref().is_some_and(|e| *e <= want.start) {
            // etcd answers an empty range with nothing; there is nothing to protect.
            return true;
        }
        // After merging, one span must hold the whole range.
        self.0.iter().any(|s| {
            s.start <= want.start
                && match (&s.end, &want.end) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(have), Some(need)) => have >= need,
                }
        })
    }
}

/// Whom a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Every right: the endpoint without authentication (direct local clients), or a user
    /// holding the `root` role.
    Root { user: Option<String> },
    /// What a user's roles grant.
    User {
        name: String,
        read: Ranges,
        write: Ranges,
    },
}

pub fn denied() -> EtcdError {
    EtcdError::new(Code::PermissionDenied, "etcdserver: permission denied")
}

impl Caller {
    pub fn can_read(&self, key: &[u8], range_end: &[u8]) -> bool {
        match self {
            Caller::Root { .. } => true,
            Caller::User { read, .. } => read.covers(key, range_end),
        }
    }

    pub fn can_write(&self, key: &[u8], range_end: &[u8]) -> bool {
        match self {
            Caller::Root { .. } => true,
            Caller::User { write, .. } => write.covers(key, range_end),
        }
    }

    pub fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        if self.can_read(key, range_end) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    pub fn write(&self, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        if self.can_write(key, range_end) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// Calls etcd keeps to its root role: membership, maintenance, user and role management.
    pub fn admin(&self) -> Result<(), EtcdError> {
        match self {
            Caller::Root { .. } => Ok(()),
            Caller::User { .. } => Err(denied()),
        }
    }

    /// The signed-in user's name, if there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Root { user } => user.as_deref(),
            Caller::User { name, .. } => Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(grants: &[(&str, &str)]) -> Ranges {
        let mut r = Ranges::default();
        for (k, e) in grants {
            r.add(k.as_bytes(), e.as_bytes());
        }
        r
    }

    #[test]
    fn single_keys_ranges_and_open_ends() {
        let r = ranges(&[("/a", ""), ("/p/", "/p0"), ("/z", "\0")]);
        assert!(r.covers(b"/a", b""));
        assert!(!r.covers(b"/a", b"/b"), "one key does not grant a range");
        assert!(!r.covers(b"/ab", b""));
        assert!(r.covers(b"/p/x", b""));
        assert!(r.covers(b"/p/", b"/p0"));
        assert!(r.covers(b"/p/a", b"/p/b"));
        assert!(!r.covers(b"/p/", b"/p1"), "past the end");
        assert!(!r.covers(b"/o", b"/p/x"), "before the start");
        assert!(r.covers(b"/zz", b"\0"));
        assert!(r.covers(b"/zz", b"\xff\xff"));
        assert!(!r.covers(b"/p/", b"\0"), "open end over a gap");
        assert!(!Ranges::default().covers(b"/a", b""));
    }

    #[test]
    fn adjacent_and_overlapping_grants_merge() {
        let r = ranges(&[("/a", "/c"), ("/c", "/e"), ("/d", "/f")]);
        assert!(r.covers(b"/a", b"/f"));
        assert!(!r.covers(b"/a", b"/g"));
        // A single key right at the end of a range joins it.
        let r = ranges(&[("/a", "/b"), ("/b", "")]);
        assert!(r.covers(b"/a", b"/b\0"));
        let r = ranges(&[("/x", "\0"), ("/a", "/y")]);
        assert!(r.covers(b"/a", b"\0"));
    }

    #[test]
    fn root_may_do_anything_and_users_only_what_they_hold() {
        let root = Caller::Root { user: None };
        assert!(root.write(b"/any", b"\0").is_ok());
        assert!(root.admin().is_ok());
        let user = Caller::User {
            name: "u".into(),
            read: ranges(&[("/r/", "/r0")]),
            write: Ranges::default(),
        };
        assert!(user.read(b"/r/1", b"").is_ok());
        assert_eq!(
            user.write(b"/r/1", b"").unwrap_err().code,
            Code::PermissionDenied
        );
        assert!(user.admin().is_err());
    }
}
