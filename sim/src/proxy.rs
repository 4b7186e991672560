//! The benchmark's floor: the plainest reverse proxy the stack ibex is built on (axum serving, hyper-util's
//! pooled client calling, mimalloc) can be, adding the partner's API key and passing the answer through.
//! Nothing else: no signature, settings, mapping, metrics or logs. `scripts/bench.sh` measures it beside ibex
//! and nginx, so what ibex costs over its own stack and what the stack costs over nginx are told apart.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use std::net::SocketAddr;
use std::sync::Arc;

type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

struct Upstream {
    client: Client,
    base: String,
    api_key: http::HeaderValue,
}

pub fn router(
    upstream: &str,
    api_key: &str,
) -> Result<axum::Router, http::header::InvalidHeaderValue> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(HttpConnector::new());
    let state = Arc::new(Upstream {
        client,
        base: upstream.trim_end_matches('/').to_owned(),
        api_key: http::HeaderValue::from_str(api_key)?,
    });
    Ok(axum::Router::new().fallback(forward).with_state(state))
}

pub async fn serve(addr: SocketAddr, upstream: String, api_key: String) -> std::io::Result<()> {
    let app = router(&upstream, &api_key).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("floor proxy on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// The per-core model: `threads` single-threaded runtimes, each with its own router and partner connection pool,
/// accepting from one shared socket (the kernel hands each connection to one waiting thread). No task, timer or
/// pooled connection ever moves between threads.
pub fn serve_per_thread(
    addr: SocketAddr,
    upstream: String,
    api_key: String,
    threads: usize,
) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tracing::info!(
        "floor proxy on http://{}, {threads} serving threads",
        listener.local_addr()?
    );
    let workers = (0..threads)
        .map(|_| {
            let (listener, upstream, api_key) =
                (listener.try_clone()?, upstream.clone(), api_key.clone());
            Ok(std::thread::spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let app = router(&upstream, &api_key).map_err(std::io::Error::other)?;
                    axum::serve(tokio::net::TcpListener::from_std(listener)?, app).await
                })
            }))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for worker in workers {
        worker
            .join()
            .map_err(|_| std::io::Error::other("a serving thread panicked"))??;
    }
    Ok(())
}

async fn forward(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let outbound = http::Request::builder()
        .method(request.method().clone())
        .uri(format!("{}{path}", up.base))
        .header("x-api-key", up.api_key.clone())
        .body(Full::new(Bytes::new()));
    let outbound = match outbound {
        Ok(outbound) => outbound,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let answer = match up.client.request(outbound).await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get(http::header::CONTENT_TYPE).cloned();
    match answer.into_body().collect().await {
        Ok(body) => {
            let mut response = Response::new(Body::from(body.to_bytes()));
            *response.status_mut() = status;
            if let Some(value) = content_type {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
