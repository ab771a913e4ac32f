//! Tenant identification: which tenant a login belongs to, and which user of
//! that tenant it names. Pure functions of what the client sent and the table.
//!
//! Methods are tried in the configured order. A method that names a tenant
//! the table does not know passes to the next one, except the explicit
//! connect attribute, which refuses: a client that says which tenant it wants
//! must never be routed to another.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::IdentificationMethod;

use super::{RouteTable, TenantRoute};

/// What a login tells about its tenant.
#[derive(Debug, Clone, Copy)]
pub struct LoginFacts<'a> {
    pub user: &'a str,
    pub attributes: &'a HashMap<String, String>,
    /// TLS server name indication, when the client upgraded to TLS.
    pub sni: Option<&'a str>,
    pub database: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Identified {
    pub tenant: Arc<TenantRoute>,
    /// The username within the tenant (`app` for a login as `app.acme`).
    pub username: String,
    pub method: IdentificationMethod,
}

/// No method found a known tenant. `candidate` is the first tenant name a
/// method proposed, to make the error say what was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTenant {
    pub candidate: Option<String>,
}

pub fn identify(table: &RouteTable, facts: LoginFacts<'_>) -> Result<Identified, UnknownTenant> {
    let mut candidate: Option<String> = None;
    for &method in &table.identification {
        let (slug, username) = match method {
            IdentificationMethod::ConnectAttribute => match facts.attributes.get("tenant") {
                Some(slug) => match table.tenant(slug) {
                    Some(t) => return Ok(found(t, facts.user, method)),
                    None => {
                        return Err(UnknownTenant {
                            candidate: Some(slug.clone()),
                        });
                    }
                },
                None => continue,
            },
            IdentificationMethod::Sni => match facts.sni.and_then(first_label) {
                Some(label) => (label, facts.user),
                None => continue,
            },
            IdentificationMethod::UsernameSuffix => match facts.user.rsplit_once('.') {
                Some((user, slug)) if !user.is_empty() && !slug.is_empty() => (slug, user),
                _ => continue,
            },
            IdentificationMethod::UserTable => match table.tenant_for_unique_user(facts.user) {
                Some(t) => return Ok(found(t, facts.user, method)),
                None => continue,
            },
            IdentificationMethod::Database => {
                match facts.database.and_then(|d| table.tenant_for_database(d)) {
                    Some(t) => return Ok(found(t, facts.user, method)),
                    None => continue,
                }
            }
        };
        match table.tenant(slug) {
            Some(t) => return Ok(found(t, username, method)),
            None => {
                candidate.get_or_insert_with(|| slug.to_string());
            }
        }
    }
    Err(UnknownTenant { candidate })
}

fn found(tenant: &Arc<TenantRoute>, username: &str, method: IdentificationMethod) -> Identified {
    Identified {
        tenant: tenant.clone(),
        username: username.to_string(),
        method,
    }
}

/// `acme.db.example.com` → `acme`; a bare name or an IP address gives nothing.
fn first_label(server_name: &str) -> Option<&str> {
    let (label, rest) = server_name.split_once('.')?;
    if label.is_empty() || rest.is_empty() {
        return None;
    }
    Some(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table(order: &str) -> RouteTable {
        let text = format!(
            r#"
[identification]
order = {order}
[[backends]]
id = 1
host = "127.0.0.1"
port = 3307
max_connections = 4
[[plans]]
name = "free"
weight = 1
max_client_connections = 1
max_backend_leases = 1
queue_timeout_ms = 1
max_queries_per_second = 1
burst = 1
max_query_time_ms = 1
max_queries_per_day = 1
[[tenants]]
slug = "acme"
status = "active"
plan = "free"
backend = 1
database = "tenant_acme"
db_user = "a"
db_password = "a"
[[tenants]]
slug = "globex"
status = "active"
plan = "free"
backend = 1
database = "tenant_globex"
db_user = "g"
db_password = "g"
[[users]]
username = "app"
tenant = "acme"
password = "x"
[[users]]
username = "app"
tenant = "globex"
password = "x"
[[users]]
username = "reporter"
tenant = "globex"
password = "x"
"#
        );
        RouteTable::from_config(&Config::from_toml(&text).unwrap(), 1)
    }

    const ALL: &str =
        r#"["connect_attribute", "sni", "username_suffix", "user_table", "database"]"#;

    fn facts<'a>(
        user: &'a str,
        attrs: &'a HashMap<String, String>,
        sni: Option<&'a str>,
        db: Option<&'a str>,
    ) -> LoginFacts<'a> {
        LoginFacts {
            user,
            attributes: attrs,
            sni,
            database: db,
        }
    }

    #[test]
    fn each_method_identifies() {
        let t = table(ALL);
        let none = HashMap::new();
        let mut attrs = HashMap::new();
        attrs.insert("tenant".to_string(), "globex".to_string());

        let by_attr = identify(&t, facts("app", &attrs, None, None)).unwrap();
        assert_eq!(
            (by_attr.tenant.slug(), by_attr.username.as_str()),
            ("globex", "app")
        );
        assert_eq!(by_attr.method, IdentificationMethod::ConnectAttribute);

        let by_sni = identify(&t, facts("app", &none, Some("acme.db.example.com"), None)).unwrap();
        assert_eq!(by_sni.tenant.slug(), "acme");
        assert_eq!(by_sni.method, IdentificationMethod::Sni);

        let by_suffix = identify(&t, facts("app.globex", &none, None, None)).unwrap();
        assert_eq!(
            (by_suffix.tenant.slug(), by_suffix.username.as_str()),
            ("globex", "app")
        );

        let by_user = identify(&t, facts("reporter", &none, None, None)).unwrap();
        assert_eq!(by_user.tenant.slug(), "globex");
        assert_eq!(by_user.method, IdentificationMethod::UserTable);

        // "app" belongs to two tenants: the users table cannot decide, the database can.
        let by_db = identify(&t, facts("app", &none, None, Some("tenant_acme"))).unwrap();
        assert_eq!(by_db.tenant.slug(), "acme");
        assert_eq!(by_db.method, IdentificationMethod::Database);
    }

    #[test]
    fn order_decides_between_methods() {
        let t = table(r#"["database", "username_suffix"]"#);
        let none = HashMap::new();
        let got = identify(&t, facts("app.globex", &none, None, Some("tenant_acme"))).unwrap();
        assert_eq!(got.tenant.slug(), "acme");
        assert_eq!(got.username, "app.globex");
    }

    #[test]
    fn unknown_tenants() {
        let t = table(ALL);
        let none = HashMap::new();
        let err = identify(&t, facts("app.nope", &none, None, None)).unwrap_err();
        assert_eq!(err.candidate.as_deref(), Some("nope"));
        let err = identify(&t, facts("app", &none, None, None)).unwrap_err();
        assert_eq!(err.candidate, None);
        // An explicit attribute naming an unknown tenant is not overridden.
        let mut attrs = HashMap::new();
        attrs.insert("tenant".to_string(), "nope".to_string());
        let err = identify(&t, facts("app.acme", &attrs, None, None)).unwrap_err();
        assert_eq!(err.candidate.as_deref(), Some("nope"));
        // SNI without a tenant label falls through to the next method.
        let got = identify(&t, facts("app.acme", &none, Some("db.example.com"), None)).unwrap();
        assert_eq!(got.tenant.slug(), "acme");
        assert_eq!(first_label("localhost"), None);
    }
}
