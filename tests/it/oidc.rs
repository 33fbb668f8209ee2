//! Sign-in through a real OpenID Connect provider (npm's `oidc-provider`, started on loopback
//! from `tests/oidc/`): the ports of the original's OIDC scenarios (§9.1) against a node with
//! `--auth-mode oidc`, plus what the original lacked: `state`, nonce and PKCE on the code flow,
//! `iss` checked, tokens of users who never signed in through Hermes, and a key rotation at the
//! provider picked up through the unknown `kid`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{now, Api, Auth};
use crate::harness::*;

const CLIENT_ID: &str = "hermes";
const CLIENT_SECRET: &str = "test-client-secret";

/// The provider's accounts (sub → claims).
fn accounts() -> Value {
    let person = |name: &str, email: &str, groups: &[&str]| json!({"preferred_username": name, "email": email, "email_verified": true, "name": name.to_uppercase(), "groups": groups});
    let mut unverified = person("hank", "hank@example.com", &[]);
    unverified["email_verified"] = json!(false);
    json!({
        "alice": person("alice", "alice@example.com", &["engineering"]),
        "frank": person("franky", "frank@example.com", &[]),
        // Initial admin by e-mail, but the provider did not verify it.
        "hank": unverified,
        // Chose the username of an initial admin.
        "mallory": person("alice", "mallory@example.com", &[]),
        "bob": person("bob", "bob@example.com", &["engineering"]),
        "carol": person("carol", "carol@example.com", &["viewers-only"]),
        "dave": person("dave", "dave@example.com", &["engineering", "viewers-only"]),
        "erin": person("erin", "erin@example.com", &[]),
    })
}

struct IdP {
    url: String,
    log: PathBuf,
    child: Child,
}

impl IdP {
    fn start(root: &std::path::Path, redirect_uri: &str) -> IdP {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "{}/node_modules is missing: run scripts/test, which installs it (npm ci)",
            dir.display()
        );
        let port = free_port();
        let log = root.join("idp.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCOUNTS", accounts().to_string())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn node (Node.js)");
        // Generous: Node loads the provider's many modules from a cold cache, on two cores
        // shared with the rest of the suite (a fresh clone's CI once took over 20 s).
        wait_for(
            "the OIDC provider to listen",
            Duration::from_secs(90),
            || {
                // Exit status first, then the log: an exit between the two keeps its last lines.
                let exited = child.try_wait().ok().flatten();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(status) = exited {
                    panic!("the OIDC provider exited ({status}) before listening:\n{text}");
                }
                text.contains("listening").then_some(())
            },
        );
        IdP {
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    /// A JWT signed by the provider's key `kid` with arbitrary claims.
    fn sign(&self, kid: &str, claims: Value) -> String {
        let (_, v) = post(&format!("{}/_test/sign?kid={kid}", self.url), &claims).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// Claims of a token for `sub` as the provider would issue it, valid for an hour.
    fn claims(&self, sub: &str, extra: Value) -> Value {
        let mut c = json!({"sub": sub, "iss": self.url, "aud": CLIENT_ID,
                           "iat": now(), "exp": now() + 3600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }
}

impl Drop for IdP {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- OIDC provider log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser for the sign-in: follows redirects by hand and keeps cookies per host.
struct Browser {
    agent: ureq::Agent,
    cookies: BTreeMap<String, BTreeMap<String, String>>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(15))
                .build(),
            cookies: BTreeMap::new(),
        }
    }

    fn host(url: &str) -> String {
        url.split('/').nth(2).unwrap_or_default().to_string()
    }

    fn get(&mut self, url: &str) -> Answer {
        let host = Self::host(url);
        let jar = self.cookies.entry(host.clone()).or_default();
        let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut req = self.agent.get(url);
        if !cookie.is_empty() {
            req = req.set("Cookie", &cookie.join("; "));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {url}: {e}"),
        };
        for c in resp.all("set-cookie") {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let max_age_zero = c.to_ascii_lowercase().contains("max-age=0");
                if v.is_empty() || max_age_zero {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_string(), v.to_string());
                }
            }
        }
        let location = resp.header("location").map(|l| {
            if l.starts_with('/') {
                format!("http://{host}{l}")
            } else {
                l.to_string()
            }
        });
        Answer {
            status: resp.status(),
            location,
            body: resp.into_string().unwrap_or_default(),
        }
    }

    /// Signs `sub` in: Hermes's login → the provider → back to the callback URL, whose code
    /// and state are returned (the SPA's part).
    fn sign_in(&mut self, node: &str, idp: &IdP, sub: &str) -> (String, String) {
        // A new person at the provider: forget the previous one's session there.
        self.cookies.remove(&Self::host(&idp.url));
        get(&format!("{}/_test/next-user?sub={sub}", idp.url)).unwrap();
        let login = self.get(&format!("{node}/api/auth/login"));
        assert_eq!(login.status, 302, "{}", login.body);
        let mut next = login.location.unwrap();
        for _ in 0..10 {
            if next.starts_with(&format!("{node}/auth/callback")) {
                let query = next.split_once('?').unwrap().1;
                let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                return (params["code"].clone(), params["state"].clone());
            }
            let a = self.get(&next);
            assert!(
                (300..400).contains(&a.status),
                "{next} → {} {}",
                a.status,
                a.body
            );
            next = a.location.unwrap();
        }
        panic!("the sign-in did not come back to the callback");
    }

    /// The SPA's exchange of the code: (status, JSON).
    fn exchange(&mut self, node: &str, code: &str, state: &str) -> (u16, Value) {
        let a = self.get(&format!("{node}/api/auth/token?code={code}&state={state}"));
        (
            a.status,
            serde_json::from_str(&a.body).unwrap_or(Value::Null),
        )
    }

    /// A full sign-in: the access and refresh tokens of `sub`.
    fn tokens(&mut self, node: &str, idp: &IdP, sub: &str) -> (String, String) {
        let (code, state) = self.sign_in(node, idp, sub);
        let (status, v) = self.exchange(node, &code, &state);
        assert_eq!(status, 200, "{v}");
        (
            v["access_token"].as_str().unwrap().to_string(),
            v["refresh_token"].as_str().unwrap_or_default().to_string(),
        )
    }
}

fn start() -> (tempfile::TempDir, Node, IdP) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::new(dir.path(), 1);
    let idp = IdP::start(dir.path(), &format!("{}/auth/callback", node.admin()));
    node.extra_args = [
        "--auth-mode",
        "oidc",
        "--oidc-issuer",
        &idp.url,
        "--oidc-client-id",
        CLIENT_ID,
        "--oidc-initial-admin-users",
        "alice, frank@example.com, hank@example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    node.extra_args.extend([
        "--oidc-client-secret".to_string(),
        CLIENT_SECRET.to_string(),
    ]);
    node.start();
    node.wait_ready(Duration::from_secs(30));
    (dir, node, idp)
}

#[test]
fn oidc_sign_in_tokens_and_roles() {
    let (_dir, node, idp) = start();
    let base = node.admin();
    let api = Api::anonymous(&base);
    let bearer = |t: &str| api.with(Auth::Bearer(t.to_string()));

    // OIDC_AuthConfigEnabled
    let (s, v) = api.get("/api/auth/config");
    assert_eq!((s, v), (200, json!({"enabled": true, "mode": "oidc"})));
    // Built-in sign-in does not exist in this mode.
    let (s, _) = api.post(
        "/api/auth/login",
        &json!({"email": "a@b.c", "password": "x"}),
    );
    assert!(s == 404 || s == 405, "{s}");

    // OIDC_LoginRedirect, with state, nonce and PKCE (S256) added.
    let mut browser = Browser::new();
    let login = browser.get(&format!("{base}/api/auth/login"));
    assert_eq!(login.status, 302);
    let location = login.location.clone().unwrap();
    assert!(
        location.starts_with(&format!("{}/auth?", idp.url)),
        "{location}"
    );
    for part in [
        "response_type=code",
        "client_id=hermes",
        "scope=openid+profile+email",
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        &format!(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A{}%2Fauth%2Fcallback",
            node.admin_port
        ),
    ] {
        assert!(location.contains(part), "{part} missing from {location}");
    }
    assert!(browser.cookies[&Browser::host(&base)].contains_key("hermes_oidc"));

    // OIDC_CodeTokenExchange: a valid code gives the provider's tokens.
    let (code, state) = browser.sign_in(&base, &idp, "alice");
    let (s, tokens) = browser.exchange(&base, &code, &state);
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let alice = tokens["access_token"].as_str().unwrap().to_string();
    let alice_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(!alice_refresh.is_empty() && tokens["id_token"].is_string());
    // The code was used up, and so was the browser's sign-in.
    let (s, v) = browser.exchange(&base, &code, &state);
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.get("/api/auth/token");
    assert_eq!((s, v["error"].as_str()), (400, Some("code is required")));
    let (s, v) = api.get("/api/auth/token?code=abc");
    assert_eq!((s, v["error"].as_str()), (400, Some("state is required")));
    // A code with a state this browser did not start (login CSRF) is refused before exchange.
    let (code2, state2) = browser.sign_in(&base, &idp, "alice");
    let (s, v) = Browser::new().exchange(&base, &code2, &state2);
    assert_eq!(s, 400, "no cookie: {v}");
    let (s, v) = browser.exchange(&base, &code2, "forged-state");
    assert_eq!(s, 400, "{v}");
    // A bad code with the right state reaches the provider, which refuses it → 502.
    let (s, v) = browser.exchange(&base, "not-a-code", &state2);
    assert_eq!(s, 502, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("token exchange failed"));

    // OIDC_BearerAuthentication + OIDC_InitialAdminUser (by username).
    let a = bearer(&alice);
    assert_eq!(a.get("/api/v1/domains").0, 200);
    let domain = json!({"name": "oidc-made", "hosts": ["oidc.example"],
                        "routes": [{"name": "r", "uri": "/", "clusters": [{"name": "c", "weight": 100}]}]});
    let cluster = json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": 9, "weight": 1}]});
    assert_eq!(a.post("/api/v1/clusters", &cluster).0, 201);
    let (s, v) = a.post("/api/v1/domains", &domain);
    assert_eq!(s, 201, "{v}");
    assert_eq!(a.get("/api/v1/domains/oidc-made").0, 200);
    assert_eq!(a.get("/api/v1/users").0, 200);
    assert_eq!(a.get("/api/v1/namespaces").0, 200);
    // OIDC_WhoAmI
    let (s, who) = a.get("/api/v1/whoami");
    assert_eq!(s, 200);
    assert_eq!(
        (&who["source"], &who["sub"], &who["role"], &who["groups"]),
        (
            &json!("oidc"),
            &json!("alice"),
            &json!("admin"),
            &json!(["engineering"])
        )
    );
    // Initial admin matched by e-mail.
    let (frank, _) = browser.tokens(&base, &idp, "frank");
    assert_eq!(bearer(&frank).get("/api/v1/users").0, 200);
    // On the identity's first record only: deleted by an admin, frank is a plain user again,
    // from the first request of a token issued before the deletion (which makes his record
    // anew) as after signing in again.
    let (s, v) = a.delete("/api/v1/users/frank");
    assert_eq!(s, 200, "{v}");
    assert_eq!(bearer(&frank).get("/api/v1/users").0, 403);
    let (frank, _) = browser.tokens(&base, &idp, "frank");
    assert_eq!(bearer(&frank).get("/api/v1/users").0, 403);
    // Neither an unverified e-mail nor a username makes an initial admin: only `sub`, or an
    // e-mail the provider verified.
    let (hank, _) = browser.tokens(&base, &idp, "hank");
    assert_eq!(bearer(&hank).get("/api/v1/users").0, 403);
    let (mallory, _) = browser.tokens(&base, &idp, "mallory");
    assert_eq!(bearer(&mallory).get("/api/v1/users").0, 403);
    // A normal user may not list users.
    let (erin, _) = browser.tokens(&base, &idp, "erin");
    assert_eq!(bearer(&erin).get("/api/v1/users").0, 403);
    assert_eq!(bearer(&erin).get("/api/v1/domains").0, 403);

    // OIDC_TokenRefresh
    let (s, v) = api.post(
        "/api/auth/refresh",
        &json!({"refresh_token": alice_refresh}),
    );
    assert_eq!(s, 200, "{v}");
    let renewed = v["access_token"].as_str().unwrap();
    assert_eq!(bearer(renewed).get("/api/v1/users").0, 200);
    let (s, _) = api.post("/api/auth/refresh", &json!({"refresh_token": "bogus"}));
    assert!(s != 200 && s < 500, "{s}");
    let (s, v) = api.post("/api/auth/refresh", &json!({}));
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("refresh_token is required"))
    );

    // OIDC_Userinfo: a token the provider signed for a user who never signed in here.
    let gina = idp.sign(
        "main",
        idp.claims(
            "gina",
            json!({"preferred_username": "gina", "email": "gina@example.com",
                   "name": "Gina", "groups": ["ops"]}),
        ),
    );
    let (s, info) = bearer(&gina).get("/api/auth/userinfo");
    assert_eq!(s, 200, "{info}");
    assert_eq!(
        (
            &info["sub"],
            &info["preferred_username"],
            &info["email"],
            &info["name"],
            &info["groups"]
        ),
        (
            &json!("gina"),
            &json!("gina"),
            &json!("gina@example.com"),
            &json!("Gina"),
            &json!(["ops"])
        )
    );
    // Unlike the original (C15), such a user exists from then on and has whoami.
    assert_eq!(bearer(&gina).get("/api/v1/whoami").0, 200);
    assert_eq!(
        a.get("/api/v1/users/gina").0 / 100,
        4,
        "no GET per user in §3"
    );
    let (_, users) = a.get("/api/v1/users");
    assert!(users["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["sub"] == "gina"));
    // Without a token there is no userinfo.
    assert_eq!(api.get("/api/auth/userinfo").0, 401);

    // OIDC_ExpiredToken / InvalidSignature, and the checks the original lacked.
    let expired = idp.sign("main", idp.claims("gina", json!({"exp": now() - 60})));
    assert_eq!(bearer(&expired).get("/api/v1/whoami").0, 401);
    let not_yet = idp.sign("main", idp.claims("gina", json!({"nbf": now() + 600})));
    let (s, v) = bearer(&not_yet).get("/api/v1/whoami");
    assert_eq!(s, 401, "{v}");
    let mut forged = gina.clone();
    forged.push('x');
    assert_eq!(bearer(&forged).get("/api/v1/whoami").0, 401);
    let other_issuer = idp.sign(
        "main",
        idp.claims("gina", json!({"iss": "http://127.0.0.1:1"})),
    );
    assert_eq!(bearer(&other_issuer).get("/api/v1/whoami").0, 401);
    let other_audience = idp.sign("main", idp.claims("gina", json!({"aud": "someone-else"})));
    assert_eq!(bearer(&other_audience).get("/api/v1/whoami").0, 401);
    let via_azp = idp.sign(
        "main",
        idp.claims("gina", json!({"aud": "account", "azp": CLIENT_ID})),
    );
    assert_eq!(
        bearer(&via_azp).get("/api/v1/whoami").0,
        200,
        "azp names the client"
    );
    let unsigned = {
        let parts: Vec<&str> = gina.split('.').collect();
        format!("eyJhbGciOiJub25lIn0.{}.", parts[1])
    };
    assert_eq!(bearer(&unsigned).get("/api/v1/whoami").0, 401);

    // OIDC_GroupBindingRBAC
    assert_eq!(
        a.post(
            "/api/v1/group-bindings",
            &json!({"group": "engineering", "role": "editor"})
        )
        .0,
        200
    );
    assert_eq!(
        a.post(
            "/api/v1/group-bindings",
            &json!({"group": "viewers-only", "role": "viewer"})
        )
        .0,
        200
    );
    let (bob, _) = browser.tokens(&base, &idp, "bob");
    let b = bearer(&bob);
    assert_eq!(b.get("/api/v1/domains").0, 200);
    let mut d2 = domain.clone();
    d2["name"] = json!("bob-made");
    d2["hosts"] = json!(["bob.example"]);
    assert_eq!(b.post("/api/v1/domains", &d2).0, 201);
    assert_eq!(b.get("/api/v1/users").0, 403);
    let (_, who) = b.get("/api/v1/whoami");
    assert_eq!(
        (&who["role"], &who["role_source"]),
        (&json!("editor"), &json!("group"))
    );
    let (carol, _) = browser.tokens(&base, &idp, "carol");
    let c = bearer(&carol);
    assert_eq!(c.get("/api/v1/domains").0, 200);
    d2["name"] = json!("carol-made");
    d2["hosts"] = json!(["carol.example"]);
    assert_eq!(c.post("/api/v1/domains", &d2).0, 403);
    let (dave, _) = browser.tokens(&base, &idp, "dave");
    let (_, who) = bearer(&dave).get("/api/v1/whoami");
    assert_eq!(who["role"], "editor", "the higher of the two groups' roles");
    // The bindings are per namespace.
    let (s, _) = a.post("/api/v1/namespaces", &json!({"name": "other"}));
    assert_eq!(s, 201);
    assert_eq!(b.in_ns("other").get("/api/v1/domains").0, 403);

    // OIDC_DirectMemberRole: a direct owner membership beats the group's viewer role.
    assert_eq!(
        a.post(
            "/api/v1/members",
            &json!({"user_sub": "carol", "role": "owner"})
        )
        .0,
        200
    );
    let (carol2, _) = browser.tokens(&base, &idp, "carol");
    let c2 = bearer(&carol2);
    assert_eq!(c2.post("/api/v1/domains", &d2).0, 201);
    let (_, who) = c2.get("/api/v1/whoami");
    assert_eq!(
        (&who["role"], &who["role_source"]),
        (&json!("owner"), &json!("direct"))
    );

    // Auth_MemberManagement: list, update, remove.
    let (_, m) = a.get("/api/v1/members");
    assert_eq!(m["members"][0]["user_sub"], "carol", "{m}");
    assert_eq!(m["members"][0]["role"], "owner");
    assert_eq!(
        a.post(
            "/api/v1/members",
            &json!({"user_sub": "carol", "role": "editor"})
        )
        .0,
        200
    );
    let (_, m) = a.get("/api/v1/members");
    assert_eq!(m["members"][0]["role"], "editor", "{m}");
    assert_eq!(a.delete("/api/v1/members/carol").0, 200);
    let (_, m) = a.get("/api/v1/members");
    assert!(m["members"].as_array().is_none_or(Vec::is_empty), "{m}");
    // Auth_MemberValidation
    let (s, _) = a.post(
        "/api/v1/members",
        &json!({"user_sub": "carol", "role": "god"}),
    );
    assert_eq!(s, 400);
    let (s, _) = a.post(
        "/api/v1/members",
        &json!({"user_sub": "", "role": "viewer"}),
    );
    assert_eq!(s, 400);
    let (s, _) = a.post(
        "/api/v1/members",
        &json!({"user_sub": "nobody", "role": "viewer"}),
    );
    assert_eq!(s, 404);
    // Auth_GroupBindings: update a role, delete one, the other remains.
    assert_eq!(
        a.post(
            "/api/v1/group-bindings",
            &json!({"group": "engineering", "role": "owner"})
        )
        .0,
        200
    );
    assert_eq!(a.delete("/api/v1/group-bindings/viewers-only").0, 200);
    let (_, gb) = a.get("/api/v1/group-bindings");
    let list = gb["bindings"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{gb}");
    assert_eq!(
        (&list[0]["group"], &list[0]["role"]),
        (&json!("engineering"), &json!("owner"))
    );
    // Auth_GroupBindingValidation
    let (s, _) = a.post(
        "/api/v1/group-bindings",
        &json!({"group": "", "role": "viewer"}),
    );
    assert_eq!(s, 400);
    let (s, _) = a.post(
        "/api/v1/group-bindings",
        &json!({"group": "x", "role": "admin"}),
    );
    assert_eq!(s, 400);
    // Auth_AdminUserManagement: making a user admin takes effect on its next request.
    assert_eq!(
        a.put("/api/v1/users/erin/admin", &json!({"is_admin": true}))
            .0,
        200
    );
    assert_eq!(bearer(&erin).get("/api/v1/users").0, 200);
    assert_eq!(
        a.put("/api/v1/users/erin/admin", &json!({"is_admin": false}))
            .0,
        200
    );
    assert_eq!(bearer(&erin).get("/api/v1/users").0, 403);

    // OIDC_HMACCoexistence: a credential made with a bearer token works beside it, and
    // anonymous requests are refused once it exists.
    let (s, cred) = a.post(
        "/api/v1/credentials",
        &json!({"description": "ci", "scopes": ["config:read"]}),
    );
    assert_eq!(s, 201, "{cred}");
    let hmac = api.with(Auth::Hmac {
        access_key: cred["access_key"].as_str().unwrap().to_string(),
        secret_key: cred["secret_key"].as_str().unwrap().to_string(),
    });
    assert_eq!(hmac.get("/api/v1/domains").0, 200);
    assert_eq!(a.get("/api/v1/domains").0, 200);
    assert_eq!(api.get("/api/v1/domains").0, 401);

    // The provider rotates to a new key: the unknown kid makes the node fetch the key set.
    std::thread::sleep(Duration::from_millis(2100));
    let (_, k) = post(&format!("{}/_test/rotate", idp.url), &json!({})).unwrap();
    let kid = k["kid"].as_str().unwrap();
    let rotated = idp.sign(kid, idp.claims("alice", json!({})));
    let (s, v) = bearer(&rotated).get("/api/v1/whoami");
    assert_eq!(s, 200, "{v}");
    // A kid the provider never published is refused (after one more fetch at most).
    std::thread::sleep(Duration::from_millis(2100));
    let mut bogus_claims = idp.claims("alice", json!({}));
    bogus_claims["x"] = json!(1);
    let token = idp.sign(kid, bogus_claims);
    let parts: Vec<&str> = token.split('.').collect();
    let header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"RS256","kid":"never-published"}"#,
    );
    let unknown = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(bearer(&unknown).get("/api/v1/whoami").0, 401);
    // Secrets stay out of the log.
    assert!(
        !node.log().contains(CLIENT_SECRET),
        "the client secret was logged"
    );
}

#[test]
fn the_console_signs_in_through_the_provider_and_renews_its_token() {
    let (_dir, node, idp) = start();
    crate::ui::run_browser(
        "sso.mjs",
        &[("HERMES_ADMIN", node.admin()), ("IDP", idp.url.clone())],
        &[&node],
    );
}
