//! The configuration page's sign-in through the simulated Exchange OAuth server, over real HTTP: the flow ends
//! on the page with a session for the signed-in account, refusals end on an explicit page, the session cannot be
//! forged, and framing is allowed only from the portal.

mod common;

use common::{Backend, Harness};
use ibex_sim::exchange::USERS;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows redirects by hand, sending the portal's sign-in cookie to the portal only (as a browser would).
async fn follow(
    h: &Harness,
    start: &str,
    portal_user: Option<&str>,
) -> (reqwest::Response, Vec<String>) {
    let http = client();
    let mut url = start.to_owned();
    let mut trail = Vec::new();
    for _ in 0..10 {
        trail.push(url.clone());
        let mut request = http.get(&url);
        if let (Some(user), true) = (portal_user, url.starts_with(&h.portal)) {
            request = request.header("cookie", format!("sim_portal_user={user}"));
        }
        let response = request.send().await.unwrap();
        if !response.status().is_redirection() {
            return (response, trail);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        url = if location.starts_with('/') {
            format!("{}{location}", h.ibex)
        } else {
            location
        };
    }
    panic!("redirect loop: {trail:#?}");
}

async fn sign_in(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];

    let (page, trail) = follow(&h, &format!("{}/settings", h.ibex), Some(ana.user_key)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, format!("frame-ancestors {}", h.portal));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let final_url = trail.last().unwrap().clone();
    assert!(trail
        .iter()
        .any(|u| u.contains("/exchange/1/oauth/authorize") && u.contains("code_challenge=")));
    let session = url::Url::parse(&final_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "session")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    // The page's server function answers for the session's account, and only with a genuine session.
    let load = |token: String| {
        let http = client();
        let url = format!("{}/api/load_settings", h.ibex);
        async move {
            http.post(url)
                .form(&[("session", token)])
                .send()
                .await
                .unwrap()
        }
    };
    let response = load(session.clone()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["account_key"], ana.account_key);
    assert_eq!(body["username"], ana.username);
    let mut forged = session.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let response = load(forged).await;
    assert!(
        !response.status().is_success(),
        "a tampered session must be refused"
    );
    let response = load("v1:test1:bm90LWEtc2Vzc2lvbg".into()).await;
    assert!(
        !response.status().is_success(),
        "a made-up session must be refused"
    );

    // Not signed in to the portal: an explicit page, not a loop.
    let (page, trail) = follow(&h, &format!("{}/settings", h.ibex), None).await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("not signed in to Infobip"));

    // A session that never sticks stops after a few attempts with an explanation.
    let (page, _) = follow(
        &h,
        &format!("{}/settings?attempt=3", h.ibex),
        Some(ana.user_key),
    )
    .await;
    assert_eq!(page.status(), 409);

    // Pages that are not meant to be framed say so.
    let home = client().get(format!("{}/", h.ibex)).send().await.unwrap();
    assert_eq!(
        home.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    h.finish().await;
}

on_both_backends!(configuration_page_sign_in, sign_in);
