//! The benchmark's floor: the plainest reverse proxy the stack ibex is built on (axum serving, reqwest calling,
//! mimalloc) can be, adding the partner's API key and passing the answer through. Nothing else: no signature,
//! settings, mapping, metrics or logs. `scripts/bench.sh` measures it beside ibex and nginx, so what ibex costs
//! over its own stack and what the stack costs over nginx are told apart.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

struct Upstream {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

pub fn router(upstream: &str, api_key: String) -> reqwest::Result<axum::Router> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let state = Arc::new(Upstream {
        client,
        base: upstream.trim_end_matches('/').to_owned(),
        api_key,
    });
    Ok(axum::Router::new().fallback(forward).with_state(state))
}

pub async fn serve(addr: SocketAddr, upstream: String, api_key: String) -> std::io::Result<()> {
    let app = router(&upstream, api_key).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("floor proxy on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

async fn forward(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let answer = up
        .client
        .request(request.method().clone(), format!("{}{path}", up.base))
        .header("x-api-key", &up.api_key)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    match answer.bytes().await {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            if let Some(value) = content_type {
                response
                    .headers_mut()
                    .insert(reqwest::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
