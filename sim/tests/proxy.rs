//! The benchmark's floor proxy must do the job nginx does in the benchmark, or the comparison means nothing.

use serde_json::Value;

async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn adds_the_key_and_passes_the_answer_through() {
    let shop = listen(ibex_sim::shop::router("shop-key")).await;
    let good = listen(ibex_sim::proxy::router(&shop, "shop-key").unwrap()).await;
    let bad = listen(ibex_sim::proxy::router(&shop, "wrong-key").unwrap()).await;

    let answer = reqwest::get(format!("{good}/orders/1001?currency=USD"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let order: Value = answer.json().await.unwrap();
    assert_eq!(order["id"], "1001");
    assert_eq!(order["total"]["currency"], "USD");

    let status = |url: String| async move { reqwest::get(url).await.unwrap().status() };
    assert_eq!(status(format!("{good}/orders/404404")).await, 404);
    assert_eq!(status(format!("{bad}/orders/1001")).await, 401);
}
