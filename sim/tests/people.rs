//! The simulated People API over real HTTP: the key is checked, PUT clears what it omits while PATCH keeps it
//! and appends tags, and the batch create makes only the valid persons that do not exist yet.

use ibex_sim::people::{router, API_KEY};
use serde_json::{json, Value};

async fn start() -> (String, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(API_KEY)).await.unwrap() });
    let http = reqwest::Client::new();
    // The documented limits would slow the test down; they have their own tests in ibex's suite.
    http.post(format!("{base}/_sim/people"))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 0}))
        .send()
        .await
        .unwrap();
    (base, http)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (u16, Value) {
    let response = http
        .request(method, url)
        .header("authorization", format!("App {API_KEY}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn people_keeps_infobips_semantics() {
    let (base, http) = start().await;
    let persons = format!("{base}/people/2/persons");

    let wrong = http
        .post(&persons)
        .header("authorization", "App wrong")
        .json(&json!({"externalId": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        persons.clone(),
        json!({"externalId": "c-1", "firstName": "Ana", "lastName": "Horvat", "tags": ["a"]}),
    )
    .await;
    assert_eq!(status, 201);
    let by_id = format!("{persons}?identifier=c-1&type=EXTERNAL_ID");
    let (_, patched) = call(
        &http,
        reqwest::Method::PATCH,
        by_id.clone(),
        json!({"firstName": "Anna", "tags": ["b"]}),
    )
    .await;
    assert_eq!(
        (
            &patched["firstName"],
            &patched["lastName"],
            &patched["tags"]
        ),
        (&json!("Anna"), &json!("Horvat"), &json!(["a", "b"]))
    );
    let (_, replaced) = call(
        &http,
        reqwest::Method::PUT,
        by_id,
        json!({"externalId": "c-1", "firstName": "Ana"}),
    )
    .await;
    assert_eq!(
        replaced["lastName"],
        Value::Null,
        "PUT clears what it omits"
    );

    let (status, answer) = call(
        &http,
        reqwest::Method::POST,
        format!("{persons}/batch"),
        json!({"persons": [
            {"externalId": "c-2", "firstName": "Marko"},
            {"externalId": "c-1", "firstName": "Again"},
            {"externalId": "c-3", "contactInformation": {"email": [{"address": "no-at-sign"}]}},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["persons"].as_array().unwrap().len(), 1);
    assert_eq!(answer["persons"][0]["externalId"], "c-2");
    let errors: Vec<(u64, &str)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["messageId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(errors, [(1, "CONFLICT"), (2, "BAD_REQUEST")]);
}
