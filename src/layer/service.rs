//! [`TokenAuth`]: the service the layer wraps around an inner service.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use crate::authenticator::{Authenticator, Begin};
use crate::store::TokenStore;

/// Authenticates each request, then calls the inner service or refuses.
/// Made by [`TokenAuthLayer`](crate::TokenAuthLayer).
#[derive(Debug)]
pub struct TokenAuth<S, St> {
    inner: S,
    auth: Authenticator<St>,
}

impl<S: Clone, St> Clone for TokenAuth<S, St> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), auth: self.auth.clone() }
    }
}

impl<S, St> TokenAuth<S, St> {
    pub(crate) fn new(inner: S, auth: Authenticator<St>) -> Self {
        Self { inner, auth }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for TokenAuth<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: TokenStore,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // `self.inner` was driven to readiness by `poll_ready`; a clone may not
        // be. Keep the clone and move the ready service into the future. See
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        match self.auth.begin(req.headers(), req.uri()) {
            Ok(Begin::Lookup(credential)) => {
                let kind = credential.kind();
                let lookup = self.auth.lookup(credential);
                ResponseFuture::lookup(lookup, kind, inner, req, self.auth.clone())
            }
            Ok(Begin::Anonymous(anonymous)) => {
                let refusals = self.auth.refusals().clone();
                crate::identity::Identity::<St::User>::Anonymous(anonymous).insert_into(req.extensions_mut(), refusals);
                ResponseFuture::inner(inner.call(req))
            }
            // `inner` is dropped here, so whatever its readiness reserved
            // (a semaphore permit, a buffer slot) is released at once.
            Err(rejection) => ResponseFuture::rejected(&self.auth, &rejection),
        }
    }
}
