//! A stand-in for the platform's own delivery endpoint (a game server's top-up API), for
//! the demo and the tests. It checks zerodrop's signature and keeps the protocol's promise
//! about idempotency keys: a repeated key is answered with the original request's result
//! and never applied twice (the goods it applied are counted by key, so a test can see a
//! caller that changed its key). A request it accepts (202) is confirmed later naming the
//! order and the `attempt` of that first request, as the protocol asks. It can be told to misbehave, including in the ways that
//! leave zerodrop without an answer: answering after zerodrop gave up, never answering,
//! breaking the connection after reading the request.

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use zerodrop_server::flows::endpoint::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

pub const NAME: &str = "game";
pub const SECRET: &str = "zd_local_game_endpoint_secret_for_tests_and_demo";

/// How the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200: delivered.
    Up,
    /// 503: try later (nothing applied, nothing remembered).
    Down,
    /// 202: accepted; the endpoint delivers and confirms later (see
    /// [`Endpoint::confirm_accepted`] and [`Endpoint::finish_accepted`]).
    Accept,
    /// 409 with a reason: never.
    Refuse,
    /// 200 with bytes that are not JSON.
    Garbage,
    /// 302 to elsewhere.
    Redirect,
    /// Applies the goods at once and answers 200 after this many milliseconds (after
    /// zerodrop's timeout, when longer); a repeated key gets that 200 at once.
    Slow(u64),
    /// Holds every request until [`Endpoint::release`], then applies the goods (once) and
    /// answers 200: a slow answer whose moment the test chooses.
    Hold,
    /// Applies the goods at once, then answers nothing (this request or a repeat of its
    /// key) until [`Endpoint::release`].
    Silent,
    /// Applies the goods at once, then breaks the connection without an answer (this
    /// request and every repeat of its key, while in this mode).
    Break,
}

/// What a request got, kept by idempotency key for repeats.
#[derive(Clone, Debug)]
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn delivered() -> Reply {
        Reply { status: StatusCode::OK, body: br#"{"ok":true}"#.to_vec() }
    }
}

#[derive(Default)]
struct Book {
    mode: Option<Mode>,
    /// The result of each idempotency key's first request (202s until delivered).
    results: HashMap<String, Reply>,
    /// Goods applied, by idempotency key: more than 1 would be a double delivery.
    applied: HashMap<String, u32>,
    /// Requests answered "delivered", by idempotency key (repeats included).
    delivered: HashMap<String, u32>,
    /// Requests heard with a valid signature, by idempotency key.
    heard: HashMap<String, u32>,
    /// Accepted (202) and not yet confirmed: (idempotency key, order number).
    accepted: Vec<(String, String)>,
    /// The attempt id of each order's accepted request (what a confirmation names).
    accepted_attempts: HashMap<String, String>,
    requests: u64,
    bad_signatures: u64,
}

impl Book {
    /// The key's result: its first request's, or `fresh` (which may apply the goods)
    /// for a key never seen. True when this request is the first.
    fn once(&mut self, key: &str, fresh: impl FnOnce(&mut Book) -> Reply) -> (Reply, bool) {
        if let Some(reply) = self.results.get(key) {
            return (reply.clone(), false);
        }
        let reply = fresh(self);
        self.results.insert(key.to_owned(), reply.clone());
        (reply, true)
    }

    fn apply(&mut self, key: &str) -> Reply {
        *self.applied.entry(key.to_owned()).or_default() += 1;
        Reply::delivered()
    }
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
        let listener = Breakable(TcpListener::bind("127.0.0.1:0").await?);
        let url = format!("http://{}/deliver", listener.0.local_addr()?);
        let book = Arc::new(Mutex::new(Book { mode: Some(mode), ..Book::default() }));
        let (release, released) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Shared { book: book.clone(), released };
        let router = Router::new().route("/deliver", post(deliver)).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<Breaker>())
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Endpoint { url, book, release: Arc::new(release), stop: Arc::new(Mutex::new(Some(stop))) })
    }

    /// Lets requests held under [`Mode::Hold`] or [`Mode::Silent`] answer (and later ones
    /// answer at once).
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut book) = self.book.lock() {
            book.mode = Some(mode);
        }
    }

    /// Requests answered "delivered", by order id (its idempotency key), repeats included.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.book.lock().map(|b| b.delivered.clone()).unwrap_or_default()
    }

    /// Times the goods were applied, by order id (its idempotency key).
    pub fn applied(&self) -> HashMap<String, u32> {
        self.book.lock().map(|b| b.applied.clone()).unwrap_or_default()
    }

    /// Validly signed requests heard, by order id (its idempotency key).
    pub fn heard(&self) -> HashMap<String, u32> {
        self.book.lock().map(|b| b.heard.clone()).unwrap_or_default()
    }

    pub fn requests(&self) -> (u64, u64) {
        self.book.lock().map(|b| (b.requests, b.bad_signatures)).unwrap_or_default()
    }

    /// The attempt id of the request this endpoint accepted for an order: what its
    /// confirmation names.
    pub fn accepted_attempt(&self, order_no: &str) -> Option<String> {
        self.book.lock().ok()?.accepted_attempts.get(order_no).cloned()
    }

    /// Delivers every accepted order and confirms each to zerodrop, signed like zerodrop's
    /// requests.
    pub async fn confirm_accepted(&self, zerodrop_url: &str) -> Result<Vec<(String, u16)>> {
        let accepted = self.finish_accepted();
        let client = zerodrop_providers::http_client::client(Duration::from_secs(10))?;
        let mut answers = Vec::new();
        for order_no in accepted {
            let attempt = self.accepted_attempt(&order_no).unwrap_or_default();
            let body =
                serde_json::json!({ "order_no": order_no, "attempt": attempt, "status": "delivered" }).to_string();
            let status = confirm(&client, zerodrop_url, &order_no, &body).await?;
            answers.push((order_no, status));
        }
        Ok(answers)
    }

    /// Delivers every accepted order without confirming it (the confirmation is lost): a
    /// repeat of its key now gets 200. Returns their order numbers.
    pub fn finish_accepted(&self) -> Vec<String> {
        let Ok(mut book) = self.book.lock() else { return Vec::new() };
        let accepted = std::mem::take(&mut book.accepted);
        for (key, _) in &accepted {
            let reply = book.apply(key);
            book.results.insert(key.clone(), reply);
        }
        accepted.into_iter().map(|(_, order_no)| order_no).collect()
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

async fn deliver(
    State(shared): State<Shared>,
    ConnectInfo(breaker): ConnectInfo<Breaker>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = zerodrop_store::now_ms() / 1000;
    let genuine = endpoint::verify(SECRET, header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &body, now).is_ok();
    let key = header("idempotency-key").unwrap_or_default().to_owned();
    let request = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let named = |field: &str| request[field].as_str().unwrap_or_default().to_owned();
    let (mode, reply, first) = match hear(&shared.book, genuine, &key, (named("order_no"), named("attempt"))) {
        Ok(heard) => heard,
        Err(response) => return *response,
    };
    match mode {
        // Applied only once released: nothing is remembered before.
        Mode::Hold => {
            let mut released = shared.released.clone();
            let _ = released.wait_for(|released| *released).await;
        }
        Mode::Slow(ms) if first => tokio::time::sleep(Duration::from_millis(ms)).await,
        Mode::Silent => {
            let mut released = shared.released.clone();
            let _ = released.wait_for(|released| *released).await;
        }
        // The request was read and acted on; the answer never leaves.
        Mode::Break => breaker.0.store(true, Ordering::SeqCst),
        _other => {}
    }
    let Ok(mut book) = shared.book.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let reply = match reply {
        Some(reply) => reply,
        None => book.once(&key, |book| book.apply(&key)).0,
    };
    answer(&mut book, &key, reply)
}

/// Counts a request and decides its result under the book's lock: the mode it met, the
/// reply (`None` while [`Mode::Hold`] decides later), and whether its key is new. `Err`
/// is an answer given at once, remembering nothing. `named` is the request's order
/// number and attempt id.
fn hear(
    book: &Mutex<Book>,
    genuine: bool,
    key: &str,
    named: (String, String),
) -> Result<(Mode, Option<Reply>, bool), Box<Response>> {
    let Ok(mut book) = book.lock() else { return Err(Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response())) };
    book.requests += 1;
    if !genuine {
        book.bad_signatures += 1;
        return Err(Box::new((StatusCode::UNAUTHORIZED, "bad signature").into_response()));
    }
    *book.heard.entry(key.to_owned()).or_default() += 1;
    let mode = book.mode.unwrap_or(Mode::Up);
    let (reply, first) = match mode {
        Mode::Down => return Err(Box::new((StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response())),
        Mode::Redirect => {
            let location = [("location", "http://127.0.0.1:9/elsewhere")];
            return Err(Box::new((StatusCode::FOUND, location, "").into_response()));
        }
        Mode::Hold => return Ok((mode, None, !book.results.contains_key(key))),
        Mode::Up | Mode::Slow(_) | Mode::Silent | Mode::Break => book.once(key, |book| book.apply(key)),
        Mode::Garbage => book.once(key, |book| {
            book.apply(key);
            Reply { status: StatusCode::OK, body: vec![0xff, 0x00, 0x13, b'<'] }
        }),
        Mode::Accept => book.once(key, |book| {
            let (order_no, attempt) = named;
            book.accepted_attempts.insert(order_no.clone(), attempt);
            book.accepted.push((key.to_owned(), order_no));
            Reply { status: StatusCode::ACCEPTED, body: br#"{"queued":true}"#.to_vec() }
        }),
        Mode::Refuse => book.once(key, |_| Reply {
            status: StatusCode::CONFLICT,
            body: br#"{"error":"player account banned"}"#.to_vec(),
        }),
    };
    Ok((mode, Some(reply), first))
}

/// The response for `reply`, counted when it says delivered.
fn answer(book: &mut Book, key: &str, reply: Reply) -> Response {
    if reply.status == StatusCode::OK {
        *book.delivered.entry(key.to_owned()).or_default() += 1;
    }
    (reply.status, [("content-type", "application/json")], reply.body).into_response()
}

/// A loopback listener whose connections the handler can break: after reading a request,
/// a [`Mode::Break`] handler marks its connection, and the response's first write fails,
/// which closes the connection with nothing sent.
struct Breakable(TcpListener);

/// A connection's mark, as the handler sees it (through `ConnectInfo`).
#[derive(Clone)]
struct Breaker(Arc<AtomicBool>);

/// A connection that fails its writes once marked.
struct BreakableIo {
    inner: TcpStream,
    broken: Arc<AtomicBool>,
}

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_RETRY_MS: u64 = 50;

impl Listener for Breakable {
    type Io = BreakableIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (BreakableIo, std::net::SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => return (BreakableIo { inner, broken: Arc::new(AtomicBool::new(false)) }, addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, Breakable>> for Breaker {
    fn connect_info(stream: IncomingStream<'_, Breakable>) -> Breaker {
        Breaker(stream.io().broken.clone())
    }
}

impl BreakableIo {
    fn check(&self) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection broken on purpose"));
        }
        Ok(())
    }
}

impl AsyncRead for BreakableIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for BreakableIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
