//! The review web app behind `radit review`.
//!
//! A person types a question (or takes the next one of a queue), sees the ensemble answer and
//! the k chunks it was computed from with their p_R and share of p(y|x), marks each chunk
//! helpful or not, marks the answer right or wrong, may type the right answer, and, with two
//! models, picks the better answer. Every answer shown and every judgment goes to the
//! [`FeedbackDb`]; the page says "saved" only after the database has committed it.
//!
//! The app never touches a model. It runs an HTTP server (axum, on its own thread and tokio
//! runtime) and hands each question to the caller through [`Review::serve`], whose closure
//! answers it on the caller's thread, where the models live. Plain HTML, CSS and JavaScript are
//! compiled into the binary; the page writes every question, answer and chunk text with
//! `textContent` (never as HTML) and a Content-Security-Policy forbids inline scripts, so a
//! chunk containing `<script>` shows as text.
//!
//! Security: the server binds 127.0.0.1 unless told otherwise; any other address requires a
//! token on every request (the `x-radit-token` header, or `?token=` for the page itself). On
//! loopback, requests must name a loopback host (no DNS rebinding). Bodies are limited to
//! [`MAX_BODY_BYTES`]; API writes must be JSON (a cross-site form cannot post one). A bad
//! request gets a 4xx with a JSON `{"error": ...}` message. The database is the only file the
//! app writes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use radit_feedback::{
    question_key, AnswerView, FeedbackDb, FeedbackError, Judgment, Preference, ShownAnswer,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// The largest request body accepted (a judgment with a long correction fits many times).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 2000;

/// Errors of starting the app.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A non-loopback address without a token.
    #[error("--host {0} is reachable from other machines: a token is required")]
    TokenRequired(IpAddr),
    /// The server's runtime failed.
    #[error("review server: {0}")]
    Runtime(String),
}

/// Which model answers: the reviewed one, or the one it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// `--checkpoint`.
    A,
    /// `--compare`.
    B,
}

/// A question for the models, answered through [`Review::serve`].
pub struct AnswerRequest {
    /// The question.
    pub question: String,
    /// Which model.
    pub side: Side,
    reply: oneshot::Sender<Result<ShownAnswer, String>>,
}

/// One question of the review queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    /// The question.
    pub question: String,
}

/// How the app runs.
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    /// Address to bind.
    pub host: IpAddr,
    /// Port (0: any free one).
    pub port: u16,
    /// Required on every request; mandatory when `host` is not loopback.
    pub token: Option<String>,
    /// Questions to review in order.
    pub queue: Vec<QueueItem>,
    /// Labels of the models: the reviewed one and, when comparing, the other.
    pub models: Vec<String>,
}

/// A running review app.
pub struct Review {
    addr: SocketAddr,
    token: Option<String>,
    requests: mpsc::Receiver<AnswerRequest>,
    thread: std::thread::JoinHandle<Result<(), String>>,
    stop: StopHandle,
}

/// Stops a running [`Review`] from another thread, as SIGINT/SIGTERM do.
#[derive(Clone)]
pub struct StopHandle(Arc<tokio::sync::Notify>);

impl StopHandle {
    /// Asks the server to finish its open requests and stop.
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

struct App {
    db: Mutex<FeedbackDb>,
    models: mpsc::Sender<AnswerRequest>,
    config: ReviewConfig,
}

/// A response with an HTTP status and a JSON message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<FeedbackError> for ApiError {
    fn from(e: FeedbackError) -> Self {
        let status = match e {
            FeedbackError::UnknownAnswer(_) => StatusCode::NOT_FOUND,
            FeedbackError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("review: {e}");
        }
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(e.status(), e.body_text())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A fresh random token: 32 hex digits from the OS's random source.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Review {
    /// Binds the address and starts serving on a thread of its own. Questions wait in
    /// [`Review::serve`] until the caller answers them.
    pub fn start(config: ReviewConfig, db: FeedbackDb) -> Result<Self, ReviewError> {
        if !config.host.is_loopback() && config.token.is_none() {
            return Err(ReviewError::TokenRequired(config.host));
        }
        let addr = SocketAddr::new(config.host, config.port);
        let bind = |source| ReviewError::Bind { addr, source };
        // Bound here, so a port in use is this call's error, not a log line of a thread.
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let (tx, rx) = mpsc::channel(4);
        let token = config.token.clone();
        let stop = StopHandle(Arc::new(tokio::sync::Notify::new()));
        let stopped = stop.0.clone();
        let app = Arc::new(App {
            db: Mutex::new(db),
            models: tx,
            config,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ReviewError::Runtime(e.to_string()))?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                axum::serve(listener, router(app))
                    .with_graceful_shutdown(shutdown_signal(stopped))
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        Ok(Self {
            addr,
            token,
            requests: rx,
            thread,
            stop,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops the server.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The page's address, with the token when there is one.
    pub fn url(&self) -> String {
        match &self.token {
            Some(t) => format!("http://{}/?token={t}", self.addr),
            None => format!("http://{}/", self.addr),
        }
    }

    /// Answers questions with `answer` on this thread until the server stops (SIGINT or
    /// SIGTERM), then returns.
    pub fn serve(
        mut self,
        mut answer: impl FnMut(&str, Side) -> Result<ShownAnswer, String>,
    ) -> Result<(), ReviewError> {
        while let Some(request) = self.requests.blocking_recv() {
            let result = answer(&request.question, request.side);
            // The page may have gone away meanwhile; nothing is lost, the answer was not shown.
            let _ = request.reply.send(result);
        }
        self.thread
            .join()
            .map_err(|_| ReviewError::Runtime("the server thread panicked".into()))?
            .map_err(ReviewError::Runtime)
    }
}

async fn shutdown_signal(stop: Arc<tokio::sync::Notify>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
        _ = stop.notified() => {},
    }
    tracing::info!("review: stopping");
}

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// Scripts and styles from this server only, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/api/info", get(info))
        .route("/api/queue/{n}", get(queue_item))
        .route("/api/ask", post(ask))
        .route("/api/judge", post(judge))
        .route("/api/prefer", post(prefer))
        .route("/api/recent", get(recent))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Equal-time comparison, so the token cannot be guessed a byte at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// Host check on loopback, token check when configured.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if app.config.host.is_loopback() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("host `{host}` is not this machine's loopback address"),
            )
            .into_response();
        }
    }
    if let Some(token) = &app.config.token {
        let given = request
            .headers()
            .get("x-radit-token")
            .map(HeaderValue::as_bytes)
            .or_else(|| query_token(request.uri().query()).map(str::as_bytes));
        if !given.is_some_and(|g| same(g, token.as_bytes())) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "a valid token is required (the one printed when `radit review` started)".into(),
            )
            .into_response();
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn info(State(app): State<Arc<App>>) -> ApiResult<serde_json::Value> {
    Ok(Json(json!({
        "models": app.config.models,
        "compare": app.config.models.len() > 1,
        "queue": app.config.queue.len(),
    })))
}

async fn queue_item(
    State(app): State<Arc<App>>,
    Path(n): Path<String>,
) -> ApiResult<serde_json::Value> {
    let total = app.config.queue.len();
    let index: usize = n
        .parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{n}` is not a number")))?;
    let item = app.config.queue.get(index).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("the queue has {total} question(s); there is no question {index}"),
        )
    })?;
    let key = question_key(&item.question);
    let judged = lock(&app)?
        .judged_questions()?
        .iter()
        .filter(|q| question_key(q) == key)
        .count();
    Ok(Json(json!({
        "index": index,
        "total": total,
        "question": item.question,
        "judgments": judged,
    })))
}

fn lock(app: &App) -> Result<std::sync::MutexGuard<'_, FeedbackDb>, ApiError> {
    app.db.lock().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the database lock is poisoned; restart radit review".into(),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    question: String,
}

async fn ask(
    State(app): State<Arc<App>>,
    body: Result<Json<AskBody>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(body) = body?;
    let question = body.question.trim();
    if question.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the question is empty".into(),
        ));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the question is longer than {MAX_QUESTION_CHARS} characters"),
        ));
    }
    let sides: &[Side] = if app.config.models.len() > 1 {
        &[Side::A, Side::B]
    } else {
        &[Side::A]
    };
    let mut answers: Vec<AnswerView> = Vec::new();
    for &side in sides {
        let (reply, answer) = oneshot::channel();
        let request = AnswerRequest {
            question: question.to_string(),
            side,
            reply,
        };
        let gone = || {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the models are shutting down".into(),
            )
        };
        app.models.send(request).await.map_err(|_| gone())?;
        let shown = answer
            .await
            .map_err(|_| gone())?
            .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let mut db = lock(&app)?;
        let id = db.record_answer(&shown)?;
        let view = db.answer(id)?.ok_or(FeedbackError::UnknownAnswer(id))?;
        answers.push(view);
    }
    Ok(Json(json!({ "answers": answers })))
}

async fn judge(
    State(app): State<Arc<App>>,
    body: Result<Json<Judgment>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(judgment) = body?;
    let id = lock(&app)?.record_judgment(&judgment)?;
    Ok(Json(json!({ "id": id, "saved": true })))
}

async fn prefer(
    State(app): State<Arc<App>>,
    body: Result<Json<Preference>, JsonRejection>,
) -> ApiResult<serde_json::Value> {
    let Json(preference) = body?;
    let id = lock(&app)?.record_preference(&preference)?;
    Ok(Json(json!({ "id": id, "saved": true })))
}

async fn recent(State(app): State<Arc<App>>) -> ApiResult<serde_json::Value> {
    let judgments = lock(&app)?.judgments(Some(20))?;
    Ok(Json(json!({ "judgments": judgments })))
}
