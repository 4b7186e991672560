//! Where partner calls may connect. A customer admin can set the partner's base URL (a `url` setting), so
//! without a rule ibex would call any address an admin names: its own loopback services, the private network
//! around it, or the cloud metadata service at 169.254.169.254, and then hand parts of the answer back.
//!
//! The rule is applied where ibex connects, on the addresses DNS gave (a resolver that filters them), and on
//! IP literals before connecting (hyper does not resolve those), so a name that resolves to a public address
//! for a check and to a private one for the call (DNS rebinding) gains nothing: there is no separate check.
//!
//! Default: public (globally routable) addresses only. The app definition can narrow the hosts
//! (`[partner.egress] allow_hosts`), let those named hosts use private addresses (`allow_private`), or refuse
//! plain http (`https_only`); the operator can allow loopback (`IBEX_ALLOW_LOOPBACK_PARTNERS`, on in `--dev`
//! for the simulator's shop).
//!
//! The address classes follow IANA's special-purpose address registries, as the unstable `IpAddr::is_global`
//! of the standard library does; that method is not stable, and the crates that copy it (`ip_rfc`) have not
//! been maintained since 2020, so the table is here, tested below.

use app::definition::EgressSpec;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a connection was not made. Found again in hyper's error chain, so the caller can tell it from a
/// network failure (and never retry it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The address itself is not in the message, which an admin reads: it would map internal names for them.
    /// The class says enough to act on.
    #[error("{host} is or resolves to a {class} address, which ibex does not call")]
    Address {
        host: String,
        addr: IpAddr,
        class: &'static str,
    },
    #[error("{0} is not one of the hosts this app may call ([partner.egress] allow_hosts)")]
    Host(String),
    #[error("this app calls its partner over https only, not {0}")]
    Scheme(String),
    #[error("{0} has no address")]
    NoAddress(String),
}

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow_hosts: Vec<String>,
    allow_private: bool,
    https_only: bool,
    allow_loopback: bool,
}

impl EgressPolicy {
    pub fn new(spec: &EgressSpec, allow_loopback: bool) -> Self {
        EgressPolicy {
            allow_hosts: spec
                .allow_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allow_private: spec.allow_private,
            https_only: spec.https_only,
            allow_loopback,
        }
    }

    /// Whether `host` is named by `allow_hosts` (always true when that list is empty).
    fn host_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts
            .iter()
            .any(|rule| match rule.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => *rule == host,
            })
    }

    /// What may be called before any address is known: the scheme and the host name.
    pub fn check_target(&self, scheme: &str, host: &str) -> Result<(), EgressError> {
        if self.https_only && scheme != "https" {
            return Err(EgressError::Scheme(format!("{scheme}://{host}")));
        }
        if !self.allow_hosts.is_empty() && !self.host_listed(host) {
            return Err(EgressError::Host(host.to_owned()));
        }
        Ok(())
    }

    /// Whether `addr`, which `host` resolved to (or is), may be connected to.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), EgressError> {
        let class = match classify(addr) {
            None => return Ok(()),
            Some(class) => class,
        };
        // `allow_private` opens the private networks a partner API may live in, never link-local (cloud
        // metadata), multicast or reserved space.
        let private_class = matches!(class, "private" | "loopback" | "unique local (private)");
        let allowed = (class == "loopback" && self.allow_loopback)
            || (self.allow_private
                && private_class
                && !self.allow_hosts.is_empty()
                && self.host_listed(host));
        if allowed {
            Ok(())
        } else {
            Err(EgressError::Address {
                host: host.to_owned(),
                addr,
                class,
            })
        }
    }

    /// The check made on a URI when connecting: scheme, host name, and the address itself for an IP literal
    /// (names are checked by the resolver once resolved).
    pub fn check_uri(&self, uri: &http::Uri) -> Result<(), EgressError> {
        let host = uri.host().unwrap_or_default();
        self.check_target(uri.scheme_str().unwrap_or_default(), host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(addr) => self.check_addr(bare, addr),
            Err(_) => Ok(()),
        }
    }
}

/// `None` for a globally routable address, else the name of its special-purpose class.
pub fn classify(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    let class = if a.is_unspecified() || o0 == 0 {
        "unspecified"
    } else if a.is_loopback() {
        "loopback"
    } else if a.is_private() {
        "private"
    } else if a.is_link_local() {
        "link-local"
    } else if o0 == 100 && (o1 & 0xc0) == 0x40 {
        "shared (carrier-grade NAT)"
    } else if o0 == 192 && o1 == 0 && o2 == 0 {
        "IETF protocol"
    } else if a.is_documentation() {
        "documentation"
    } else if o0 == 198 && (o1 & 0xfe) == 18 {
        "benchmarking"
    } else if a.is_multicast() {
        "multicast"
    } else if o0 >= 240 {
        "reserved"
    } else {
        return None;
    };
    Some(class)
}

fn classify_v6(a: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address written as IPv6 reaches the IPv4 host: judge it as that.
    if let Some(v4) = a.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = a.segments();
    let class = if a.is_unspecified() {
        "unspecified"
    } else if a.is_loopback() {
        "loopback"
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix (64:ff9b::/96): the embedded IPv4 address is what is reached.
        let [.., a0, a1, a2, a3] = a.octets();
        return classify_v4(Ipv4Addr::new(a0, a1, a2, a3));
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // NAT64 local use (64:ff9b:1::/48, RFC 8215): where the IPv4 address sits depends on the translator.
        "NAT64 local use"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique local (private)"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xff00) == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x2002 {
        // 6to4 tunnels to an embedded IPv4 address: not worth the risk of reaching a private one.
        "6to4"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "IETF protocol"
    } else if (s[0] & 0xe000) != 0x2000 {
        // Everything outside 2000::/3 is unassigned or special (the IPv4-compatible ::a.b.c.d among them).
        "reserved"
    } else {
        return None;
    };
    Some(class)
}

/// The system resolver, with every answer checked against the policy: the addresses that pass are the ones
/// hyper connects to.
#[derive(Clone)]
pub struct EgressResolver {
    inner: GaiResolver,
    policy: Arc<EgressPolicy>,
}

impl EgressResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        EgressResolver {
            inner: GaiResolver::new(),
            policy,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for EgressResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<Name>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        let lookup = tower::Service::<Name>::call(&mut self.inner, name);
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = lookup.await?.collect();
            // One refused address refuses the name: a name that mixes public and private answers is either
            // a mistake or a way to reach the private one on a retry.
            for addr in &resolved {
                policy.check_addr(&host, addr.ip())?;
            }
            if resolved.is_empty() {
                return Err(EgressError::NoAddress(host).into());
            }
            Ok(resolved.into_iter())
        })
    }
}

/// The policy's refusal, if that is what `error` (or one of its causes) is.
pub fn find_refusal(error: &(dyn std::error::Error + 'static)) -> Option<EgressError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<EgressError>() {
            return Some(refusal.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_global_addresses_pass_by_default() {
        for global in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.0.9",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
        ] {
            let class = classify(ip(global));
            // 192.0.0.9 is a globally reachable exception in the registry, but ibex keeps all of 192.0.0.0/24.
            if global == "192.0.0.9" {
                assert_eq!(class, Some("IETF protocol"));
                continue;
            }
            assert_eq!(class, None, "{global}");
        }
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("100.127.255.254", "shared (carrier-grade NAT)"),
            ("192.0.2.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1:a00:0:100:808:808", "NAT64 local use"),
            ("::127.0.0.1", "reserved"),
            ("fc00::1", "unique local (private)"),
            ("fd12:3456::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::", "6to4"),
            ("2001::1", "IETF protocol"),
            ("fec0::1", "reserved"),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
    }

    #[test]
    fn hosts_and_private_addresses_follow_the_definition() {
        let spec = EgressSpec {
            allow_hosts: vec!["api.shop.example".into(), "*.tenants.example".into()],
            allow_private: true,
            https_only: true,
        };
        let policy = EgressPolicy::new(&spec, false);
        assert!(policy.check_target("https", "api.shop.example").is_ok());
        assert!(policy.check_target("https", "API.Shop.Example.").is_ok());
        assert!(policy.check_target("https", "a.tenants.example").is_ok());
        assert!(policy.check_target("https", "a.b.tenants.example").is_ok());
        for refused in [
            "tenants.example",
            "evil-tenants.example",
            "shop.example",
            "api.shop.example.evil",
        ] {
            assert!(
                matches!(
                    policy.check_target("https", refused),
                    Err(EgressError::Host(_))
                ),
                "{refused}"
            );
        }
        assert!(matches!(
            policy.check_target("http", "api.shop.example"),
            Err(EgressError::Scheme(_))
        ));
        // Named hosts may use private addresses; others may not, and loopback stays closed to all but the
        // listed hosts unless the operator opens it.
        assert!(policy
            .check_addr("api.shop.example", ip("10.0.0.5"))
            .is_ok());
        assert!(policy.check_addr("other.example", ip("10.0.0.5")).is_err());
        assert!(policy
            .check_addr("api.shop.example", ip("0.0.0.0"))
            .is_err());
        assert!(policy.check_addr("api.shop.example", ip("fd00::5")).is_ok());
        for closed in ["169.254.169.254", "224.0.0.1", "240.0.0.1", "100.64.0.1"] {
            assert!(
                policy.check_addr("api.shop.example", ip(closed)).is_err(),
                "{closed}"
            );
        }

        let default = EgressPolicy::new(&EgressSpec::default(), false);
        assert!(default.check_target("http", "anything.example").is_ok());
        assert!(default.check_addr("x", ip("127.0.0.1")).is_err());
        assert!(default.check_addr("x", ip("93.184.216.34")).is_ok());
        let dev = EgressPolicy::new(&EgressSpec::default(), true);
        assert!(dev.check_addr("x", ip("127.0.0.1")).is_ok());
        assert!(dev.check_addr("x", ip("::1")).is_ok());
        assert!(dev.check_addr("x", ip("169.254.169.254")).is_err());
        assert!(dev.check_addr("x", ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ip_literals_are_checked_on_the_uri() {
        let policy = EgressPolicy::new(&EgressSpec::default(), false);
        for uri in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:4001/",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.1/",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert!(
                matches!(policy.check_uri(&uri), Err(EgressError::Address { .. })),
                "{uri}"
            );
        }
        let uri: http::Uri = "https://93.184.216.34/".parse().unwrap();
        assert!(policy.check_uri(&uri).is_ok());
    }
}
