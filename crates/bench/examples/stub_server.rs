//! A minimal OpenAI-style SSE server that answers instantly, for measuring load generators
//! themselves (how many requests/s they drive, at what CPU cost):
//! `cargo run --release -p switchyard-bench --example stub_server -- 127.0.0.1:18800 32`
//! serves `Qwen/Qwen3-0.6B` and streams 32 content chunks (one body frame each), a usage chunk
//! and `[DONE]` for every POST to `/v1/chat/completions` or `/v1/completions`, on one thread.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18800".to_string());
    let chunks: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| anyhow::anyhow!("chunk count {n:?}: {e}"))?,
        None => 32,
    };
    let content = Bytes::from_static(
        b"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the\"},\"finish_reason\":null}]}\n\n",
    );
    let usage = Bytes::from(format!(
        "data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":120,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        chunks + 120
    ));
    let mut frames = vec![content; chunks];
    frames.push(usage);

    let stream_reply = move || {
        let frames = frames.clone();
        async move {
            let body = futures::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(body))
                .map_err(|e| e.to_string())
        }
    };
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async {
                r#"{"object":"list","data":[{"id":"Qwen/Qwen3-0.6B","object":"model"}]}"#
            }),
        )
        .route("/v1/chat/completions", post(stream_reply.clone()))
        .route("/v1/completions", post(stream_reply));

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            // Without TCP_NODELAY, per-chunk writes meet delayed ACKs and stall ~40 ms.
            let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            eprintln!("stub server on {addr}, {chunks} chunks per response");
            axum::serve(listener, app).await?;
            Ok(())
        })
}
