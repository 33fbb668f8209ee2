//! RBAC of contracts/hermes.md §4.5: thirteen scopes, three namespace roles and the admin flag.
//! Scope names and their order are part of the wire contract (`GET /api/v1/scopes`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ConfigRead,
    ConfigWrite,
    ConfigWatch,
    StatusRead,
    StatusWrite,
    CredentialRead,
    CredentialWrite,
    MemberRead,
    MemberWrite,
    AuditRead,
    AdminUsers,
    NamespaceRead,
    NamespaceWrite,
}

impl Scope {
    /// Every scope, in the contract's order.
    pub const ALL: [Scope; 13] = [
        Scope::ConfigRead,
        Scope::ConfigWrite,
        Scope::ConfigWatch,
        Scope::StatusRead,
        Scope::StatusWrite,
        Scope::CredentialRead,
        Scope::CredentialWrite,
        Scope::MemberRead,
        Scope::MemberWrite,
        Scope::AuditRead,
        Scope::AdminUsers,
        Scope::NamespaceRead,
        Scope::NamespaceWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConfigRead => "config:read",
            Scope::ConfigWrite => "config:write",
            Scope::ConfigWatch => "config:watch",
            Scope::StatusRead => "status:read",
            Scope::StatusWrite => "status:write",
            Scope::CredentialRead => "credential:read",
            Scope::CredentialWrite => "credential:write",
            Scope::MemberRead => "member:read",
            Scope::MemberWrite => "member:write",
            Scope::AuditRead => "audit:read",
            Scope::AdminUsers => "admin:users",
            Scope::NamespaceRead => "namespace:read",
            Scope::NamespaceWrite => "namespace:write",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role in a namespace, ordered by privilege (owner 3 > editor 2 > viewer 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// The scopes a role grants (§4.5: owner 12, editor 9, viewer 6).
    pub fn scopes(self) -> Vec<Scope> {
        use Scope::*;
        match self {
            Role::Viewer => vec![
                ConfigRead,
                StatusRead,
                CredentialRead,
                MemberRead,
                AuditRead,
                NamespaceRead,
            ],
            Role::Editor => vec![
                ConfigRead,
                ConfigWrite,
                StatusRead,
                CredentialRead,
                CredentialWrite,
                MemberRead,
                MemberWrite,
                AuditRead,
                NamespaceRead,
            ],
            Role::Owner => Scope::ALL
                .into_iter()
                .filter(|s| *s != AdminUsers)
                .collect(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a list of scope names, naming the first unknown one.
pub fn parse_list(names: &[String]) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::with_capacity(names.len());
    for n in names {
        let s = Scope::parse(n).ok_or_else(|| n.clone())?;
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    scopes.sort();
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_order_match_the_contract() {
        assert_eq!(Role::Owner.scopes().len(), 12);
        assert_eq!(Role::Editor.scopes().len(), 9);
        assert_eq!(Role::Viewer.scopes().len(), 6);
        assert!(!Role::Editor.scopes().contains(&Scope::ConfigWatch));
        assert!(!Role::Owner.scopes().contains(&Scope::AdminUsers));
        let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names[0], "config:read");
        assert_eq!(names[12], "namespace:write");
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
    }

    #[test]
    fn lists_are_parsed_deduplicated_and_sorted() {
        let l = parse_list(&[
            "status:read".into(),
            "config:read".into(),
            "config:read".into(),
        ])
        .unwrap();
        assert_eq!(l, vec![Scope::ConfigRead, Scope::StatusRead]);
        assert_eq!(
            parse_list(&["config:admin".into()]),
            Err("config:admin".into())
        );
    }
}
