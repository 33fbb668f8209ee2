//! The per-host URI tree. Patterns are split on `/`; a pattern whose last segment is `*` is a
//! prefix wildcard on the segments before it (`/*` matches everything), anything else is exact
//! (`*` elsewhere, or inside a segment, is literal). Matching walks whole segments and yields
//! candidate lists most specific first: the exact routes of the full path, then the wildcard
//! routes of the deepest matching prefix, then shallower ones (contracts/hermes.md §7.4).

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
struct Node {
    children: HashMap<Box<str>, Node>,
    exact: Vec<usize>,
    wildcard: Vec<usize>,
}

/// Wildcard levels remembered on the stack during a lookup.
const STACK_DEPTH: usize = 16;

/// Routes are referred to by index into the owning table.
#[derive(Debug, Default, Clone)]
pub struct UriTree {
    root: Node,
}

/// `/a/b/` → `["a", "b", ""]`; `/` and `` → `[]`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.trim_start_matches('/');
    let empty = trimmed.is_empty();
    trimmed.split('/').filter(move |_| !empty)
}

impl UriTree {
    pub fn insert(&mut self, pattern: &str, route: usize) {
        let segs: Vec<&str> = segments(pattern).collect();
        let (path, wildcard) = match segs.split_last() {
            Some((&"*", rest)) => (rest, true),
            _ => (segs.as_slice(), false),
        };
        let mut node = &mut self.root;
        for seg in path {
            node = node.children.entry((*seg).into()).or_default();
        }
        if wildcard {
            node.wildcard.push(route);
        } else {
            node.exact.push(route);
        }
    }

    /// Offers the candidate route lists for a request path (no query) to `choose`, most
    /// specific first, until it picks something. Allocates nothing for paths up to
    /// `STACK_DEPTH` wildcard levels.
    pub fn first<'a, T>(
        &'a self,
        path: &str,
        mut choose: impl FnMut(&'a [usize]) -> Option<T>,
    ) -> Option<T> {
        let mut stack: [&[usize]; STACK_DEPTH] = [&[]; STACK_DEPTH];
        let mut depth = 0;
        let mut overflow: Vec<&[usize]> = Vec::new();
        let mut push = |list: &'a [usize]| {
            if depth < STACK_DEPTH {
                stack[depth] = list;
                depth += 1;
            } else {
                overflow.push(list);
            }
        };
        let mut node = &self.root;
        let mut complete = true;
        if !node.wildcard.is_empty() {
            push(&node.wildcard);
        }
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if !node.wildcard.is_empty() {
                        push(&node.wildcard);
                    }
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete && !node.exact.is_empty() {
            if let Some(found) = choose(&node.exact) {
                return Some(found);
            }
        }
        for list in overflow
            .into_iter()
            .rev()
            .chain(stack[..depth].iter().rev().copied())
        {
            if let Some(found) = choose(list) {
                return Some(found);
            }
        }
        None
    }

    /// Every candidate list, most specific first (for tests and listings).
    pub fn candidates(&self, path: &str) -> Vec<&[usize]> {
        let mut out = Vec::new();
        self.first(path, |list| {
            out.push(list);
            None::<()>
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(tree: &UriTree, path: &str) -> Option<usize> {
        tree.candidates(path)
            .first()
            .and_then(|l| l.first().copied())
    }

    #[test]
    fn exact_wildcard_and_depth() {
        let mut t = UriTree::default();
        t.insert("/v1/health", 0);
        t.insert("/v1/*", 1);
        t.insert("/*", 2);
        t.insert("/", 3);
        t.insert("/a/b/c", 4);
        t.insert("/a/b/d", 5);
        assert_eq!(first(&t, "/v1/health"), Some(0));
        assert_eq!(first(&t, "/v1/users"), Some(1));
        assert_eq!(first(&t, "/v1"), Some(1), "/v1/* matches /v1");
        assert_eq!(first(&t, "/v1/"), Some(1), "and /v1/");
        assert_eq!(first(&t, "/other"), Some(2));
        assert_eq!(first(&t, "/"), Some(3));
        assert_eq!(first(&t, "/a/b"), Some(2), "no exact /a/b: falls to /*");
        assert_eq!(first(&t, "/a/b/d"), Some(5));
        let lists = t.candidates("/v1/health");
        assert_eq!(lists, vec![&[0][..], &[1][..], &[2][..]]);
    }

    #[test]
    fn trailing_slash_and_literal_stars() {
        let mut t = UriTree::default();
        t.insert("/v1/users", 0);
        t.insert("/files/*.txt", 1);
        assert_eq!(
            first(&t, "/v1/users/"),
            None,
            "a trailing slash is another path"
        );
        assert_eq!(first(&t, "/files/*.txt"), Some(1));
        assert_eq!(first(&t, "/files/a.txt"), None);
    }
}
