mod common;

use common::fake::{FakeHttp, Reply};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn healthy_connection_end_to_end() {
    let env = Env::new().await;
    let graph = FakeHttp::start(|_| {
        Reply::json(200, json!({"id":"1001","status":"CONNECTED","quality_rating":"GREEN","health_status":{"can_send_message":"AVAILABLE"}}))
    })
    .await;
    let id = seed::connection(&env.db, seed::Connection::default()).await;
    let app = app("jobs-http", &env.variables(&graph.url));
    let r = post_health(&app).await;
    println!("{}", app.output());
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["summary"]["healthy"], 1);
    let row = env
        .db
        .query_one(
            "SELECT \"healthStatus\" FROM whatsapp_connections WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "healthy");
}
