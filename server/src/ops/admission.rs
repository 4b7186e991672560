//! Who gets served when ibex is busy. Infobip's signed calls (and the other server-to-server requests: health
//! checks, metrics, Conversations' Custom cards) and the pages browsers open (the configuration page, the card,
//! their server functions, sign-in, static files) draw on two separate pools of slots, so neither can take the
//! other off the air: a flood of slow page requests, which needs no sign-in, leaves every signed slot free, and
//! a burst of bot traffic leaves the pages usable. Past its pool's limit a request is answered 503 at once:
//! queueing would only make every caller late, and Infobip's callers have deadlines of their own.
//!
//! A page request's body is read here too, whole, within one deadline and one size limit (`page_body`): the
//! body timeout of `tower_http` restarts after every chunk, so a client sending a byte every few seconds could
//! hold a slot for as long as it liked.

use crate::errors::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pools' slots, shared by every serving thread's router.
#[derive(Clone)]
pub struct Slots {
    /// Verified signed calls (taken once the signature checks out: `SignedRequest`), the Custom cards webhook
    /// and the operator's probes.
    pub signed: Arc<Semaphore>,
    pub pages: Arc<Semaphore>,
    /// Signed-path bodies being read, before their signature can be checked: anyone can send one, so they
    /// hold a slot of their own, and only while the body arrives (at most `IBEX_BODY_TIMEOUT_SECS`), never a
    /// signed call's slot.
    pub intake: Arc<Intake>,
}

/// A read that has gone on this long may be cut for a newcomer when every slot is taken: Infobip sends a signed
/// call's body at once (a few KiB, read in well under this), so a read this old in a full pool is, in all
/// likelihood, a client trickling its body on purpose.
const EVICTABLE_AFTER: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a newcomer waits in line for a slot (cutting one old read per `EVICTION_TICK` meanwhile).
const ADMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const EVICTION_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// The slots for signed-path bodies being read. Refusing newcomers when they are all taken would let anyone who
/// keeps them busy with slow bodies (no signature needed) refuse Infobip's calls too; so a newcomer waits in
/// line (first come, first served: tokio's semaphore is fair) while the reads that have gone on longest are cut
/// (503 `overloaded`) to make room. Every slot held by a trickler is freed within `EVICTABLE_AFTER` of a
/// newcomer's arrival, so a caller waits about (slow clients waiting / slots) × `EVICTABLE_AFTER`: an attacker
/// must open many times as many connections as there are slots to hold Infobip's calls off for long.
pub struct Intake {
    slots: Arc<Semaphore>,
    /// The reads under way by age (ids only grow), each with the signal that cuts it.
    readers: std::sync::Mutex<
        std::collections::BTreeMap<u64, (std::time::Instant, Arc<tokio::sync::Notify>)>,
    >,
    next_id: std::sync::atomic::AtomicU64,
}

/// A read's slot; dropping it frees the slot.
pub struct IntakeTicket {
    intake: Arc<Intake>,
    id: u64,
    cut: Arc<tokio::sync::Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Intake {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Intake {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            readers: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn readers(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::BTreeMap<u64, (std::time::Instant, Arc<tokio::sync::Notify>)>,
    > {
        // A panic while holding this lock cannot leave the map inconsistent (one insert or remove).
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one body read; `None` when none came free within `ADMISSION_WAIT`.
    pub async fn enter(self: &Arc<Self>) -> Option<IntakeTicket> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waited_until = std::time::Instant::now() + ADMISSION_WAIT;
                let acquire = self.slots.clone().acquire_owned();
                tokio::pin!(acquire);
                loop {
                    self.cut_oldest();
                    match tokio::time::timeout(EVICTION_TICK, &mut acquire).await {
                        Ok(Ok(permit)) => break permit,
                        Ok(Err(_)) => return None,
                        Err(_) if std::time::Instant::now() >= waited_until => return None,
                        Err(_) => {}
                    }
                }
            }
        };
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cut = Arc::new(tokio::sync::Notify::new());
        self.readers()
            .insert(id, (std::time::Instant::now(), cut.clone()));
        Some(IntakeTicket {
            intake: self.clone(),
            id,
            cut,
            _permit: permit,
        })
    }

    /// Cuts the read that has gone on longest, if it is old enough to be a trickler.
    fn cut_oldest(&self) {
        let oldest = {
            let mut readers = self.readers();
            let old_enough = readers
                .first_key_value()
                .is_some_and(|(_, (at, _))| at.elapsed() >= EVICTABLE_AFTER);
            if old_enough {
                readers.pop_first()
            } else {
                None
            }
        };
        if let Some((_, (_, cut))) = oldest {
            cut.notify_one();
        }
    }
}

impl IntakeTicket {
    /// Resolves when a newcomer took this read's slot.
    pub async fn cut(&self) {
        self.cut.notified().await;
    }
}

impl Drop for IntakeTicket {
    fn drop(&mut self) {
        self.intake.readers().remove(&self.id);
    }
}

/// Which pool a request draws on at the door.
enum Pool<'a> {
    Door(&'a Arc<Semaphore>),
    /// Signed paths: admitted without a slot, which they take themselves, in two steps (`SignedRequest`).
    AfterVerification,
}

impl Slots {
    pub fn new(signed: usize, pages: usize, intake: usize) -> Self {
        Slots {
            signed: Arc::new(Semaphore::new(signed.max(1))),
            pages: Arc::new(Semaphore::new(pages.max(1))),
            intake: Intake::new(intake),
        }
    }

    /// Infobip's servers call `/fn/…` and People sync's Moments element (signed), and the Custom cards webhook
    /// and the operator's probes (which answer from their headers alone); everything else is opened by a
    /// browser. A signed path's slot is taken only once its signature checks out: taken at the door, a flood of
    /// unsigned slow bodies to `/fn/x` held every signed slot until their deadline.
    fn pool_for(&self, path: &str) -> Pool<'_> {
        if path == "/fn" || path.starts_with("/fn/") || path == crate::sync::moments::PATH {
            Pool::AfterVerification
        } else if path == "/custom-card" || matches!(path, "/healthz" | "/readyz" | "/metrics") {
            Pool::Door(&self.signed)
        } else {
            Pool::Door(&self.pages)
        }
    }
}

/// The layer around the whole router (routes.rs).
#[derive(Clone)]
pub struct AdmissionLayer(pub Slots);

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            slots: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    slots: Slots,
}

impl<S> tower::Service<Request> for Admission<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let pool = match self.slots.pool_for(request.uri().path()) {
            Pool::Door(pool) => pool,
            Pool::AfterVerification => {
                return Admitted::Served {
                    answer: self.inner.call(request),
                    permit: None,
                }
            }
        };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => Admitted::Served {
                answer: self.inner.call(request),
                permit: Some(permit),
            },
            Err(_) => Admitted::Refused {
                response: Some(ApiError::Overloaded.into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of an admitted request, holding its slot until the answer is ready (a named future, not a
    /// boxed one: the signed path pays no allocation for its admission).
    #[project = AdmittedProjection]
    pub enum Admitted<F> {
        Served { #[pin] answer: F, permit: Option<OwnedSemaphorePermit> },
        Refused { response: Option<Response> },
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response, std::convert::Infallible>>,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProjection::Served { answer, permit } => {
                let answer = std::task::ready!(answer.poll(cx));
                permit.take();
                Poll::Ready(answer)
            }
            AdmittedProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| ApiError::Overloaded.into_response()))),
        }
    }
}

/// Reads a page request's whole body before the page sees it: at most `IBEX_MAX_PAGE_BODY_BYTES` (413
/// `body_too_large` above it, a declared length at once) within `IBEX_BODY_TIMEOUT_SECS` from the end of the
/// headers (408 `body_timeout`). The pages' bodies are forms and server-function arguments, a few KiB, so
/// holding them whole costs nothing and gives the server functions a body that can no longer stall.
pub async fn page_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match crate::signed::request::read_body(
        &parts,
        body,
        state.max_page_body_bytes,
        state.body_timeout,
    )
    .await
    {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(error) => error.into_response(),
    }
}
