//! Building the partner request of a function from its templates, parsed once at start-up. This is where the
//! middleware's translations happen: account credentials into auth, preferences into the query, inputs that
//! Exchange can only send as parameters into the headers or JSON body the partner wants.

use app::definition::template::{verbatim, Lookup, Source, Template, TemplateError};
use app::definition::{Method, PartnerAuth, PartnerSpec, RequestSpec};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// RFC 3986 unreserved characters stay; everything else in a substituted path value is escaped, so an input
/// can never add a path segment or a query of its own.
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the partner URL {0:?} built from the account's settings is not a valid URL")]
    InvalidUrl(String),
    /// A base URL from settings saved before `?` and `#` were refused there: the path would go after them.
    #[error("the partner base URL built from the account's settings contains `?` or `#`, so the request's path would be lost; enter the URL again without them")]
    BaseUrlNotABase,
    /// A value standing in the host name (`https://{{settings.tenant}}.shop.example`) saved before values that
    /// are not host names were refused there: it could send the request to another host.
    #[error("`{{{{{0}}}}}` in the partner base URL stands in its host name, but the account's value is not a host name (letters, digits, dots and hyphens only); enter it again")]
    NotAHostName(String),
    #[error("the value for partner header {0} contains characters a header cannot carry")]
    InvalidHeader(String),
    /// A value of `.` or `..` would be read by the partner's server as "this folder" or "the folder above":
    /// `/orders/..` reaches `/`. Percent-encoding cannot help (servers decode `%2E%2E` the same way).
    #[error("{} cannot be `.` or `..` (it goes into the partner's URL path)", .0.as_deref().map_or_else(|| "a path value".to_owned(), |n| format!("input `{n}`")))]
    DotSegment(Option<String>),
    /// A value that would become more than one path segment behind a proxy that decodes once more: `/` and `\`
    /// (sent as `%2F`, `%5C`) and `%` (`%252e%252e` is `..` after two decodings).
    #[error("input `{0}` cannot contain `/`, `\\` or `%`: it becomes one segment of the partner's URL path")]
    PathSeparator(String),
    /// The same rule for a setting (or other value) that stands in the path part of the partner's URL.
    #[error("`{{{{{0}}}}}` stands in the partner's URL path, but the account's value is not one path segment (it contains `/`, `\\`, `%` or a control character, or is `.` or `..`); enter it again")]
    PathSettingSeparator(String),
}

#[derive(Debug, Clone)]
pub struct PartnerRequest {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub idempotent: bool,
    /// False when the base URL comes from account settings: the partner's answer is then not quoted in error
    /// messages (see `shown_excerpt`).
    pub echo_answer: bool,
}

#[derive(Debug)]
enum Auth {
    Header(HeaderName, Template),
    Bearer(Template),
    Basic(Template, Template),
    Query(String, Template),
}

#[derive(Debug)]
enum Body {
    Placeholder(Template),
    Text(Template),
    Array(Vec<Body>),
    Object(Vec<(String, Body)>),
    Literal(Value),
}

#[derive(Debug)]
pub struct RequestPlan {
    method: Method,
    base_url: Template,
    /// The base URL's placeholders that stand in its host name (`Template::host_sources`).
    hosts: Vec<Source>,
    /// The placeholders that stand in the URL's path, in the base URL or the function's path, whose values may
    /// not contain `/`, `\` or `%` (inputs with `allow_slash` may contain `/`): decided here, once, so a call
    /// whose path has no placeholder pays nothing.
    path_values: Vec<(Source, bool)>,
    path: Template,
    query: Vec<(String, Template)>,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Body>,
    auth: Option<Auth>,
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header {name:?} is not a valid header name"))
}

fn parse(text: &str) -> Result<Template, String> {
    Template::parse(text).map_err(|e: TemplateError| e.to_string())
}

impl RequestPlan {
    /// `slash_ok`: the inputs declared with `allow_slash = true`.
    pub fn compile(
        partner: &PartnerSpec,
        spec: &RequestSpec,
        slash_ok: &[&str],
    ) -> Result<Self, String> {
        let auth = match &partner.auth {
            None => None,
            Some(PartnerAuth::Header { name, value }) => {
                Some(Auth::Header(header_name(name)?, parse(value)?))
            }
            Some(PartnerAuth::Bearer { token }) => Some(Auth::Bearer(parse(token)?)),
            Some(PartnerAuth::Basic { username, password }) => {
                Some(Auth::Basic(parse(username)?, parse(password)?))
            }
            Some(PartnerAuth::Query { name, value }) => {
                Some(Auth::Query(name.clone(), parse(value)?))
            }
        };
        let base_url = parse(&partner.base_url)?;
        let path = parse(&spec.path)?;
        let path_values = base_url
            .path_sources()
            .chain(path.sources())
            .map(|source| {
                let slash =
                    matches!(source, Source::Input(name) if slash_ok.contains(&name.as_str()));
                (source.clone(), slash)
            })
            .collect();
        Ok(RequestPlan {
            method: spec.method,
            hosts: base_url.host_sources().cloned().collect(),
            path_values,
            base_url,
            path,
            query: spec
                .query
                .iter()
                .map(|(k, v)| Ok((k.clone(), parse(v)?)))
                .collect::<Result<_, String>>()?,
            headers: spec
                .headers
                .iter()
                .map(|(k, v)| Ok((header_name(k)?, parse(v)?)))
                .collect::<Result<_, String>>()?,
            body: spec.body.as_ref().map(compile_body).transpose()?,
            auth,
        })
    }

    pub fn build(&self, scope: &dyn Lookup) -> Result<PartnerRequest, BuildError> {
        let base = self.base_url.render(scope, verbatim);
        if !app::settings::fits_a_base_url(&base) {
            return Err(BuildError::BaseUrlNotABase);
        }
        if let Some(source) = self.hosts.iter().find(|source| {
            let text = scope.lookup(source).and_then(Value::as_str);
            text.is_some_and(|text| !app::settings::fits_a_host(text))
        }) {
            return Err(BuildError::NotAHostName(source.to_string()));
        }
        if let Some((source, _)) = self.path_values.iter().find(|(source, slash_ok)| {
            let text = scope.lookup(source).and_then(Value::as_str);
            text.is_some_and(|text| match source {
                // An input's `.` and `..` are `climbs`' to find in the rendered path, with a message of its own.
                Source::Input(_) => text.contains(['\\', '%']) || (!slash_ok && text.contains('/')),
                // A setting in the base URL is rendered as it is, outside `climbs`' view.
                _ => !app::settings::fits_a_path_segment(text),
            })
        }) {
            return Err(match source {
                Source::Input(name) => BuildError::PathSeparator(name.clone()),
                other => BuildError::PathSettingSeparator(other.to_string()),
            });
        }
        let path = self.path.render(scope, |value, out| {
            out.extend(utf8_percent_encode(value, PATH_VALUE));
        });
        if climbs(&path) {
            return Err(BuildError::DotSegment(self.dot_input(scope)));
        }
        let mut query = url::form_urlencoded::Serializer::new(String::with_capacity(64));
        // Optional inputs that were not sent leave their parameter out rather than sending it empty.
        for (name, template) in self.query.iter().filter(|(_, t)| t.is_complete(scope)) {
            query.append_pair(name, &template.render(scope, verbatim));
        }
        if let Some(Auth::Query(name, template)) = &self.auth {
            query.append_pair(name, &template.render(scope, verbatim));
        }
        let query = query.finish();
        let base = base.trim_end_matches('/');
        let mut full = String::with_capacity(base.len() + path.len() + query.len() + 1);
        full.push_str(base);
        full.push_str(&path);
        join_query(&mut full, &query);
        let Some((uri, url_credentials)) = parse_uri(&full) else {
            return Err(BuildError::InvalidUrl(redact_query(&full)));
        };
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        for (name, template) in self.headers.iter().filter(|(_, t)| t.is_complete(scope)) {
            headers.insert(
                name.clone(),
                header_value(name.as_str(), template.render(scope, verbatim))?,
            );
        }
        match &self.auth {
            Some(Auth::Header(name, template)) => {
                headers.insert(
                    name.clone(),
                    secret_header(name.as_str(), template.render(scope, verbatim))?,
                );
            }
            Some(Auth::Bearer(token)) => {
                let value = format!("Bearer {}", token.render(scope, verbatim));
                headers.insert(
                    http::header::AUTHORIZATION,
                    secret_header("Authorization", value)?,
                );
            }
            Some(Auth::Basic(user, password)) => {
                let pair = format!(
                    "{}:{}",
                    user.render(scope, verbatim),
                    password.render(scope, verbatim)
                );
                headers.insert(http::header::AUTHORIZATION, basic_auth(&pair)?);
            }
            Some(Auth::Query(..)) | None => {}
        }
        if let Some(pair) = url_credentials {
            // As reqwest did: credentials in the URL are Basic auth, unless the request already authenticates.
            if !headers.contains_key(http::header::AUTHORIZATION) {
                headers.insert(http::header::AUTHORIZATION, basic_auth(&pair)?);
            }
        }
        let body = match &self.body {
            Some(template) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                let value = render_body(template, scope).unwrap_or(Value::Null);
                Some(Bytes::from(value.to_string()))
            }
            None => None,
        };
        Ok(PartnerRequest {
            method: to_http(self.method),
            uri,
            headers,
            body,
            idempotent: self.method.is_idempotent(),
            echo_answer: self.base_url.sources().next().is_none(),
        })
    }
}

/// Whether the partner's server could read `path` as climbing: a segment that is `.` or `..` once
/// percent-decoded, with `\` taken as a separator too. Proxies such as nginx decode `%2F` before they resolve
/// `..`, so `..%2Finternal` (an input of `../internal`, escaped) reaches `/internal` behind them; IIS treats `\`
/// as `/`. A segment's path parameters (`..;x`) count for nothing: Tomcat, Jetty and Spring drop them and
/// then resolve the `..`.
fn climbs(path: &str) -> bool {
    // Without a dot or an escape (`%2e`) no segment can be `.` or `..`: most paths skip the decoding.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(is_dot_segment)
}

fn is_dot_segment(segment: &str) -> bool {
    let bare = segment.split(';').next().unwrap_or_default();
    bare == "." || bare == ".."
}

impl RequestPlan {
    /// The input whose value made a climbing segment, for the error message.
    fn dot_input(&self, scope: &dyn Lookup) -> Option<String> {
        self.path.sources().find_map(|source| match source {
            Source::Input(name) => scope
                .lookup(source)
                .and_then(Value::as_str)
                .filter(|v| v.split(['/', '\\']).any(is_dot_segment))
                .map(|_| name.clone()),
            _ => None,
        })
    }
}

/// Appends the encoded query to a URL that may already carry one, or end in a bare `?`.
fn join_query(full: &mut String, query: &str) {
    if query.is_empty() {
        if full.ends_with('?') {
            full.pop();
        }
        return;
    }
    if !full.ends_with(['?', '&']) {
        full.push(if full.contains('?') { '&' } else { '?' });
    }
    full.push_str(query);
}

/// The partner URL as hyper takes it, and the `user:password` written into it, if any. Text `http::Uri`
/// accepts as it is takes the fast path; anything else (a non-ASCII host, a space in a path, credentials in
/// the authority) goes through `url::Url`, which normalises it as reqwest did: IDNA hosts, percent-encoding,
/// credentials taken out. `None` for what is not an http(s) URL with a host.
fn parse_uri(full: &str) -> Option<(http::Uri, Option<String>)> {
    let usable = |uri: &http::Uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
            && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
    };
    if let Ok(uri) = http::Uri::try_from(full) {
        if usable(&uri) {
            return Some((uri, None));
        }
    }
    let mut url = url::Url::parse(full).ok()?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| {
        format!(
            "{}:{}",
            decode(url.username()),
            url.password().map(decode).unwrap_or_default()
        )
    });
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    let uri = http::Uri::try_from(url.as_str()).ok()?;
    usable(&uri).then_some((uri, credentials))
}

fn header_value(name: &str, value: String) -> Result<HeaderValue, BuildError> {
    HeaderValue::try_from(value).map_err(|_| BuildError::InvalidHeader(name.to_owned()))
}

/// `Authorization: Basic` for a `user:password` pair.
fn basic_auth(pair: &str) -> Result<HeaderValue, BuildError> {
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    secret_header("Authorization", value)
}

/// Marked sensitive so that hyper never prints it.
fn secret_header(name: &str, value: String) -> Result<HeaderValue, BuildError> {
    let mut value = header_value(name, value)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A URL for an error message, without its query string or `user:password@` (either may carry a credential).
fn redact_query(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

fn to_http(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

fn compile_body(value: &Value) -> Result<Body, String> {
    Ok(match value {
        Value::String(text) => {
            let template = parse(text)?;
            if template.single().is_some() {
                Body::Placeholder(template)
            } else {
                Body::Text(template)
            }
        }
        Value::Array(items) => {
            Body::Array(items.iter().map(compile_body).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Body::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), compile_body(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => Body::Literal(other.clone()),
    })
}

/// `None` for a lone placeholder without a value, so the key is left out instead of sent as null.
fn render_body(body: &Body, scope: &dyn Lookup) -> Option<Value> {
    match body {
        Body::Placeholder(template) => template
            .single()
            .and_then(|source| scope.lookup(source))
            .filter(|v| !v.is_null())
            .cloned(),
        Body::Text(template) => Some(Value::String(template.render(scope, verbatim))),
        Body::Array(items) => Some(Value::Array(
            items.iter().filter_map(|b| render_body(b, scope)).collect(),
        )),
        Body::Object(fields) => Some(Value::Object(
            fields
                .iter()
                .filter_map(|(k, b)| Some((k.clone(), render_body(b, scope)?)))
                .collect(),
        )),
        Body::Literal(value) => Some(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Option<(String, Option<String>)> {
        parse_uri(text).map(|(uri, credentials)| (uri.to_string(), credentials))
    }

    #[test]
    fn partner_urls_are_taken_as_reqwest_took_them() {
        let plain = |s: &str| Some((s.to_owned(), None));
        assert_eq!(
            uri("http://127.0.0.1:4001/orders/1?x=1"),
            plain("http://127.0.0.1:4001/orders/1?x=1")
        );
        assert_eq!(uri("http://[::1]:8080/a"), plain("http://[::1]:8080/a"));
        assert_eq!(
            uri("https://müller-shop.de/api"),
            plain("https://xn--mller-shop-9db.de/api")
        );
        assert_eq!(uri("http://h.example/a b"), plain("http://h.example/a%20b"));
        assert_eq!(
            uri("https://user:k%40y@api.example/o"),
            Some((
                "https://api.example/o".to_owned(),
                Some("user:k@y".to_owned())
            ))
        );
        for bad in ["ftp://h.example/", "http://", "not a url", "/relative"] {
            assert_eq!(uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_messages_never_carry_credentials() {
        assert_eq!(
            redact_query("https://u:p@a{b.example/x?key=1"),
            "https://a{b.example/x"
        );
        assert_eq!(redact_query("http://h/p?k=s"), "http://h/p");
        assert_eq!(redact_query("no scheme?k=s"), "no scheme");
    }

    #[test]
    fn climbing_paths_are_found_however_they_are_written() {
        for path in [
            "/orders/..",
            "/orders/.",
            "/orders/..%2Finternal",
            "/a/..%5Cb",
            "/a/%2E%2E",
            "/a/..?x=1",
            "/customers/..%3B",
            "/customers/..%3B%2Fadmin",
            "/customers/..;jsessionid=1",
            "/customers/.;x",
        ] {
            assert!(climbs(path), "{path}");
        }
        for path in [
            "/orders/...",
            "/orders/a..b",
            "/orders/.hidden",
            "/orders/1",
            "/a/%2Ex",
            "/orders/1;v=2",
            "/orders/..x;y",
        ] {
            assert!(!climbs(path), "{path}");
        }
    }

    /// One setting's value, for a plan whose base URL uses only that setting.
    struct OneSetting(&'static str, Value);
    impl Lookup for OneSetting {
        fn lookup(&self, source: &Source) -> Option<&Value> {
            match source {
                Source::Setting(key) if key == self.0 => Some(&self.1),
                _ => None,
            }
        }
    }

    /// The plan of a GET of `/orders/1` under `base_url`.
    fn plan_under(base_url: &str) -> RequestPlan {
        plan_of(base_url, "/orders/1", &[])
    }

    /// The plan of a GET of `path` under `base_url`, with `slash_ok` inputs allowing `/`.
    fn plan_of(base_url: &str, path: &str, slash_ok: &[&str]) -> RequestPlan {
        let partner = PartnerSpec {
            base_url: base_url.into(),
            auth: None,
            timeout_ms: 1_000,
            probe: None,
            egress: Default::default(),
        };
        let spec = RequestSpec {
            method: Method::Get,
            path: path.into(),
            query: Default::default(),
            headers: Default::default(),
            body: None,
        };
        RequestPlan::compile(&partner, &spec, slash_ok).unwrap()
    }

    #[test]
    fn a_stored_base_url_with_a_query_or_fragment_is_refused() {
        let plan = plan_under("{{settings.base}}");
        let built = plan.build(&OneSetting("base", Value::from("https://shop.example/v1/")));
        assert_eq!(
            built.map(|r| r.uri.to_string()),
            Ok("https://shop.example/v1/orders/1".to_owned())
        );
        // Saved before the settings page refused them: `/orders/1` would go into the query or be dropped.
        for base in [
            "https://shop.example/v1?tenant=7",
            "https://shop.example/v1#",
        ] {
            let built = plan.build(&OneSetting("base", Value::from(base)));
            assert_eq!(built.err(), Some(BuildError::BaseUrlNotABase), "{base}");
        }
    }

    #[test]
    fn a_stored_host_name_that_is_not_one_is_refused() {
        let plan = plan_under("https://{{settings.tenant}}.shop.example/v1");
        let built = plan.build(&OneSetting("tenant", Value::from("acme-7")));
        assert_eq!(
            built.map(|r| r.uri.to_string()),
            Ok("https://acme-7.shop.example/v1/orders/1".to_owned())
        );
        // Saved before the settings page refused them: each would send the request to evil.example.
        for tenant in [
            "evil.example/",
            "evil.example\\",
            "x@evil.example:443/",
            "evil.example%2F",
            "evil.example:",
            "[evil.example]",
        ] {
            let built = plan.build(&OneSetting("tenant", Value::from(tenant)));
            assert_eq!(
                built.err(),
                Some(BuildError::NotAHostName("settings.tenant".into())),
                "{tenant}"
            );
        }
    }

    #[test]
    fn a_stored_path_setting_is_one_segment() {
        let plan = plan_under("https://shop.example/{{settings.tenant}}/v1");
        let built = plan.build(&OneSetting("tenant", Value::from("acme-7")));
        assert_eq!(
            built.map(|r| r.uri.to_string()),
            Ok("https://shop.example/acme-7/v1/orders/1".to_owned())
        );
        // Behind a proxy that decodes once more, each reaches another resource of the partner's.
        for tenant in [
            "acme/admin",
            "acme\\admin",
            "%2e%2e",
            "acme%2Fadmin",
            "..",
            "..;x",
            ".\t.",
        ] {
            let built = plan.build(&OneSetting("tenant", Value::from(tenant)));
            assert_eq!(
                built.err(),
                Some(BuildError::PathSettingSeparator("settings.tenant".into())),
                "{tenant}"
            );
        }
    }

    /// One input's value.
    struct OneInput(&'static str, Value);
    impl Lookup for OneInput {
        fn lookup(&self, source: &Source) -> Option<&Value> {
            match source {
                Source::Input(name) if name == self.0 => Some(&self.1),
                _ => None,
            }
        }
    }

    #[test]
    fn a_path_input_has_no_separator_unless_it_allows_a_slash() {
        let strict = plan_of("https://shop.example", "/orders/{{inputs.id}}", &[]);
        let lenient = plan_of("https://shop.example", "/orders/{{inputs.id}}", &["id"]);
        for id in ["1003/refunds", "1003\\refunds", "%2e%2e", "1003%2Frefunds"] {
            assert_eq!(
                strict.build(&OneInput("id", Value::from(id))).err(),
                Some(BuildError::PathSeparator("id".into())),
                "{id}"
            );
        }
        let built = lenient.build(&OneInput("id", Value::from("2026/1003")));
        assert_eq!(
            built.map(|r| r.uri.to_string()),
            Ok("https://shop.example/orders/2026%2F1003".to_owned())
        );
        // `allow_slash` is about `/` only: `%` and `\` stay refused, and a climb stays a climb.
        for id in ["%2e%2e", "a\\b"] {
            assert_eq!(
                lenient.build(&OneInput("id", Value::from(id))).err(),
                Some(BuildError::PathSeparator("id".into())),
                "{id}"
            );
        }
        assert!(matches!(
            lenient
                .build(&OneInput("id", Value::from("../admin")))
                .err(),
            Some(BuildError::DotSegment(_))
        ));
    }

    #[test]
    fn the_query_joins_whatever_the_url_ends_with() {
        for (base, query, joined) in [
            ("http://h/p", "a=1", "http://h/p?a=1"),
            ("http://h/p?x=1", "a=1", "http://h/p?x=1&a=1"),
            ("http://h/p?", "a=1", "http://h/p?a=1"),
            ("http://h/p?x=1&", "a=1", "http://h/p?x=1&a=1"),
            ("http://h/p?", "", "http://h/p"),
            ("http://h/p", "", "http://h/p"),
        ] {
            let mut full = base.to_owned();
            join_query(&mut full, query);
            assert_eq!(full, joined);
        }
    }
}
