//! [`ResponseFuture`]: the named future of [`TokenAuth`](super::TokenAuth).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::authenticator::{Authenticator, Lookup};
use crate::extract::CredentialKind;
use crate::rejection::Rejection;
use crate::store::TokenStore;

pin_project! {
    /// The response future of [`TokenAuth`](super::TokenAuth): waits for the
    /// store, then for the inner service (or yields the refusal).
    pub struct ResponseFuture<S, ReqBody, St>
    where
        S: Service<Request<ReqBody>>,
        St: TokenStore,
    {
        #[pin]
        state: State<S, ReqBody, St>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, St>
    where
        S: Service<Request<ReqBody>>,
        St: TokenStore,
    {
        Lookup {
            lookup: Lookup<St::User>,
            pending: Option<Pending<S, ReqBody, St>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Done {
            response: Option<S::Response>,
        },
    }
}

/// What the lookup state keeps until the store answers.
struct Pending<S, ReqBody, St> {
    kind: CredentialKind,
    inner: S,
    req: Request<ReqBody>,
    auth: Authenticator<St>,
}

impl<S, ReqBody, St> std::fmt::Debug for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
    St: TokenStore,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Lookup { .. } => "Lookup",
            State::Inner { .. } => "Inner",
            State::Done { .. } => "Done",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S, ReqBody, St, ResBody> ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: TokenStore,
    ResBody: From<String>,
{
    pub(super) fn lookup(
        lookup: Lookup<St::User>,
        kind: CredentialKind,
        inner: S,
        req: Request<ReqBody>,
        auth: Authenticator<St>,
    ) -> Self {
        let pending = Some(Pending { kind, inner, req, auth });
        Self { state: State::Lookup { lookup, pending } }
    }

    pub(super) fn inner(future: S::Future) -> Self {
        Self { state: State::Inner { future } }
    }

    pub(super) fn rejected(auth: &Authenticator<St>, rejection: &Rejection) -> Self {
        Self { state: State::Done { response: Some(auth.refusal(rejection).map(ResBody::from)) } }
    }
}

impl<S, ReqBody, St, ResBody> Future for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: TokenStore,
    ResBody: From<String>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Lookup { lookup, pending } => {
                    let (token, asked_at, answer) = ready!(lookup.as_mut().poll(cx));
                    let Pending { kind, mut inner, mut req, auth } =
                        pending.take().expect("ResponseFuture polled after completion");
                    match auth.finish(kind, token, asked_at, answer) {
                        Ok(identity) => {
                            identity.insert_into(req.extensions_mut(), auth.refusals().clone());
                            State::Inner { future: inner.call(req) }
                        }
                        Err(rejection) => {
                            drop(inner);
                            State::Done { response: Some(auth.refusal(&rejection).map(ResBody::from)) }
                        }
                    }
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Done { response } => {
                    return Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}
