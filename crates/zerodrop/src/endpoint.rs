//! A stand-in for the platform's own delivery endpoint (a game server's top-up API), for
//! the demo and the tests. It checks zerodrop's signature, remembers what it delivered
//! (once per order, whatever the retries), and can be told to misbehave.

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use zerodrop_server::flows::endpoint::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

pub const NAME: &str = "game";
pub const SECRET: &str = "zd_local_game_endpoint_secret";

/// How the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200: delivered.
    Up,
    /// 503: try later.
    Down,
    /// 202: accepted; the endpoint confirms later (see [`Endpoint::confirm_accepted`]).
    Accept,
    /// 409 with a reason: never.
    Refuse,
    /// 200 with bytes that are not JSON.
    Garbage,
    /// 302 to elsewhere.
    Redirect,
    /// Answers after this many milliseconds.
    Slow(u64),
    /// Holds every request until [`Endpoint::release`], then answers 200: a slow answer
    /// whose moment the test chooses.
    Hold,
}

#[derive(Default)]
struct Book {
    mode: Option<Mode>,
    /// Deliveries carried out, by order id (a retry of a delivered order changes nothing).
    delivered: HashMap<String, u32>,
    /// Order numbers accepted (202) and not yet confirmed.
    accepted: Vec<String>,
    requests: u64,
    bad_signatures: u64,
}

#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    book: Arc<Mutex<Book>>,
    release: Arc<watch::Sender<bool>>,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

/// What the endpoint's handler shares.
#[derive(Clone)]
struct Shared {
    book: Arc<Mutex<Book>>,
    /// Turns true when held requests may answer.
    released: watch::Receiver<bool>,
}

impl Endpoint {
    pub async fn start(mode: Mode) -> Result<Endpoint> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/deliver", listener.local_addr()?);
        let book = Arc::new(Mutex::new(Book { mode: Some(mode), ..Book::default() }));
        let (release, released) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Shared { book: book.clone(), released };
        let router = Router::new().route("/deliver", post(deliver)).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Endpoint { url, book, release: Arc::new(release), stop: Arc::new(Mutex::new(Some(stop))) })
    }

    /// Lets requests held under [`Mode::Hold`] answer (and later ones answer at once).
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut book) = self.book.lock() {
            book.mode = Some(mode);
        }
    }

    /// Orders this endpoint delivered, and how many requests it got for each.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.book.lock().map(|b| b.delivered.clone()).unwrap_or_default()
    }

    pub fn requests(&self) -> (u64, u64) {
        self.book.lock().map(|b| (b.requests, b.bad_signatures)).unwrap_or_default()
    }

    /// Confirms every accepted delivery to zerodrop, signed like zerodrop's requests.
    pub async fn confirm_accepted(&self, zerodrop_url: &str) -> Result<Vec<(String, u16)>> {
        let accepted = self.book.lock().map(|mut b| std::mem::take(&mut b.accepted)).unwrap_or_default();
        let client = zerodrop_providers::http_client::client(Duration::from_secs(10))?;
        let mut answers = Vec::new();
        for order_no in accepted {
            let status = confirm(&client, zerodrop_url, &order_no, r#"{"status":"delivered"}"#).await?;
            answers.push((order_no, status));
        }
        Ok(answers)
    }

    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
    }
}

/// Posts a signed confirmation for one order; returns zerodrop's HTTP status.
pub async fn confirm(client: &reqwest::Client, zerodrop_url: &str, order_no: &str, body: &str) -> Result<u16> {
    let now = zerodrop_store::now_ms() / 1000;
    let response = client
        .post(format!("{zerodrop_url}/v1/orders/{order_no}/delivery"))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, endpoint::sign(SECRET, now, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn deliver(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let book = shared.book;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = zerodrop_store::now_ms() / 1000;
    let genuine = endpoint::verify(SECRET, header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &body, now).is_ok();
    let order_id = header("idempotency-key").unwrap_or_default().to_owned();
    let order_no = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["order_no"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mode = {
        let Ok(mut book) = book.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
        book.requests += 1;
        if !genuine {
            book.bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
        book.mode.unwrap_or(Mode::Up)
    };
    match mode {
        Mode::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            record(&book, &order_id);
            (StatusCode::OK, r#"{"ok":true}"#).into_response()
        }
        Mode::Hold => {
            let mut released = shared.released;
            let _ = released.wait_for(|released| *released).await;
            record(&book, &order_id);
            (StatusCode::OK, r#"{"ok":true}"#).into_response()
        }
        Mode::Up => {
            record(&book, &order_id);
            (StatusCode::OK, r#"{"ok":true}"#).into_response()
        }
        Mode::Down => (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response(),
        Mode::Accept => {
            if let Ok(mut book) = book.lock() {
                book.accepted.push(order_no);
            }
            (StatusCode::ACCEPTED, r#"{"queued":true}"#).into_response()
        }
        Mode::Refuse => (StatusCode::CONFLICT, r#"{"error":"player account banned"}"#).into_response(),
        Mode::Garbage => {
            record(&book, &order_id);
            (StatusCode::OK, [("content-type", "application/json")], vec![0xff, 0x00, 0x13, b'<']).into_response()
        }
        Mode::Redirect => (StatusCode::FOUND, [("location", "http://127.0.0.1:9/elsewhere")], "").into_response(),
    }
}

fn record(book: &Mutex<Book>, order_id: &str) {
    if let Ok(mut book) = book.lock() {
        *book.delivered.entry(order_id.to_owned()).or_default() += 1;
    }
}
